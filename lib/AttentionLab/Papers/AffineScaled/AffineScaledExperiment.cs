using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AffineScaled;

/// <summary>The attention of one compared model: softmax (baseline), a learnable sink logit per head (gpt-oss), affine-scaled.</summary>
public enum AffineVariant { Softmax, Sink, Affine }

/// <summary>What a shipped checkpoint was trained with; loading compares it with the run's, a difference falls back to the live models.</summary>
public sealed record AffineCheckpointConfig(TinyGptConfig Model, string Variant, double Rho, int BatchSize, int Steps, double LearningRate, int WarmupSteps);

/// <summary>
/// P31 Affine-Scaled Attention: the notebook's experiment. An exactness phase on toy tensors (explicit and decomposed forms and the
/// layer vs the naive twin, the spec's §6 identities); then three character LMs (softmax, sink logit, affine) trained live from
/// the same initial seed on the same Moby-Dick batches for <see cref="Config.LiveSteps"/> steps, logging loss and gradient norms
/// (the gradient-norm claim is about training, so it is measured here); then the attention statistics and validation loss of
/// the longer-trained shipped checkpoints (lib/AttentionLab.Checkpoints/AffineScaledRecipe.cs), or of the live models when a
/// checkpoint is missing or does not match (the result says which).
/// </summary>
public sealed class AffineScaledExperiment : IPaperExperiment<AffineScaledExperiment.Config, AffineScaledResult>
{
    AffineScaledExperiment() { }

    /// <summary>P31 in the catalogue (notebook notebooks/31-affine-scaled-attention.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(31, "Affine-Scaled Attention: Towards Flexible and Stable Transformer Attention", "affine-scaled-attention");

