using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.PreplanAnchor;

/// <summary>The exactness phase: the metrics and GRPO pieces against their loop twins and the spec's §6 identities.</summary>
public sealed record RhythmExactness(double WaadTwin, double FaiTwin, double SelfOnlyWaad, double ShiftWaad, double ConstantColumnFai,
    double GammaZeroGap, double WeightSumGap, double AdvantageTwin, double LossTwin)
{
    /// <summary>Largest deviation of all.</summary>
    public double Max => new[] { WaadTwin, FaiTwin, SelfOnlyWaad, ShiftWaad, ConstantColumnFai, GammaZeroGap, WeightSumGap, AdvantageTwin, LossTwin }.Max();
}

/// <summary>The SFT model's attention rhythm on correct traces: per response position WAAD, FAI and critical-token rates.</summary>
public sealed record RhythmAnalysis(double[,] MeanDistance, (int Layer, int Head)[] Local, (int Layer, int Head)[] Global,
    IReadOnlyList<TraceRole> Roles, double[] Waad, double[] Fai, double[] PreplanRate, double[] AnchorRate, double[,] LocalPattern,
    double[,] GlobalPattern, long[] ExampleTrace, int Traces);

/// <summary>One GRPO run: a strategy and seed, its mean reward per step and its greedy accuracy at each evaluation.</summary>
/// <remarks><paramref name="FirstStepLogRatio"/>: max |log π_θ − log π_old| over the first step's rollout tokens, before any update —
/// 0 up to rounding when the sampler's log-probabilities are the policy's (the ratio ρ starts at 1).</remarks>
public sealed record GrpoRun(CreditStrategy Strategy, int Seed, double[] Reward, int[] EvalSteps, double[] Accuracy, double CriticalShare,
    double CriticalMilliseconds, double FirstStepLogRatio, double Seconds);

/// <summary>
/// P10 Preplan-and-Anchor: the notebook's experiment. An exactness phase (WAAD, FAI, the GRPO advantages and loss against their
/// loop twins; the spec's §6 identities); a TinyGpt fine-tuned (SFT) on countdown-lite traces (<see cref="CountdownTrace"/>);
/// WAAD and FAI of its local and global heads on correct traces, read by token role; then GRPO from the SFT weights with
/// uniform credit and with extra credit on critical tokens (anchor, preplan, coupled), the same rollouts budget per strategy and
/// seed, critical tokens found from each rollout's own attention.
/// </summary>
public sealed class PreplanAnchorExperiment : IPaperExperiment<PreplanAnchorExperiment.Config, PreplanAnchorResult>
{
    PreplanAnchorExperiment() { }

    /// <summary>P10 in the catalogue (notebook notebooks/10-preplan-anchor.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(10, "Attention Illuminates LLM Reasoning: the Preplan-and-Anchor Rhythm", "preplan-anchor");

    /// <summary>Sizes of one run (defaults W = 10, q = 10 %, γ = 1 are the spec's proposed ones [unverified]).</summary>
    public sealed record Config(int Layers, int DModel, int Heads, int Numbers, int SftSteps, int SftBatch, double SftLearningRate, int AnalysisTraces,
        int HeadsPerClass, int Window, double TopQ, double WaadJump, double Gamma, CreditStrategy[] Strategies, int Seeds, int GrpoSteps,
        int PromptsPerStep, int GroupSize, double GrpoLearningRate, double Clip, int EvalQuestions, int EvalEvery, int Seed) : IPaperConfig<Config>
    {
        /// <summary>CPU smoke: spec §4's 2 layers, d = 64; SFT short enough to leave headroom for RL; 3 seeds × 3 strategies × 20 GRPO steps.</summary>
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, Numbers: 4, SftSteps: 250, SftBatch: 32, SftLearningRate: 3e-3,
            AnalysisTraces: 32, HeadsPerClass: 2, Window: 10, TopQ: 0.1, WaadJump: 1.0, Gamma: 1.0,
            Strategies: [CreditStrategy.Uniform, CreditStrategy.Anchor, CreditStrategy.Preplan], Seeds: 3, GrpoSteps: 20, PromptsPerStep: 8,
            GroupSize: 8, GrpoLearningRate: 1e-5, Clip: 0.2, EvalQuestions: 256, EvalEvery: 5, Seed: 0) { Size = "smoke" };

