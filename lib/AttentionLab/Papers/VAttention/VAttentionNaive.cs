using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.VAttention;

/// <summary>vAttention's naive twin: reference attention per sequence over its exact-length keys (no paging, no padding).</summary>
public static class VAttentionNaive
{
    /// <summary>
    /// The naive twin: for each sequence b, reference causal attention of q[b] [1, Tq, Hq, D] over its exact-length
    /// keys [1, L_b, H, D] (each L_b ≥ Tq); outputs stacked to [B, Tq, Hq, Dv].
    /// </summary>
    public static Tensor Decode(IReadOnlyList<(Tensor Keys, Tensor Values)> sequences, Tensor q, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        DecodeAttention.CheckQuery(q, sequences.Count, nameof(q));
        using var scope = NewDisposeScope();
        var outputs = sequences.Select((kv, b) =>
        {
            if (kv.Keys.shape[1] < q.shape[1])
                throw new ArgumentException($"sequence {b} holds {kv.Keys.shape[1]} keys, fewer than the {q.shape[1]} queries.", nameof(sequences));
            using var r = ReferenceAttention.Softmax(q.narrow(0, b, 1), kv.Keys, kv.Values, causal: true, scale: scale);
            return r.Output.alias();
        }).ToList();
        return torch.cat(outputs, 0).MoveToOuterDisposeScope();
    }
}
