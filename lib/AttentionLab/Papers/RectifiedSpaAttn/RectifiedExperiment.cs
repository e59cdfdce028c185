using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>
/// The notebook's experiment (P33 §4), training-free: synthetic video-like Q/K/V (<see cref="SyntheticVideoQkv"/>) on a
/// frames × height × width grid in Hilbert order plus text tokens; for each locality γ and threshold τ, four variants
/// with the same critical sets (same density) against full attention: plain top-p sparse, IPAR scaling only,
/// IPAR + compensation of every dropped block, IPAR + compensation + GAPR. Errors are over the visual queries (text
/// queries use full attention in every variant). Before the sweep, an exactness phase on toy tensors; after it, forward
/// timings of full attention and the rectified form on the moderate-γ inputs (reported, never asserted).
/// </summary>
public sealed class RectifiedExperiment : IPaperExperiment<RectifiedExperiment.Config, RectifiedResult>
{
    RectifiedExperiment() { }

    /// <summary>P33 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(33, "Rectified SpaAttn", "rectified-spaattn");

    /// <summary>Sizes of one run. <c>TimingRepeats</c>: interleaved timed calls per method (0 skips the timing phase).</summary>
    public sealed record Config(int Frames, int Height, int Width, int HeadDim, int Heads, int TextTokens, int Block,
        double[] Localities, double[] Taus, double Noise, int MinTopK, double ModerateLocality, double PeakedLocality, double FixedTau, int Seed,
        double LengthScale = 1.0, double ContentScale = 4.0, int TimingRepeats = 7) : IPaperConfig<Config>
    {
        /// <summary>
        /// 2×16×16 grid (512 visual tokens), B = 32, d = 32, 2 heads, 16 text tokens (spec smoke size); γ 1…5, moderate 2, peaked 4, τ = 0.8 fixed.
        /// </summary>
        public static Config Smoke =>
            new(2, 16, 16, 32, 2, 16, 32, new[] { 1.0, 2.0, 3.0, 4.0, 5.0 }, new[] { 0.3, 0.5, 0.7, 0.8, 0.9 }, 0.1, 1, 2.0, 4.0, 0.8, 0) { Size = "smoke" };
        /// <summary>8×32×32 = 8192 visual tokens, B = 128, d = 64, 4 heads, 64 text tokens (spec full size).</summary>
        public static Config Full => new(8, 32, 32, 64, 4, 64, 128, new[] { 1.0, 2.0, 3.0, 4.0, 5.0, 6.0 }, new[] { 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95 },
            0.1, 1, 2.0, 4.0, 0.8, 0, TimingRepeats: 11) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
        /// <summary>Smoke or Full.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Visual tokens.</summary>
        public int VisualTokens => Frames * Height * Width;

        /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
        public Config Validate()
        {
            Guard.Positive(Frames, nameof(Frames)); Guard.Positive(Height, nameof(Height)); Guard.Positive(Width, nameof(Width));
            Guard.Positive(HeadDim, nameof(HeadDim)); Guard.Positive(Heads, nameof(Heads));
            Guard.Positive(Block, nameof(Block)); Guard.Positive(MinTopK, nameof(MinTopK));
            if (TextTokens < 0) throw new ArgumentException("TextTokens must be ≥ 0.", nameof(TextTokens));
            if (Localities is null || Localities.Length == 0 || Localities.Any(g => !(g >= 0)))
                throw new ArgumentException("Localities must be non-empty and ≥ 0.", nameof(Localities));
            if (Taus is null || Taus.Length == 0 || Taus.Any(t => !(t >= 0 && t < 1)))
                throw new ArgumentException("Taus must be non-empty, in [0, 1).", nameof(Taus));
            if (!Localities.Contains(ModerateLocality)) throw new ArgumentException("ModerateLocality must be one of Localities.", nameof(ModerateLocality));
            if (!Localities.Contains(PeakedLocality)) throw new ArgumentException("PeakedLocality must be one of Localities.", nameof(PeakedLocality));
            if (!Taus.Contains(FixedTau)) throw new ArgumentException("FixedTau must be one of Taus.", nameof(FixedTau));
            if (!(Noise >= 0)) throw new ArgumentException("Noise must be ≥ 0.", nameof(Noise));
            if (TimingRepeats < 0) throw new ArgumentException("TimingRepeats must be ≥ 0.", nameof(TimingRepeats));
            return this;
        }
    }

    /// <summary>Variant names in plot order.</summary>
    public static readonly string[] Variants = { "plain top-p", "IPAR scaling", "IPAR + comp. (all)", "IPAR + comp. + GAPR" };

    /// <summary>Output of one variant (flags of <see cref="RectifiedSparseAttention.Forward"/>).</summary>
    public static (Tensor Output, RectifyDiagnostics Diagnostics) Forward(string variant, Config c, Tensor q, Tensor k, Tensor v, double tau,
        bool trueMass = false)
    {
        var (ipar, compensate, gapr) = variant switch
        {
            "plain top-p" => (false, false, false),
            "IPAR scaling" => (true, false, false),
            "IPAR + comp. (all)" => (true, true, false),
            "IPAR + comp. + GAPR" => (true, true, true),
            _ => throw new ArgumentException($"unknown variant '{variant}'.", nameof(variant)),
        };
        return RectifiedSparseAttention.Forward(q, k, v, c.Block, tau, c.MinTopK, ipar, gapr, c.TextTokens, compensate: compensate, trueMass: trueMass);
    }

