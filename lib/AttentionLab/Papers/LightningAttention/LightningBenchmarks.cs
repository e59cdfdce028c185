using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// One cell of the speed sweep: method at sequence length n with batch B (B·n tokens), timed once per round. Throughput
/// and time per sequence use the <b>median</b> over the rounds (the rounds interleave every method and length, so a burst
/// of load on the shared machine hits all of them alike); the best (minimum) stays in <see cref="Time"/>.
/// </summary>
/// <param name="SeqLen">n.</param>
/// <param name="Batch">B.</param>
/// <param name="Method">see <see cref="LightningBenchmarks"/>'s method names.</param>
/// <param name="Time">wall-clock time of one call (forward, or forward + backward) over the rounds.</param>
/// <param name="PeakBytes">growth of the process's peak RSS during one call; null where not measured.</param>
public sealed record SpeedRow(int SeqLen, int Batch, string Method, TimingStats Time, long? PeakBytes)
{
    /// <summary>Median time of one call over the rounds (ms).</summary>
    public double Ms => Time.MedianMs;
    /// <summary>Best time of one call over the rounds (ms).</summary>
    public double BestMs => Time.MinMs;
    /// <summary>Tokens processed per second: B·n / median time.</summary>
    public double TokensPerSecond => Batch * (double)SeqLen / (Ms / 1000);
    /// <summary>Median time per sequence: median / B (the "time vs T" of one sequence).</summary>
    public double MsPerSequence => Ms / Batch;
}

/// <summary>The rows of one constant-tokens sweep and what they say: spread across n, slowdown, slope, crossover.</summary>
public sealed record SpeedSweep(IReadOnlyList<SpeedRow> Rows)
{
    /// <summary>The rows of one method, by length.</summary>
    public IReadOnlyList<SpeedRow> Of(string method) => Rows.Where(r => r.Method == method).OrderBy(r => r.SeqLen).ToList();

    /// <summary>The methods that ran, in <see cref="LightningBenchmarks.Methods"/> order.</summary>
    public IReadOnlyList<string> Methods => LightningBenchmarks.Methods.Where(m => Rows.Any(r => r.Method == m)).ToList();

    /// <summary>max/min median tokens/s of a method across the lengths it ran (1 = perfectly constant speed).</summary>
    public double SpeedSpread(string method)
    {
        var tps = Of(method).Select(r => r.TokensPerSecond).ToList();
        if (tps.Count == 0) throw new ArgumentException($"no rows for method '{method}'.", nameof(method));
        return tps.Max() / tps.Min();
    }

    /// <summary>Median tokens/s at the shortest length ÷ at the longest (how much a method slows down as n grows).</summary>
    public double Slowdown(string method)
    {
        var rows = Of(method);
        if (rows.Count == 0) throw new ArgumentException($"no rows for method '{method}'.", nameof(method));
        return rows[0].TokensPerSecond / rows[^1].TokensPerSecond;
    }

    /// <summary>Fitted log-log slope of median time per sequence vs n (≈ 1 linear, ≈ 2 quadratic); NaN with fewer than two lengths.</summary>
    public double Slope(string method)
    {
        var rows = Of(method);
        if (rows.Count < 2) return double.NaN;
        return Numerics.LogLogFit(rows.Select(r => (double)r.SeqLen).ToList(), rows.Select(r => r.MsPerSequence).ToList()).Slope;
    }

    /// <summary>
    /// The smallest n from which <paramref name="method"/> is faster than <paramref name="baseline"/> at every larger n (null: never, at these lengths).
    /// </summary>
    public int? Crossover(string method, string baseline) =>
        Numerics.Crossover(Of(method).Concat(Of(baseline)), r => r.Method, r => r.SeqLen, r => r.Ms, method, baseline);

