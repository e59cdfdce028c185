using System.Diagnostics;
using AttentionLab.Attention;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench;

/// <summary>
/// One parity case: a library call and the minimal sequence of bare TorchSharp ops that computes the same result, on
/// inputs built for a length T. Both return the tensors compared for equality — everything the library call returns (the
/// output first, which the backward pass sums; reference attention also its probabilities and LSE).
/// </summary>
/// <param name="Method">what is timed (e.g. "reference softmax, causal").</param>
/// <param name="Inputs">builds the inputs for length T (requires_grad set on the differentiable ones when asked) and anything the bare
/// ops precompute once, such as a mask.</param>
/// <param name="Library">the library call on the inputs.</param>
/// <param name="Bare">the bare ops on the inputs.</param>
/// <param name="BareOps">the bare ops in words, for the table.</param>
/// <param name="MaxLength">the longest T the case runs at (quadratic forms stop before their score matrix outgrows the machine).</param>
/// <param name="MinMultiple">T must be a multiple of this for the case (bare ops written without a tail); other lengths are skipped.</param>
public sealed record ParityCase(string Method, Func<int, bool, Tensor[]> Inputs, Func<Tensor[], Tensor[]> Library, Func<Tensor[], Tensor[]> Bare,
    string BareOps, int MaxLength = int.MaxValue, int MinMultiple = 1);

/// <summary>
/// One row of the parity table: medians of alternating library and bare calls, their ratio and the agreement, and the median
/// minor page faults per call of each side (fresh pages touched; −1 where the OS does not report them).
/// </summary>
public sealed record ParityRow(string Method, int SeqLen, string Pass, double LibraryMs, double BareMs, double MaxAbsDiff, string BareOps,
    double LibraryFaults = -1, double BareFaults = -1)
{
    /// <summary>library / bare (the target is ≤ 1.1).</summary>
    public double Ratio => LibraryMs / BareMs;
}

/// <summary>
/// The parity benchmark (issue 18): every library form against the bare ops it is made of. Library and bare calls alternate
/// (L B L B …) so load on a shared machine hits both alike; each reported time is a median. Outputs are checked equal first.
/// </summary>
public static class Parity
{
    /// <summary>
    /// The cases of the Attention layer (reference attention, the gated linear engine), at batch 1, <paramref name="heads"/>
    /// heads of width <paramref name="dim"/>, float32. Paper forms add their own (LightningParity, BasedParity in their
    /// folders, a higher layer); the parity command and its test join them.
    /// </summary>
    public static IReadOnlyList<ParityCase> Cases(int heads = 4, int dim = 64, Device? device = null) =>
    [
        new("reference softmax, causal",
            (t, grad) => Qkv(t, heads, dim, device, grad),
            x =>
            {
                var r = ReferenceAttention.Softmax(x[0], x[1], x[2], causal: true);
                return [r.Output, r.Probabilities, r.LogSumExp];
            },
            x =>
            {
                // s = (q/√D)·kᵀ, masked_fill_(j > i, −∞), p = softmax(s), o = p·v — the four ops, mask prebuilt once per T —
                // and the LSE the library also returns, max s − log max p (no row is fully masked here).
                var (q, k, v) = (x[0].permute(0, 2, 1, 3), x[1].permute(0, 2, 1, 3), x[2].permute(0, 2, 1, 3));
                var s = (q * (1.0 / Math.Sqrt(dim))).matmul(k.transpose(-2, -1));
                s.masked_fill_(x[3], double.NegativeInfinity);
                var p = torch.softmax(s, -1);
                var lse = s.amax(-1) - p.amax(-1).log();
                return [p.matmul(v).permute(0, 2, 1, 3).contiguous(), p, lse];
            },
            "scale q, q·kᵀ, masked_fill_ (mask built once), softmax, p·v; LSE = max s − log max p" + Contiguous, MaxLength: 8192),
        new("gated linear chunked (per-token gate)",
            (t, grad) => [.. Qkv(t, heads, dim, device, grad).Take(3), Gate(t, heads, device, grad)],
            x => [LinearAttention.Chunked(x[0], x[1], x[2], x[3], options: new LinearAttentionOptions { ChunkSize = Chunk }).Output],
            x => [ParityBareOps.GatedChunked(Heads(x[0]), Heads(x[1]), Heads(x[2]), x[3].permute(0, 2, 1), Chunk).permute(0, 2, 1, 3).contiguous()],
            "Γ by cumsum of a masked g per chunk; ((Q Kᵀ) ⊙ e^Γ) V and ΔS batched; loop: += e^{c_i} Q S, S ← e^{c_C} S + ΔS" + Contiguous,
            MinMultiple: Chunk),
    ];

    /// <summary>Every bare sequence ends in the layout the library returns: a contiguous [B, T, H, Dv].</summary>
    internal const string Contiguous = "; output made contiguous [B, T, H, Dv] (the library's layout)";

    /// <summary>Chunk (block) length of the linear cases: Lightning's Triton block and the engine's default.</summary>
    internal const int Chunk = 64;

    /// <summary>x [B, T, H, D] → contiguous [B, H, T, D] (the copy every heads-first form makes).</summary>
    internal static Tensor Heads(Tensor x) => x.permute(0, 2, 1, 3).contiguous();

    /// <summary>A per-token gate g = log σ(x) [1, T, H] (≤ 0, data-dependent as in GLA).</summary>
    static Tensor Gate(int t, int heads, Device? device, bool grad)
    {
        var g = new Generator((ulong)t + 2);
        return nn.functional.logsigmoid(torch.randn([1, t, heads], generator: g) + 3).to(device ?? CPU).requires_grad_(grad);
    }

