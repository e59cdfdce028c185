using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// Does a token's output depend on the future? Perturbs every position after <c>t</c> and reports
/// max_{i ≤ t} |y_i − y′_i| (0 for a causal map). Balanced top-w routing fails it (a future token can push a past one
/// out of a cluster); nearest-centroid routing passes it.
/// </summary>
public static class CausalityProbe
{
    /// <summary>
    /// Runs routing attention (shared Q/K, self-token rule) on random q, v [1, T, H, D] (float64) with fixed random
    /// centroids, then again with positions <paramref name="prefix"/> … T−1 redrawn; returns the largest change at positions
    /// &lt; <paramref name="prefix"/>. Nearest routing uses chunks of <paramref name="window"/> members (small enough that
    /// clusters span several chunks).
    /// </summary>
    public static double FutureLeak(bool balanced, int length = 32, int heads = 2, int dim = 8, int clusters = 4, int window = 4,
        int prefix = 16, int seed = 0)
    {
        Guard.Positive(length, nameof(length));
        if (prefix <= 0 || prefix >= length) throw new ArgumentException($"prefix must be in [1, length = {length}), got {prefix}.", nameof(prefix));
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var mu = torch.randn(new long[] { heads, clusters, dim }, dtype: ScalarType.Float64, generator: gen);
        Tensor Draw() => torch.randn(new long[] { 1, length, heads, dim }, dtype: ScalarType.Float64, generator: gen);
        var (q, v) = (Draw(), Draw());
        var (q2, v2) = (Draw(), Draw());
        var keepPast = (torch.arange(length) < prefix).reshape(1, length, 1, 1);
        q2 = torch.where(keepPast, q, q2);                                                // same past, new future
        v2 = torch.where(keepPast, v, v2);
        Tensor Run(Tensor qq, Tensor vv)
        {
            var s = qq.permute(0, 2, 1, 3).matmul(mu.transpose(1, 2).unsqueeze(0)) - 0.5 * mu.pow(2).sum(-1).unsqueeze(0).unsqueeze(2);
            return balanced ? Routing.Attend(qq, qq, vv, s, s, window, selfScore: Routing.SelfTokenScore)
                            : Routing.AttendNearest(qq, qq, vv, s, s, window, selfScore: Routing.SelfTokenScore);
        }
        var diff = (Run(q, v) - Run(q2, v2)).narrow(1, 0, prefix).abs().max();
        return diff.item<double>();
    }
}
