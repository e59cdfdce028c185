using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Hcam;

/// <summary>
/// P20's experiment, the spec's supervised stand-in for the paper's RL recall tasks: an exactness phase on toy tensors
/// (the gathered read vs <see cref="HcamNaive"/> with gradients, C = 1 and k = M vs an explicit softmax, top-k weights,
/// stop-gradient, the pattern hook), then three TinyGpts of the same width, depth and parameter count trained on the same
/// batches of <see cref="HcamRecallTask"/> with D_train distractor chunks — local attention only (window = C), full causal
/// attention with RoPE, and local attention + an HCAM layer — read at D ∈ {D_train, 2×, 4×, 8×}.
/// </summary>
public sealed class HcamExperiment : IPaperExperiment<HcamExperiment.Config, HcamResult>
{
    HcamExperiment() { }

    /// <summary>P20 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(20, "HCAM: towards mental time travel, a hierarchical memory for RL agents", "hcam");

    public const string LocalName = "local only", FullName = "full attention", HcamName = "local + HCAM";

    /// <summary>
    /// One run. Smoke (the spec's §4): C = 8, E = 4, D_train = 8, d = 48, 4 heads, 2 layers, k = 4, batch 32, tested at D ∈ {8, 16, 32, 64};
    /// the three models are loaded from the shipped checkpoints (<see cref="HcamCheckpoint"/>, <see cref="HcamCheckpoint.Steps"/> steps
    /// each, made by lib/AttentionLab.Checkpoints) because training them does not fit the 60 s notebook. Full (GPU): C = 16, E = 8,
    /// 3000 steps trained here, D up to 256. <see cref="FromCheckpoints"/> = false trains from scratch at any size.
    /// </summary>
    /// <param name="Task">the episode generator (C, E, vocabulary).</param>
    /// <param name="TrainDistractors">D_train.</param>
    /// <param name="TestDistractors">D at test (the first is D_train).</param>
    /// <param name="DModel">d.</param>
    /// <param name="Heads">H.</param>
    /// <param name="Layers">layers (HCAM reads memory in the last one).</param>
    /// <param name="TopK">k.</param>
    /// <param name="Steps">training steps (every model).</param>
    /// <param name="BatchSize">episodes per step.</param>
    /// <param name="LearningRate">AdamW peak rate.</param>
    /// <param name="EvalEpisodes">test episodes per D.</param>
    /// <param name="EvalBatch">episodes per forward pass at test.</param>
    /// <param name="Seed">seed of weights and data.</param>
    /// <param name="TimingRepeats">repeats of the per-token timing.</param>
    public sealed record Config(HcamRecallTask Task, int TrainDistractors, int[] TestDistractors, int DModel, int Heads, int Layers, int TopK,
        int Steps, int BatchSize, double LearningRate, int EvalEpisodes, int EvalBatch, int Seed, int TimingRepeats) : IPaperConfig<Config>
    {
        public static Config Smoke => new(new HcamRecallTask(ChunkSize: 8, Events: 4), TrainDistractors: 8, TestDistractors: new[] { 8, 16, 32, 64 },
            DModel: 48, Heads: 4, Layers: 2, TopK: 4, Steps: HcamCheckpoint.Steps, BatchSize: 32, LearningRate: 3e-3, EvalEpisodes: 64, EvalBatch: 8,
            Seed: 0, TimingRepeats: 3) { Size = "smoke", FromCheckpoints = true };

        public static Config Full => new(new HcamRecallTask(ChunkSize: 16, Events: 8, Tags: 16, Values: 32, Fillers: 32), TrainDistractors: 16,
            TestDistractors: new[] { 16, 32, 64, 128, 256 }, DModel: 64, Heads: 4, Layers: 2, TopK: 4, Steps: 3000, BatchSize: 32, LearningRate: 1e-3,
            EvalEpisodes: 512, EvalBatch: 32, Seed: 0, TimingRepeats: 5) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>
        /// Load the three models from the shipped checkpoints (<see cref="HcamCheckpoint"/>; smoke) instead of training them here
        /// (full, custom). The store checks <see cref="ModelConfig"/> against the manifest: a config that differs from the one the
        /// files were trained for is refused with the regeneration command.
        /// </summary>
        public bool FromCheckpoints { get; init; }

        /// <summary>What a checkpoint of <paramref name="model"/> made with this config records (model, task, sizes, budget).</summary>
        public HcamModelConfig ModelConfig(string model) => new(model, Task, TrainDistractors, DModel, Heads, Layers, TopK, Steps, BatchSize, LearningRate);

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The backbone all three share (token inputs, MLP ratio 2, no absolute positions: the mixers carry theirs).</summary>
        public TinyGptConfig Gpt(PositionKind positions) => new(Layers: Layers, DModel: DModel, Heads: Heads, MlpRatio: 2, VocabSize: Task.VocabSize,
            Positions: positions);
    }

