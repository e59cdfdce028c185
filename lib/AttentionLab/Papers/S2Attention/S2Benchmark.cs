using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>One benchmark point: method, length, median ms of forward + backward, attention FLOP fraction vs dense causal.</summary>
public sealed record S2BenchRow(string Method, int Length, double MedianMs, double FlopFraction);

/// <summary>One decode point: cache kind, tokens streamed n, mean ms per token, KV bytes held after n tokens (measured),
/// mean tokens held per head, max |Δ| of the outputs against the full-cache decode.</summary>
public sealed record S2DecodeBenchRow(string Cache, int Length, double MsPerToken, long KvBytes, double HeldPerHead, double MaxAbsVsFull);

/// <summary>
/// fwd+bwd speed of the heterogeneous S2 pattern (gather block-sparse and the strided+local LSE trick) vs full causal
/// attention (reference and SDPA), batch 1, float32. Dense forms above <c>maxDense</c> tokens are skipped (the T² score
/// matrix would not fit), as is the gather form above <c>maxGather</c>.
/// </summary>
public static class S2Benchmark
{
    /// <summary>Method names in table order.</summary>
    public const string Reference = "reference", Sdpa = "sdpa", Gather = "s2 gather", Strided = "s2 strided+local";

    /// <summary>Runs the sweep; one progress report per point.</summary>
    public static IReadOnlyList<S2BenchRow> Run(int[] lengths, int heads, int dim, int block, int local, int stride, int repeats,
        int maxDense, int maxGather, Device device, IProgress<S2BenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var rows = new List<S2BenchRow>();
        foreach (int n in lengths)
        {
            var mask = S2Pattern.LocalStride(heads, n, block, local, stride);
            var residues = S2Pattern.Residues(heads, stride);
            double density = mask.Density(n);
            var methods = new List<(string, double, Func<Tensor, Tensor>)>();
            if (n <= maxDense)
            {
                methods.Add((Reference, 1.0, x => { using var r = ReferenceAttention.Softmax(x, x, x, causal: true); return r.Output.alias(); }));
                methods.Add((Sdpa, 1.0, x => SdpaBaseline.Forward(x, x, x, causal: true)));
            }
            if (n <= maxGather) methods.Add((Gather, density, x => BlockSparseAttention.Forward(x, x, x, mask).Output));
            methods.Add((Strided, density, x => StridedLocalAttention.Forward(x, x, x, block, local, stride, residues).Output));
            foreach (var (name, fraction, f) in methods)
            {
                torch.manual_seed(0);
                using var x = torch.randn(new long[] { 1, n, heads, dim }, device: device).requires_grad_(true);
                var t = Benchmark.Time(() =>
                {
                    using var scope = NewDisposeScope();
                    f(x).sum().backward();                                                   // fwd + bwd
                    x.grad?.zero_();
                }, warmup: 1, repeats: repeats, device: device);
                var row = new S2BenchRow(name, n, t.MedianMs, fraction);
                rows.Add(row);
                progress?.Report(row);
            }
        }
        return rows;
    }

    /// <summary>Cache names in table order.</summary>
    public const string FullCache = "full cache, masked per head", PrunedCache = "pruned per head (stride + window)";

    /// <summary>
    /// Decode: one S2 layer (random weights, d = H·D, heterogeneous pattern, batch 1, float32, no gradients) streams n
    /// random tokens with the full KV cache and with the pruned per-head cache; per-token time (wall time / n), the bytes
    /// each cache holds at the end and the pruned decode's largest distance from the full one.
    /// </summary>
    public static IReadOnlyList<S2DecodeBenchRow> Decode(int[] lengths, int heads, int dim, int block, int local, int stride, Device device,
        IProgress<S2DecodeBenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var rows = new List<S2DecodeBenchRow>();
        foreach (int n in lengths)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(0);
            using var mixer = new S2SelfAttention(heads * dim, heads, block, local, stride);
            mixer.to(device);
            var x = torch.randn(new long[] { 1, n, heads * dim }, device: device);
            Tensor? fullOut = null;
            foreach (var (name, full) in new[] { (FullCache, true), (PrunedCache, false) })
            {
                using var state = full ? mixer.NewFullState(1, ScalarType.Float32, device) : mixer.NewState(1, ScalarType.Float32, device);
                var outs = new List<Tensor>();
                var clock = System.Diagnostics.Stopwatch.StartNew();
                for (int t = 0; t < n; t++) outs.Add(mixer.Step(x.select(1, t), state));
                if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                double ms = clock.Elapsed.TotalMilliseconds / n;
                var y = torch.stack(outs, 1);
                foreach (var o in outs) o.Dispose();
                double error = 0;
                if (full) fullOut = y; else error = (y - fullOut!).abs().max().item<float>();
                double held = state is S2KvState p ? p.Heads.Average(h => (double)h.Held) : n;
                var row = new S2DecodeBenchRow(name, n, ms, state.Bytes, held, error);
                rows.Add(row);
                progress?.Report(row);
            }
        }
        return rows;
    }

    /// <summary>Columns: cache, n, ms_per_token, kv_bytes, held_per_head, max_abs_vs_full.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<S2DecodeBenchRow> rows) => Tables.From(rows.Select(r => new
        {
            r.Cache,
            N = r.Length,
            r.MsPerToken,
            r.KvBytes,
            r.HeldPerHead,
            r.MaxAbsVsFull,
        }));

    /// <summary>Columns: method, n, median_ms, flop_fraction.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<S2BenchRow> rows) => Tables.From(rows.Select(r => new
        {
            r.Method,
            N = r.Length,
            r.MedianMs,
            r.FlopFraction,
        }));
}
