using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>
/// The notebook's experiment (P45 §4, a feasibility-C substitute): (a) exact receptive-field analysis of the full,
/// clipped and inward windows at 1×, 2×, 3× the native grid, and the attention entropy of the trained tiny DiT's
/// self-attention as the grid grows; (b) coarse-to-fine sampling of the tiny DiT at k× its training resolution with
/// full attention, the clipped window, the inward window and inward + dual path (cross-attention override and cache),
/// scored per image by connected components (repetition), the shape test (class agreement), edge sharpness, and ms/step.
/// Before both, an exactness phase: the gather window against its dense twin, and the dual path's identities.
/// </summary>
public sealed class FreeSwimExperiment : IPaperExperiment<FreeSwimExperiment.Config, FreeSwimResult>
{
    FreeSwimExperiment() { }

    /// <summary>P45 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(45, "FreeSwim: inward sliding-window attention", "freeswim");

    /// <summary>Sizes of one run.</summary>
    /// <param name="MaskFactors">grid multiples of the mask and entropy analysis.</param>
    /// <param name="SampleFactors">grid multiples sampled in part (b).</param>
    /// <param name="SamplesPerClass">images per class (3 classes).</param>
    /// <param name="Steps">Euler steps at native resolution; the high-resolution pass takes round(Steps · Strength).</param>
    /// <param name="Strength">renoise strength of the high-resolution pass (official 0.7).</param>
    /// <param name="Guidance">classifier-free guidance g.</param>
    /// <param name="CacheSteps">dual path: a full-branch (guide) step every CacheSteps steps.</param>
    /// <param name="EntropyImages">images per grid size for the entropy measurement.</param>
    /// <param name="Seed">seed of noise, renoise and entropy images.</param>
    public sealed record Config(int[] MaskFactors, int[] SampleFactors, int SamplesPerClass, int Steps, double Strength, double Guidance,
        int CacheSteps, int EntropyImages, int Seed) : IPaperConfig<Config>
    {
        /// <summary>8×8 native tokens → 16×16 (2×); 4 images per class, 10 native steps (7 at 2×).</summary>
        public static Config Smoke => new(new[] { 1, 2, 3 }, new[] { 2 }, 4, 10, 0.7, 3.0, 3, 4, 0) { Size = "smoke" };
        /// <summary>2× and 3×, 16 images per class, 20 native steps.</summary>
        public static Config Full => new(new[] { 1, 2, 3, 4 }, new[] { 2, 3 }, 16, 20, 0.7, 3.0, 3, 16, 0) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
        /// <summary>Smoke or Full.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
        public Config Validate()
        {
            if (MaskFactors is null || MaskFactors.Length == 0 || MaskFactors.Any(f => f < 1))
                throw new ArgumentException("MaskFactors must be non-empty and ≥ 1.", nameof(MaskFactors));
            if (SampleFactors is null || SampleFactors.Length == 0 || SampleFactors.Any(f => f < 2))
                throw new ArgumentException("SampleFactors must be non-empty and ≥ 2.", nameof(SampleFactors));
            Guard.Positive(SamplesPerClass, nameof(SamplesPerClass)); Guard.Positive(Steps, nameof(Steps));
            if (!(Strength > 0 && Strength <= 1)) throw new ArgumentException($"Strength must be in (0, 1], got {Strength}.", nameof(Strength));
            if (!(Guidance >= 1)) throw new ArgumentException($"Guidance must be ≥ 1, got {Guidance}.", nameof(Guidance));
            Guard.Positive(CacheSteps, nameof(CacheSteps)); Guard.Positive(EntropyImages, nameof(EntropyImages));
            if ((int)Math.Round(Steps * Strength) < 1) throw new ArgumentException("Steps · Strength must round to at least one step.", nameof(Steps));
            return this;
        }
    }

    /// <summary>Sampling methods in table order: native, then per factor the upsampled input and five high-resolution passes.</summary>
    public static readonly string[] Methods = { "native", "upsampled", "full-direct", "full", "clipped", "inward", "inward+dual" };

    /// <summary>Native token grid side (16 px / patch 2).</summary>
    public static int NativeGrid => FreeSwimCheckpoint.NativePixels / FreeSwimCheckpoint.Config.Patch;

    /// <summary>Window half-size d = native grid / 2 (official d_h = H_native/2).</summary>
    public static int HalfWindow => NativeGrid / 2;

