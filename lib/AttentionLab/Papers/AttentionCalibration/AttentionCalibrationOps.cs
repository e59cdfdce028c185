using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// ACT (Yu et al., ICML 2024): attention calibration of one head's post-softmax pattern. Sinks that form on non-initial
/// tokens get β of their mass back; the freed mass goes to the other visible keys in proportion to their weights.
/// </summary>
/// <remarks>
/// For a pattern A [Tq, Tk] (rows stochastic, hidden keys 0):
/// <list type="bullet">
/// <item>received mass normalised by visibility: ā_j = Σ_i A_ij / n_j, n_j = number of the Tq rows that can see key j
/// (causal prefill: T − j; causal decode, queries the last Tq of Tk positions: Tq − max(0, j − (Tk − Tq)), which fixes the official
/// code's q_len-based T; encoder: n_j = Tq);</item>
/// <item>sink set S = {j : ā_j &gt; α}, the first detected index dropped (<c>dropFirst</c>): BOS only when BOS passes α;</item>
/// <item>per row: m_i = Σ_{j∈S} A_ij, r_i = Σ_{k∉S} A_ik, f_i = (1 − β) m_i;
/// A′_ij = β A_ij (j ∈ S); A′_ij = A_ij + f_i A_ij / r_i (j ∉ S, BOS included);</item>
/// <item>guard: a row with r_i = 0 (all its visible mass in S) is left unchanged (the official code divides by zero);</item>
/// <item>A′_00 = 1 in a causal prefill. Rows stay stochastic: β m_i + r_i + (1 − β) m_i = m_i + r_i.</item>
/// </list>
/// Defaults α (THRES) = 0.1, β (BETA) = 0.4, as the official <c>atten_process_cal</c>.
/// </remarks>
public static class AttentionCalibrationOps
{
    /// <summary>The official threshold and scale.</summary>
    public const double DefaultAlpha = 0.1, DefaultBeta = 0.4;

    /// <summary>
    /// A′ = ACT(A) for a pattern [..., Tq, Tk] (e.g. [H, T, T], [T, T] or [B, H, Tq, Tk]); S is found per leading index (per head,
    /// per input). <paramref name="causal"/>: query r sits at position Tk − Tq + r and sees keys j ≤ it; false: every row sees every key.
    /// </summary>
    public static Tensor Act(Tensor pattern, double alpha = DefaultAlpha, double beta = DefaultBeta, bool dropFirst = true, bool causal = true)
    {
        Check(pattern, alpha, beta);
        using var scope = NewDisposeScope();
        long tq = pattern.size(-2), tk = pattern.size(-1);
        var sinks = SinkSet(pattern, alpha, dropFirst, causal);                          // [..., Tk] bool
        var inS = sinks.unsqueeze(-2);                                                   // [..., 1, Tk]
        var sf = inS.to(pattern.dtype);
        var m = (pattern * sf).sum(-1, keepdim: true);                                   // m_i = Σ_{j∈S} A_ij
        var r = (pattern * (1 - sf)).sum(-1, keepdim: true);                             // r_i = Σ_{k∉S} A_ik
        var ok = r > 0;                                                                  // guard (ii): r_i = 0 rows untouched
        var one = torch.ones_like(m);
        var scaleRest = torch.where(ok, 1 + (1 - beta) * m / torch.where(ok, r, one), one);   // A_ij + f_i A_ij / r_i
        var scaleSink = torch.where(ok, one * beta, one);                                // β A_ij
        var result = pattern * torch.where(inS, scaleSink, scaleRest);
        if (causal && tq == tk && tq > 0) result.select(-2, 0).select(-1, 0).fill_(1.0); // A′_00 = 1
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>ā_j = Σ_i A_ij / n_j [..., Tk]: each key's mean weight over the rows that can see it (see <see cref="Act"/>).</summary>
    public static Tensor ReceivedMass(Tensor pattern, bool causal = true)
    {
        Guard.FloatingPoint(pattern, nameof(pattern));
        if (pattern.dim() < 2) throw new ArgumentException($"pattern must be [..., Tq, Tk], got {Guard.ShapeText(pattern)}.", nameof(pattern));
        using var scope = NewDisposeScope();
        long tq = pattern.size(-2), tk = pattern.size(-1);
        var j = torch.arange(tk, pattern.dtype, pattern.device);
        var seen = causal ? (tq - (j - (tk - tq)).clamp_min(0)).clamp_min(1) : torch.full(tk, tq, pattern.dtype, pattern.device);
        return (pattern.sum(-2) / seen).MoveToOuterDisposeScope();
    }

    /// <summary>S as a mask [..., Tk]: ā_j &gt; α, without the first such index when <paramref name="dropFirst"/>.</summary>
    public static Tensor SinkSet(Tensor pattern, double alpha = DefaultAlpha, bool dropFirst = true, bool causal = true)
    {
        using var scope = NewDisposeScope();
        var above = ReceivedMass(pattern, causal) > alpha;
        if (dropFirst)
        {
            var first = above.logical_and(above.to(ScalarType.Int64).cumsum(-1).eq(1));   // the first detected index
            above = above.logical_and(first.logical_not());
        }
        return above.MoveToOuterDisposeScope();
    }

    internal static void Check(Tensor pattern, double alpha, double beta)
    {
        Guard.NotNull(pattern, nameof(pattern));
        Guard.FloatingPoint(pattern, nameof(pattern));
        if (pattern.dim() < 2) throw new ArgumentException($"pattern must be [..., Tq, Tk], got {Guard.ShapeText(pattern)}.", nameof(pattern));
        if (pattern.size(-2) > pattern.size(-1))
            throw new ArgumentException($"pattern {Guard.ShapeText(pattern)} has more queries than keys.", nameof(pattern));
        if (!double.IsFinite(alpha) || alpha < 0) throw new ArgumentException($"alpha must be a finite threshold ≥ 0, got {alpha}.", nameof(alpha));
        if (!double.IsFinite(beta) || beta < 0 || beta > 1) throw new ArgumentException($"beta must lie in [0, 1], got {beta}.", nameof(beta));
    }
}
