using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>
/// The notebook's experiment (P47 §4): one sink-inducing data set (Bigram-Backcopy: random tokens where a few trigger
/// tokens copy the token before them, so a copy head has nothing to read at every other position), one model family
/// (TinyGpt, RoPE), one seed grid; only the attention variant changes. For each variant and seed: train, log the sink rate
/// during training, then measure sink scores of the first text token (BOS), the sink's share of each head's output norm,
/// massive activation and the value-norm ratio. The softmax models then stream StreamFactor× the training length under a
/// dense cache, a window, sink + window (StreamingLLM) and a recomputed window. Around it: an exactness phase on toy
/// tensors (the operators' identities, the output-share twin, the StreamingLLM cache) and the real all-MiniLM-L6-v2's
/// [CLS] sink on a few sentences.
/// </summary>
public sealed class SinkExperiment : IPaperExperiment<SinkExperiment.Config, SinkResult>
{
    SinkExperiment() { }

    /// <summary>P47 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(47, "Attention sinks: utilisation, interpretation, mitigation", "attention-sinks");

    /// <summary>The four ordinary English sentences the MiniLM measurement runs on (each alone, unpadded).</summary>
    public static readonly string[] DefaultSentences =
    {
        "The cat sat quietly on the warm windowsill all afternoon.",
        "Researchers measured how attention heads distribute their weight.",
        "A long train crossed the bridge just after the sun went down.",
        "She wrote the numbers in a small notebook before the meeting.",
    };

