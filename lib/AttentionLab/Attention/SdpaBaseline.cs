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
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Rank(v, 4, nameof(v), "B, T, H, Dv");
        using var scope = NewDisposeScope();
        var o = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_casual: causal);
        return o.transpose(1, 2).contiguous().MoveToOuterDisposeScope();
    }
}
