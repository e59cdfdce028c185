using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>One measured decode-attention step: cache length, KV bytes read, median and minimum time over the repeats.</summary>
public sealed record ProbePoint(int Context, long KvBytes, double MedianMs, double MinMs);

/// <summary>
/// Fits of measured time against KV bytes: the log-log slope (1 = time ∝ bytes) and the straight line
/// t = t₀ + bytes / β whose β is the effective bandwidth of decode attention on this device.
/// </summary>
public sealed record ProbeFit(double LogLogSlope, double RSquared, double InterceptMs, double BandwidthGBs)
{
    /// <summary>Time the fitted line predicts for <paramref name="bytes"/>.</summary>
    public double PredictMs(double bytes) => InterceptMs + bytes / (BandwidthGBs * 1e9) * 1e3;
}

/// <summary>
/// Grounds the cost model's attention term on the machine at hand: one decode query per request and head against a
/// <see cref="KvCache"/> of n tokens, through <see cref="ReferenceAttention.Softmax"/>, timed with
/// <see cref="Benchmark.Time"/> for several n. Decode attention reads every cached byte once and does ~1 FLOP per byte
/// (far below any ridge point), so the time should grow in proportion to the bytes.
/// </summary>
public static class DecodeBandwidthProbe
{
    /// <summary>Times decode attention at each cache length (float32 q, k, v [B, ·, H, D]).</summary>
    public static IReadOnlyList<ProbePoint> Measure(IEnumerable<int> contexts, int batch, int heads, int headDim, Device device,
        int warmup = 1, int repeats = 5, int seed = 0, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        ArgumentNullException.ThrowIfNull(device);
        var ns = contexts.ToArray();
        if (ns.Length == 0 || ns.Any(n => n <= 0)) throw new ArgumentException("contexts must be a non-empty list of positive lengths.", nameof(contexts));
        if (batch <= 0) throw new ArgumentException($"batch must be positive, got {batch}.", nameof(batch));
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (headDim <= 0) throw new ArgumentException($"headDim must be positive, got {headDim}.", nameof(headDim));
        if (repeats <= 0) throw new ArgumentException($"repeats must be positive, got {repeats}.", nameof(repeats));
        // Every cache is built first, then the timed calls go round-robin over the lengths (repeat r of every length before
        // repeat r + 1 of any): on a shared machine, load that comes and goes then hits all lengths alike, not one of them.
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator((ulong)seed, device);
        var caches = new List<KvCache>();
        try
        {
            var queries = new List<Tensor>();
            foreach (int n in ns)
            {
                var cache = new KvCache(batch, heads, headDim, headDim, device: device, initialCapacity: n);
                caches.Add(cache);
                using (var inner = NewDisposeScope())
                    cache.Append(torch.randn(new long[] { batch, n, heads, headDim }, generator: gen, device: device),
                                 torch.randn(new long[] { batch, n, heads, headDim }, generator: gen, device: device));
                queries.Add(torch.randn(new long[] { batch, 1, heads, headDim }, generator: gen, device: device));
            }
            var keys = caches.Select(c => c.Keys).ToList();
            var values = caches.Select(c => c.Values).ToList();
            Action Call(int i) => () => { using var r = ReferenceAttention.Softmax(queries[i], keys[i], values[i]); };
            for (int i = 0; i < ns.Length; i++) Benchmark.Time(Call(i), warmup: 0, repeats: warmup + 1, device: device);
            var ms = ns.Select(_ => new List<double>()).ToList();
            for (int r = 0; r < repeats; r++)
                for (int i = 0; i < ns.Length; i++)
                    ms[i].Add(Benchmark.Time(Call(i), warmup: 0, repeats: 1, device: device).MedianMs);
            var points = new List<ProbePoint>();
            for (int i = 0; i < ns.Length; i++)
            {
                var sorted = ms[i].OrderBy(x => x).ToList();
                double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : 0.5 * (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]);
                points.Add(new ProbePoint(ns[i], caches[i].Bytes, median, sorted[0]));
                progress?.Report($"  n = {ns[i],6}: KV {caches[i].Bytes / 1048576.0,7:F1} MiB  median {median:F3} ms, min {sorted[0]:F3} ms (n={repeats})");
            }
            return points;
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }

    /// <summary>
    /// Log-log slope of time vs bytes, and the least-squares line t = t₀ + bytes/β. Fits the minimum of the repeats: on a
    /// shared machine the fastest call is the one least disturbed by other work, the best view of the memory system.
    /// </summary>
    public static ProbeFit Fit(IReadOnlyList<ProbePoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Count < 2 || points.Select(p => p.KvBytes).Distinct().Count() < 2)
            throw new ArgumentException("a fit needs at least 2 points with different byte counts.", nameof(points));
        var x = points.Select(p => (double)p.KvBytes).ToList();
        var y = points.Select(p => p.MinMs).ToList();
        var (slope, _, r2) = Numerics.LogLogFit(x, y);
        double mx = x.Average(), my = y.Average();
        double sxy = x.Zip(y, (a, b) => (a - mx) * (b - my)).Sum(), sxx = x.Sum(a => (a - mx) * (a - mx));
        double msPerByte = sxy / sxx;                                                  // least squares: t = t₀ + bytes·(1/β)
        double bandwidth = msPerByte > 0 ? 1e-6 / msPerByte : double.NaN;             // β = bytes / s, in GB/s
        return new ProbeFit(slope, r2, my - msPerByte * mx, bandwidth);
    }
}
