using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// Per-head attention scores [L, H] from the hook_pattern of every layer, each averaged over the batch, built on
/// <see cref="AttentionStats"/>: sink mass on a key, row entropy, mean attention distance.
/// </summary>
public static class HeadScores
{
    /// <summary>Every layer's pattern stacked: [L, B, H, Tq, Tk] (a new tensor in the caller's scope).</summary>
    public static Tensor Patterns(ActivationCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        return torch.stack(Enumerable.Range(0, cache.LayerCount).Select(l => cache["pattern", l]).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>Patterns [L, B, H, T, T] of a no-grad run on tokens [B, T].</summary>
    public static Tensor Patterns(IHookedModel model, Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (_, cache) = model.RunWithCache(tokens, name => name.EndsWith("attn.hook_pattern", StringComparison.Ordinal));
        using (cache) return Patterns(cache).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Sink score [L, H] of key <paramref name="key"/>: a_j = mean_{i ≥ max(j,1)} A_ij (causal; j = 0 excludes i = 0),
    /// or the mean over all i when not causal; mean over the batch. See <see cref="AttentionStats.SinkScore"/>.
    /// </summary>
    public static Tensor SinkScore(ActivationCache cache, long key = 0, bool causal = true)
    {
        using var scope = NewDisposeScope();
        return AttentionStats.SinkScore(Patterns(cache), key, causal).mean(new long[] { 1 }).MoveToOuterDisposeScope();
    }

    /// <summary>Sink rate (Gu et al.): the fraction of heads whose sink score exceeds ε (default 0.3), from scores [L, H].</summary>
    public static double SinkRate(Tensor sinkScores, double epsilon = 0.3)
    {
        Guard.Rank(sinkScores, 2, nameof(sinkScores), "L, H");
        using var scope = NewDisposeScope();
        return sinkScores.gt(epsilon).to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>Mean row entropy [L, H] in nats, H_i = −Σ_j A_ij log A_ij, over queries and batch.</summary>
    public static Tensor Entropy(ActivationCache cache)
    {
        using var scope = NewDisposeScope();
        return AttentionStats.RowEntropy(Patterns(cache)).mean(new long[] { 1, 3 }).MoveToOuterDisposeScope();
    }

    /// <summary>Mean attention distance [L, H], Σ_j A_ij |i − j| averaged over queries and batch.</summary>
    public static Tensor MeanDistance(ActivationCache cache)
    {
        using var scope = NewDisposeScope();
        return AttentionStats.MeanDistance(Patterns(cache)).mean(new long[] { 1, 3 }).MoveToOuterDisposeScope();
    }
}
