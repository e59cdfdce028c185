using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>One timing: method, T, C = w, median forward ms.</summary>
public sealed record RoutingSpeedPoint(string Method, int SeqLen, int Clusters, double MedianMs);

/// <summary>Forward time of balanced routing attention (C = w = ⌈√T⌉) against full causal softmax attention (tables, never assertions).</summary>
public static class RoutingBenchmark
{
    /// <summary>Method names of <see cref="Speed"/>.</summary>
    public const string RoutingMethod = "routing (C=w=√T)", Reference = "softmax-reference", Sdpa = "softmax-sdpa";

    /// <summary>
    /// Routing attention (k-means affinities to fixed random centroids + gather + per-cluster attention + scatter) vs the
    /// reference (explicit T × T scores, only up to <paramref name="maxReferenceLength"/>) and SDPA, on random q, v [B, T, H, D]
    /// with shared Q/K.
    /// </summary>
    public static IReadOnlyList<RoutingSpeedPoint> Speed(IEnumerable<int> lengths, int heads = 4, int headDim = 64, int warmup = 1, int repeats = 3,
        int maxReferenceLength = 4096, Device? device = null, IProgress<RoutingSpeedPoint>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        var points = new List<RoutingSpeedPoint>();
        foreach (int t in ts)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(t);
            int c = (int)Math.Ceiling(Math.Sqrt(t));
            var q = torch.randn(new long[] { 1, t, heads, headDim }, device: device);
            var v = torch.randn(new long[] { 1, t, heads, headDim }, device: device);
            using var km = new OnlineKMeans(heads, c, headDim);
            km.to(device ?? CPU);
            void Add(string name, Action run)
            {
                var p = new RoutingSpeedPoint(name, t, c, Benchmark.Time(run, warmup, repeats, device).MedianMs);
                points.Add(p);
                progress?.Report(p);
            }
            Add(RoutingMethod, () =>
            {
                using var s = NewDisposeScope();
                var (scores, _) = km.Assign(q);
                Routing.Attend(q, q, v, scores, scores, Math.Min(c, t));
            });
            if (t <= maxReferenceLength) Add(Reference, () => ReferenceAttention.Softmax(q, q, v, causal: true).Dispose());
            Add(Sdpa, () => SdpaBaseline.Forward(q, q, v, causal: true).Dispose());
        }
        return points;
    }

    /// <summary>Fitted log-log slope of time vs T per method (methods with ≥ 2 lengths).</summary>
    public static IReadOnlyDictionary<string, double> Slopes(IReadOnlyList<RoutingSpeedPoint> points) =>
        Numerics.SlopesByMethod(points, p => p.Method, p => p.SeqLen, p => p.MedianMs);

    /// <summary>Columns: method, seq_len, clusters, median_ms.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<RoutingSpeedPoint> points) => new(
        new StringDataFrameColumn("method", points.Select(p => p.Method)),
        new Int32DataFrameColumn("seq_len", points.Select(p => p.SeqLen)),
        new Int32DataFrameColumn("clusters", points.Select(p => p.Method == RoutingMethod ? (int?)p.Clusters : null)),
        new DoubleDataFrameColumn("median_ms", points.Select(p => p.MedianMs)));
}
