using AttentionLab.Bench;
using AttentionLab.Core;
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
        var ts = CheckSweep(lengths, batch, heads, headDim);
        return Sweep(ts, warmup, repeats, device, measureMemory, progress, ForEachMethod,
            t => (long)batch * heads * t * t * (dtype == ScalarType.Float64 ? 8 : dtype == ScalarType.Float32 ? 4 : 2));

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

    /// <summary>
    /// Forward time and peak memory of the linear-attention engine's forms (<see cref="LinearAttention"/>: parallel,
    /// recurrent, chunked; causal, with a per-head decay) for each sequence length, on random q, k, v [B, T, H, D].
    /// Same columns as <see cref="ReferenceVsSdpa"/>; max_abs_vs_reference is against the parallel form, and
    /// score_matrix_mib is the [B, H, T, T] matrix the parallel form materialises (the chunked form's is [B, H, T, C]).
    /// The recurrent form is a T-step loop: leave it out (<paramref name="includeRecurrent"/>) for long sequences.
    /// </summary>
    public static DataFrame LinearForms(IEnumerable<int> lengths, int batch = 1, int heads = 4, int headDim = 64, int chunkSize = 64,
        IFeatureMap? featureMap = null, bool normalize = false, bool includeRecurrent = true,
        int warmup = 1, int repeats = 3, ScalarType dtype = ScalarType.Float32, Device? device = null, bool measureMemory = true,
        IProgress<AttentionBenchRow>? progress = null)
    {
        var ts = CheckSweep(lengths, batch, heads, headDim);
        var options = new LinearAttentionOptions { FeatureMap = featureMap ?? FeatureMaps.Identity, Normalize = normalize, ChunkSize = chunkSize };
        return Sweep(ts, warmup, repeats, device, measureMemory, progress, ForEachMethod,
            t => (long)batch * heads * t * t * (dtype == ScalarType.Float64 ? 8 : 4));

        void ForEachMethod(int t, Action<string, Func<Tensor>, Tensor> body)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            var q = torch.randn(new long[] { batch, t, heads, headDim }, dtype: dtype, device: device) / Math.Sqrt(headDim);
            var k = torch.randn(new long[] { batch, t, heads, headDim }, dtype: dtype, device: device);
            var v = torch.randn(new long[] { batch, t, heads, headDim }, dtype: dtype, device: device);
            var logDecay = -torch.linspace(0.01, 0.5, heads, dtype: ScalarType.Float32, device: device);   // λ_h from 0.99 to 0.61
            Func<Tensor> Form(LinearForm form) => () =>
                { using var r = LinearAttention.Run(form, q, k, v, logDecay, options: options); return r.Output.clone(); };
            var reference = Form(LinearForm.Parallel)();
            body("linear-parallel", Form(LinearForm.Parallel), reference);
            if (includeRecurrent) body("linear-recurrent", Form(LinearForm.Recurrent), reference);
            body($"linear-chunked-{chunkSize}", Form(LinearForm.Chunked), reference);
        }
    }

    /// <summary>
    /// The two passes behind every table here: pass 1 measures memory, pass 2 times. The memory probe fixes glibc's mmap
    /// threshold at 1 MiB during each measured call so that large tensors get fresh pages it can see, and restores a
    /// steady-state heap (32 MiB threshold) after it, so the timings of pass 2 do not pay a page fault per large temporary.
    /// </summary>
    static DataFrame Sweep(int[] ts, int warmup, int repeats, Device? device, bool measureMemory, IProgress<AttentionBenchRow>? progress,
        Action<int, Action<string, Func<Tensor>, Tensor>> forEachMethod, Func<int, long> scoreBytes)
    {
        var memory = new Dictionary<(int, string), MemoryStats>();
        if (measureMemory)
            foreach (int t in ts)
                forEachMethod(t, (name, run, _) => memory[(t, name)] = Benchmark.PeakMemory(() => run()));
        var rows = new List<AttentionBenchRow>();
        foreach (int t in ts)
            forEachMethod(t, (name, run, reference) =>
            {
                double maxAbs;
                using (var inner = NewDisposeScope()) maxAbs = (run() - reference).abs().max().ToDouble();
                var time = Benchmark.Time(() => run(), warmup, repeats, device);
                var row = new AttentionBenchRow(t, name, time, memory.GetValueOrDefault((t, name), NotMeasured), maxAbs, scoreBytes(t));
                rows.Add(row);
                progress?.Report(row);
            });
        return ToDataFrame(rows);
    }

    static readonly MemoryStats NotMeasured = new(null, null, "not measured");

    public static DataFrame ToDataFrame(IReadOnlyList<AttentionBenchRow> rows) => Tables.From(rows.Select(r => new
        {
            r.SeqLen,
            r.Method,
            r.Time.MedianMs,
            r.Time.MinMs,
            r.Time.MaxMs,
            r.Time.Repeats,
            PeakMib = r.Memory.DeltaBytes is { } d ? d / 1048576.0 : (double?)null,
            ScoreMatrixMib = r.ScoreMatrixBytes / 1048576.0,
            r.MaxAbsVsReference,
            Memory = r.Memory.Method,
        }));

    /// <summary>The lengths as an array; ArgumentException naming the first bad argument.</summary>
    static int[] CheckSweep(IEnumerable<int> lengths, int batch, int heads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        if (batch <= 0) throw new ArgumentException($"batch must be positive, got {batch}.", nameof(batch));
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (headDim <= 0) throw new ArgumentException($"headDim must be positive, got {headDim}.", nameof(headDim));
        return ts;
    }
}
