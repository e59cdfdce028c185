using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>One measured decode-attention step: cache length, KV bytes read, median time.</summary>
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
        var points = new List<ProbePoint>();
        using var noGrad = torch.no_grad();
        foreach (int n in ns)
        {
            using var scope = NewDisposeScope();
            var gen = new Generator((ulong)seed, device);
            using var cache = new KvCache(batch, heads, headDim, headDim, device: device, initialCapacity: n);
            cache.Append(torch.randn(new long[] { batch, n, heads, headDim }, generator: gen, device: device),
                         torch.randn(new long[] { batch, n, heads, headDim }, generator: gen, device: device));
            var q = torch.randn(new long[] { batch, 1, heads, headDim }, generator: gen, device: device);
            var keys = cache.Keys;
            var values = cache.Values;
            var time = Benchmark.Time(() => { using var r = ReferenceAttention.Softmax(q, keys, values); }, warmup, repeats, device);
            points.Add(new ProbePoint(n, cache.Bytes, time.MedianMs, time.MinMs));
            progress?.Report($"  n = {n,6}: KV {cache.Bytes / 1048576.0,7:F1} MiB  {time}");
        }
        return points;
    }

    /// <summary>Log-log slope of median time vs bytes, and the least-squares line t = t₀ + bytes/β.</summary>
    public static ProbeFit Fit(IReadOnlyList<ProbePoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Count < 2 || points.Select(p => p.KvBytes).Distinct().Count() < 2)
            throw new ArgumentException("a fit needs at least 2 points with different byte counts.", nameof(points));
        var x = points.Select(p => (double)p.KvBytes).ToList();
        var y = points.Select(p => p.MedianMs).ToList();
        var (slope, _, r2) = Numerics.LogLogFit(x, y);
        double mx = x.Average(), my = y.Average();
        double sxy = x.Zip(y, (a, b) => (a - mx) * (b - my)).Sum(), sxx = x.Sum(a => (a - mx) * (a - mx));
        double msPerByte = sxy / sxx;                                                  // least squares: t = t₀ + bytes·(1/β)
        double bandwidth = msPerByte > 0 ? 1e-6 / msPerByte : double.NaN;             // β = bytes / s, in GB/s
        return new ProbeFit(slope, r2, my - msPerByte * mx, bandwidth);
    }
}
