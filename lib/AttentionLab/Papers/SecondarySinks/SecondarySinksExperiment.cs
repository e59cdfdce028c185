using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SecondarySinks;

/// <summary>
/// P25 Secondary attention sinks (spec §4): (i) a tiny GPT trained on a corpus with BOS (Bigram-Backcopy, a sink-inducing
/// task) — its BOS norm curve, primary-sink window and the detector's sink map; (ii) the causal injection demo — α·u added to
/// one token's middle-layer MLP output, u the unit BOS direction, α ∈ {0, 0.25, …, 2}·‖h_b‖, measuring that token's sink
/// score at the later layers and its lifetime; (iii) the detector on the pretrained all-MiniLM-L6-v2. Around it an exactness
/// phase on toy tensors (window, detector, labels, sink score and rescaling against their loop twins).
/// </summary>
public sealed class SecondarySinksExperiment : IPaperExperiment<SecondarySinksExperiment.Config, SecondarySinksResult>
{
    SecondarySinksExperiment() { }

    /// <summary>P25 in the catalogue (notebook notebooks/25-secondary-sinks.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(25, "Secondary attention sinks", "secondary-sinks");

    /// <summary>Four ordinary English sentences (15–20 WordPiece tokens each) for MiniLM, each run alone.</summary>
    public static readonly string[] DefaultSentences =
    {
        "The cat sat quietly on the warm windowsill all afternoon.",
        "Researchers measured how attention heads distribute their weight.",
        "A long train crossed the bridge just after the sun went down.",
        "She wrote the numbers in a small notebook before the meeting.",
    };

