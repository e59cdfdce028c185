using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>How much of a step's full attention a subset of keys holds.</summary>
public static class AttentionMass
{
    /// <summary>
    /// Recovered mass m = mean_{b,h} Σ_{j∈J_{b,h}} A_{b,h,j}: full-attention probabilities [B, H, n] (one query step) summed
    /// over the subset J [B, H, n′] (int64 indices into n, unique). 1 when J holds every key.
    /// </summary>
    public static double Recovery(Tensor fullProbs, Tensor subset)
    {
        Guard.Rank(fullProbs, 3, nameof(fullProbs), "B, H, n");
        Guard.Rank(subset, 3, nameof(subset), "B, H, n′");
        Guard.FloatingPoint(fullProbs, nameof(fullProbs));
        if (subset.dtype != ScalarType.Int64) throw new ArgumentException($"subset must hold int64 indices, got {subset.dtype}.", nameof(subset));
        if (subset.shape[0] != fullProbs.shape[0] || subset.shape[1] != fullProbs.shape[1])
            throw new ArgumentException($"subset {Guard.ShapeText(subset)} must match fullProbs {Guard.ShapeText(fullProbs)} in B and H.", nameof(subset));
        Guard.SameDevice(fullProbs, nameof(fullProbs), subset, nameof(subset));
        using var scope = NewDisposeScope();
        if (subset.numel() > 0 && (subset.min().item<long>() < 0 || subset.max().item<long>() >= fullProbs.shape[2]))
            throw new ArgumentException($"subset indices must lie in [0, {fullProbs.shape[2]}).", nameof(subset));
        return fullProbs.to(ScalarType.Float64).gather(2, subset).sum(2).mean().item<double>();   // Σ_{j∈J} A_j, averaged
    }
}