    /// <summary>(a) Keys per query of every window kind at every factor (instant, no model).</summary>
    public static IReadOnlyList<MaskRow> MaskRows(IEnumerable<int> factors)
    {
        var rows = new List<MaskRow>();
        foreach (int f in factors)
        {
            int g = NativeGrid * f;
            foreach (var kind in new[] { WindowKind.Full, WindowKind.Clipped, WindowKind.Inward })
            {
                using var w = WindowMasks.Of(kind, 1, g, g, HalfWindow, HalfWindow);
                var k = w.KeysPerQuery;
                int corner = k[0], centre = k[(g / 2) * g + g / 2];
                rows.Add(new MaskRow(kind.ToString().ToLowerInvariant(), f, g, g, k.Min(), k.Average(), k.Max(), corner, centre, g * g));
            }
        }
        return rows;
    }

    /// <summary>Runs (a) and (b) with the shipped checkpoint; one progress line per phase.</summary>
    public static FreeSwimResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var masks = MaskRows(config.MaskFactors);
        progress?.Report("masks: " + string.Join(", ", masks.Where(r => r.Kind != "full").Select(r => $"{r.Kind} {r.Factor}× min {r.MinKeys}")));
        using var model = FreeSwimCheckpoint.Load();
        model.to(device);
        var exactness = Exactness(model, device, config.Seed);
        progress?.Report($"exactness: gather vs dense {exactness.Gather64.MaxAbs:E1} (float64), {exactness.Gather32.MaxAbs:E1} (float32); " +
            $"dual path identities {exactness.DualWorst:E1}");
        var entropy = Entropy(model, config, device);
        progress?.Report("entropy (nats): " + string.Join(", ", entropy.Where(e => e.Variant == "full 1/√d").Select(e => $"{e.Factor}× {e.Entropy:F2}")));
        var (rows, images, scores) = Sample(model, config, device, progress);
        return new FreeSwimResult(config, masks, entropy, rows, images, clock.Elapsed) { Exactness = exactness, Scores = scores };
    }

    /// <summary>
    /// The exactness phase. The gather window against dense masked reference attention on a T = 2, 9×7 grid
    /// (d_h = 2, d_w = 1, 3 heads, d 8, FreeSwim scale) in float64 and float32, with its keys per query (time is not
    /// windowed: T·(2d_h+1)(2d_w+1) = 30). Then the dual path on <paramref name="model"/>, run in float64 and restored
    /// (3 images of 12×12 px = 6×6 tokens, 3 steps, CFG 3, a 5×5 inward window): override off + full branch kept +
    /// cache_steps 1 against baseline full-attention sampling (spec §6); cache on vs off at cache_steps 1 (spec §6,
    /// identical); override off against window-only sampling.
    /// </summary>
    public static FreeSwimExactness Exactness(TinyDiT model, Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gen = new Generator((ulong)seed + 1);
        var q = torch.randn(new long[] { 2, 126, 3, 8 }, ScalarType.Float64, generator: gen).to(device);
        var k = torch.randn(new long[] { 2, 126, 3, 8 }, ScalarType.Float64, generator: gen).to(device);
        var v = torch.randn(new long[] { 2, 126, 3, 5 }, ScalarType.Float64, generator: gen).to(device);
        using var toy = WindowMasks.InwardSliding(2, 9, 7, 2, 1, device);
        double scale = EntropyScale.Factor(63, 8);
        ErrorStats Gather(ScalarType t)
        {
            using var naive = FreeSwimNaive.WindowAttention(q.to(t), k.to(t), v.to(t), toy, scale);
            return ErrorStats.Of(WindowAttention.Forward(q.to(t), k.to(t), v.to(t), toy, scale), naive.Output);
        }
        var g64 = Gather(ScalarType.Float64);
        var g32 = Gather(ScalarType.Float32);
        var keys = toy.KeysPerQuery;

        // the dual path in float64 (the model's float32 weights widen and narrow back exactly), so the identities are
        // read at float64 round-off rather than at the float32 noise of different batch shapes
        var dtype = model.parameters().First().dtype;
        model.to(ScalarType.Float64);
        double fullVsBaseline, onVsOff, overrideVsWindow;
        try
        {
            var x = torch.randn(new long[] { 3, 3, 12, 12 }, ScalarType.Float64, generator: new Generator((ulong)seed + 5)).to(device);
            var labels = torch.tensor(new long[] { 0, 1, 2 }).to(device);
            using var window = WindowMasks.InwardSliding(1, 6, 6, 2, 2, device);
            var baseline = FlowSampler.Sample(model, x, labels, 0.7, 3, 3.0);
            // the CFG pass runs the window branch: with the window covering the 6×6 grid it is full attention too
            using var covering = WindowMasks.InwardSliding(1, 6, 6, 3, 3, device);
            var fullBranch = new DualPathSampler(model, cacheSteps: 1, overrideCrossAttn: false, keep: DualBranch.Full)
                .Sample(x, labels, 0.7, 3, 3.0, covering, scale: null);
            var on = new DualPathSampler(model, cacheSteps: 1, useCache: true).Sample(x, labels, 0.7, 3, 3.0, window, 0.4);
            var off = new DualPathSampler(model, cacheSteps: 1, useCache: false).Sample(x, labels, 0.7, 3, 3.0, window, 0.4);
            var noOverride = new DualPathSampler(model, cacheSteps: 1, overrideCrossAttn: false).Sample(x, labels, 0.7, 3, 3.0, window, 0.4);
            var windowOnly = FlowSampler.Sample(model, x, labels, 0.7, 3, 3.0, new WindowedDiTAttention(window, 0.4));
            double Diff(Tensor a, Tensor b) => (a - b).abs().max().item<double>();
            (fullVsBaseline, onVsOff, overrideVsWindow) = (Diff(fullBranch, baseline), Diff(on, off), Diff(noOverride, windowOnly));
        }
        finally
        {
            model.to(dtype);
        }
        return new FreeSwimExactness(g64, g32, keys.Min(), keys.Max(), 2 * 5 * 3, fullVsBaseline, onVsOff, overrideVsWindow);
    }

    /// <summary>
    /// (a) Mean self-attention row entropy (nats, over layers, heads, queries, images) of the trained model on noised shapes (t = 0.5) per factor.
    /// </summary>
    public static IReadOnlyList<EntropyRow> Entropy(TinyDiT model, Config config, Device device)
    {
        var rows = new List<EntropyRow>();
        double freeSwim = EntropyScale.Factor(NativeGrid * NativeGrid, model.Config.HeadDim);
        foreach (int f in config.MaskFactors)
        {
            int g = NativeGrid * f;
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (images, labels, _) = ShapeImages.Batch(config.EntropyImages, FreeSwimCheckpoint.NativePixels * f, config.Seed + 17, device);
            var x = FlowSampler.Renoise(images, 0.5, new Generator((ulong)(config.Seed + 23)));
            var t = torch.full(new long[] { x.shape[0] }, 0.5, device: device);
            using var inward = WindowMasks.InwardSliding(1, g, g, HalfWindow, HalfWindow, device);
            foreach (var (name, probe) in new (string, EntropyProbe)[]
                     {
                         ("full 1/√d", new EntropyProbe(null, null)),
                         ("full, FreeSwim scale", new EntropyProbe(null, freeSwim)),
                         ("inward, FreeSwim scale", new EntropyProbe(inward, freeSwim)),
                     })
            {
                model.Denoise(x, t, labels, probe);
                rows.Add(new EntropyRow(name, f, g * g, probe.Entropies.Average(), Math.Log(g * g)));
            }
        }
        return rows;
    }

    /// <summary>Records the mean row entropy of each self-attention call (dense probabilities: small grids only).</summary>
    sealed class EntropyProbe : DiTAttention
    {
        readonly WindowIndex? window; readonly double? scale;
        public EntropyProbe(WindowIndex? window, double? scale) { this.window = window; this.scale = scale; }
        public List<double> Entropies { get; } = new();
        public override double? Scale => scale;

        public override Tensor SelfAttention(int layer, Tensor q, Tensor k, Tensor v, TokenGrid grid)
        {
            using var scope = NewDisposeScope();
            using var r = window is null ? ReferenceAttention.Softmax(q, k, v, scale: scale) : FreeSwimNaive.WindowAttention(q, k, v, window, scale);
            Entropies.Add(AttentionStats.RowEntropy(r.Probabilities).mean().item<float>());
            return r.Output.alias().MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// (b) Coarse-to-fine sampling with every method: rows per (method, factor), the images per method, and every image's
    /// scores (for paired comparisons: image i of every method at a factor starts from the same native sample and noise).
    /// </summary>
    public static (IReadOnlyList<SampleRow> Rows, IReadOnlyList<MethodImages> Images, IReadOnlyList<ImageScores> Scores) Sample(TinyDiT model, Config config,
        Device device, IProgress<string>? progress = null)
    {
        using var outer = NewDisposeScope();                                   // every intermediate; kept images are detached
        var rows = new List<SampleRow>();
        var images = new List<MethodImages>();
        var scores = new List<ImageScores>();
        int classes = model.Config.Classes, b = classes * config.SamplesPerClass, px = FreeSwimCheckpoint.NativePixels;
        var labelArray = Enumerable.Range(0, b).Select(i => (long)(i % classes)).ToArray();
        using var labels = torch.tensor(labelArray).to(device);
        double freeSwim = EntropyScale.Factor(NativeGrid * NativeGrid, model.Config.HeadDim);

        // native stage: full attention at the training resolution
        var gen = new Generator((ulong)config.Seed);
        using var noise = torch.randn(new long[] { b, 3, px, px }, generator: gen).to(device);
        var watch = Stopwatch.StartNew();
        using var native = FlowSampler.Sample(model, noise, labels, 1.0, config.Steps, config.Guidance).clamp(-1, 1);
        double nativeMs = watch.Elapsed.TotalMilliseconds / config.Steps;
        Add("native", 1, native, nativeMs, 0);

        int hiSteps = (int)Math.Round(config.Steps * config.Strength);
        foreach (int f in config.SampleFactors)
        {
            int g = NativeGrid * f, size = px * f;
            using var scope = NewDisposeScope();
            var up = nn.functional.interpolate(native, new long[] { size, size }, mode: InterpolationMode.Bilinear, align_corners: false);
            Add("upsampled", f, up, 0, 0);
            var start = FlowSampler.Renoise(up, config.Strength, new Generator((ulong)(config.Seed + 100 * f)));
            var direct = torch.randn(new long[] { b, 3, size, size }, generator: new Generator((ulong)(config.Seed + 100 * f + 1))).to(device);
            using var clipped = WindowMasks.Clipped(1, g, g, HalfWindow, HalfWindow, device);
            using var inward = WindowMasks.InwardSliding(1, g, g, HalfWindow, HalfWindow, device);
            foreach (var method in Methods.Skip(2))
            {
                watch.Restart();
                int guides = 0;
                int steps = method == "full-direct" ? config.Steps : hiSteps;
                Tensor x = method switch
                {
                    "full-direct" => FlowSampler.Sample(model, direct, labels, 1.0, config.Steps, config.Guidance),
                    "full" => FlowSampler.Sample(model, start, labels, config.Strength, hiSteps, config.Guidance),
                    "clipped" =>
                        FlowSampler.Sample(model, start, labels, config.Strength, hiSteps, config.Guidance, new WindowedDiTAttention(clipped, freeSwim)),
                    "inward" => FlowSampler.Sample(model, start, labels, config.Strength, hiSteps, config.Guidance, new WindowedDiTAttention(inward, freeSwim)),
                    _ => DualPath(model, config, start, labels, hiSteps, inward, freeSwim, out guides),
                };
                double ms = watch.Elapsed.TotalMilliseconds / steps;
                Add(method, f, x.clamp(-1, 1), ms, guides);
            }
            progress?.Report($"{f}×: "
                + string.Join(", ", rows.Where(r => r.Factor == f).Select(r => $"{r.Method} comps {r.Components:F2} agree {r.Agreement:P0}")));
        }
        return (rows, images, scores);

        void Add(string method, int factor, Tensor x, double ms, int guides)
        {
            var cpu = x.detach().cpu();
            int minArea = 2 * factor * factor;
            var comps = new double[b]; var agree = new double[b]; var sharp = new double[b];
            for (int i = 0; i < b; i++)
            {
                using var img = cpu[i];
                using var fg = ImageMasks.Foreground(img);
                comps[i] = ImageMasks.ConnectedComponents(fg, minArea);
                agree[i] = ShapeImages.Classify(img, minArea) is { } k && (long)k == labelArray[i] ? 1 : 0;
                sharp[i] = ImageMasks.EdgeSharpness(img);
            }
            rows.Add(new SampleRow(method, factor, NativeGrid * factor, comps.Average(), comps.Count(c => c > 1) / (double)b, agree.Average(), sharp.Average(),
                ms, guides));
            scores.Add(new ImageScores(method, factor, comps, agree, sharp));
            var kept = cpu.clone(); kept.DetachFromDisposeScope();
            images.Add(new MethodImages(method, factor, kept, labelArray));
        }
    }

    static Tensor DualPath(TinyDiT model, Config config, Tensor start, Tensor labels, int steps, WindowIndex inward, double scale, out int guides)
    {
        var sampler = new DualPathSampler(model, config.CacheSteps);
        var x = sampler.Sample(start, labels, config.Strength, steps, config.Guidance, inward, scale);
        guides = sampler.GuideSteps;
        return x;
    }
}
