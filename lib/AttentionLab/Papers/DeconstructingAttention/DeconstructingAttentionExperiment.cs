using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.DeconstructingAttention;

/// <summary>
/// The notebook's experiment: a character-level LM on the shipped Moby-Dick text, trained with every layer standard
/// ("SS…"), every layer one variant (uniform, "VV…") and the variant interleaved with standard layers (hybrid), for equal
/// steps on the same batches; validation loss, perplexity and parameters per run, a bigram reference, the learned
/// patterns of the last layer. First an exactness phase: every variant against its naive twin on toy tensors.
/// </summary>
public sealed class DeconstructingAttentionExperiment : IPaperExperiment<DeconstructingAttentionExperiment.Config, DeconstructingAttentionResult>
{
    DeconstructingAttentionExperiment() { }

    /// <summary>P18 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(18, "Deconstructing Attention", "deconstructing-attention");

    /// <summary>
    /// Sizes of one run. <c>Variants</c> are trained uniformly and in every schedule of <c>HybridSchedules</c> (S = standard,
    /// V = the variant); the standard model is trained once. Smoke: spec §4 (L = 2, d = 48, T = 64; Standard + {NoMix,
    /// StaticMix, DecoupledQK} × {uniform, "SV"} = 7 runs) but T = 32, batch 32 and 300 steps instead of T = 64 and 120 steps:
    /// after 120 steps every model, Standard included, sat at the bigram level (2.43–2.48 vs 2.40 nats/char), so nothing
    /// was decided (docs/decisions.md).
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, int SeqLen, int BatchSize, int Steps, double LearningRate,
        int WarmupSteps, int EvalBatch, MixerKind[] Variants, string[] HybridSchedules, int PatternLength, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 48, Heads: 4, MlpRatio: 4, SeqLen: 32, BatchSize: 32, Steps: 300, LearningRate: 1e-2,
            WarmupSteps: 30, EvalBatch: 64, Variants: new[] { MixerKind.NoMix, MixerKind.StaticMix, MixerKind.DecoupledQK },
            HybridSchedules: new[] { "SV" }, PatternLength: 24, Seed: 0) { Size = "smoke" };

        public static Config Full => new(Layers: 8, DModel: 256, Heads: 8, MlpRatio: 4, SeqLen: 256, BatchSize: 32, Steps: 5000, LearningRate: 1e-3,
            WarmupSteps: 200, EvalBatch: 256,
            Variants: new[] { MixerKind.NoMix, MixerKind.FixedMix, MixerKind.StaticMix, MixerKind.ReluNorm, MixerKind.DistanceKernel, MixerKind.DecoupledQK },
            HybridSchedules: new[] { "SVSVSVSV", "SVVVSVVV" }, PatternLength: 64, Seed: 0) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The backbone every run shares (learned positions, so E = token + position for DecoupledQK).</summary>
        public TinyGptConfig Model(int vocab) => new(Layers, DModel, Heads, MlpRatio, Positions: PositionKind.Learned, VocabSize: vocab, MaxLength: SeqLen);

        /// <summary>"SS…S".</summary>
        public string StandardSchedule => new('S', Layers);
        /// <summary>"VV…V".</summary>
        public string UniformSchedule => new('V', Layers);
    }

    /// <summary>The add-α smoothing of the bigram reference (α per character pair).</summary>
    public const double BigramAlpha = 0.1;

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase and per progress tick.</summary>
    public static DeconstructingAttentionResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        foreach (var s in config.HybridSchedules)
            if (s.Length != config.Layers)
                throw new ArgumentException($"hybrid schedule '{s}' has {s.Length} letters for {config.Layers} layers.", nameof(config));
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: worst variant vs naive twin {Num.Sci(exactness.Variants.Max(v => Math.Max(v.OutputMaxAbs, v.GradientMaxAbs)))}");

        var corpus = TextCorpus.MobyDick();
        double bigram = BigramLoss(corpus, BigramAlpha);
        var plan = new List<(string Variant, MixerKind Kind, string Schedule)> { ("Standard", MixerKind.Standard, config.StandardSchedule) };
        foreach (var v in config.Variants)
        {
            plan.Add((v.ToString(), v, config.UniformSchedule));
            foreach (var s in config.HybridSchedules) plan.Add((v.ToString(), v, s));
        }
        var runs = new List<LmRun>();
        var patterns = new List<PatternMap>();
        using var eval = corpus.Sample(config.EvalBatch, config.SeqLen, seed: 1_000 + config.Seed, CorpusSplit.Validation, device: device);
        foreach (var (variant, kind, schedule) in plan)
        {
            var (run, pattern) = Train(variant, kind, schedule, corpus, eval, config, device, progress);
            runs.Add(run);
            if (pattern is not null) patterns.Add(pattern);
            clock.Lap($"train {variant} {schedule}");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new DeconstructingAttentionResult(config, exactness, runs, bigram, corpus.UnigramLoss(), patterns, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// Cross-entropy (nats/char) of the validation split under the train split's character bigrams, add-α smoothed: what a
    /// model without token mixing can reach at best (NoMix sees x_t and its position only).
    /// </summary>
    public static double BigramLoss(TextCorpus corpus, double alpha)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        if (!(alpha > 0)) throw new ArgumentException($"alpha must be positive, got {alpha}.", nameof(alpha));
        int v = corpus.Characters.Count;
        var ids = corpus.Encode(corpus.Text);
        var counts = new double[v, v];
        var rows = new double[v];
        for (int i = 0; i + 1 < corpus.TrainLength; i++) { counts[ids[i], ids[i + 1]]++; rows[ids[i]]++; }
        double total = 0;
        int n = 0;
        for (int i = corpus.TrainLength; i + 1 < ids.Length; i++, n++)
            total -= Math.Log((counts[ids[i], ids[i + 1]] + alpha) / (rows[ids[i]] + alpha * v));   // −log P(c_{t+1} | c_t)
        return total / n;
    }

    static (LmRun Run, PatternMap? Pattern) Train(string variant, MixerKind kind, string schedule, TextCorpus corpus, TokenBatch eval, Config c,
        Device device, IProgress<string>? progress)
    {
        torch.manual_seed(c.Seed);
        var (model, tap) = LayerSchedule.Build(c.Model(corpus.VocabSize), LayerSchedule.Parse(schedule, kind));
        using var _ = model;
        using var __ = tap;
        model.to(device);
        string name = $"{variant} {schedule}";
        progress?.Report($"training {name} ({model.ParameterCount:N0} parameters), {c.Steps} steps of {c.BatchSize} × {c.SeqLen} characters");
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.WarmupSteps, ReportEvery: Math.Max(1, c.Steps / 2));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = corpus.Sample(c.BatchSize, c.SeqLen, seed: c.Seed * 1_000_003 + step, device: device);   // the same batches for every run
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {name}: {p}")));
        double validation;
        PatternMap? pattern = null;
        using (var scope = NewDisposeScope())
        using (torch.no_grad())
        {
            model.eval();
            validation = eval.Loss(model.call(eval.Tokens)).item<float>();
            int last = c.Layers - 1;
            if (schedule[last] == 'V' || kind == MixerKind.Standard)
            {
                Tensor? a = null;
                var x = eval.Tokens.narrow(0, 0, 1).narrow(1, 0, Math.Min(c.PatternLength, c.SeqLen));
                var hook = model.HookPoints[$"blocks.{last}.attn.hook_pattern"];
                using (hook.AddHook((p, _) => { a = p.detach().clone().DetachFromDisposeScope(); return null; }))
                    model.call(x);
                using var held = a!;                                                    // kept out of the forward's scopes by the hook
                var head0 = a!.select(0, 0).select(0, 0).to(ScalarType.Float64).cpu();   // [T, T]
                pattern = new PatternMap(variant, schedule, last, Enumerable.Range(0, (int)head0.size(0))
                    .Select(i => head0[i].data<double>().ToArray()).ToList());
            }
        }
        progress?.Report($"  {name}: validation loss {validation:F3} nats/char (ppl {Math.Exp(validation):F2})");
        return (new LmRun(variant, schedule, model.ParameterCount, validation, history.Losses, history.Elapsed.TotalSeconds), pattern);
    }

    /// <summary>
    /// Every variant's mixer against its naive twin on toy tensors in float64 (B = 2, T = 7, d = 15, H = 3 — odd T and head
    /// width 5): outputs, gradients (input and parameters), the hooked pattern; every pattern causal with rows summing to 1;
    /// Standard against the library's reference attention; NoMix's output t blind to every other token; StaticMix's pattern
    /// the same for two inputs.
    /// </summary>
    public static DeconstructingExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        const int B = 2, T = 7, D = 15, H = 3;
        var gen = new Generator((ulong)seed);
        var checks = new List<VariantCheck>();
        double standardVsReference = double.NaN, perturbation = double.NaN, staticDependence = double.NaN;
        foreach (var kind in Enum.GetValues<MixerKind>())
        {
            using var tap = new EmbeddingTap();
            torch.manual_seed(seed);
            using var mixer = DeconstructedAttention.Create(kind, D, H, maxLength: 16, embeddings: tap);
            mixer.to(float64).to(device);
            if (mixer is StaticMixAttention sm)
                using (torch.no_grad()) sm.StaticBias.copy_(torch.randn(H, sm.MaxLength, generator: gen, dtype: float64));
            var x = torch.randn(B, T, D, generator: gen, dtype: float64).to(device).requires_grad_();
            var e = torch.randn(B, T, D, generator: gen, dtype: float64).to(device);
            tap.Set(e);
            var g = torch.randn(B, T, D, generator: gen, dtype: float64).to(device);
            var leaves = new List<Tensor> { x };
            leaves.AddRange(mixer.parameters());
            var fast = mixer.call(x);
            var naive = DeconstructedNaive.Output(mixer, x);
            var gFast = Gradients.Of(new[] { (fast * g).sum() }, leaves);           // every leaf is used (W_QKV carries v)
            var gNaive = Gradients.Of(new[] { (naive * g).sum() }, leaves);
            double gradient = gFast.Zip(gNaive).Max(p => (p.First - p.Second).abs().max().item<double>());
            var pattern = mixer.Pattern(x.detach());
            var (q, k, _) = mixer.Project(x.detach());
            var naivePattern = DeconstructedNaive.Pattern(kind, q, k, (mixer as StaticMixAttention)?.StaticBias.detach());
            var upper = torch.ones(T, T, dtype: ScalarType.Bool, device: device).triu(1);
            bool causal = pattern.masked_select(upper.expand_as(pattern)).abs().max().item<double>() == 0;
            double rowSum = (pattern.sum(-1) - 1).abs().max().item<double>();
            checks.Add(new VariantCheck(kind.ToString(), (fast - naive).abs().max().item<double>(), gradient,
                (pattern - naivePattern).abs().max().item<double>(), causal, rowSum, mixer.ParameterCount));

            using var noGrad = torch.no_grad();
            switch (kind)
            {
                case MixerKind.Standard:
                    var (qs, ks, vs) = mixer.Project(x.detach());
                    var z = ReferenceAttention.Softmax(qs, ks, vs, causal: true).Output;
                    var y = mixer.Proj.call(z.reshape(B, T, -1));
                    standardVsReference = (y - mixer.call(x.detach())).abs().max().item<double>();
                    break;
                case MixerKind.NoMix:
                    const int t = 3;                                                    // every token but t redrawn
                    var other = torch.randn(B, T, D, generator: gen, dtype: float64).to(device);
                    var keep = torch.arange(T, device: device).eq(t).view(1, T, 1);
                    var x2 = torch.where(keep, x.detach(), other);
                    perturbation = (mixer.call(x2).select(1, t) - mixer.call(x.detach()).select(1, t)).abs().max().item<double>();
                    break;
                case MixerKind.StaticMix:
                    var x3 = torch.randn(B, T, D, generator: gen, dtype: float64).to(device) * 3;
                    staticDependence = (mixer.Pattern(x3) - pattern).abs().max().item<double>();
                    break;
            }
        }
        return new DeconstructingExactness(checks, standardVsReference, perturbation, staticDependence);
    }
}