        /// <summary>GPU: spec §4's 4 layers, d = 128, 300 GRPO steps × 5 seeds, all four strategies.</summary>
        public static Config Full => new(Layers: 4, DModel: 128, Heads: 8, Numbers: 6, SftSteps: 600, SftBatch: 64, SftLearningRate: 1e-3,
            AnalysisTraces: 256, HeadsPerClass: 4, Window: 10, TopQ: 0.1, WaadJump: 1.0, Gamma: 1.0,
            Strategies: [CreditStrategy.Uniform, CreditStrategy.Anchor, CreditStrategy.Preplan, CreditStrategy.Coupled], Seeds: 5, GrpoSteps: 300,
            PromptsPerStep: 16, GroupSize: 8, GrpoLearningRate: 1e-5, Clip: 0.2, EvalQuestions: 1024, EvalEvery: 20, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; "custom" once a field changes.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The task.</summary>
        public CountdownTrace Task => new CountdownTrace(Numbers).Validate();

        /// <summary>The policy: a TinyGpt with RoPE over the trace's vocabulary.</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, VocabSize: CountdownTrace.VocabSize, Positions: PositionKind.Rope, MaxLength: Task.Length);

        /// <summary>Checks the fields; an ArgumentException names the bad one.</summary>
        public Config Validate()
        {
            Guard.Positive(SftSteps, nameof(SftSteps)); Guard.Positive(SftBatch, nameof(SftBatch)); Guard.Positive(AnalysisTraces, nameof(AnalysisTraces));
            Guard.Positive(Window, nameof(Window)); Guard.Positive(Seeds, nameof(Seeds)); Guard.Positive(GrpoSteps, nameof(GrpoSteps));
            Guard.Positive(PromptsPerStep, nameof(PromptsPerStep)); Guard.Positive(EvalQuestions, nameof(EvalQuestions));
            Guard.Positive(EvalEvery, nameof(EvalEvery));
            if (GroupSize < 2) throw new ArgumentException($"GroupSize must be ≥ 2 (a group-relative advantage), got {GroupSize}.", nameof(GroupSize));
            if (HeadsPerClass < 1 || 2 * HeadsPerClass > Layers * Heads)
                throw new ArgumentException($"HeadsPerClass must be in 1 … {Layers * Heads / 2}, got {HeadsPerClass}.", nameof(HeadsPerClass));
            if (Strategies is null || Strategies.Length == 0 || !Strategies.Contains(CreditStrategy.Uniform))
                throw new ArgumentException("Strategies must include Uniform (the baseline).", nameof(Strategies));
            Model.Validate();
            Task.Validate();
            return this;
        }
    }

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static PreplanAnchorResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        var exactness = Exactness(config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: largest deviation {Num.Sci(exactness.Max)} (float64)");

        var task = config.Task;
        var evalQuestions = task.Questions(config.EvalQuestions, seed: 1_000_003 + config.Seed);
        torch.manual_seed(config.Seed);
        using var sft = new TinyGpt(config.Model);
        sft.to(device);
        progress?.Report($"SFT: {sft.ParameterCount:N0} parameters, {config.SftSteps} steps of {config.SftBatch} traces (K = {config.Numbers})");
        var history = Trainer.Fit(sft, step =>
        {
            using var traces = task.Traces(task.Questions(config.SftBatch, seed: config.Seed * 7_919 + step), device);
            return ResponseLoss(sft, traces, task.PromptLength);
        }, new TrainOptions(config.SftSteps, config.SftLearningRate, WarmupSteps: config.SftSteps / 10, ReportEvery: Math.Max(1, config.SftSteps / 2)),
            new InlineProgress<TrainProgress>(p => progress?.Report($"  SFT: {p}")));
        double sftAccuracy = Accuracy(sft, task, evalQuestions, device);
        clock.Lap("SFT");
        progress?.Report($"SFT greedy accuracy {sftAccuracy:P1} on {evalQuestions.Length} held-out questions");

        var analysis = Analyse(sft, config, device);
        clock.Lap("analysis");
        progress?.Report($"rhythm: local heads {string.Join(" ", analysis.Local.Select(h => $"L{h.Layer}H{h.Head}"))}, global " +
            $"{string.Join(" ", analysis.Global.Select(h => $"L{h.Layer}H{h.Head}"))}");

        var start = sft.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        var runs = new List<GrpoRun>();
        try
        {
            foreach (var strategy in config.Strategies)
                for (int s = 0; s < config.Seeds; s++)
                {
                    runs.Add(TrainGrpo(start, strategy, config.Seed + s, config, analysis, evalQuestions, device));
                    var r = runs[^1];
                    progress?.Report($"GRPO {strategy}, seed {r.Seed}: accuracy {r.Accuracy[0]:P1} → {r.Accuracy[^1]:P1}, mean reward of the last step " +
                        $"{r.Reward[^1]:F2} ({r.Seconds:F1} s)");
                }
        }
        finally
        {
            foreach (var t in start.Values) t.Dispose();
        }
        clock.Lap("GRPO");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new PreplanAnchorResult(config, exactness, history.Losses, sftAccuracy, analysis, runs, clock.Seconds, clock.Phases);
    }