    /// <summary>
    /// Runs each case at each length, forward and (when asked) forward + backward of the output's sum: <paramref name="warmup"/>
    /// alternating untimed pairs, then <paramref name="repeats"/> timed pairs.
    /// </summary>
    public static IReadOnlyList<ParityRow> Run(IEnumerable<ParityCase> cases, IEnumerable<int> lengths, bool backward = true, int warmup = 1,
        int repeats = 5, IProgress<ParityRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentNullException.ThrowIfNull(lengths);
        if (repeats <= 0) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "repeats must be positive.");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "warmup must be ≥ 0.");
        var rows = new List<ParityRow>();
        foreach (var c in cases)
            foreach (int t in lengths.Where(t => t <= c.MaxLength && t % c.MinMultiple == 0))
                foreach (bool withGrad in backward ? new[] { false, true } : new[] { false })
                {
                    using var scope = NewDisposeScope();
                    var inputs = c.Inputs(t, withGrad);
                    double diff;
                    using (torch.no_grad()) diff = MaxDifference(c.Library(inputs), c.Bare(inputs), c.Method);
                    Action library = Step(c.Library, inputs, withGrad), bare = Step(c.Bare, inputs, withGrad);
                    for (int i = 0; i < warmup; i++) { library(); bare(); }
                    var (lib, bar) = (new double[repeats], new double[repeats]);
                    var (libFaults, barFaults) = (new double[repeats], new double[repeats]);
                    for (int i = 0; i < repeats; i++)
                    {
                        // alternate which goes first, so a slow phase of the machine does not always hit the same side
                        if (i % 2 == 0) { (lib[i], libFaults[i]) = Clock(library); (bar[i], barFaults[i]) = Clock(bare); }
                        else { (bar[i], barFaults[i]) = Clock(bare); (lib[i], libFaults[i]) = Clock(library); }
                    }
                    var row = new ParityRow(c.Method, t, withGrad ? "forward + backward" : "forward", Median(lib), Median(bar), diff, c.BareOps,
                        Median(libFaults), Median(barFaults));
                    rows.Add(row);
                    progress?.Report(row);
                }
        return rows;
    }

    /// <summary>The rows as a table: method, T, pass, library and bare medians (ms), the ratio, max |Δ|, minor faults per call and the bare ops.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<ParityRow> rows) => new(
        new StringDataFrameColumn("method", rows.Select(r => r.Method)),
        new Int32DataFrameColumn("seq_len", rows.Select(r => r.SeqLen)),
        new StringDataFrameColumn("pass", rows.Select(r => r.Pass)),
        new DoubleDataFrameColumn("library_ms", rows.Select(r => r.LibraryMs)),
        new DoubleDataFrameColumn("bare_ms", rows.Select(r => r.BareMs)),
        new DoubleDataFrameColumn("library_over_bare", rows.Select(r => r.Ratio)),
        new DoubleDataFrameColumn("max_abs_diff", rows.Select(r => r.MaxAbsDiff)),
        new DoubleDataFrameColumn("faults_library", rows.Select(r => r.LibraryFaults)),
        new DoubleDataFrameColumn("faults_bare", rows.Select(r => r.BareFaults)),
        new StringDataFrameColumn("bare_ops", rows.Select(r => r.BareOps)));

    /// <summary>q, k, v [1, T, H, D] from a generator seeded with T, and the causal hidden mask [T, T] (j &gt; i) for the bare ops.</summary>
    internal static Tensor[] Qkv(int t, int heads, int dim, Device? device, bool grad)
    {
        var g = new Generator((ulong)t);
        Tensor Draw() => torch.randn([1, t, heads, dim], generator: g).to(device ?? CPU).requires_grad_(grad);
        return [Draw(), Draw(), Draw(), AttentionMasks.Causal(t, t, device).logical_not()];
    }

    /// <summary>max |Δ| over every returned tensor (as float64); a count or shape mismatch is an error in the case.</summary>
    static double MaxDifference(Tensor[] library, Tensor[] bare, string method)
    {
        if (library.Length != bare.Length)
            throw new InvalidOperationException($"{method}: the library returns {library.Length} tensors, the bare ops {bare.Length}.");
        return library.Zip(bare).Max(p => p.First.shape.SequenceEqual(p.Second.shape)
            ? (p.First.to(ScalarType.Float64) - p.Second.to(ScalarType.Float64)).abs().max().item<double>()
            : throw new InvalidOperationException($"{method}: shapes differ, {string.Join("×", p.First.shape)} vs {string.Join("×", p.Second.shape)}."));
    }

    static Action Step(Func<Tensor[], Tensor[]> call, Tensor[] inputs, bool withGrad) => () =>
    {
        using var scope = NewDisposeScope();
        if (!withGrad)
        {
            using (torch.no_grad()) call(inputs);
            return;
        }
        foreach (var x in inputs) x.grad?.zero_();
        call(inputs)[0].sum().backward();
    };

    /// <summary>Wall-clock milliseconds and minor page faults of one call.</summary>
    static (double Ms, double Faults) Clock(Action action)
    {
        long faults = PageFaults.ThisThread();
        var clock = Stopwatch.StartNew();
        action();
        double ms = clock.Elapsed.TotalMilliseconds;
        return (ms, faults < 0 ? -1 : PageFaults.ThisThread() - faults);
    }

    static double Median(double[] xs)
    {
        var s = xs.OrderBy(x => x).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }
}