    /// <summary>A model of the comparison, freshly initialised from <paramref name="seed"/>.</summary>
    public static TinyGpt Build(string name, Config config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        torch.manual_seed(seed);
        int c = config.Task.ChunkSize, last = config.Layers - 1;
        return name switch
        {
            LocalName => new TinyGpt(config.Gpt(PositionKind.None), _ => new HcamMixer(config.DModel, config.Heads, c, topK: 0)),
            FullName => new TinyGpt(config.Gpt(PositionKind.Rope)),
            HcamName => new TinyGpt(config.Gpt(PositionKind.None), layer => new HcamMixer(config.DModel, config.Heads, c, layer == last ? config.TopK : 0)),
            _ => throw new ArgumentException($"unknown model '{name}' (expected {LocalName}, {FullName} or {HcamName}).", nameof(name)),
        };
    }

    /// <summary>
    /// Trains <paramref name="model"/> (one of the comparison, built by <see cref="Build"/>) for config.Steps steps of AdamW on the
    /// seeded batches every model sees (step i's batch depends only on the seed and i), with 10 % warm-up and cosine decay.
    /// </summary>
    public static TrainHistory Train(TinyGpt model, Config config, Device device, IProgress<TrainProgress>? progress = null,
        Func<int, IReadOnlyDictionary<string, double>>? evaluate = null, int stepsPerEpoch = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        var options = new TrainOptions(config.Steps, config.LearningRate, WarmupSteps: config.Steps / 10, StepsPerEpoch: stepsPerEpoch,
            ReportEvery: Math.Max(1, config.Steps / 3));
        return Trainer.Fit(model, step =>
        {
            using var batch = config.Task.Generate(config.BatchSize, config.TrainDistractors, config.Seed * 1_000_003 + step, device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, progress, evaluate);
    }

    /// <summary>Exactness, then load (smoke) or train the three models on the same batches and read them at every D.</summary>
    public static HcamResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.TestDistractors.Length == 0) throw new ArgumentException("TestDistractors must not be empty.", nameof(config));
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: read vs naive {Num.Sci(exactness.ReadMaxAbs)} (grads {Num.Sci(exactness.GradMaxAbs)}), C = 1 & k = M vs softmax " +
                         $"{Num.Sci(exactness.SoftmaxMaxAbs)}  [{clock.Seconds:F1} s]");
        var rows = new List<HcamRow>();
        var losses = new Dictionary<string, IReadOnlyList<double>>();
        var timings = new List<HcamTiming>();
        HcamHeatmap? heatmap = null;
        var sources = new Dictionary<string, string>();
        foreach (var name in new[] { LocalName, FullName, HcamName })
        {
            TinyGpt built;
            if (config.FromCheckpoints)
            {
                (built, var entry) = HcamCheckpoint.Load(name, config, device);
                sources[name] = $"checkpoint {entry.Name} ({entry.Steps} steps, seed {entry.Seed}, final loss {entry.FinalLoss:G3})";
                progress?.Report($"loaded {name} ({built.ParameterCount:N0} parameters) from {sources[name]}");
                clock.Lap($"load {name}");
            }
            else
            {
                built = Build(name, config, config.Seed);
                built.to(device);
                progress?.Report($"training {name} ({built.ParameterCount:N0} parameters)");
                var history = Train(built, config, device, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {name}: {p}")));
                losses[name] = history.Losses;
                sources[name] = $"trained here ({config.Steps} steps, seed {config.Seed}, final loss {history.Losses[^1]:G3})";
                clock.Lap($"train {name}");
            }
            using var model = built;
            model.eval();
            foreach (int d in config.TestDistractors)
            {
                var row = Evaluate(model, name, config, d, device);
                rows.Add(row);
                progress?.Report($"  {name}: D = {d,3} (T = {config.Task.Length(d)})  accuracy {row.Accuracy:P1}" +
                                 (row.TopOneHit is { } hit ? $"  top-1 chunk hit {hit:P1}" : "") + $"  [{clock.Seconds:F1} s]");
            }
            if (name == HcamName) heatmap = Heatmap(model, config, config.TestDistractors.Max() >= 32 ? 32 : config.TestDistractors.Max(), device);
            timings.AddRange(Timing(model, name, config, device));
            clock.Lap($"test {name}");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new HcamResult(config, exactness, rows, losses, heatmap!, timings, clock.Seconds, clock.Phases, sources);
    }

    /// <summary>
    /// The exactness phase on float64 toy tensors: B = 2, T = 23 (five chunks of C = 4 and three tokens), H = 2, D = 5, Dv = 3,
    /// k = 2: the gathered read vs the loop twin (outputs and the gradients of q, k, v); C = 1 and k = M against an explicit
    /// softmax-weighted sum of the values; the chosen weights' sums and the hidden chunks; no gradient into the stored
    /// activations; the dense pattern (the hook's analogue) times v vs the read.
    /// </summary>
    public static HcamExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64, generator: gen).to(device);
        const int T = 23, C = 4, K = 2;
        var (q, k, v) = (R(2, T, 2, 5).requires_grad_(), R(2, T, 2, 5).requires_grad_(), R(2, T, 2, 3).requires_grad_());
        var fast = HcamAttention.Read(q, HcamAttention.Summaries(k, C), k, v, C, K);
        var naive = HcamNaive.Read(q, HcamNaive.Summaries(k, C), k, v, C, K);
        var g = R(2, T, 2, 3);
        var gf = Gradients.Of([(fast.Z * g).sum()], [q, k, v]);
        var gn = Gradients.Of([(naive * g).sum()], [q, k, v]);
        double readErr = (fast.Z - naive).abs().max().item<double>();
        double gradErr = gf.Zip(gn, (a, b) => (a - b).abs().max().item<double>()).Max();
        var stopGrad = StopGradientLeak(device, seed);                                  // the HCAM part at t depends on x only through x_t

