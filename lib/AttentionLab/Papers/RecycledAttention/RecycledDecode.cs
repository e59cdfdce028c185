using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>
/// The fast form on one layer without positions: a <see cref="SelectiveKvCache"/> with a <see cref="RecycledAttentionPolicy"/>, step by step.
/// </summary>
public static class RecycledDecode
{
    /// <summary>
    /// Decodes q [B, T, Hq, D] against k [B, T, Hkv, D], v [B, T, Hkv, Dv] (query t sees keys ≤ t). Returns the outputs
    /// [B, T, Hq, Dv], the attended mask [B, Hkv, T, T] (1 where step t attended key j) and the per-step statistics.
    /// </summary>
    public static (Tensor Output, Tensor Attended, IReadOnlyList<DecodeStepStats> Trace) Layer(Tensor q, Tensor k, Tensor v, int topK, int stride,
        int prefill = 1)
    {
        ReferenceAttention.Validate(q, k, v);
        if (q.shape[1] != k.shape[1])
            throw new ArgumentException($"q {Guard.ShapeText(q)} and k {Guard.ShapeText(k)} must have the same length (one query per key).", nameof(q));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var policy = new RecycledAttentionPolicy(topK, stride, prefill);
        using var cache = new SelectiveKvCache(policy);
        long b = q.shape[0], n = q.shape[1], hkv = k.shape[2];
        var attended = torch.zeros(new[] { b, hkv, n, n }, dtype: q.dtype, device: q.device);
        var outputs = new List<Tensor>();
        for (long t = 0; t < n; t++)
        {
            bool full = policy.IsFull(t);
            var r = cache.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
            outputs.Add(r.Output);
            var row = attended.select(2, t);                                         // [B, Hkv, T]
            if (full) row.narrow(2, 0, t + 1).fill_(1);
            else
            {
                var fresh = torch.arange(policy.LastFullStep + 1, t + 1, dtype: ScalarType.Int64, device: q.device).expand(b, hkv, t - policy.LastFullStep);
                var index = torch.cat(new[] { policy.Recycled!, fresh }, 2);         // J = I ∪ {t₀+1 … t}
                row.scatter_(2, index, torch.ones_like(index, dtype: q.dtype));
            }
        }
        return (torch.cat(outputs, 1).MoveToOuterDisposeScope(), attended.MoveToOuterDisposeScope(), cache.Trace.ToList());
    }
}