    /// <summary>Cross-entropy on the response tokens only (the prompt is given).</summary>
    static Tensor ResponseLoss(TinyGpt model, Tensor traces, int promptLength)
    {
        long n = traces.size(1) - promptLength;
        var logits = model.call(traces).narrow(1, promptLength - 1, n);
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), traces.narrow(1, promptLength, n).reshape(-1));
    }

    /// <summary>Greedy accuracy (the final answer right) on <paramref name="questions"/>.</summary>
    public static double Accuracy(TinyGpt model, CountdownTrace task, IReadOnlyList<int[]> questions, Device device)
    {
        using var scope = NewDisposeScope();
        bool training = model.training;
        model.eval();
        using var prompts = task.Prompts(questions, device);
        using var sampled = Sampling.Generate(model, prompts, task.ResponseLength, temperature: 0);
        var responses = sampled.Tokens.narrow(1, task.PromptLength, task.ResponseLength).cpu().data<long>().ToArray();
        double correct = 0;
        for (int i = 0; i < questions.Count; i++)
            correct += task.Reward(responses.AsSpan(i * task.ResponseLength, task.ResponseLength).ToArray(), questions[i]);
        model.train(training);
        return correct / questions.Count;
    }

    /// <summary>Patterns [L, B, H, T, T] of the model on <paramref name="tokens"/> [B, T] (no gradient).</summary>
    static Tensor Patterns(TinyGpt model, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (_, cache) = model.RunWithCache(tokens, n => n.EndsWith("attn.hook_pattern", StringComparison.Ordinal));
        using (cache)
            return torch.stack(Enumerable.Range(0, model.LayerCount).Select(l => cache["pattern", l]).ToArray()).MoveToOuterDisposeScope();
    }

    static RhythmAnalysis Analyse(TinyGpt model, Config c, Device device)
    {
        using var scope = NewDisposeScope();
        var task = c.Task;
        var questions = task.Questions(c.AnalysisTraces, seed: 2_000_003 + c.Seed);
        var traces = task.Traces(questions, device);
        var patterns = Patterns(model, traces);                                          // [L, B, H, T, T]
        var distance = AttentionRhythm.MeanDistance(patterns);
        var (local, global) = AttentionRhythm.ClassifyHeads(distance, c.HeadsPerClass);
        var localPattern = AttentionRhythm.MeanOver(patterns, local);                    // [B, T, T]
        var globalPattern = AttentionRhythm.MeanOver(patterns, global);
        var waad = AttentionRhythm.Waad(localPattern, c.Window).to(ScalarType.Float64).cpu();   // [B, T]
        var fai = AttentionRhythm.Fai(globalPattern).to(ScalarType.Float64).cpu();
        int p = task.PromptLength, n = task.ResponseLength;
        var w = new double[n];
        var f = new double[n];
        var preplanRate = new double[n];
        var anchorRate = new double[n];
        var fCount = new int[n];
        for (int b = 0; b < c.AnalysisTraces; b++)
        {
            var set = AttentionRhythm.Critical(waad[b], fai[b], p, c.TopQ, c.WaadJump);
            var wb = waad[b].data<double>().ToArray();
            var fb = fai[b].data<double>().ToArray();
            for (int i = 0; i < n; i++)
            {
                w[i] += wb[p + i] / c.AnalysisTraces;
                if (double.IsFinite(fb[p + i])) { f[i] += fb[p + i]; fCount[i]++; }
                preplanRate[i] += (set.Preplan[p + i] ? 1.0 : 0.0) / c.AnalysisTraces;
                anchorRate[i] += (set.Anchor[p + i] ? 1.0 : 0.0) / c.AnalysisTraces;
            }
        }
        for (int i = 0; i < n; i++) f[i] = fCount[i] == 0 ? double.NaN : f[i] / fCount[i];
        return new RhythmAnalysis(ToArray(distance), local, global, task.Roles, w, f, preplanRate, anchorRate, ToArray(localPattern[0]),
            ToArray(globalPattern[0]), traces[0].cpu().data<long>().ToArray(), c.AnalysisTraces);
    }

    static GrpoRun TrainGrpo(IReadOnlyDictionary<string, Tensor> start, CreditStrategy strategy, int seed, Config c, RhythmAnalysis analysis,
        IReadOnlyList<int[]> evalQuestions, Device device)
    {
        var sw = Stopwatch.StartNew();
        var task = c.Task;
        torch.manual_seed(seed);
        using var policy = new TinyGpt(c.Model);
        policy.to(device);
        policy.load_state_dict(start.ToDictionary(p => p.Key, p => p.Value));
        var generator = new Generator((ulong)(seed * 104_729 + 17), device);
        var rewards = new List<double>();
        var evalSteps = new List<int> { 0 };
        var accuracy = new List<double> { Accuracy(policy, task, evalQuestions, device) };
        double criticalTokens = 0, allTokens = 0, criticalMs = 0, firstLogRatio = double.NaN;
        int p = task.PromptLength, n = task.ResponseLength;
        Trainer.Fit(policy, step =>
        {
            if (step > 0 && step % c.EvalEvery == 0)
            {
                evalSteps.Add(step);
                accuracy.Add(Accuracy(policy, task, evalQuestions, device));
            }
            // Rollouts: G samples of each of P prompts (the same prompts for every strategy at a given seed and step).
            var questions = task.Questions(c.PromptsPerStep, seed: seed * 7_919 + step).SelectMany(q => Enumerable.Repeat(q, c.GroupSize)).ToArray();
            using var prompts = task.Prompts(questions, device);
            policy.eval();
            using var rollout = Sampling.Generate(policy, prompts, n, temperature: 1, generator: generator);
            policy.train();
            var responses = rollout.Tokens.narrow(1, p, n).cpu().data<long>().ToArray();
            var r = Enumerable.Range(0, questions.Length).Select(i => task.Reward(responses.AsSpan(i * n, n).ToArray(), questions[i])).ToArray();
            rewards.Add(r.Average());
            var advantages = Grpo.SequenceAdvantages(torch.tensor(r, dtype: ScalarType.Float32, device: device), c.GroupSize);
            var flags = new bool[questions.Length * n];
            if (strategy != CreditStrategy.Uniform)
            {
                // Critical tokens from the rollout policy's own attention (no gradient), with the heads classed on the SFT model.
                var t0 = Stopwatch.GetTimestamp();
                using var patterns = Patterns(policy, rollout.Tokens);
                using var waad = AttentionRhythm.Waad(AttentionRhythm.MeanOver(patterns, analysis.Local), c.Window).cpu();
                using var fai = AttentionRhythm.Fai(AttentionRhythm.MeanOver(patterns, analysis.Global)).cpu();
                for (int i = 0; i < questions.Length; i++)
                {
                    var set = AttentionRhythm.Critical(waad[i], fai[i], p, c.TopQ, c.WaadJump).For(strategy);
                    for (int t = 0; t < n; t++) flags[i * n + t] = set[p + t];
                }
                criticalMs += Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
            criticalTokens += flags.Count(f => f);
            allTokens += flags.Length;
            var weights = Grpo.TokenWeights(torch.tensor(flags, device: device).reshape(questions.Length, n), c.Gamma);
            var tokenAdvantages = Grpo.TokenAdvantages(advantages, weights);
            var logProbs = Sampling.TokenLogProbs(policy, rollout.Tokens, p);
            if (step == 0) firstLogRatio = (logProbs.detach() - rollout.LogProbs).abs().max().item<float>();
            return Grpo.Loss(logProbs, rollout.LogProbs, tokenAdvantages, c.Clip);
        }, new TrainOptions(c.GrpoSteps, c.GrpoLearningRate, WeightDecay: 0, MinLearningRateRatio: 1.0, ReportEvery: c.GrpoSteps));
        evalSteps.Add(c.GrpoSteps);
        accuracy.Add(Accuracy(policy, task, evalQuestions, device));
        generator.Dispose();
        return new GrpoRun(strategy, seed, rewards.ToArray(), evalSteps.ToArray(), accuracy.ToArray(), allTokens == 0 ? 0 : criticalTokens / allTokens,
            criticalMs / c.GrpoSteps, firstLogRatio, sw.Elapsed.TotalSeconds);
    }

    /// <summary>The exactness phase (float64, T = 9, window 3): twins and the spec's §6 identities.</summary>
    public static RhythmExactness Exactness(int seed = 0)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        const int T = 9, W = 3;
        var logits = torch.randn(T, T, generator: gen, dtype: float64);
        var causal = torch.ones(T, T, dtype: ScalarType.Bool).tril();
        var a = logits.masked_fill(causal.logical_not(), double.NegativeInfinity).softmax(-1);
        var arr = ToArray(a);
        double waadTwin = MaxGap(AttentionRhythm.Waad(a, W), PreplanAnchorNaive.Waad(arr, W));
        double faiTwin = Math.Max(MaxGap(AttentionRhythm.Fai(a, excludeFirst: true), PreplanAnchorNaive.Fai(arr, true)),
            MaxGap(AttentionRhythm.Fai(a, excludeFirst: false), PreplanAnchorNaive.Fai(arr, false)));
        // Attending to itself only: WAAD = 0.
        double selfOnly = AttentionRhythm.Waad(torch.eye(T, dtype: float64), W).abs().max().item<double>();
        // A_{t,t−k} = 1 (rows t ≥ k; earlier rows attend to 0): WAAD_t = min(k, W).
        const int K = 5;
        var shift = torch.zeros(T, T, dtype: float64);
        for (int t = 0; t < T; t++) shift[t, Math.Max(0, t - K)] = torch.tensor(1.0);
        var expectedShift = Enumerable.Range(0, T).Select(t => (double)Math.Min(t - Math.Max(0, t - K), W)).ToArray();
        double shiftGap = MaxGap(AttentionRhythm.Waad(shift, W), expectedShift);
        // A column with constant a below the diagonal: FAI = a (first column kept).
        const double Constant = 0.125;
        var column = torch.zeros(T, T, dtype: float64);
        for (int t = 0; t < T; t++)
        {
            column[t, t] = torch.tensor(1.0);
            if (t > 3) { column[t, 3] = torch.tensor(Constant); column[t, t] = torch.tensor(1 - Constant); }
        }
        double constantGap = Math.Abs(AttentionRhythm.Fai(column, excludeFirst: false)[3].item<double>() - Constant);
        // γ = 0: token advantages equal the sequence advantage; Σ_t w_t = n after renormalisation.
        var rewards = torch.tensor(new[] { 1.0, 0, 0, 1, 1, 1, 0, 1 }, dtype: ScalarType.Float32);
        var seqAdv = Grpo.SequenceAdvantages(rewards, 4);
        var flags = torch.rand(8, 7, generator: gen).gt(0.6);
        double gammaZero = (Grpo.TokenAdvantages(seqAdv, Grpo.TokenWeights(flags, 0)) - seqAdv.unsqueeze(1)).abs().max().item<float>();
        double weightSum = (Grpo.TokenWeights(flags, 1.5).sum(1) - 7).abs().max().item<float>();
        double advTwin = MaxGap(seqAdv.to(float64), PreplanAnchorNaive.SequenceAdvantages(rewards.to(float64).data<double>().ToArray(), 4));
        // The clipped loss on made-up log-probabilities (ratios away from 1, so the clip acts) against the loop form.
        var logp = torch.randn(8, 7, generator: gen, dtype: float64).mul(0.3).sub(1);
        var old = logp + torch.randn(8, 7, generator: gen, dtype: float64).mul(0.3);
        var loss = Grpo.Loss(logp, old, Grpo.TokenAdvantages(seqAdv.to(float64), Grpo.TokenWeights(flags, 1.5).to(float64)), 0.2).item<double>();
        var flagArr = new bool[8, 7];
        var fl = flags.data<bool>().ToArray();
        for (int i = 0; i < 8; i++) for (int t = 0; t < 7; t++) flagArr[i, t] = fl[i * 7 + t];
        double naive = PreplanAnchorNaive.Loss(ToArray(logp), ToArray(old), seqAdv.to(float64).data<double>().ToArray(), flagArr, 1.5, 0.2);
        return new RhythmExactness(waadTwin, faiTwin, selfOnly, shiftGap, constantGap, gammaZero, weightSum, advTwin, Math.Abs(loss - naive));
    }

    static double MaxGap(Tensor fast, double[] naive)
    {
        var f = fast.to(ScalarType.Float64).cpu().data<double>().ToArray();
        double gap = 0;
        for (int i = 0; i < f.Length; i++)
        {
            if (double.IsNaN(f[i]) != double.IsNaN(naive[i])) return double.PositiveInfinity;          // NaN where the other has a number
            if (!double.IsNaN(f[i])) gap = Math.Max(gap, Math.Abs(f[i] - naive[i]));
        }
        return gap;
    }

    static double[,] ToArray(Tensor m)
    {
        var x = m.to(ScalarType.Float64).cpu();
        long r = x.shape[0], k = x.shape[1];
        var d = x.data<double>().ToArray();
        var a = new double[r, k];
        for (int i = 0; i < r; i++) for (int j = 0; j < k; j++) a[i, j] = d[i * k + j];
        return a;
    }
}