        // C = 1, k = M: z_t = Σ_{s<t} softmax_s(Σ_h q_th·k_sh/√(HD)) v_s — a causal softmax over strictly earlier positions.
        using (torch.no_grad())
        {
            var one = HcamAttention.Read(q, HcamAttention.Summaries(k, 1), k, v, 1, T).Z;
            var logits = torch.einsum("bthd,bshd->bts", q, k) / Math.Sqrt(2 * 5);
            var earlier = torch.ones(T, T, dtype: ScalarType.Bool, device: device).tril(-1);
            var p = ReferenceAttention.Normalize(logits.masked_fill(earlier.logical_not(), double.NegativeInfinity), earlier.any(-1)).Probabilities;
            var explicitSum = torch.einsum("bts,bshv->bthv", p, v);
            double softmaxErr = (one - explicitSum).abs().max().item<double>();

            // Weights: sum to 1 where ≥ 1 chunk is visible (0 where none), hidden chunks never chosen while ≥ k are visible.
            var visible = HcamAttention.Visible(T, T / C, C, device);                       // [T, M]
            var count = visible.sum(1);                                                     // visible chunks per t
            var sums = fast.Weights.sum(-1);
            double sumDev = (sums - (count > 0).to(ScalarType.Float64)).abs().max().item<double>();
            var chosenVisible = visible.unsqueeze(0).expand(2, T, T / C).gather(2, fast.Selected);   // [B, T, k]
            var enough = (count >= K).view(1, T, 1).expand_as(chosenVisible);
            long hiddenChosen = (chosenVisible.logical_not() & enough).sum().item<long>();
            long hiddenWeighted = (chosenVisible.logical_not() & (fast.Weights > 0)).sum().item<long>();

            // The pattern hook's analogue: A·v equals the read.
            var dense = HcamAttention.DensePattern(fast, T, C);
            var viaPattern = dense.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);
            double patternErr = (viaPattern - fast.Z).abs().max().item<double>();