    /// <summary>
    /// Sizes of one run. Smoke: spec §4's d = 64, H = 4, T = 128 with L = 2 (the spec's own budget fix), batch 16; the live
    /// gradient-norm run takes <see cref="LiveSteps"/> steps per model; the attention statistics read checkpoints trained
    /// <see cref="CheckpointSteps"/> steps by the recipe. Full: spec §4's GPU size (d = 384, L = 8, H = 6, T = 512, 10k steps), all live.
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, int SeqLen, int BatchSize, int LiveSteps, double LearningRate, int WarmupSteps,
        int EvalBatch, double Rho, bool UseCheckpoints, int CheckpointSteps, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, SeqLen: 128, BatchSize: 16, LiveSteps: 80, LearningRate: 3e-3,
            WarmupSteps: 10, EvalBatch: 32, Rho: 0.9, UseCheckpoints: true, CheckpointSteps: 1500, Seed: 0) { Size = "smoke" };

        public static Config Full => new(Layers: 8, DModel: 384, Heads: 6, SeqLen: 512, BatchSize: 32, LiveSteps: 10_000, LearningRate: 1e-3,
            WarmupSteps: 500, EvalBatch: 64, Rho: 0.9, UseCheckpoints: false, CheckpointSteps: 0, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The backbone of every model (learned positions, GELU MLP ×4); the sink variant sets its attention kind.</summary>
        public TinyGptConfig Model(AffineVariant variant, int vocab) => new(Layers, DModel, Heads, 4, Positions: PositionKind.Learned,
            VocabSize: vocab, MaxLength: SeqLen, Attention: variant == AffineVariant.Sink ? AttentionKind.SinkLogit : AttentionKind.Softmax);

        /// <summary>What a checkpoint of <paramref name="variant"/> for this config was trained with.</summary>
        public AffineCheckpointConfig CheckpointConfig(AffineVariant variant, int vocab) =>
            new(Model(variant, vocab), variant.ToString(), Rho, BatchSize, CheckpointSteps, LearningRate, WarmupSteps);
    }

    /// <summary>The manifest name of a variant's checkpoint.</summary>
    public static string CheckpointName(AffineVariant variant) => $"affine-scaled-{variant.ToString().ToLowerInvariant()}";

    /// <summary>A fresh model of <paramref name="variant"/> (seeded by the caller).</summary>
    public static TinyGpt Build(Config c, AffineVariant variant, int vocab) => variant == AffineVariant.Affine
        ? new TinyGpt(c.Model(variant, vocab), _ => new AffineScaledAttention(c.DModel, c.Heads, c.Rho))
        : new TinyGpt(c.Model(variant, vocab));

    /// <summary>
    /// Trains <paramref name="model"/> for <paramref name="steps"/> steps on Moby-Dick windows (BOS + T − 1 characters; batch i
    /// drawn with seed 7919·seed + i, the same for every model): AdamW, warm-up then cosine, clip 1.0; the history holds the
    /// gradient norm of every step before clipping.
    /// </summary>
    public static TrainHistory Train(TinyGpt model, TextCorpus corpus, Config c, int steps, Device device, IProgress<string>? progress = null,
        string label = "")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentNullException.ThrowIfNull(c);
        var options = new TrainOptions(steps, c.LearningRate, WarmupSteps: Math.Min(c.WarmupSteps, steps), ReportEvery: Math.Max(1, steps / 4));
        return Trainer.Fit(model, step =>
        {
            using var batch = corpus.Sample(c.BatchSize, c.SeqLen, seed: c.Seed * 7_919 + step, device: device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {label}: {p}")));
    }

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static AffineScaledResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: explicit vs naive {Num.Sci(exactness.ExplicitVsNaive)}, decomposed vs naive {Num.Sci(exactness.DecomposedVsNaive)}, " +
            $"layer vs naive {Num.Sci(exactness.LayerVsNaive)} (float64)");

        var corpus = TextCorpus.MobyDick();
        using var eval = corpus.Sample(config.EvalBatch, config.SeqLen, seed: 1_000_003 + config.Seed, split: CorpusSplit.Validation, device: device);
        var live = new List<LiveRun>();
        var stats = new List<VariantStats>();
        var sources = new Dictionary<AffineVariant, string>();
        foreach (var variant in Enum.GetValues<AffineVariant>())
        {
            torch.manual_seed(config.Seed);
            using var model = Build(config, variant, corpus.VocabSize);
            model.to(device);
            progress?.Report($"training {variant} live ({model.ParameterCount:N0} parameters), {config.LiveSteps} steps of " +
                $"{config.BatchSize} × {config.SeqLen}");
            var history = Train(model, corpus, config, config.LiveSteps, device, progress, variant.ToString());
            live.Add(new LiveRun(variant, model.ParameterCount, history.Losses.ToArray(), history.GradNorms.ToArray(),
                1000 * history.Elapsed.TotalSeconds / Math.Max(1, history.Losses.Count), Math.Min(config.WarmupSteps, config.LiveSteps)));
            clock.Lap($"train {variant}");

            string source = $"trained here ({config.LiveSteps} steps)";
            if (config.UseCheckpoints)
            {
                torch.manual_seed(config.Seed);
                using var loaded = Build(config, variant, corpus.VocabSize);
                loaded.to(device);
                try
                {
                    CheckpointStore.Default().Load(loaded, CheckpointName(variant), config.CheckpointConfig(variant, corpus.VocabSize));
                    source = $"checkpoint {CheckpointName(variant)} ({config.CheckpointSteps} steps)";
                    stats.Add(Statistics(loaded, variant, eval, source));
                }
                catch (Exception e) when (e is FileNotFoundException or InvalidDataException or ArgumentException)
                {
                    source = $"trained here ({config.LiveSteps} steps; checkpoint unusable: {e.Message.Split('.')[0]})";
                    stats.Add(Statistics(model, variant, eval, source));
                }
            }
            else stats.Add(Statistics(model, variant, eval, source));
            sources[variant] = source;
            progress?.Report($"  {variant}: statistics from {source}: val loss {stats[^1].ValLoss:F3}, " +
                $"first-token mass {stats[^1].FirstTokenMass.Average():F3}, " +
                $"entropy {stats[^1].Entropy.Average():F3} nats");
            clock.Lap($"statistics {variant}");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new AffineScaledResult(config, exactness, live, stats, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// Validation loss and per-layer attention statistics on the held-out batch (eval mode, no grad). P = softmax of the captured
    /// scores (hook_attn_scores) over the real keys — the same reading for every variant; w = the weights that multiply V
    /// (hook_pattern: P, the sink's P, or the affine a = αP + β).
    /// </summary>
    public static VariantStats Statistics(TinyGpt model, AffineVariant variant, TokenBatch eval, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(eval);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        var (logits, cache) = model.RunWithCache(eval.Tokens, n => n.EndsWith("hook_attn_scores", StringComparison.Ordinal)
            || n.EndsWith("hook_pattern", StringComparison.Ordinal) || n.EndsWith("hook_alpha", StringComparison.Ordinal));
        using var _ = cache;
        double loss = eval.Loss(logits).item<float>();
        int layers = model.Config.Layers;
        var (first, entropy, weight, mass) = (new double[layers], new double[layers], new double[layers], new double[layers]);
        var alpha = new List<double[]>();
        var alphaMa = new List<double[]>();
        double[] massSample = Array.Empty<double>();
        for (int l = 0; l < layers; l++)
        {
            var p = ReferenceAttention.Normalize(cache[$"blocks.{l}.attn.hook_attn_scores"].to(float64)).Probabilities;   // [B, H, T, T]
            var w = cache[$"blocks.{l}.attn.hook_pattern"].to(float64);
            long t = p.size(-1);
            first[l] = AttentionStats.SinkScore(p).mean().item<double>();                                       // mean_{i ≥ 1} P_i0
            entropy[l] = AttentionStats.RowEntropy(p).narrow(-1, 1, t - 1).mean().item<double>();               // mean_{i ≥ 1} H(P_i)
            weight[l] = AttentionStats.SinkScore(w).mean().item<double>();                                      // mean_{i ≥ 1} w_i0
            var rowMass = w.sum(-1);                                                                             // Σ_j w_ij  [B, H, T]
            mass[l] = rowMass.mean().item<double>();
            if (l == layers - 1) massSample = rowMass.narrow(-1, 1, t - 1).reshape(-1).cpu().data<double>().ToArray();
            string alphaName = $"blocks.{l}.attn.hook_alpha";
            if (cache.Names.Contains(alphaName))
            {
                alpha.Add(cache[alphaName].to(float64).mean(new long[] { 0, 1 }).cpu().data<double>().ToArray());   // mean α per head
                var mixer = (AffineScaledAttention)model.Blocks[l].Mixer;
                alphaMa.Add(mixer.AlphaMa.to(float64).cpu().data<double>().ToArray());
            }
        }
        return new VariantStats(variant, source, loss, first, entropy, weight, mass, massSample, alpha, alphaMa);
    }

    /// <summary>The exactness phase (float64, B = 2, T = 7, H = 3, D = 5, Dv = 4, d = 11).</summary>
    public static AffineExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        double explicitGap = AffineScaledChecks.FormVsTwin(AffineScaledOps.Explicit, device, seed);
        double decomposedGap = AffineScaledChecks.FormVsTwin(AffineScaledOps.Decomposed, device, seed);
        double layer = AffineScaledChecks.LayerVsTwin(device, seed);
        double mass = AffineScaledChecks.RowMassGap(device, seed);
        double unit = AffineScaledChecks.UnitAlphaIsSoftmax(device, seed);
        double visibleLeak = AffineScaledChecks.CausalityLeak(BiasNorm.VisibleKeys, device, seed);
        double fullLeak = AffineScaledChecks.CausalityLeak(BiasNorm.FullLength, device, seed);
        var (ema, evalChange) = AffineScaledChecks.Ema(device, seed);
        double step = AffineScaledChecks.StepVsForward(device, seed);
        return new AffineExactness(explicitGap, decomposedGap, layer, mass, unit, visibleLeak, fullLeak, ema, evalChange,
            AffineScaledChecks.ClippingAt(), step);
    }
}