    /// <summary>
    /// Sizes of one run. Smoke fits a CPU notebook (≈ 1.5–2 s per variant and seed on one thread); Full is the spec's GPU run
    /// (4 × 8 heads, d = 128, 3 seeds × 5 variants, 20k steps, streaming 32× the training length). Every variant gets the
    /// same steps, batches and schedule. <paramref name="Sentences"/> empty skips MiniLM.
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, BigramBackcopyTask Task, int BatchSize, int Steps,
        double LearningRate, int WarmupSteps, double WeightDecay, int EvalEvery, int EvalBatch, AttentionKind[] Variants, int[] Seeds,
        int StreamFactor, int StreamCount, int SinkTokens, string[] Sentences, double Epsilon = 0.3) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, MlpRatio: 2,
            Task: new BigramBackcopyTask(VocabSize: 32, Length: 32, Triggers: 3, Branching: 28, TriggerRate: 0.2),
            BatchSize: 32, Steps: 80, LearningRate: 1e-2, WarmupSteps: 10, WeightDecay: 0.01, EvalEvery: 20, EvalBatch: 64,
            Variants: Enum.GetValues<AttentionKind>(), Seeds: new[] { 0, 1, 2 }, StreamFactor: 4, StreamCount: 16, SinkTokens: 4,
            Sentences: DefaultSentences) { Size = "smoke" };

        public static Config Full => new(Layers: 4, DModel: 128, Heads: 8, MlpRatio: 4,
            Task: new BigramBackcopyTask(VocabSize: 64, Length: 256, Triggers: 3, Branching: 60, TriggerRate: 0.2),
            BatchSize: 64, Steps: 20000, LearningRate: 1e-3, WarmupSteps: 500, WeightDecay: 0.01, EvalEvery: 500, EvalBatch: 128,
            Variants: Enum.GetValues<AttentionKind>(), Seeds: new[] { 0, 1, 2 }, StreamFactor: 32, StreamCount: 16, SinkTokens: 4,
            Sentences: DefaultSentences) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Training length T.</summary>
        public int SeqLen => Task.Length;

        /// <summary>StreamingLLM's window w: half the training length (the cache holds n_s + w entries).</summary>
        public int Window => SeqLen / 2;

        /// <summary>The model of one variant (a Register model takes the register at position 0, so MaxLength = T + 1).</summary>
        public TinyGptConfig Model(AttentionKind kind) => new(Layers, DModel, Heads, MlpRatio, Positions: PositionKind.Rope,
            VocabSize: Task.VocabSize, MaxLength: SeqLen + 1, Attention: kind);

        public Config Validate()
        {
            ArgumentNullException.ThrowIfNull(Task);
            Guard.Positive(Steps, nameof(Steps)); Guard.Positive(EvalEvery, nameof(EvalEvery)); Guard.Positive(BatchSize, nameof(BatchSize));
            Guard.Positive(EvalBatch, nameof(EvalBatch)); Guard.Positive(StreamCount, nameof(StreamCount));
            if (Variants is null || Variants.Length == 0) throw new ArgumentException("Variants must not be empty.", nameof(Variants));
            if (Variants.Distinct().Count() != Variants.Length) throw new ArgumentException("Variants must not repeat.", nameof(Variants));
            if (Seeds is null || Seeds.Length == 0) throw new ArgumentException("Seeds must not be empty.", nameof(Seeds));
            if (Seeds.Distinct().Count() != Seeds.Length) throw new ArgumentException("Seeds must not repeat.", nameof(Seeds));
            if (StreamFactor < 1) throw new ArgumentException($"StreamFactor must be ≥ 1, got {StreamFactor}.", nameof(StreamFactor));
            if (SinkTokens < 1 || SinkTokens >= Window)
                throw new ArgumentException($"SinkTokens must be in [1, {Window}), got {SinkTokens}.", nameof(SinkTokens));
            if (!(Epsilon > 0 && Epsilon < 1)) throw new ArgumentException($"Epsilon must be in (0, 1), got {Epsilon}.", nameof(Epsilon));
            ArgumentNullException.ThrowIfNull(Sentences);
            return this;
        }
    }

    /// <summary>Names of the streaming set-ups, in plot order.</summary>
    public const string Dense = "dense cache", WindowOnly = "window", SinkWindow = "sink + window", Recompute = "recompute window";

    /// <summary>The held-out batch every model is measured on (seed far from the training batches').</summary>
    public const int EvalSeed = 999_999;

    /// <summary>The streams every softmax model decodes (the same for every seed, so set-ups compare on the same tokens).</summary>
    public const int StreamSeed = 2_000_000;

    /// <summary>Runs the exactness phase, MiniLM, every (variant, seed) and the softmax models' streaming on <paramref name="device"/>.</summary>
    public static SinkResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        using var scope = NewDisposeScope();
        var exactness = Exactness(device, config.Seeds[0]);
        clock.Lap("exactness");

        EncoderSinkSummary? encoder = null;
        if (config.Sentences.Length > 0)
        {
            progress?.Report($"all-MiniLM-L6-v2: [CLS] and [SEP] sinks on {config.Sentences.Length} sentences");
            using var minilm = MiniLm.LoadPretrained(device: device);
            encoder = EncoderSinks.Measure(minilm, config.Sentences);
            clock.Lap("MiniLM");
        }

        using var eval = config.Task.Generate(config.EvalBatch, EvalSeed, device);
        double bayes = config.Task.BayesLoss(eval);
        var runs = new List<VariantRun>();
        StreamingExactness? streamExact = null;
        foreach (int seed in config.Seeds)
            foreach (var kind in config.Variants)
            {
                progress?.Report($"{kind}, seed {seed}: training {config.Steps} steps");
                var (run, exact) = RunOne(config, kind, seed, eval, device, progress, checkStreaming: streamExact is null);
                streamExact ??= exact;
                runs.Add(run);
            }
        clock.Lap("variants");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new SinkResult(config, exactness with { Streaming = streamExact }, encoder, runs, bayes, clock.Seconds, clock.Phases);
    }

    static (VariantRun Run, StreamingExactness? Exact) RunOne(Config config, AttentionKind kind, int seed, BigramBackcopyBatch eval, Device device,
        IProgress<string>? progress, bool checkStreaming)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(config.Model(kind));
        model.to(device);
        var curve = new List<CurvePoint> { CurveAt(model, eval, 0, config.Epsilon) };              // step 0: at initialisation
        var options = new TrainOptions(config.Steps, config.LearningRate, WeightDecay: config.WeightDecay, WarmupSteps: config.WarmupSteps,
            StepsPerEpoch: config.EvalEvery, ReportEvery: Math.Max(1, config.Steps / 2));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = config.Task.Generate(config.BatchSize, seed * 1_000_003 + step, device);   // same batches for every variant
            return batch.Loss(model.call(batch.Tokens));
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {kind} seed {seed}: {p}")), epoch =>
        {
            var point = CurveAt(model, eval, Math.Min(epoch * config.EvalEvery, config.Steps), config.Epsilon);
            curve.Add(point);
            return new Dictionary<string, double> { ["validation loss"] = point.ValidationLoss, ["sink rate"] = point.SinkRate };
        });
        var final = Measure(model, eval, config.Epsilon);
        IReadOnlyDictionary<string, double[]>? streaming = null;
        StreamingExactness? exact = null;
        TimeSpan streamTime = TimeSpan.Zero;
        if (kind == AttentionKind.Softmax)
        {
            progress?.Report($"  {kind} seed {seed}: streaming {config.StreamFactor}× the training length");
            var streamClock = System.Diagnostics.Stopwatch.StartNew();
            streaming = Stream(model, config, device);
            if (checkStreaming) exact = DenseVsSinkWindow(model, config, device);
            streamTime = streamClock.Elapsed;
        }
        return (new VariantRun(kind, seed, history.Losses[^1], final, curve, streaming, history.Elapsed, streamTime), exact);
    }

    /// <summary>Validation loss, sink rate and largest sink score of the first text token, for the training curve.</summary>
    static CurvePoint CurveAt(TinyGpt model, BigramBackcopyBatch eval, int step, double epsilon)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        bool training = model.training;
        model.eval();
        var (logits, cache) = model.RunWithCache(eval.Tokens, n => n.EndsWith("hook_pattern"));
        using (cache)
        {
            var scores = HeadScores.SinkScore(cache, model.Prefix, causal: true);
            var point = new CurvePoint(step, eval.Loss(logits).item<float>(), HeadScores.SinkRate(scores, epsilon), scores.max().item<float>());
            if (training) model.train();
            return point;
        }
    }

    /// <summary>
    /// Validation loss, copy accuracy and every sink measurement of <paramref name="model"/> on <paramref name="eval"/>, for the
    /// sink token s = the first text token (position <see cref="TinyGpt.Prefix"/>: 0, or 1 behind a register).
    /// </summary>
    public static SinkMeasurement Measure(TinyGpt model, BigramBackcopyBatch eval, double epsilon = 0.3)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(eval);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        int s = model.Prefix;
        var (logits, cache) = model.RunWithCache(eval.Tokens,
            n => n.EndsWith("hook_pattern") || n.EndsWith("hook_v") || n.EndsWith("hook_resid_post") || n.EndsWith("hook_gate"));
        using (cache)
        {
            var scores = HeadScores.SinkScore(cache, s, causal: true).to(ScalarType.Float64).cpu();       // a_s [L, H]
            var register = s > 0 ? Rows(HeadScores.SinkScore(cache, 0, causal: true)) : null;             // a_0 of the register
            var ratio = SinkMeasurements.ValueNormRatio(cache, s).cpu();                                   // ρ [L, H]
            var outputWeights = model.Blocks.Select(b => ((CausalSelfAttention)b.Mixer).Proj.weight!).ToList();
            var share = SinkMeasurements.SinkOutputShare(cache, outputWeights, s).cpu();                   // σ [L, H]
            var (pattern, head) = StrongestSinkPattern(cache, scores);
            var patterns = HeadScores.Patterns(cache).to(ScalarType.Float64);                              // [L, B, H, T, T]
            double nowhere = (1 - patterns.sum(-1)).mean().item<double>();                                 // mean 1 − Σ_j A_ij (0 for softmax)
            double gateClosed = cache.Contains("blocks.0.attn.hook_gate")
                ? Enumerable.Range(0, cache.LayerCount).Average(l => 1 - cache["gate", l].to(ScalarType.Float64).mean().item<double>())   // mean 1 − σ(g)
                : double.NaN;
            return new SinkMeasurement(eval.Loss(logits).item<float>(), eval.CopyAccuracy(logits), Rows(scores), HeadScores.SinkRate(scores, epsilon),
                scores.max().item<double>(), Rows(share), SinkMeasurements.MassiveActivation(cache, token: s), Rows(ratio), register, head, pattern,
                nowhere, gateClosed);
        }
    }

    /// <summary>Loss per window-sized chunk over StreamCount streams of StreamFactor × T tokens, under the four set-ups (equal budgets n_s + w).</summary>
    static Dictionary<string, double[]> Stream(TinyGpt model, Config config, Device device)
    {
        int n = config.StreamFactor * config.SeqLen, w = config.Window, ns = config.SinkTokens;
        using var stream = (config.Task with { Length = n }).Generate(config.StreamCount, StreamSeed, device);
        return new Dictionary<string, double[]>
        {
            [Dense] = StreamingEval.PolicyLoss(model, stream, w),
            [WindowOnly] = StreamingEval.PolicyLoss(model, stream, w, _ => KvPolicy.SinkWindow(w + ns, nSink: 0)),
            [SinkWindow] = StreamingEval.PolicyLoss(model, stream, w, _ => KvPolicy.SinkWindow(w, ns)),
            [Recompute] = StreamingEval.RecomputeWindowLoss(model, stream, w, w + ns),
        };
    }

    /// <summary>Spec §6: a sink + window cache equals the dense cache while nothing is evicted (n_s + w tokens), bitwise.</summary>
    static StreamingExactness DenseVsSinkWindow(TinyGpt model, Config config, Device device)
    {
        int n = config.SinkTokens + config.Window;
        using var stream = (config.Task with { Length = n }).Generate(config.StreamCount, 3_000_000, device);
        var dense = StreamingEval.PolicyLossPerToken(model, stream);
        var sinkWindow = StreamingEval.PolicyLossPerToken(model, stream, _ => KvPolicy.SinkWindow(config.Window, config.SinkTokens));
        double maxAbs = dense.Zip(sinkWindow, (a, b) => Math.Abs(a - b)).Max();
        return new StreamingExactness(n, maxAbs, dense.SequenceEqual(sinkWindow));
    }

    /// <summary>
    /// The operators and measurements on toy tensors (float64): softmax₁ against softmax over [s, 0] with the extra column
    /// dropped; the sink logit at −∞ (softmax) and at 0 (softmax₁); a G1 model whose gate is open (W_θ = 0, b_θ = +∞)
    /// against the ungated model with the same weights; the sink rate of a hand-built pattern; the sink output share against
    /// its loop twin; and the StreamingLLM cache's kept tokens and positions after eviction.
    /// </summary>
    public static SinkExactness Exactness(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator((ulong)seed + 47);
        const int T = 7, H = 2, D = 5;
        var q = torch.randn(1, T, H, D, generator: gen, dtype: float64).to(device);
        var k = torch.randn(1, T, H, D, generator: gen, dtype: float64).to(device);
        var v = torch.randn(1, T, H, D, generator: gen, dtype: float64).to(device);

        // softmax₁ = softmax over [s, 0] with the last column dropped (s_ij = q_i·k_j / √D, causal)
        var off1 = AttentionVariants.Softmax1(q, k, v, causal: true);
        var scores = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) / Math.Sqrt(D);             // [1, H, T, T]
        scores = scores.masked_fill(AttentionMasks.Causal(T, T).to(device).logical_not(), double.NegativeInfinity);
        var padded = torch.softmax(torch.cat(new[] { scores, torch.zeros(1, H, T, 1, dtype: float64, device: device) }, -1), -1).narrow(-1, 0, T);
        double off1Error = (off1.Probabilities - padded).abs().max().item<double>();
        double maxRowSum = off1.Probabilities.sum(-1).max().item<double>();

        // the sink logit: b = −∞ is softmax, b = 0 is softmax₁ (probabilities and outputs)
        var plain = ReferenceAttention.Softmax(q, k, v, causal: true);
        var minusInf = AttentionVariants.SinkLogit(q, k, v, torch.full(H, double.NegativeInfinity, dtype: float64, device: device), causal: true);
        var zero = AttentionVariants.SinkLogit(q, k, v, torch.zeros(H, dtype: float64, device: device), causal: true);
        static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<double>();
        double minusInfError = Math.Max(MaxAbs(minusInf.Probabilities, plain.Probabilities), MaxAbs(minusInf.Output, plain.Output));
        double zeroError = Math.Max(MaxAbs(zero.Probabilities, off1.Probabilities), MaxAbs(zero.Output, off1.Output));

        return new SinkExactness(off1Error, maxRowSum, minusInfError, zeroError, GateOpenError(device, seed), HandBuiltSinkRate(device),
            OutputShareTwinError(device, gen), CacheAfterEviction(device), Streaming: null);
    }

    /// <summary>max |logits(G1 with W_θ = 0, b_θ = +∞) − logits(softmax model with the same weights)| on random tokens.</summary>
    static double GateOpenError(Device device, int seed)
    {
        var small = new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, MlpRatio: 2, Positions: PositionKind.Rope, VocabSize: 11, MaxLength: 16);
        torch.manual_seed(seed);
        using var plain = new TinyGpt(small).to(device);
        using var gated = new TinyGpt(small with { Attention = AttentionKind.GatedG1 }).to(device);
        var source = plain.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in gated.named_parameters())
        {
            if (source.TryGetValue(name, out var p)) parameter.copy_(p);
            else if (name.EndsWith("gate.weight")) parameter.zero_();                                   // W_θ = 0
            else if (name.EndsWith("gate.bias")) parameter.fill_(double.PositiveInfinity);             // b_θ = +∞: σ = 1
            else throw new InvalidOperationException($"unexpected parameter {name} in the gated model.");
        }
        plain.eval(); gated.eval();
        var tokens = torch.randint(0, 11, new long[] { 2, 9 }, device: device);
        return (gated.call(tokens) - plain.call(tokens)).abs().max().item<float>();
    }

    /// <summary>Four hand-built heads (T = 6) with sink scores 1, H₆ − 1 over 5 ≈ 0.290 (uniform), 0.2 (previous token), 0.4: rate 2/4.</summary>
    static HandBuiltSinkRate HandBuiltSinkRate(Device device)
    {
        const int T = 6;
        var p = new double[2, 2, T, T];
        for (int i = 0; i < T; i++)
        {
            p[0, 0, i, 0] = 1;                                                                          // everything on key 0
            for (int j = 0; j <= i; j++) p[0, 1, i, j] = 1.0 / (i + 1);                                 // uniform causal
            p[1, 0, i, Math.Max(0, i - 1)] = 1;                                                         // previous token
            if (i == 0) p[1, 1, 0, 0] = 1;
            else { p[1, 1, i, 0] = 0.4; for (int j = 1; j <= i; j++) p[1, 1, i, j] = 0.6 / i; }         // 0.4 on key 0
        }
        var expected = new[] { 1.0, Enumerable.Range(2, T - 1).Sum(n => 1.0 / n) / (T - 1), 0.2, 0.4 };
        var pattern = torch.tensor(p.Cast<double>().ToArray(), new long[] { 2, 2, T, T }, dtype: float64, device: device);
        var scores = AttentionStats.SinkScore(pattern, 0, causal: true);                                // [L, H]
        var got = scores.flatten().cpu().data<double>().ToArray();
        return new HandBuiltSinkRate(got.Zip(expected, (a, b) => Math.Abs(a - b)).Max(), HeadScores.SinkRate(scores), 0.5);
    }

    /// <summary>max |σ − naive σ| on a toy two-layer cache (B 2, T 5, H 2, Dh 3, d 4; layer 0 gated), float64.</summary>
    static double OutputShareTwinError(Device device, Generator gen)
    {
        using var cache = new ActivationCache(2);
        var weights = new List<Tensor>();
        var causal = AttentionMasks.Causal(5, 5).to(device);
        for (int l = 0; l < 2; l++)
        {
            var logits = torch.randn(2, 2, 5, 5, generator: gen, dtype: float64).to(device).masked_fill(causal.logical_not(), double.NegativeInfinity);
            cache.Store($"blocks.{l}.attn.hook_pattern", torch.softmax(logits, -1));
            cache.Store($"blocks.{l}.attn.hook_v", torch.randn(2, 5, 2, 3, generator: gen, dtype: float64).to(device));
            if (l == 0) cache.Store($"blocks.{l}.attn.hook_gate", torch.rand(2, 5, 2, 3, generator: gen, dtype: float64).to(device));
            weights.Add(torch.randn(4, 6, generator: gen, dtype: float64).to(device));
        }
        var fast = SinkMeasurements.SinkOutputShare(cache, weights).cpu().data<double>().ToArray();
        var naive = SinkNaive.SinkOutputShare(cache, weights);
        return fast.Select((x, i) => Math.Abs(x - naive[i / 2, i % 2])).Max();
    }

    /// <summary>A sink-window cache (n_s = 2, w = 3) after 9 tokens: kept tokens and their positions inside the cache.</summary>
    static CacheCheck CacheAfterEviction(Device device)
    {
        using var cache = new PolicyKvCache(KvPolicy.SinkWindow(window: 3, nSink: 2));
        for (int t = 0; t < 9; t++)
            cache.Append(torch.full(1, 1, 1, 2, t, dtype: float64, device: device), torch.full(1, 1, 1, 2, t, dtype: float64, device: device));
        var kept = cache.TokenPositions[0, 0].cpu().data<long>().ToArray();
        var positions = cache.CachePositions.cpu().data<long>().ToArray();
        var keys = cache.Keys[0, .., 0, 0].cpu().data<double>().Select(x => (long)x).ToArray();     // the stored keys are their token index
        return new CacheCheck(kept, positions, keys);
    }

    /// <summary>The first sequence's pattern [T, T] of the head with the largest sink score, and that head.</summary>
    static (double[][] Pattern, (int Layer, int Head) Head) StrongestSinkPattern(ActivationCache cache, Tensor scores)
    {
        long best = scores.flatten().argmax().item<long>(), heads = scores.shape[1];
        int layer = (int)(best / heads), head = (int)(best % heads);
        return (Rows(cache["pattern", layer][0, head].to(ScalarType.Float64).cpu()), (layer, head));
    }

    static double[][] Rows(Tensor matrix)
    {
        var m = matrix.to(ScalarType.Float64).cpu();
        return Enumerable.Range(0, (int)m.shape[0]).Select(i => m[i].data<double>().ToArray()).ToArray();
    }
}
