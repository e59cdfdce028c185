using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Models;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>One timing: method, T, C = w = L, median forward ms (a sweep point with the cluster count beside it: slopes via <see cref="Sweep"/>).</summary>
public sealed record RoutingSpeedPoint(string Method, int SeqLen, int Clusters, double MedianMs) : ISweepPoint;

/// <summary>
/// Forward time of the sparse Routing Transformer layer (half block-local, half balanced routing heads, L = w = C = ⌈√T⌉)
/// against a dense causal attention layer of the same width and against SDPA (tables, never assertions).
/// </summary>
public static class RoutingBenchmark
{
    /// <summary>Method names of <see cref="Speed"/>.</summary>
    public const string RoutingMethod = "routing layer (L=w=C=√T)", DenseLayer = "dense layer (T×T)", Sdpa = "softmax-sdpa";

    /// <summary>
    /// The sparse layer (<see cref="RoutingAttention"/> in eval mode: projections, k-means assignment to fixed centroids,
    /// block-local heads, balanced routing heads with shared Q/K) vs the dense layer (<see cref="CausalSelfAttention"/>:
    /// the same projections around an explicit T × T softmax, only up to <paramref name="maxReferenceLength"/>) and SDPA
    /// (attention only), on random x [1, T, heads·headDim].
    /// </summary>
    public static IReadOnlyList<RoutingSpeedPoint> Speed(IEnumerable<int> lengths, int heads = 4, int headDim = 64, int warmup = 1, int repeats = 3,
        int maxReferenceLength = 4096, Device? device = null, IProgress<RoutingSpeedPoint>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        if (heads < 2) throw new ArgumentException($"heads must be ≥ 2 (half local, half routing), got {heads}.", nameof(heads));
        var points = new List<RoutingSpeedPoint>();
        int dModel = heads * headDim;
        foreach (int t in ts)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(t);
            int c = (int)Math.Ceiling(Math.Sqrt(t));
            var x = torch.randn(new long[] { 1, t, dModel }, device: device);
            using var layer = new RoutingAttention(dModel, heads, c, Math.Min(c, t), localHeads: heads / 2, localWindow: c);
            layer.to(device ?? CPU);
            layer.eval();
            void Add(string name, Action run)
            {
                var p = new RoutingSpeedPoint(name, t, c, Benchmark.Time(run, warmup, repeats, device).MedianMs);
                points.Add(p);
                progress?.Report(p);
            }
            Add(RoutingMethod, () => layer.call(x).Dispose());
            if (t <= maxReferenceLength)
            {
                using var dense = new CausalSelfAttention(dModel, heads);
                dense.to(device ?? CPU);
                dense.eval();
                Add(DenseLayer, () => dense.call(x).Dispose());
            }
            var q = torch.randn(new long[] { 1, t, heads, headDim }, device: device);
            Add(Sdpa, () => SdpaBaseline.Forward(q, q, q, causal: true).Dispose());
        }
        return points;
    }

    /// <summary>Columns: method, seq_len, clusters (= w = L for the routing layer), median_ms.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<RoutingSpeedPoint> points) => Tables.From(points.Select(p => new
        {
            p.Method,
            p.SeqLen,
            Clusters = p.Method == RoutingMethod ? (int?)p.Clusters : null,
            p.MedianMs,
        }));
}