            return new HcamExactness(readErr, gradErr, softmaxErr, sumDev, hiddenChosen + hiddenWeighted, patternErr, stopGrad.Leak, stopGrad.QueryGrad,
                $"B = 2, T = {T}, H = 2, D = 5, Dv = 3, C = {C}, k = {K} ({T / C} chunks + {T % C} tokens)");
        }
    }

    /// <summary>
    /// An HcamMixer (float64, d = 12, C = 3, k = 2) on x [1, 17, d]: the gradient of its memory read at t = 16 with respect to x.
    /// Leak = max |∂/∂x_s| over s ≠ t (memory keys and contents are stored activations: 0); QueryGrad = |∂/∂x_t| (the query's
    /// path, nonzero).
    /// </summary>
    public static (double Leak, double QueryGrad) StopGradientLeak(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        using var mixer = new HcamMixer(12, 2, chunkSize: 3, topK: 2);
        mixer.to(ScalarType.Float64).to(device);
        var x = torch.randn(new long[] { 1, 17, 12 }, dtype: ScalarType.Float64, generator: new Generator((ulong)seed + 7)).to(device).requires_grad_();
        var (q, _, _) = mixer.Project(x);
        var z = mixer.MemoryRead(q, x);
        var grad = Gradients.Of([z.select(1, 16).sum()], [x])[0];
        double leak = grad.narrow(1, 0, 16).abs().max().item<double>();
        double query = grad.select(1, 16).abs().max().item<double>();
        return (leak, query);
    }

    /// <summary>Accuracy on the queries at D distractor chunks, and (HCAM) how often the heaviest chosen chunk is the queried event.</summary>
    public static HcamRow Evaluate(TinyGpt model, string name, Config config, int distractors, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        var task = config.Task;
        int c = task.ChunkSize, chunks = task.Events + distractors;
        var memory = model.Blocks[^1].Mixer as HcamMixer;
        if (memory is { TopK: 0 }) memory = null;
        long correct = 0, scored = 0, hits = 0, queries = 0;
        for (int done = 0; done < config.EvalEpisodes; done += config.EvalBatch)
        {
            int count = Math.Min(config.EvalBatch, config.EvalEpisodes - done);
            using var batch = task.Generate(count, distractors, 7_000_003 + 1000 * distractors + done, device);
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            if (memory is not null) memory.KeepLastRead = true;
            var logits = model.call(batch.Tokens);
            var mask = batch.Labels.ne(TokenBatch.Ignore);
            correct += logits.argmax(-1).eq(batch.Labels).logical_and(mask).sum().item<long>();
            scored += mask.sum().item<long>();
            if (memory?.LastRead is { } read)
            {
                var tokens = batch.Tokens.cpu().data<long>().ToArray();
                var best = read.Selected.gather(2, read.Weights.argmax(-1, keepdim: true)).squeeze(-1).cpu().data<long>().ToArray();   // [n, T]
                int length = task.Length(distractors);
                for (int n = 0; n < count; n++)
                    for (int i = 0; i < task.Events; i++)
                    {
                        int at = chunks * c + i;
                        long tag = tokens[n * length + at];
                        int target = Enumerable.Range(0, chunks).First(j => tokens[n * length + j * c] == tag);
                        hits += best[n * length + at] == target ? 1 : 0;
                        queries++;
                    }
                memory.KeepLastRead = false;
            }
        }
        if (memory is not null) memory.KeepLastRead = false;
        return new HcamRow(name, distractors, task.Length(distractors), distractors / (double)config.TrainDistractors,
            task.Length(distractors) / (double)task.Length(config.TrainDistractors), correct / (double)Math.Max(1, scored),
            memory is null ? null : hits / (double)Math.Max(1, queries));
    }

    /// <summary>The coarse weights w over chunks for the E queries of one test episode at D distractors (the "time travel" picture).</summary>
    public static HcamHeatmap Heatmap(TinyGpt model, Config config, int distractors, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        var mixer = model.Blocks[^1].Mixer as HcamMixer ?? throw new ArgumentException("the model's last mixer is not an HcamMixer.", nameof(model));
        var task = config.Task;
        int c = task.ChunkSize, chunks = task.Events + distractors;
        using var batch = task.Generate(1, distractors, 99_991, device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        mixer.KeepLastRead = true;
        model.call(batch.Tokens);
        var read = mixer.LastRead!;
        mixer.KeepLastRead = false;
        var tokens = batch.Tokens[0].cpu().data<long>().ToArray();
        var rows = new List<double[]>();
        var labels = new List<string>();
        var targets = new List<int>();
        for (int i = 0; i < task.Events; i++)
        {
            int at = chunks * c + i;
            var dense = new double[chunks];
            var sel = read.Selected[0, at].cpu().data<long>().ToArray();
            var w = read.Weights[0, at].to(ScalarType.Float64).cpu().data<double>().ToArray();
            for (int j = 0; j < sel.Length; j++) dense[sel[j]] += w[j];
            rows.Add(dense);
            labels.Add($"query {i + 1} (tag {tokens[at]})");
            targets.Add(Enumerable.Range(0, chunks).First(j => tokens[j * c] == tokens[at]));
        }
        return new HcamHeatmap(distractors, labels, rows, targets);
    }

    /// <summary>
    /// Per-token forward time of the model's last mixer (no gradients, one sequence) at the training length and the longest test
    /// length, and the state bytes it would hold to decode that many tokens (KV cache for full attention, window for local,
    /// window + stored activations + summaries for HCAM).
    /// </summary>
    static IEnumerable<HcamTiming> Timing(TinyGpt model, string name, Config config, Device device)
    {
        var mixer = model.Blocks[^1].Mixer;
        var lengths = new[] { config.Task.Length(config.TrainDistractors), config.Task.Length(config.TestDistractors.Max()) };
        using var noGrad = torch.no_grad();
        foreach (int t in lengths)
        {
            using var scope = NewDisposeScope();
            var x = torch.randn(new long[] { 1, t, config.DModel }, generator: new Generator((ulong)config.Seed + 5)).to(device);
            var time = Benchmark.Time(() => { using var s = NewDisposeScope(); mixer.call(x); }, warmup: 1, repeats: config.TimingRepeats, device: device);
            long bytes = mixer switch
            {
                HcamMixer h => h.StateBytes(t),
                _ => 2L * t * config.DModel * sizeof(float),                                 // K and V per position
            };
            yield return new HcamTiming(name, t, time.MedianMs * 1000.0 / t, bytes);
        }
    }
}
