using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// One timed call: method at sequence length n with batch B (B·n tokens). Throughput and time per sequence use the best
/// (minimum) of the timed repeats: on a shared CPU the other processes only ever add time, so the minimum is the
/// estimate least disturbed by them (the median stays in <see cref="Time"/>).
/// </summary>
/// <param name="SeqLen">n.</param>
/// <param name="Batch">B.</param>
/// <param name="Method">see <see cref="LightningBenchmarks"/>'s method names.</param>
/// <param name="Time">wall-clock time of one call (forward, or forward + backward).</param>
/// <param name="PeakBytes">growth of the process's peak RSS during one call; null where not measured.</param>
public sealed record SpeedRow(int SeqLen, int Batch, string Method, TimingStats Time, long? PeakBytes)
{
    /// <summary>Best time of one call (ms).</summary>
    public double Ms => Time.MinMs;
    /// <summary>Tokens processed per second: B·n / best time.</summary>
    public double TokensPerSecond => Batch * (double)SeqLen / (Ms / 1000);
    /// <summary>Best time per sequence: best / B (the "time vs T" of one sequence).</summary>
    public double MsPerSequence => Ms / Batch;
}

/// <summary>
/// Benchmarks behind the "various lengths, constant speed" claim (tables, never assertions): Lightning Attention
/// (chunked engine form and the tiled kernel loop) against full softmax attention (the reference and SDPA) and the
/// naive masked linear form, on random q, k, v [B, n, H, D].
/// </summary>
public static class LightningBenchmarks
{
    public const string Reference = "softmax reference", Sdpa = "softmax SDPA", Chunked = "lightning chunked",
        Tiled = "lightning tiled", NaiveLinear = "linear naive (masked)";

    /// <summary>Every method name, in table order.</summary>
    public static IReadOnlyList<string> Methods { get; } = new[] { Reference, Sdpa, NaiveLinear, Chunked, Tiled };

