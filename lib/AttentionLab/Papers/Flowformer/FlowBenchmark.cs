using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>
/// One timing: method, T, median ms of one call, the growth of peak memory in MiB where measured, and the pass timed
/// (<see cref="FlowBenchmark.Forward"/> or <see cref="FlowBenchmark.ForwardBackward"/>).
/// </summary>
public sealed record SpeedPoint(string Method, int SeqLen, double MedianMs, double? PeakMiB, string Pass = FlowBenchmark.Forward);

/// <summary>Time and memory of Flow-Attention against full softmax attention, forward or forward + backward (tables, never assertions).</summary>
public static class FlowBenchmark
{
    /// <summary>Method names of <see cref="Speed"/>.</summary>
    public const string FlowCausal = "flow-causal", FlowNormal = "flow-normal", Linear = "linear-sigmoid", Reference = "softmax-reference", Sdpa = "softmax-sdpa";

    /// <summary>Pass names: one forward without gradients, or a forward and the backward of Σ o ⊙ g (g fixed, random) to q, k, v.</summary>
    public const string Forward = "forward", ForwardBackward = "forward+backward";

    /// <summary>
    /// Time of the attention cores on random q, k, v [B, T, H, D]: causal Flow-Attention (engine chunked form), normal
    /// Flow-Attention, plain causal σ linear attention (normalised, chunked), and causal softmax attention — the reference
    /// (explicit T × T scores; only up to <paramref name="maxReferenceLength"/>) and the fused SDPA. <paramref name="backward"/>:
    /// each call is a forward plus the backward of Σ o ⊙ g to q, k, v (spec §8: fwd + bwd); otherwise a forward under
    /// no_grad. With <paramref name="measureMemory"/> each call's peak RSS growth is measured after the timings (Linux).
    /// </summary>
    public static IReadOnlyList<SpeedPoint> Speed(IEnumerable<int> lengths, int batch = 1, int heads = 4, int headDim = 64, int chunkSize = 64,
        int warmup = 1, int repeats = 3, int maxReferenceLength = 4096, bool measureMemory = false, Device? device = null, IProgress<SpeedPoint>? progress = null,
        bool backward = false)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        Guard.Positive(chunkSize, nameof(chunkSize));
        string pass = backward ? ForwardBackward : Forward;
        return Benchmark.Sweep(ts, ForEachMethod, (name, t, time, mib) => new SpeedPoint(name, t, time.MedianMs, mib, pass), warmup, repeats, device, measureMemory, progress);

        void ForEachMethod(int t, Action<string, Action> body)
        {
            using var scope = NewDisposeScope();
            using var noGrad = backward ? null : torch.no_grad();
            torch.manual_seed(t);
            var q = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var k = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var v = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var g = torch.randn(new long[] { batch, t, heads, headDim }, device: device);   // the upstream gradient of a fwd + bwd call
            var linear = new LinearAttentionOptions { FeatureMap = FeatureMaps.Sigmoid, Normalize = true, ChunkSize = chunkSize };
            void Timed(string name, Func<Tensor, Tensor, Tensor, Tensor> attend) => body(name, () =>
            {
                if (!backward) { attend(q, k, v).Dispose(); return; }
                var (qg, kg, vg) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());   // fresh leaves each call
                (attend(qg, kg, vg) * g).sum().backward();                                 // ∂/∂q, k, v of Σ o ⊙ g
            });
            Timed(FlowCausal, (q, k, v) => FlowAttention.Attend(q, k, v, causal: true, chunkSize: chunkSize));
            Timed(FlowNormal, (q, k, v) => FlowAttention.Attend(q, k, v, causal: false));
            Timed(Linear, (q, k, v) => { using var r = LinearAttention.Chunked(q, k, v, options: linear); return r.Output.alias(); });
            if (t <= maxReferenceLength) Timed(Reference, (q, k, v) => { using var r = ReferenceAttention.Softmax(q, k, v, causal: true); return r.Output.alias(); });
            Timed(Sdpa, (q, k, v) => SdpaBaseline.Forward(q, k, v, causal: true));
        }
    }

    /// <summary>Fitted log-log slope of time vs T per method (methods with ≥ 2 lengths), over the points of <paramref name="pass"/> (null: every point must share one pass).</summary>
    public static IReadOnlyDictionary<string, double> Slopes(IReadOnlyList<SpeedPoint> points, string? pass = null) =>
        Numerics.SlopesByMethod(Of(points, pass), p => p.Method, p => p.SeqLen, p => p.MedianMs);

    /// <summary>Fitted log-log slope of peak-memory growth vs T per method, over the points of <paramref name="pass"/> with a positive measurement.</summary>
    public static IReadOnlyDictionary<string, double> MemorySlopes(IReadOnlyList<SpeedPoint> points, string? pass = null) =>
        Numerics.SlopesByMethod(Of(points, pass).Where(p => p.PeakMiB is > 0), p => p.Method, p => p.SeqLen, p => p.PeakMiB!.Value);

    /// <summary>The smallest measured T from which <paramref name="method"/> beats <paramref name="baseline"/> at every larger common T; null if never.</summary>
    public static int? Crossover(IReadOnlyList<SpeedPoint> points, string method, string baseline, string? pass = null) =>
        Numerics.Crossover(Of(points, pass), p => p.Method, p => p.SeqLen, p => p.MedianMs, method, baseline);

    /// <summary>baseline ms / method ms at T (same pass), or null when either was not run there.</summary>
    public static double? Speedup(IReadOnlyList<SpeedPoint> points, string method, string baseline, int seqLen, string? pass = null) =>
        Of(points, pass).FirstOrDefault(p => p.Method == method && p.SeqLen == seqLen) is { } a
        && Of(points, pass).FirstOrDefault(p => p.Method == baseline && p.SeqLen == seqLen && p.Pass == a.Pass) is { } b
            ? b.MedianMs / a.MedianMs : null;

    /// <summary>Columns: pass, method, seq_len, median_ms, peak_mib, speedup_vs_sdpa, speedup_vs_reference (speed-ups within a pass).</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<SpeedPoint> points) => new(
        new StringDataFrameColumn("pass", points.Select(p => p.Pass)),
        new StringDataFrameColumn("method", points.Select(p => p.Method)),
        new Int32DataFrameColumn("seq_len", points.Select(p => p.SeqLen)),
        new DoubleDataFrameColumn("median_ms", points.Select(p => p.MedianMs)),
        new DoubleDataFrameColumn("peak_mib", points.Select(p => p.PeakMiB)),
        new DoubleDataFrameColumn("speedup_vs_sdpa", points.Select(p => Speedup(points, p.Method, Sdpa, p.SeqLen, p.Pass))),
        new DoubleDataFrameColumn("speedup_vs_reference", points.Select(p => Speedup(points, p.Method, Reference, p.SeqLen, p.Pass))));

    static IEnumerable<SpeedPoint> Of(IReadOnlyList<SpeedPoint> points, string? pass)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (pass is not null) return points.Where(p => p.Pass == pass);
        if (points.Select(p => p.Pass).Distinct().Count() > 1)
            throw new ArgumentException("the points mix forward and forward+backward timings: name the pass.", nameof(pass));
        return points;
    }
}