    /// <summary>
    /// Median tokens/s of <paramref name="method"/> ÷ <paramref name="baseline"/>'s at each length both ran (n → ratio; &gt; 1:
    /// <paramref name="method"/> is faster).
    /// </summary>
    public IReadOnlyList<(int SeqLen, double Ratio)> SpeedRatio(string method, string baseline) =>
        Of(method).Join(Of(baseline), r => r.SeqLen, r => r.SeqLen, (a, b) => (a.SeqLen, a.TokensPerSecond / b.TokensPerSecond)).ToList();

    /// <summary>
    /// Columns n, batch, method, ms (median over the rounds), best_ms, rounds, tokens_per_s and ms_per_seq (from the median),
    /// bytes (peak RSS growth of one call; empty where not measured).
    /// </summary>
    public DataFrame ToDataFrame() => Tables.From(Rows.Select(r => new
        {
            N = r.SeqLen,
            r.Batch,
            r.Method,
            Ms = Math.Round(r.Ms, 2),
            BestMs = Math.Round(r.BestMs, 2),
            Rounds = r.Time.Repeats,
            TokensPerS = Math.Round(r.TokensPerSecond),
            MsPerSeq = Math.Round(r.MsPerSequence, 3),
            Bytes = r.PeakBytes,
        }));

    /// <summary>Per method: slope of time per sequence, tokens/s spread across n, slowdown from shortest to longest n.</summary>
    public DataFrame SummaryFrame()
    {
        var methods = Methods;
        return new DataFrame(
            new StringDataFrameColumn("method", methods),
            new StringDataFrameColumn("lengths", methods.Select(m => $"{Of(m)[0].SeqLen}–{Of(m)[^1].SeqLen}")),
            new DoubleDataFrameColumn("slope_ms_per_seq", methods.Select(m => Math.Round(Slope(m), 2))),
            new DoubleDataFrameColumn("tokens_per_s_spread", methods.Select(m => Math.Round(SpeedSpread(m), 2))),
            new DoubleDataFrameColumn("slowdown_short_to_long", methods.Select(m => Math.Round(Slowdown(m), 2))));
    }
}

/// <summary>
/// Benchmarks behind the "various lengths, constant speed" claim (tables, never assertions): Lightning Attention
/// (chunked engine form and the tiled kernel loop) against full softmax attention (the reference and SDPA), the naive
/// masked linear form and the cumsum linear form the paper argues against, on random q, k, v [B, n, H, D].
/// </summary>
public static class LightningBenchmarks
{
    public const string Reference = "softmax reference", Sdpa = "softmax SDPA", Chunked = "lightning chunked",
        Tiled = "lightning tiled", NaiveLinear = "linear naive (masked)", CumsumLinear = "linear cumsum";

    /// <summary>Every method name, in table order.</summary>
    public static IReadOnlyList<string> Methods { get; } = new[] { Reference, Sdpa, NaiveLinear, CumsumLinear, Chunked, Tiled };

