using AttentionLab.Bench;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>One row of <see cref="AttentionBenchmarks.ReferenceVsSdpa"/>.</summary>
/// <param name="SeqLen">T.</param>
/// <param name="Method">reference or sdpa.</param>
/// <param name="Time">forward wall-clock time.</param>
/// <param name="Memory">peak memory growth during one forward.</param>
/// <param name="MaxAbsVsReference">max |o − o_reference| (a sanity check, not a claim).</param>
/// <param name="ScoreMatrixBytes">bytes of one [B, H, T, T] score matrix in the benchmark's dtype (analytic).</param>
public sealed record AttentionBenchRow(int SeqLen, string Method, TimingStats Time, MemoryStats Memory, double MaxAbsVsReference, long ScoreMatrixBytes);

/// <summary>Benchmarks of the attention block (tables, never assertions).</summary>
public static class AttentionBenchmarks
{
    /// <summary>
    /// Forward time and peak memory of <see cref="ReferenceAttention.Softmax"/> (explicit scores, probabilities, LSE)
    /// against the fused <see cref="SdpaBaseline"/> for each sequence length, on random q, k, v [B, T, H, D].
    /// Columns: seq_len, method, median_ms, min_ms, max_ms, repeats, peak_mib (growth of the process's peak RSS
    /// during one call; empty where not measurable), score_matrix_mib (one [B, H, T, T] matrix, analytic),
    /// max_abs_vs_reference, memory (what was measured).
    /// </summary>
    public static DataFrame ReferenceVsSdpa(IEnumerable<int> lengths, int batch = 1, int heads = 4, int headDim = 64, bool causal = true,
        int warmup = 1, int repeats = 3, ScalarType dtype = ScalarType.Float32, Device? device = null, IProgress<AttentionBenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        if (batch <= 0) throw new ArgumentException($"batch must be positive, got {batch}.", nameof(batch));
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (headDim <= 0) throw new ArgumentException($"headDim must be positive, got {headDim}.", nameof(headDim));
        // Pass 1 times every (T, method); pass 2 measures memory. PeakMemory fixes glibc's mmap threshold for the whole
        // process (every large tensor then gets fresh, page-faulted pages), so timing first keeps the timings those of
        // an ordinary process.
        var timed = new List<(int T, string Method, TimingStats Time, double MaxAbs)>();
        foreach (int t in ts)
            ForEachMethod(t, (name, run, reference) =>
            {
                double maxAbs;
                using (var inner = NewDisposeScope()) maxAbs = (run() - reference).abs().max().ToDouble();
                timed.Add((t, name, Benchmark.Time(() => run(), warmup, repeats, device), maxAbs));
            });
        var rows = new List<AttentionBenchRow>();
        foreach (int t in ts)
            ForEachMethod(t, (name, run, _) =>
            {
                var (_, _, time, maxAbs) = timed.Single(x => x.T == t && x.Method == name);
                long scoreBytes = (long)batch * heads * t * t * (dtype == ScalarType.Float64 ? 8 : dtype == ScalarType.Float32 ? 4 : 2);
                var row = new AttentionBenchRow(t, name, time, Benchmark.PeakMemory(() => run()), maxAbs, scoreBytes);
                rows.Add(row);
                progress?.Report(row);
            });
        return ToDataFrame(rows);

        // Random q, k, v [B, T, H, D] and the reference output; calls body once per method.
        void ForEachMethod(int t, Action<string, Func<Tensor>, Tensor> body)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            var q = torch.randn(new long[] { batch, t, heads, headDim }, dtype: dtype, device: device);
            var k = torch.randn(new long[] { batch, t, heads, headDim }, dtype: dtype, device: device);
            var v = torch.randn(new long[] { batch, t, heads, headDim }, dtype: dtype, device: device);
            Tensor reference;
            using (var r = ReferenceAttention.Softmax(q, k, v, causal)) reference = r.Output.clone();
            body("reference", () => { using var r = ReferenceAttention.Softmax(q, k, v, causal); return r.Output.clone(); }, reference);
            body("sdpa", () => SdpaBaseline.Forward(q, k, v, causal), reference);
        }
    }

    public static DataFrame ToDataFrame(IReadOnlyList<AttentionBenchRow> rows) => new(
        new Int32DataFrameColumn("seq_len", rows.Select(r => r.SeqLen)),
        new StringDataFrameColumn("method", rows.Select(r => r.Method)),
        new DoubleDataFrameColumn("median_ms", rows.Select(r => r.Time.MedianMs)),
        new DoubleDataFrameColumn("min_ms", rows.Select(r => r.Time.MinMs)),
        new DoubleDataFrameColumn("max_ms", rows.Select(r => r.Time.MaxMs)),
        new Int32DataFrameColumn("repeats", rows.Select(r => r.Time.Repeats)),
        new DoubleDataFrameColumn("peak_mib", rows.Select(r => r.Memory.DeltaBytes is { } d ? d / 1048576.0 : (double?)null)),
        new DoubleDataFrameColumn("score_matrix_mib", rows.Select(r => r.ScoreMatrixBytes / 1048576.0)),
        new DoubleDataFrameColumn("max_abs_vs_reference", rows.Select(r => r.MaxAbsVsReference)),
        new StringDataFrameColumn("memory", rows.Select(r => r.Memory.Method)));
}
