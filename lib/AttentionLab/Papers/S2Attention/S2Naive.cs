using AttentionLab.Attention;
using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// The naive twin of every S2 form: dense causal softmax attention with the pattern's token-level mask
/// (<see cref="BlockMask.ToDense"/>), O(T²) in time and memory. The oracle dkernel's tests also use.
/// </summary>
public static class S2Naive
{
    /// <summary>q [B, T, Hq, D], k [B, T, Hkv, D], v [B, T, Hkv, Dv]; the mask's heads are the KV heads.
    /// Returns output [B, T, Hq, Dv], probabilities [B, Hq, T, T] and LSE [B, Hq, T].</summary>
    public static AttentionResult Forward(Tensor q, Tensor k, Tensor v, BlockMask mask, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(mask);
        S2Checks.Inputs(q, k, v, mask);
        using var scope = NewDisposeScope();
        long t = q.shape[1], group = q.shape[2] / k.shape[2];
        var keep = mask.ToDense((int)t, causal: true, device: q.device);                  // [Hkv, T, T]
        keep = group == 1 ? keep : keep.repeat_interleave(group, dim: 0);                  // the pattern belongs to the KV head
        return ReferenceAttention.Softmax(q, k, v, causal: true, scale: scale, mask: keep).MoveToOuterDisposeScope();
    }
}

/// <summary>Input checks shared by the S2 forms.</summary>
static class S2Checks
{
    public static void Inputs(Tensor q, Tensor k, Tensor v, BlockMask mask)
    {
        ReferenceAttention.Validate(q, k, v);
        if (k.shape[1] != q.shape[1])
            throw new ArgumentException($"self-attention needs q and k of one length, got q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}.", nameof(k));
        if (k.shape[2] != mask.Heads)
            throw new ArgumentException($"mask has {mask.Heads} heads but k has {k.shape[2]} KV heads (k {Guard.ShapeText(k)}).", nameof(mask));
        if (q.shape[1] > mask.MaxLength)
            throw new ArgumentException($"q length {q.shape[1]} exceeds the mask's {mask.MaxLength} tokens (q {Guard.ShapeText(q)}).", nameof(q));
    }
}