    /// <summary>Relative L2 error ‖o − o*‖/‖o*‖ and mean per-token cosine of the visual queries vs full attention.</summary>
    public static (double RelL2, double Cosine) Error(Tensor output, Tensor full, int visualTokens)
    {
        using var scope = NewDisposeScope();
        var o = output.narrow(1, 0, visualTokens).to(ScalarType.Float64);
        var r = full.narrow(1, 0, visualTokens).to(ScalarType.Float64);
        double rel = ((o - r).norm() / r.norm()).item<double>();
        double cos = nn.functional.cosine_similarity(o, r, dim: -1).mean().item<double>();
        return (rel, cos);
    }

    /// <summary>Exactness phase, then sweeps γ × τ × variants (one progress line per γ), then the timing phase.</summary>
    public static RectifiedResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var exactness = Exactness(device, config.Seed);
        progress?.Report($"exactness: fast vs naive {exactness.FastVsNaive.MaxAbs:E1}, constant blocks {exactness.ConstantBlocks.MaxAbs:E1}, " +
            $"τ = 1 {exactness.TauOne.MaxAbs:E1}");
        var rows = new List<RectifiedRow>();
        MassSnapshot? snapshot = null;
        foreach (double gamma in config.Localities)
        {
            using var scope = NewDisposeScope();
            var (q, k, v) = SyntheticVideoQkv.Generate(config.Frames, config.Height, config.Width, config.HeadDim, gamma, config.Noise,
                config.TextTokens, config.Seed, config.Heads, config.LengthScale, config.ContentScale);
            (q, k, v) = (q.to(device), k.to(device), v.to(device));
            using var full = ReferenceAttention.Softmax(q, k, v);
            foreach (double tau in config.Taus)
            {
                var err = new double[Variants.Length]; var cos = new double[Variants.Length];
                double density = 0, beneficial = 0, selected = 0, bias = 0;
                for (int m = 0; m < Variants.Length; m++)
                {
                    bool last = m == Variants.Length - 1;
                    var (o, d) = Forward(Variants[m], config, q, k, v, tau, trueMass: last);
                    using (o) using (d)
                    {
                        (err[m], cos[m]) = Error(o, full.Output, config.VisualTokens);
                        if (!last) continue;
                        density = d.Density; beneficial = d.FractionBeneficial(); selected = d.SelectedFraction();
                        bias = SelectedMassBias(d);
                        if (gamma == config.ModerateLocality && tau == config.FixedTau) snapshot = MassSnapshot.Of(d, gamma, tau);
                    }
                }
                rows.Add(new RectifiedRow(gamma, tau, density, selected, err, cos, beneficial, bias));
            }
            progress?.Report($"γ = {gamma}: " + string.Join(", ", rows.Where(r => r.Locality == gamma).Select(r =>
                $"τ {r.Tau} (density {r.Density:P0}) plain {r.Error[0]:F3} → GAPR {r.Error[3]:F3}")));
        }
        var timings = config.TimingRepeats > 0 ? Time(config, device) : Array.Empty<RectifiedTiming>();
        if (timings.Count > 0)
            progress?.Report("forward ms (median, interleaved): " + string.Join(", ", timings.Select(t => $"{t.Method} {t.MedianMs:F2}")));
        return new RectifiedResult(config, rows, snapshot!, clock.Elapsed) { Exactness = exactness, Timings = timings };
    }

    /// <summary>
    /// The spec's §6 identities on toy tensors (float64; T_v = 45 visual tokens, not a multiple of B = 8, 3 text tokens,
    /// head dim 7, 2 heads): the gathered form against the naive loop twin at τ = 0.5; R_I + Σ compensation weights = 1;
    /// with q, k constant inside every block the rectified output equals full attention (and plain sparse does not);
    /// τ = 1 keeps every block and equals full attention.
    /// </summary>
    public static RectifiedExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed + 1);
        var q = (torch.randn(new long[] { 2, 48, 2, 7 }, ScalarType.Float64, generator: gen) * 1.5).to(device);
        var k = (torch.randn(new long[] { 2, 48, 2, 7 }, ScalarType.Float64, generator: gen) * 1.5).to(device);
        var v = torch.randn(new long[] { 2, 48, 2, 5 }, ScalarType.Float64, generator: gen).to(device);
        const int block = 8, tail = 3;
        using var naive = RectifiedNaive.Forward(q, k, v, block, tau: 0.5, isolatedTail: tail);
        var (fast, diag) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 0.5, isolatedTail: tail);
        var fastVsNaive = ErrorStats.Of(fast, naive.Output.to(device));
        double sumGap = (diag.R + diag.CompensationWeight - 1).abs().max().item<double>();
        diag.Dispose();

        // q, k constant inside each block: block b's rows repeat token b of the toy tensors (text tokens keep their own)
        var blockOf = torch.tensor(Enumerable.Range(0, 45).Select(t => (long)(t / block)).Concat(new long[] { 6, 7, 8 }).ToArray(), device: device);
        var (cq, ck) = (q.narrow(1, 0, 9).index_select(1, blockOf), k.narrow(1, 0, 9).index_select(1, blockOf));
        using var full = ReferenceAttention.Softmax(cq, ck, v);
        var (rect, dC) = RectifiedSparseAttention.Forward(cq, ck, v, block, tau: 0.3, isolatedTail: tail);
        bool allBeneficial = dC.Beneficial.all().item<bool>();
        double constantDensity = dC.Density;
        dC.Dispose();
        var (plain, pC) = RectifiedSparseAttention.Forward(cq, ck, v, block, tau: 0.3, ipar: false, isolatedTail: tail);
        pC.Dispose();

        using var fullToy = ReferenceAttention.Softmax(q, k, v);
        var (dense, dT) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 1.0, isolatedTail: tail);
        double tauOneR = (dT.R - 1).abs().max().item<double>();
        dT.Dispose();
        return new RectifiedExactness(fastVsNaive, sumGap, ErrorStats.Of(rect, full.Output), ErrorStats.Of(plain, full.Output), allBeneficial,
            constantDensity, ErrorStats.Of(dense, fullToy.Output), tauOneR);
    }

    /// <summary>Method names of the timing phase.</summary>
    public const string FullName = "full attention (reference)", RectifiedName = "rectified (estimate + kernel + R, comp.)",
        KernelName = "block-sparse kernel alone", EstimateName = "estimate alone";

    /// <summary>
    /// Forward ms of full reference attention, the whole rectified forward (the paper's method at the fixed τ), its
    /// block-sparse kernel alone and its estimation stage alone, on the moderate-γ inputs in float32. Calls go round-robin
    /// over the methods (repeat r of every method before repeat r + 1 of any), so load that comes and goes hits all alike.
    /// </summary>
    static IReadOnlyList<RectifiedTiming> Time(Config c, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (q64, k64, v64) = SyntheticVideoQkv.Generate(c.Frames, c.Height, c.Width, c.HeadDim, c.ModerateLocality, c.Noise, c.TextTokens, c.Seed,
            c.Heads, c.LengthScale, c.ContentScale);
        var (q, k, v) = (q64.to(ScalarType.Float32, device), k64.to(ScalarType.Float32, device), v64.to(ScalarType.Float32, device));
        double density;
        Tensor selected;
        {
            var (o, d) = RectifiedSparseAttention.Forward(q, k, v, c.Block, c.FixedTau, c.MinTopK, isolatedTail: c.TextTokens);
            density = d.Density;
            selected = d.Selected.clone();
            o.Dispose(); d.Dispose();
        }
        var methods = new (string Name, double Density, Action Run)[]
        {
            (FullName, 1.0, () => { using var r = ReferenceAttention.Softmax(q, k, v); }),
            (RectifiedName, density, () =>
            {
                var (o, d) = RectifiedSparseAttention.Forward(q, k, v, c.Block, c.FixedTau, c.MinTopK, isolatedTail: c.TextTokens);
                o.Dispose(); d.Dispose();
            }),
            (KernelName, density, () => RectifiedSparseAttention.BlockSparse(q, k, v, selected, c.Block, c.TextTokens).Dispose()),
            (EstimateName, density, () => RectifiedSparseAttention.Estimate(q, k, c.Block, c.FixedTau, c.MinTopK, c.TextTokens).Dispose()),
        };
        foreach (var m in methods) Benchmark.Time(m.Run, warmup: 0, repeats: 1, device: device);          // warm-up
        var ms = methods.Select(_ => new List<double>()).ToList();
        for (int r = 0; r < c.TimingRepeats; r++)
            for (int i = 0; i < methods.Length; i++)
                ms[i].Add(Benchmark.Time(methods[i].Run, warmup: 0, repeats: 1, device: device).MedianMs);
        return methods.Select((m, i) =>
        {
            var sorted = ms[i].OrderBy(x => x).ToList();
            double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : 0.5 * (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]);
            return new RectifiedTiming(m.Name, c.VisualTokens + c.TextTokens, m.Density, median, sorted[0], sorted.Count);
        }).ToList();
    }

    /// <summary>Σ over the critical visual blocks of (estimated − true) mass, mean over query blocks: the Jensen bias of what was kept.</summary>
    static double SelectedMassBias(RectifyDiagnostics d)
    {
        using var scope = NewDisposeScope();
        int nb = d.VisualBlocks;
        var diff = (d.EstimatedMass.narrow(-1, 0, nb) - d.TrueMass!.narrow(-1, 0, nb)).masked_fill(d.Selected.logical_not(), 0.0);
        return diff.sum(-1).to(ScalarType.Float64).mean().item<double>();
    }
}
