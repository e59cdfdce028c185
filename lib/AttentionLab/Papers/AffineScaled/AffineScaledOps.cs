using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AffineScaled;

/// <summary>How β = (α_ma − α) / N is spread over the keys of a causal row (spec §2, subtle point 1).</summary>
public enum BiasNorm
{
    /// <summary>N_i = i + 1, the keys query i sees; β reaches only them, so the row mass is exactly α_ma (the default).</summary>
    VisibleKeys,
    /// <summary>N = T, the full key length, and β reaches every key — future ones included, so future values leak (the other reading).</summary>
    FullLength,
}

/// <summary>
/// The affine-scaled attention operator (paper eqs. 6–11) as functions of q, k, v and α: the explicit form through the weights
/// a = αP + β, the efficient decomposition through softmax attention and a prefix mean, and φ = linear clipping.
/// </summary>
/// <remarks>
/// P = softmax_j(q_i·k_j / √D), causal                         [B, H, T, T]
/// a_ij = α_i P_ij + β_i,  β_i = (α_ma − α_i) / N_i             (j visible; FullLength: every j, N = T)
///      = α_i (P_ij − 1/N_i) + α_ma / N_i  ⇒  Σ_j a_ij = α_ma   (VisibleKeys)
/// z_i = Σ_j a_ij v_j = α_i (P V)_i + (α_ma − α_i) · mean_{j ≤ i} v_j   (the decomposition; FullLength: mean over all j)
/// </remarks>
public static class AffineScaledOps
{
    /// <summary>φ(x) = clip(0.1 x + 0.5, 0, 1) (the paper's linear clipping; NaN stays NaN).</summary>
    public static Tensor LinearClipping(Tensor x)
    {
        Guard.NotNull(x, nameof(x));
        return (x * 0.1 + 0.5).clamp(0.0, 1.0);
    }

