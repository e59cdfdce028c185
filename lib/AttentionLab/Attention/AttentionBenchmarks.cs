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
    /// max_abs_vs_reference, memory (what was measured). Memory is measured for all lengths before any timing (see the
    /// comment inside); pass <paramref name="measureMemory"/> = false for timings of a process the probe never touched.
    /// </summary>
    public static DataFrame ReferenceVsSdpa(IEnumerable<int> lengths, int batch = 1, int heads = 4, int headDim = 64, bool causal = true,
        int warmup = 1, int repeats = 3, ScalarType dtype = ScalarType.Float32, Device? device = null, bool measureMemory = true,
        IProgress<AttentionBenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        if (batch <= 0) throw new ArgumentException($"batch must be positive, got {batch}.", nameof(batch));
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (headDim <= 0) throw new ArgumentException($"headDim must be positive, got {headDim}.", nameof(headDim));
        // Pass 1 measures memory, pass 2 times. The memory probe fixes glibc's mmap threshold at 1 MiB for the whole
        // process so that large tensors get fresh pages it can see; measured after a timing pass, the heap would already
        // hold the freed pages (glibc's adaptive threshold reaches 32 MiB) and the probe would report ~0 for them. The
        // cost: timings then include a page fault per large temporary (measureMemory: false times a clean process).
        var memory = new Dictionary<(int, string), MemoryStats>();
        if (measureMemory)
            foreach (int t in ts)
                ForEachMethod(t, (name, run, _) => memory[(t, name)] = Benchmark.PeakMemory(() => run()));
        var rows = new List<AttentionBenchRow>();
        foreach (int t in ts)
            ForEachMethod(t, (name, run, reference) =>
            {
                double maxAbs;
                using (var inner = NewDisposeScope()) maxAbs = (run() - reference).abs().max().ToDouble();
                var time = Benchmark.Time(() => run(), warmup, repeats, device);
                long scoreBytes = (long)batch * heads * t * t * (dtype == ScalarType.Float64 ? 8 : dtype == ScalarType.Float32 ? 4 : 2);
                var row = new AttentionBenchRow(t, name, time, memory.GetValueOrDefault((t, name), NotMeasured), maxAbs, scoreBytes);
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

    static readonly MemoryStats NotMeasured = new(null, null, "not measured");

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
