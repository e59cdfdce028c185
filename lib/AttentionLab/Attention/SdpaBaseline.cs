using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// TorchSharp's fused scaled_dot_product_attention, used only as a speed baseline: in 0.107 it has no scale
/// argument (always 1/√D) and spells its flag is_casual, so no method relies on it. Layout [B, T, H, D].
/// </summary>
public static class SdpaBaseline
{
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, bool causal = false)
    {
        ReferenceAttention.Validate(q, k, v);
        if (q.shape[2] != k.shape[2])
            throw new ArgumentException(
                $"the SDPA baseline needs as many k heads as q heads: q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}.", nameof(k));
        using var scope = NewDisposeScope();
        var o = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_casual: causal);
        return o.transpose(1, 2).contiguous().MoveToOuterDisposeScope();
    }
}
