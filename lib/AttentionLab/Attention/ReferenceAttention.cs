using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>What softmax attention produced: output [B,Tq,Hq,Dv], probabilities [B,Hq,Tq,Tk], log-sum-exp [B,Hq,Tq].</summary>
public sealed class AttentionResult : IDisposable
{
    public AttentionResult(Tensor output, Tensor probabilities, Tensor logSumExp)
    {
        Output = output; Probabilities = probabilities; LogSumExp = logSumExp;
    }

    public Tensor Output { get; }
    public Tensor Probabilities { get; }
    /// <summary>log Σ_j exp(s_ij) per query; −∞ for a query that may attend to nothing.</summary>
    public Tensor LogSumExp { get; }

    /// <summary>Moves all three tensors out of the current dispose scope (for functions that return this).</summary>
    public AttentionResult MoveToOuterDisposeScope()
    {
        Output.MoveToOuterDisposeScope(); Probabilities.MoveToOuterDisposeScope(); LogSumExp.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Output.Dispose(); Probabilities.Dispose(); LogSumExp.Dispose();
    }
}

/// <summary>
/// Reference softmax attention, the library's ground truth: explicit scores, explicit scale, masks, grouped-query
/// heads, and the log-sum-exp every merge/scan method checks against. Layout [B, T, H, D].
/// </summary>
/// <remarks>
/// s_ij = scale · q_i·k_j  (−∞ where masked);  p_ij = exp(s_ij − LSE_i);  LSE_i = log Σ_j exp(s_ij);  o_i = Σ_j p_ij v_j.
/// A query with every key masked gets p = 0, o = 0 and LSE = −∞ (never NaN).
/// Causal with Tq ≤ Tk aligns queries to the end: query i sees keys j ≤ i + (Tk − Tq) (decode convention).
/// </remarks>
public static class ReferenceAttention
{
    /// <param name="q">[B, Tq, Hq, D]</param>
    /// <param name="k">[B, Tk, Hkv, D]; Hq must be a multiple of Hkv (grouped-query attention).</param>
    /// <param name="v">[B, Tk, Hkv, Dv]</param>
    /// <param name="causal">mask keys after each query (end-aligned).</param>
    /// <param name="scale">score scale; default 1/√D.</param>
    /// <param name="mask">optional keep-mask, boolean (true = may attend) or additive float, broadcastable to [B, Hq, Tq, Tk].</param>
    public static AttentionResult Softmax(Tensor q, Tensor k, Tensor v, bool causal = false, double? scale = null, Tensor? mask = null)
    {
        using var scope = NewDisposeScope();
        var (scores, vh) = MaskedScores(q, k, v, causal, scale, mask);   // validates q, k, v

        var (probs, lse) = Normalize(scores);
        var output = probs.matmul(vh).permute(0, 2, 1, 3).contiguous();   // o_i = Σ_j p_ij v_j → [B, Tq, Hq, Dv]
        return new AttentionResult(output, probs, lse).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Softmax of masked scores [..., Tq, Tk] through the log-sum-exp: probabilities [..., Tq, Tk] and LSE [..., Tq].
    /// A row with every key masked (all −∞) gets p = 0 and LSE = −∞, never NaN. The normalisation every softmax-attention
    /// path in the library shares (reference attention, TinyGpt's hooked attention).
    /// </summary>
    public static (Tensor Probabilities, Tensor LogSumExp) Normalize(Tensor scores)
    {
        Guard.NotNull(scores, nameof(scores));
        using var scope = NewDisposeScope();
        var lse = torch.logsumexp(scores, -1, keepdim: true);              // LSE_i = log Σ_j exp(s_ij)
        var finite = lse.isfinite();
        var probs = torch.exp(scores - torch.where(finite, lse, torch.zeros_like(lse)));  // p_ij = exp(s_ij − LSE_i)
        probs = torch.where(finite, probs, torch.zeros_like(probs));       // fully masked row → p = 0
        return (probs.MoveToOuterDisposeScope(), lse.squeeze(-1).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The masked, scaled scores [B, Hq, Tq, Tk] (−∞ where masked) and the values per query head [B, Hq, Tk, Dv]: the part
    /// every softmax variant shares (<see cref="AttentionVariants"/> changes only the normalisation). Validates first.
    /// </summary>
    internal static (Tensor Scores, Tensor Values) MaskedScores(Tensor q, Tensor k, Tensor v, bool causal, double? scale, Tensor? mask)
    {
        Validate(q, k, v);
        long tq = q.shape[1], tk = k.shape[1], hq = q.shape[2], hkv = k.shape[2];
        var qh = q.permute(0, 2, 1, 3);                        // [B, Hq, Tq, D]
        var kh = RepeatKv(k.permute(0, 2, 1, 3), hq / hkv);   // [B, Hq, Tk, D]
        var vh = RepeatKv(v.permute(0, 2, 1, 3), hq / hkv);   // [B, Hq, Tk, Dv]
        double s = scale ?? 1.0 / Math.Sqrt(q.shape[3]);
        var scores = qh.matmul(kh.transpose(-2, -1)) * s;      // s_ij = scale · q_i·k_j
        if (mask is not null)
        {
            Guard.SameDevice(q, nameof(q), mask, nameof(mask));
            scores = mask.dtype == ScalarType.Bool
                ? scores.masked_fill(mask.logical_not(), double.NegativeInfinity)
                : scores + mask.to(scores.dtype);
        }
        if (causal)
        {
            if (tq > tk)
                throw new ArgumentException(
                    $"causal attention needs Tq ≤ Tk (queries end-aligned to the keys), got q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}.", nameof(q));
            scores = scores.masked_fill(CausalKeepMask(tq, tk, q.device).logical_not(), double.NegativeInfinity);
        }
        return (scores, vh);
    }

    /// <summary>[Tq, Tk] boolean: true where query i may see key j, i.e. j ≤ i + (Tk − Tq) (same as <see cref="AttentionMasks.Causal"/>).</summary>
    public static Tensor CausalKeepMask(long tq, long tk, Device? device = null) => AttentionMasks.Causal(tq, tk, device);

    internal static Tensor RepeatKv(Tensor x, long groups) => groups == 1 ? x : x.repeat_interleave(groups, dim: 1);

    internal static void Validate(Tensor q, Tensor k, Tensor v)
    {
        Guard.Qkv(q, k, v, "B, Tq, Hq, D", "B, Tk, Hkv, D", "B, Tk, Hkv, Dv");
        if (k.shape[0] != q.shape[0])
            throw new ArgumentException($"k batch {k.shape[0]} ≠ q batch {q.shape[0]} (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).", nameof(k));
        if (k.shape[3] != q.shape[3])
            throw new ArgumentException($"k head dim {k.shape[3]} ≠ q head dim {q.shape[3]} (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).", nameof(k));
        if (v.shape[0] != k.shape[0] || v.shape[1] != k.shape[1] || v.shape[2] != k.shape[2])
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match k {Guard.ShapeText(k)} in batch, length and heads.", nameof(v));
        if (q.shape[2] % k.shape[2] != 0)
            throw new ArgumentException($"q heads {q.shape[2]} must be a multiple of k heads {k.shape[2]} (grouped-query attention).", nameof(k));
    }
}