    /// <summary>
    /// Times each method at each length. With <paramref name="tokensPerBatch"/> the batch is tokens / n (the paper's
    /// constant-tokens sweep: a flat tokens/s line is "constant speed"); without it the batch is <paramref name="batch"/>.
    /// The quadratic methods (reference, naive linear) run only up to <paramref name="maxQuadraticLength"/>.
    /// <paramref name="backward"/>: time forward + backward of the output's sum (training speed), else forward without grad.
    /// Memory (peak RSS growth of one call, Linux) is measured when <paramref name="measureMemory"/>, on the first warm-up
    /// call of each cell (the probe fixes glibc's mmap threshold on its first use, before any timing, so every large
    /// temporary gets fresh pages it can see; timings then include those page faults, as in <see cref="AttentionBenchmarks"/>).
    /// </summary>
    public static IReadOnlyList<SpeedRow> Sweep(IEnumerable<int> lengths, int? tokensPerBatch = null, int batch = 1, int heads = 4, int headDim = 64,
        int block = LightningAttention.DefaultBlock, bool backward = true, int maxQuadraticLength = int.MaxValue, IEnumerable<string>? methods = null,
        int warmup = 1, int repeats = 3, bool measureMemory = true, int seed = 0, Device? device = null, IProgress<SpeedRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ns = lengths.ToArray();
        if (ns.Length == 0 || ns.Any(n => n <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        if (tokensPerBatch is { } tk && ns.Any(n => tk < n)) throw new ArgumentException($"tokensPerBatch {tk} is smaller than the longest length {ns.Max()}.", nameof(tokensPerBatch));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        var chosen = (methods ?? Methods).ToArray();
        var unknown = chosen.Except(Methods).ToArray();
        if (unknown.Length > 0) throw new ArgumentException($"unknown methods: {string.Join(", ", unknown)}; known: {string.Join(", ", Methods)}.", nameof(methods));
        var rows = new List<SpeedRow>();
        foreach (int n in ns)
        {
            int b = tokensPerBatch is { } t ? Math.Max(1, t / n) : batch;
            using var scope = NewDisposeScope();
            torch.manual_seed(seed + n);
            var q = (torch.randn(new long[] { b, n, heads, headDim }, device: device) / Math.Sqrt(headDim)).requires_grad_(backward);
            var k = torch.randn(new long[] { b, n, heads, headDim }, device: device).requires_grad_(backward);
            var v = torch.randn(new long[] { b, n, heads, headDim }, device: device).requires_grad_(backward);
            var ld = DecaySchedules.Alibi(heads, device: device);
            foreach (var method in chosen)
            {
                if ((method == Reference || method == NaiveLinear) && n > maxQuadraticLength) continue;
                Func<Tensor> forward = Forward(method, q, k, v, ld, block);
                Action call = backward ? () => forward().sum().backward() : () => { using var _ = torch.no_grad(); forward(); };
                long? peak = measureMemory ? Benchmark.PeakMemory(call).DeltaBytes : null;     // doubles as the first warm-up
                var time = Benchmark.Time(call, measureMemory ? Math.Max(0, warmup - 1) : warmup, repeats, device);
                var row = new SpeedRow(n, b, method, time, peak);
                rows.Add(row);
                progress?.Report(row);
            }
        }
        return rows;
    }

    /// <summary>The output of <paramref name="method"/> on [B, n, H, D] inputs (a closure; each call allocates afresh).</summary>
    static Func<Tensor> Forward(string method, Tensor q, Tensor k, Tensor v, Tensor ld, int block) => method switch
    {
        Reference => () => { using var r = ReferenceAttention.Softmax(q, k, v, causal: true); return r.Output.alias(); },
        Sdpa => () => SdpaBaseline.Forward(q, k, v, causal: true),
        NaiveLinear => () => { using var r = LightningAttention.Naive(q, k, v, ld); return r.Output.alias(); },
        Chunked => () => { using var r = LightningAttention.Forward(q, k, v, ld, block); return r.Output.alias(); },
        Tiled => () => { using var r = LightningAttention.Tiled(q, k, v, ld, block); return r.Output.alias(); },
        _ => throw new ArgumentException($"unknown method {method}.", nameof(method)),
    };

    /// <summary>
    /// Forward time of the tiled loop's two halves, separately: the intra-block left products [(Q_i K_iᵀ) ⊙ D] V_i of all
    /// blocks, and the inter-block right products diag(λ^j) Q_i KV_(i) with the state updates KV ← λ^B KV + (λ^{B−j} K_i)ᵀ V_i.
    /// Returns (intra, inter) timings for random [batch, n, H, D] inputs (n a multiple of the block).
    /// </summary>
    public static (TimingStats Intra, TimingStats Inter) IntraInterSplit(int n, int batch = 1, int heads = 4, int headDim = 64,
        int block = LightningAttention.DefaultBlock, int warmup = 1, int repeats = 3, int seed = 0, Device? device = null)
    {
        Guard.Positive(n, nameof(n)); Guard.Positive(batch, nameof(batch));
        if (block <= 0 || n % block != 0) throw new ArgumentException($"n {n} must be a positive multiple of block {block}.", nameof(block));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        long blocks = n / block;
        var q = torch.randn(new long[] { batch, heads, blocks, block, headDim }, device: device) / Math.Sqrt(headDim);   // [B, H, N, B, D]
        var k = torch.randn(new long[] { batch, heads, blocks, block, headDim }, device: device);
        var v = torch.randn(new long[] { batch, heads, blocks, block, headDim }, device: device);
        using var f = LightningAttention.BlockFactors(DecaySchedules.Alibi(heads, device: device), block);
        var diag = f.Diag.unsqueeze(0);                                                                 // [1, H, B, B]
        var (qDecay, kDecay, blockDecay) = (f.QDecay.view(1, heads, block, 1), f.KDecay.view(1, heads, block, 1), f.BlockDecay.view(1, heads, 1, 1));
        var intra = Benchmark.Time(() =>
        {
            for (long i = 0; i < blocks; i++)
            {
                var (qi, ki, vi) = (q.select(2, i), k.select(2, i), v.select(2, i));
                (qi.matmul(ki.transpose(-2, -1)) * diag).matmul(vi);                                    // [(Q_i K_iᵀ) ⊙ D] V_i
            }
        }, warmup, repeats, device);
        var inter = Benchmark.Time(() =>
        {
            var kv = torch.zeros(new long[] { batch, heads, headDim, headDim }, device: device);
            for (long i = 0; i < blocks; i++)
            {
                var (qi, ki, vi) = (q.select(2, i), k.select(2, i), v.select(2, i));
                _ = qi.matmul(kv) * qDecay;                                                              // diag(λ^j) Q_i KV_(i)
                kv = blockDecay * kv + (ki * kDecay).transpose(-2, -1).matmul(vi);                       // KV ← λ^B KV + (λ^{B−j} K_i)ᵀ V_i
            }
        }, warmup, repeats, device);
        return (intra, inter);
    }
}