    /// <summary>
    /// Times each method at each length. With <paramref name="tokensPerBatch"/> the batch is tokens / n (the paper's
    /// constant-tokens sweep: a flat tokens/s line is "constant speed"); without it the batch is <paramref name="batch"/>.
    /// The quadratic methods (reference, naive linear) run only up to <paramref name="maxQuadraticLength"/>.
    /// <paramref name="backward"/>: time forward + backward of the output's sum (training speed), else forward without grad.
    /// Every cell (method, n) gets <paramref name="warmup"/> untimed calls first; then <paramref name="rounds"/> rounds each
    /// time every cell once — lengths in turn (reversed every other round), the methods of a length back to back in an
    /// order rotated each round — and a cell's time is the median over the rounds: every method sees the same load.
    /// Memory (peak RSS growth of one call, Linux) is measured when <paramref name="measureMemory"/>, on the first warm-up
    /// call of each cell (the probe fixes glibc's mmap threshold for its call only; see <see cref="Benchmark.PeakMemory"/>).
    /// </summary>
    public static SpeedSweep Sweep(IEnumerable<int> lengths, int? tokensPerBatch = null, int batch = 1, int heads = 4, int headDim = 64,
        int block = LightningAttention.DefaultBlock, bool backward = true, int maxQuadraticLength = int.MaxValue, IEnumerable<string>? methods = null,
        int warmup = 1, int rounds = 5, bool measureMemory = true, int seed = 0, Device? device = null, IProgress<SpeedRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ns = lengths.ToArray();
        if (ns.Length == 0 || ns.Any(n => n <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        if (tokensPerBatch is { } tk && ns.Any(n => tk < n)) throw new ArgumentException($"tokensPerBatch {tk} is smaller than the longest length {ns.Max()}.",
            nameof(tokensPerBatch));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        if (rounds <= 0) throw new ArgumentOutOfRangeException(nameof(rounds), rounds, "rounds must be positive.");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "warmup must be ≥ 0.");
        var chosen = (methods ?? Methods).ToArray();
        var unknown = chosen.Except(Methods).ToArray();
        if (unknown.Length > 0) throw new ArgumentException($"unknown methods: {string.Join(", ", unknown)}; known: {string.Join(", ", Methods)}.",
            nameof(methods));
        bool cuda = device?.type == DeviceType.CUDA;
        using var scope = NewDisposeScope();
        var cells = new List<(int N, int B, string Method, Action Call, long? Peak, List<double> Ms)>();
        foreach (int n in ns)
        {
            int b = tokensPerBatch is { } t ? Math.Max(1, t / n) : batch;
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
                for (int i = measureMemory ? 1 : 0; i < warmup; i++) TimeOnce(call, cuda);
                cells.Add((n, b, method, call, peak, new List<double>()));
            }
        }
        for (int r = 0; r < rounds; r++)
        {
            var order = r % 2 == 0 ? ns : ns.Reverse().ToArray();                                   // lengths forth and back
            foreach (int n in order)
            {
                var atN = cells.Where(c => c.N == n).ToList();
                for (int i = 0; i < atN.Count; i++)
                {
                    var cell = atN[(i + r) % atN.Count];                                           // methods rotated each round
                    cell.Ms.Add(TimeOnce(cell.Call, cuda));
                }
            }
        }
        var rows = new List<SpeedRow>();
        foreach (var c in cells)
        {
            var ms = c.Ms.OrderBy(x => x).ToArray();
            double median = ms.Length % 2 == 1 ? ms[ms.Length / 2] : 0.5 * (ms[ms.Length / 2 - 1] + ms[ms.Length / 2]);
            var row = new SpeedRow(c.N, c.B, c.Method, new TimingStats(median, ms[0], ms[^1], ms.Length), c.Peak);
            rows.Add(row);
            progress?.Report(row);
        }
        return new SpeedSweep(rows);
    }

    /// <summary>Wall-clock ms of one call in its own dispose scope (CUDA synchronised around it).</summary>
    static double TimeOnce(Action call, bool cuda)
    {
        if (cuda) torch.cuda.synchronize();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (var scope = NewDisposeScope()) call();
        if (cuda) torch.cuda.synchronize();
        return clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>The output of <paramref name="method"/> on [B, n, H, D] inputs (a closure; each call allocates afresh).</summary>
    static Func<Tensor> Forward(string method, Tensor q, Tensor k, Tensor v, Tensor ld, int block) => method switch
    {
        Reference => () => { using var r = ReferenceAttention.Softmax(q, k, v, causal: true); return r.Output.alias(); },
        Sdpa => () => SdpaBaseline.Forward(q, k, v, causal: true),
        NaiveLinear => () => { using var r = LightningNaive.Attention(q, k, v, ld); return r.Output.alias(); },
        Chunked => () => { using var r = LightningAttention.Forward(q, k, v, ld, block); return r.Output.alias(); },
        Tiled => () => { using var r = LightningAttention.Tiled(q, k, v, ld, block); return r.Output.alias(); },
        CumsumLinear => () => { using var r = LightningAttention.Cumsum(q, k, v, ld); return r.Output.alias(); },
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
