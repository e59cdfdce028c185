using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>Per-row summaries of attention probabilities [..., Tq, Tk].</summary>
public static class AttentionStats
{
    /// <summary>H_i = −Σ_j p_ij log p_ij in nats (0·log 0 = 0); shape [..., Tq].</summary>
    public static Tensor RowEntropy(Tensor probabilities)
    {
        Guard.NotNull(probabilities, nameof(probabilities));
        if (probabilities.dim() < 2)
            throw new ArgumentException(
                $"probabilities must have rank ≥ 2 (…, Tq, Tk), got shape {Guard.ShapeText(probabilities)}.", nameof(probabilities));
        using var scope = NewDisposeScope();
        var p = probabilities;
        var plogp = torch.where(p.eq(0), torch.zeros_like(p), p * p.clamp_min(1e-300).log());   // 0·log 0 = 0; NaN stays NaN
        return (-plogp.sum(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>Mean of |i − j| under p for each query (end-aligned positions when Tq &lt; Tk); shape [..., Tq].</summary>
    public static Tensor MeanDistance(Tensor probabilities)
    {
        Guard.NotNull(probabilities, nameof(probabilities));
        if (probabilities.dim() < 2)
            throw new ArgumentException(
                $"probabilities must have rank ≥ 2 (…, Tq, Tk), got shape {Guard.ShapeText(probabilities)}.", nameof(probabilities));
        using var scope = NewDisposeScope();
        long tq = probabilities.shape[^2], tk = probabilities.shape[^1];
        var i = torch.arange(tq, device: probabilities.device).unsqueeze(1) + (tk - tq);
        var j = torch.arange(tk, device: probabilities.device).unsqueeze(0);
        var distance = (i - j).abs().to(probabilities.dtype);
        return (probabilities * distance).sum(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Sink score of key <paramref name="key"/> = j: the mean attention it receives, a_j = mean_{i ∈ V_j} p_ij, shape [...].
    /// Causal (decoder) visibility: V_j = { i : i ≥ max(j, 1) } — for j = 0 the query i = 0 is excluded (its row is
    /// trivially 1). Not causal (encoder): V_j = all queries. Queries and keys share positions (Tq = Tk).
    /// </summary>
    public static Tensor SinkScore(Tensor probabilities, long key = 0, bool causal = true)
    {
        Guard.NotNull(probabilities, nameof(probabilities));
        if (probabilities.dim() < 2)
            throw new ArgumentException(
                $"probabilities must have rank ≥ 2 (…, Tq, Tk), got shape {Guard.ShapeText(probabilities)}.", nameof(probabilities));
        long tq = probabilities.shape[^2], tk = probabilities.shape[^1];
        if (tq != tk)
            throw new ArgumentException($"probabilities must be square (Tq = Tk), got shape {Guard.ShapeText(probabilities)}.", nameof(probabilities));
        if (key < 0 || key >= tk) throw new ArgumentOutOfRangeException(nameof(key), key, $"key must be in [0, {tk}).");
        long first = causal ? Math.Max(key, 1) : 0;
        if (first >= tq) throw new ArgumentException($"no query can see key {key} besides itself (T = {tq}); the sink score is undefined.", nameof(key));
        using var scope = NewDisposeScope();
        var column = probabilities.select(-1, key);                                   // p_ij over i, [..., Tq]
        return column.narrow(-1, first, tq - first).mean(new long[] { -1 }).MoveToOuterDisposeScope();   // mean_{i ≥ max(j,1)}
    }
}