    /// <summary>
    /// The affine weights a [B, H, Tq, Tk] from masked scores s [B, H, Tq, Tk] (−∞ where hidden), α [B, H, Tq] and α_ma
    /// broadcastable to [B, H, Tq] (e.g. [1, H, 1]). A row that sees no key gives zeros (as the base's softmax does).
    /// </summary>
    public static Tensor Weights(Tensor scores, Tensor alpha, Tensor alphaMa, BiasNorm norm = BiasNorm.VisibleKeys)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, Tq, Tk");
        Guard.Rank(alpha, 3, nameof(alpha), "B, H, Tq");
        if (!alpha.shape.SequenceEqual(scores.shape[..3]))
            throw new ArgumentException($"alpha {Guard.ShapeText(alpha)} must be [B, H, Tq] of scores {Guard.ShapeText(scores)}.", nameof(alpha));
        if (!Guard.Broadcasts(alphaMa.shape, alpha.shape))
            throw new ArgumentException($"alphaMa {Guard.ShapeText(alphaMa)} does not broadcast to alpha {Guard.ShapeText(alpha)}.", nameof(alphaMa));
        using var scope = NewDisposeScope();
        var p = ReferenceAttention.Normalize(scores).Probabilities;                     // P = softmax_j(s), 0 on hidden keys
        var visible = scores.ne(double.NegativeInfinity);                               // NaN counts as visible: NaN in, NaN out
        var seen = visible.sum(-1, keepdim: true).to(scores.dtype);                     // keys the row sees  [B, H, Tq, 1]
        var a = alpha.unsqueeze(-1);                                                    // α_i  [B, H, Tq, 1]
        var m = alphaMa.expand_as(alpha).unsqueeze(-1);                                 // α_ma
        Tensor weights;
        if (norm == BiasNorm.VisibleKeys)
        {
            var beta = (m - a) / seen.clamp_min(1);                                     // β_i = (α_ma − α_i) / (i + 1)
            weights = a * p + torch.where(visible, beta, torch.zeros_like(beta));       // β on visible keys only
        }
        else
        {
            var beta = (m - a) / scores.size(-1);                                       // β_i = (α_ma − α_i) / T, on every key
            weights = (a * p + beta).masked_fill(seen.eq(0), 0.0);                      // a row that sees nothing stays 0
        }
        return weights.MoveToOuterDisposeScope();
    }

    /// <summary>Causal scores q_i·k_j / √D (−∞ where j &gt; i): [B, H, T, T] from q, k [B, T, H, D].</summary>
    public static Tensor CausalScores(Tensor q, Tensor k)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        using var scope = NewDisposeScope();
        var s = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (1.0 / Math.Sqrt(q.size(3)));
        var hidden = torch.ones(q.size(1), k.size(1), dtype: ScalarType.Bool, device: q.device).triu(1);
        return s.masked_fill(hidden, double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The explicit form: z = a V with a = <see cref="Weights"/>: z [B, T, H, Dv] from q, k [B, T, H, D], v [B, T, H, Dv],
    /// α [B, T, H] and α_ma [H].
    /// </summary>
    public static Tensor Explicit(Tensor q, Tensor k, Tensor v, Tensor alpha, Tensor alphaMa, BiasNorm norm = BiasNorm.VisibleKeys)
    {
        Check(q, k, v, alpha, alphaMa);
        using var scope = NewDisposeScope();
        var a = Weights(CausalScores(q, k), alpha.permute(0, 2, 1), alphaMa.view(1, -1, 1), norm);
        return a.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The efficient decomposition (spec §2, subtle point 3): z_i = α_i · softmax-attention_i + (α_ma − α_i) · mean_{j ≤ i} v_j
    /// (FullLength: the mean over all T) — the softmax part can stay a fused kernel; the bias costs a prefix sum, O(T).
    /// </summary>
    public static Tensor Decomposed(Tensor q, Tensor k, Tensor v, Tensor alpha, Tensor alphaMa, BiasNorm norm = BiasNorm.VisibleKeys)
    {
        Check(q, k, v, alpha, alphaMa);
        using var scope = NewDisposeScope();
        var o = ReferenceAttention.Softmax(q, k, v, causal: true).Output;               // Σ_j P_ij v_j  [B, T, H, Dv]
        long t = v.size(1);
        var mean = norm == BiasNorm.VisibleKeys
            ? v.cumsum(1) / torch.arange(1, t + 1, dtype: v.dtype, device: v.device).view(1, t, 1, 1)   // prefix mean, N_i = i + 1
            : v.mean(new long[] { 1 }, keepdim: true).expand_as(v);                     // mean over all T keys (leaks the future)
        var a = alpha.unsqueeze(-1);                                                    // α_i  [B, T, H, 1]
        var m = alphaMa.view(1, 1, -1, 1);
        return (a * o + (m - a) * mean).MoveToOuterDisposeScope();
    }

    static void Check(Tensor q, Tensor k, Tensor v, Tensor alpha, Tensor alphaMa)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Rank(v, 4, nameof(v), "B, T, H, Dv");
        Guard.Rank(alpha, 3, nameof(alpha), "B, T, H");
        if (!k.shape.SequenceEqual(q.shape)) throw new ArgumentException($"k {Guard.ShapeText(k)} must match q {Guard.ShapeText(q)}.", nameof(k));
        if (!v.shape[..3].SequenceEqual(q.shape[..3]))
            throw new ArgumentException($"v {Guard.ShapeText(v)} must share B, T, H with q {Guard.ShapeText(q)}.", nameof(v));
        if (!alpha.shape.SequenceEqual(q.shape[..3]))
            throw new ArgumentException($"alpha {Guard.ShapeText(alpha)} must be [B, T, H] of q {Guard.ShapeText(q)}.", nameof(alpha));
        if (alphaMa.dim() != 1 || alphaMa.size(0) != q.size(2))
            throw new ArgumentException($"alphaMa {Guard.ShapeText(alphaMa)} must be [H] = [{q.size(2)}].", nameof(alphaMa));
    }
}