    /// <summary>
    /// Sizes of one run. Smoke: 3 layers, d = 64 (spec §4), trained for seconds on one CPU thread; Full: 6 layers, d = 128, the
    /// GPU run. <paramref name="InjectLayer"/>: the block whose MLP output is injected (the middle one); <paramref name="InjectPosition"/>:
    /// the token; <paramref name="AlphaSteps"/>: α = k/4 · ‖h_b‖ for k = 0 … AlphaSteps. Empty <paramref name="Sentences"/> skips MiniLM.
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, BigramBackcopyTask Task, int BatchSize, int Steps,
        double LearningRate, int WarmupSteps, int EvalBatch, int InjectLayer, int InjectPosition, int AlphaSteps, string[] Sentences, int Seed)
        : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 3, DModel: 64, Heads: 4, MlpRatio: 4,
            Task: new BigramBackcopyTask(VocabSize: 32, Length: 32, Triggers: 3, Branching: 28, TriggerRate: 0.2),
            BatchSize: 32, Steps: 500, LearningRate: 1e-2, WarmupSteps: 10, EvalBatch: 32, InjectLayer: 1, InjectPosition: 16, AlphaSteps: 8,
            Sentences: DefaultSentences, Seed: 0) { Size = "smoke" };

        public static Config Full => new(Layers: 6, DModel: 128, Heads: 8, MlpRatio: 4,
            Task: new BigramBackcopyTask(VocabSize: 64, Length: 128, Triggers: 3, Branching: 60, TriggerRate: 0.2),
            BatchSize: 64, Steps: 5000, LearningRate: 1e-3, WarmupSteps: 200, EvalBatch: 128, InjectLayer: 3, InjectPosition: 64, AlphaSteps: 8,
            Sentences: DefaultSentences, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The tiny GPT: learned positions (a position-free key once the BOS direction dominates), MLP blocks, pre-LN.</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, MlpRatio, Positions: PositionKind.Learned, VocabSize: Task.VocabSize,
            MaxLength: Task.Length);

        /// <summary>The injection factors k/4 (α = factor · ‖h_b^{(l)}‖).</summary>
        public double[] AlphaFactors => Enumerable.Range(0, AlphaSteps + 1).Select(k => k / 4.0).ToArray();

        /// <summary>Throws ArgumentException naming the bad field.</summary>
        public Config Validate()
        {
            ArgumentNullException.ThrowIfNull(Task);
            Guard.Positive(Layers, nameof(Layers)); Guard.Positive(Steps, nameof(Steps)); Guard.Positive(BatchSize, nameof(BatchSize));
            Guard.Positive(EvalBatch, nameof(EvalBatch)); Guard.Positive(AlphaSteps, nameof(AlphaSteps));
            if (InjectLayer < 0 || InjectLayer >= Layers - 1)
                throw new ArgumentException($"InjectLayer must be in [0, {Layers - 1}) so a later layer can see it, got {InjectLayer}.", nameof(InjectLayer));
            if (InjectPosition < 1 || InjectPosition >= Task.Length)
                throw new ArgumentException($"InjectPosition must be in [1, {Task.Length}), got {InjectPosition}.", nameof(InjectPosition));
            ArgumentNullException.ThrowIfNull(Sentences);
            Model.Validate();
            return this;
        }
    }

    /// <summary>The held-out batch the trained model is measured on.</summary>
    public const int EvalSeed = 999_999;

    /// <summary>Runs the exactness phase, trains and measures the tiny GPT, sweeps the injection and runs MiniLM on <paramref name="device"/>.</summary>
    public static SecondarySinksResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        using var scope = NewDisposeScope();
        progress?.Report("exactness: window, detector, labels, sink score and rescaling against their loop twins (float64)");
        var exact = SecondarySinksChecks.Toy(config.Seed);
        clock.Lap("exactness");

        progress?.Report($"tiny GPT: {config.Layers} layers × {config.Heads} heads, d = {config.DModel}, {config.Steps} steps on Bigram-Backcopy with BOS");
        torch.manual_seed(config.Seed);
        using var model = new TinyGpt(config.Model);
        model.to(device);
        var options = new TrainOptions(config.Steps, config.LearningRate, WarmupSteps: config.WarmupSteps, ReportEvery: Math.Max(1, config.Steps / 4));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = config.Task.Generate(config.BatchSize, config.Seed * 1_000_003 + step, device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {p}")));
        model.eval();
        clock.Lap("training");

        using var eval = config.Task.Generate(config.EvalBatch, EvalSeed, device);
        var gpt = MeasureGpt(model, eval, config);
        progress?.Report($"  BOS norms {string.Join(" → ", gpt.BosNorms.Select(n => n.ToString("F1")))}, window [{gpt.Window.Start}, {gpt.Window.End}), " +
            $"{gpt.Counts[SinkLabel.Secondary]} secondary sinks in {config.EvalBatch} sequences");
        clock.Lap("detector");

        progress?.Report($"injection: α·u into block {config.InjectLayer}'s MLP output at token {config.InjectPosition}, " +
            $"α/‖h_b‖ ∈ 0 … {config.AlphaFactors[^1]}");
        var (sweep, injectionExact) = Sweep(model, eval, config);
        clock.Lap("injection");

        MiniLmSinks? encoder = null;
        if (config.Sentences.Length > 0)
        {
            progress?.Report($"all-MiniLM-L6-v2: detector and per-token sink scores on {config.Sentences.Length} sentences");
            using var minilm = MiniLm.LoadPretrained(device: device);
            encoder = MeasureMiniLm(minilm, config.Sentences);
            clock.Lap("MiniLM");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new SecondarySinksResult(config, exact with { Injection = injectionExact }, history.Losses[^1], config.Task.BayesLoss(eval), gpt, sweep,
            encoder, clock.Seconds, clock.Phases);
    }

    static readonly Func<string, bool> Wanted = n => n.EndsWith("hook_pattern", StringComparison.Ordinal) ||
        n.EndsWith("hook_resid_post", StringComparison.Ordinal) || n == "blocks.0.hook_resid_pre" || n.EndsWith("hook_mlp_out", StringComparison.Ordinal);

    /// <summary>The trained model on the held-out batch: BOS norms, window, cosines and sink scores of sequence 0, sink maps of every sequence.</summary>
    static GptSinks MeasureGpt(TinyGpt model, BigramBackcopyBatch eval, Config config)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (logits, cache) = model.RunWithCache(eval.Tokens, Wanted);
        using (cache)
        {
            double loss = eval.Loss(logits).item<float>();
            var hidden0 = SinkDetector.HiddenStates(cache, 0);                                         // [S, T, D]
            var norms = Doubles(SinkDetector.BosNorms(hidden0, 0));
            var (sorted, _) = hidden0.to(float64).narrow(1, 1, hidden0.shape[1] - 1).norm(-1).sort(-1);
            var median = Doubles(sorted.select(1, (sorted.shape[1] - 1) / 2));                        // median_{i > b} ‖h_i‖ (lower middle)
            var window = SinkDetector.PrimaryWindow(SinkDetector.BosNorms(hidden0, 0));
            var cos = Rows(SinkDetector.CosineToBos(hidden0, 0));
            var scores = Rows(SinkScores.PerToken(cache));                                             // [L, T], mean over the batch
            var counts = Enum.GetValues<SinkLabel>().ToDictionary(l => l, _ => 0);
            IReadOnlyList<SinkToken> first = Array.Empty<SinkToken>();
            for (int b = 0; b < eval.Count; b++)
            {
                var map = SinkDetector.Detect(SinkDetector.HiddenStates(cache, b), bos: 0);
                var labels = SinkDetector.Label(map, config.Layers);
                foreach (var t in labels) counts[t.Label]++;
                if (b == 0) first = labels;
            }
            // The code's steering marks MLP outputs aligned with the BOS state (cos > 0.98, positions ≥ 3) in the middle layer.
            var u = cache["resid_post", config.InjectLayer].select(1, 0);                               // h_b^{(l)} [B, D]
            var (_, aligned) = SinkScores.RescaleAligned(cache["mlp_out", config.InjectLayer], u[0]);
            long alignedCount = aligned.sum().item<long>();
            var tokens = eval.Tokens[0].cpu().data<long>().ToArray();
            return new GptSinks(loss, norms, median, window, cos, scores, first, counts, alignedCount, tokens);
        }
    }

    /// <summary>The injection sweep: per α, the injected token's sink score at every later layer, its lifetime and its cosine to BOS.</summary>
    static (IReadOnlyList<InjectionPoint> Points, InjectionExactness Exact) Sweep(TinyGpt model, BigramBackcopyBatch eval, Config config)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        int l = config.InjectLayer, p = config.InjectPosition, layers = config.Layers;
        var (cleanLogits, clean) = model.RunWithCache(eval.Tokens, Wanted);
        using (clean)
        {
            var hb = clean["resid_post", l][0, 0].to(float64);                                          // h_b^{(l)} (BOS sees only itself)
            double bosNorm = hb.norm().item<double>();
            double tokenNorm = clean["resid_post", l].select(1, p).to(float64).norm(-1).mean().item<double>();     // mean ‖h_p^{(l)}‖
            var unit = hb / bosNorm;                                                                     // u = h_b / ‖h_b‖
            var points = new List<InjectionPoint>();
            bool zeroBitwise = false;
            double addGap = double.NaN, elsewhere = double.NaN;
            foreach (double factor in config.AlphaFactors)
            {
                double alpha = factor * bosNorm;
                using var hooks = model.Hooks(SinkScores.InjectDirection(model, l, p, unit, alpha));
                var (logits, cache) = model.RunWithCache(eval.Tokens, Wanted);
                using (cache)
                {
                    if (factor == 0) zeroBitwise = Same(logits, cleanLogits) && Same(cache["resid_post", l], clean["resid_post", l]);
                    if (factor == config.AlphaFactors[^1])
                    {
                        var diff = (cache["resid_post", l] - clean["resid_post", l]).to(float64);              // Δh^{(l)} [B, T, D]
                        addGap = ((diff.select(1, p) - unit * alpha).abs().max() / alpha).item<double>();  // Δh_p = α u (relative)
                        diff.select(1, p).zero_();
                        elsewhere = diff.abs().max().item<double>();                                           // every other token: 0
                    }
                    var scores = SinkScores.PerToken(cache).cpu();                                         // [L, T]
                    var later = Enumerable.Range(l + 1, layers - l - 1).Select(k => scores[k, p].item<double>()).ToArray();
                    var lifetimes = new double[eval.Count];
                    double cosSum = 0;
                    for (int b = 0; b < eval.Count; b++)
                    {
                        var c = SinkDetector.CosineToBos(SinkDetector.HiddenStates(cache, b), 0).select(1, p).abs();   // |cos(h_p, h_b)| per state
                        var states = c.narrow(0, l + 1, layers - l).cpu().data<double>().ToArray();                // states after blocks l … L−1
                        lifetimes[b] = states.Count(x => x > SinkDetector.DefaultCosine);
                        cosSum += states[0];
                    }
                    points.Add(new InjectionPoint(factor, alpha, later, lifetimes.Average(), cosSum / eval.Count));
                }
            }
            return (points, new InjectionExactness(zeroBitwise, addGap, elsewhere, bosNorm, tokenNorm));
        }
    }

    /// <summary>MiniLM, each sentence alone: [CLS] is b = 0; hidden states are the post-LN outputs (HuggingFace's hidden_states).</summary>
    static MiniLmSinks MeasureMiniLm(MiniLm model, IReadOnlyList<string> sentences)
    {
        using var scope = NewDisposeScope();
        var results = new List<MiniLmSentence>();
        foreach (var sentence in sentences)
        {
            using var output = model.RunWithAttention(sentence);
            var hidden = torch.stack(output.HiddenStates.Select(h => h[0]).ToArray());                  // [S = 7, T, D]
            var patterns = torch.stack(output.Attentions.ToArray());                                     // [L, 1, H, T, T]
            var scores = Rows(SinkScores.PerToken(patterns, causal: false));                             // encoder: every query
            var map = SinkDetector.Detect(hidden, bos: 0);
            int layers = output.Attentions.Count;
            results.Add(new MiniLmSentence(output.Tokens![0].ToList(), Doubles(SinkDetector.BosNorms(hidden, 0)), (map.Start, map.End),
                SinkDetector.Label(map, layers), scores, Rows(SinkDetector.CosineToBos(hidden, 0))));
        }
        return new MiniLmSinks(results);
    }

    /// <summary>Bitwise equal (same shape, every element equal).</summary>
    internal static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    internal static double[] Doubles(Tensor x) => x.to(float64).cpu().data<double>().ToArray();

    internal static double[][] Rows(Tensor m)
    {
        var x = m.to(float64).cpu();
        return Enumerable.Range(0, (int)x.shape[0]).Select(i => x[i].data<double>().ToArray()).ToArray();
    }
}
