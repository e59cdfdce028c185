using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>One timing: method, T, median forward ms, and the growth of peak memory in MiB where measured.</summary>
public sealed record SpeedPoint(string Method, int SeqLen, double MedianMs, double? PeakMiB);

/// <summary>Forward time and memory of Flow-Attention against full softmax attention (tables, never assertions).</summary>
public static class FlowBenchmark
{
    /// <summary>Method names of <see cref="Speed"/>.</summary>
    public const string FlowCausal = "flow-causal", FlowNormal = "flow-normal", Linear = "linear-sigmoid", Reference = "softmax-reference", Sdpa = "softmax-sdpa";

    /// <summary>
    /// Forward time of the attention cores on random q, k, v [B, T, H, D]: causal Flow-Attention (engine chunked form),
    /// normal Flow-Attention, plain causal σ linear attention (normalised, chunked), and causal softmax attention — the
    /// reference (explicit T × T scores; only up to <paramref name="maxReferenceLength"/>) and the fused SDPA. With
    /// <paramref name="measureMemory"/> each call's peak RSS growth is measured first (Linux), then the timings.
    /// </summary>
    public static IReadOnlyList<SpeedPoint> Speed(IEnumerable<int> lengths, int batch = 1, int heads = 4, int headDim = 64, int chunkSize = 64,
        int warmup = 1, int repeats = 3, int maxReferenceLength = 4096, bool measureMemory = false, Device? device = null, IProgress<SpeedPoint>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        Guard.Positive(chunkSize, nameof(chunkSize));
        return Benchmark.Sweep(ts, ForEachMethod, (name, t, time, mib) => new SpeedPoint(name, t, time.MedianMs, mib), warmup, repeats, device, measureMemory, progress);

        void ForEachMethod(int t, Action<string, Action> body)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(t);
            var q = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var k = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var v = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var linear = new LinearAttentionOptions { FeatureMap = FeatureMaps.Sigmoid, Normalize = true, ChunkSize = chunkSize };
            body(FlowCausal, () => FlowAttention.Attend(q, k, v, causal: true, chunkSize: chunkSize).Dispose());
            body(FlowNormal, () => FlowAttention.Attend(q, k, v, causal: false).Dispose());
            body(Linear, () => LinearAttention.Chunked(q, k, v, options: linear).Dispose());
            if (t <= maxReferenceLength) body(Reference, () => ReferenceAttention.Softmax(q, k, v, causal: true).Dispose());
            body(Sdpa, () => SdpaBaseline.Forward(q, k, v, causal: true).Dispose());
        }
    }

    /// <summary>Fitted log-log slope of time vs T per method (methods with ≥ 2 lengths).</summary>
    public static IReadOnlyDictionary<string, double> Slopes(IReadOnlyList<SpeedPoint> points) =>
        Numerics.SlopesByMethod(points, p => p.Method, p => p.SeqLen, p => p.MedianMs);

    /// <summary>The smallest measured T from which <paramref name="method"/> beats <paramref name="baseline"/> at every larger common T; null if never.</summary>
    public static int? Crossover(IReadOnlyList<SpeedPoint> points, string method, string baseline) =>
        Numerics.Crossover(points, p => p.Method, p => p.SeqLen, p => p.MedianMs, method, baseline);

    /// <summary>baseline ms / method ms at T, or null when either was not run there.</summary>
    public static double? Speedup(IReadOnlyList<SpeedPoint> points, string method, string baseline, int seqLen) =>
        points.FirstOrDefault(p => p.Method == method && p.SeqLen == seqLen) is { } a && points.FirstOrDefault(p => p.Method == baseline && p.SeqLen == seqLen) is { } b
            ? b.MedianMs / a.MedianMs : null;

    /// <summary>Columns: method, seq_len, median_ms, peak_mib, speedup_vs_sdpa, speedup_vs_reference.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<SpeedPoint> points) => new(
        new StringDataFrameColumn("method", points.Select(p => p.Method)),
        new Int32DataFrameColumn("seq_len", points.Select(p => p.SeqLen)),
        new DoubleDataFrameColumn("median_ms", points.Select(p => p.MedianMs)),
        new DoubleDataFrameColumn("peak_mib", points.Select(p => p.PeakMiB)),
        new DoubleDataFrameColumn("speedup_vs_sdpa", points.Select(p => Speedup(points, p.Method, Sdpa, p.SeqLen))),
        new DoubleDataFrameColumn("speedup_vs_reference", points.Select(p => Speedup(points, p.Method, Reference, p.SeqLen))));
}
