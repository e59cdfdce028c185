using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// P32's experiment, [ours] throughout (the paper gives no equations; this is the spec's operationalisation, not a reproduction):
/// an exactness phase on float64 toy tensors (the masked read vs its FIFO-queue twin with gradients, gate closed = backbone,
/// causality, buffer capacity and order), then TinyGpts with a sliding-window backbone trained on the same batches of
/// <see cref="RareFactsTask"/> — the SWA backbone (its MLP widened to the reweaving model's parameter count), the backbone +
/// reweaving, and (full size only) full causal attention as an upper bound — read at several fact-to-query distances.
/// </summary>
public sealed class MemoryReweavingExperiment : IPaperExperiment<MemoryReweavingExperiment.Config, MemoryReweavingResult>
{
    MemoryReweavingExperiment() { }

    /// <summary>P32 in the catalogue (notebook notebooks/32-memory-reweaving.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(32, "Contextual Memory Reweaving", "memory-reweaving");

    public const string BackboneName = "SWA backbone", ReweaveName = "SWA + reweaving [ours]", FullName = "full attention";

    /// <summary>
    /// One run. Smoke: d = 32, L = 3, T = 128, window 16, 2 models × 250 steps of batch 8 — the spec's §4 smoke (d = 64, T = 256,
    /// window 32) took about 6 minutes on the shared CPU, so width, length and window are halved (docs/decisions.md). Full (GPU):
    /// d = 256, L = 6, T = 2048, 3 models × 4000 steps.
    /// </summary>
    /// <param name="Task">the fact generator (T, facts, vocabulary).</param>
    /// <param name="DModel">d.</param>
    /// <param name="Heads">H.</param>
    /// <param name="Layers">L.</param>
    /// <param name="Window">W: the backbone's window in keys.</param>
    /// <param name="Capacity">S: buffer slots per source layer.</param>
    /// <param name="SourceLayers">𝓛 (0-based).</param>
    /// <param name="TargetLayer">L* (0-based; ≥ every source layer).</param>
    /// <param name="Steps">training steps (every model).</param>
    /// <param name="BatchSize">sequences per step.</param>
    /// <param name="LearningRate">AdamW peak rate.</param>
    /// <param name="Distances">fact-to-query distances read at test.</param>
    /// <param name="EvalSequences">test sequences per distance.</param>
    /// <param name="IncludeFullAttention">train full attention as the upper bound (spec: full size only).</param>
    /// <param name="Seed">seed of weights and data.</param>
    /// <param name="TimingRepeats">repeats of the per-token timing.</param>
    public sealed record Config(RareFactsTask Task, int DModel, int Heads, int Layers, int Window, int Capacity, int[] SourceLayers, int TargetLayer,
        int Steps, int BatchSize, double LearningRate, int[] Distances, int EvalSequences, bool IncludeFullAttention, int Seed, int TimingRepeats)
        : IPaperConfig<Config>
    {
        public static Config Smoke => new(new RareFactsTask(Length: 128), DModel: 32, Heads: 2, Layers: 3, Window: 16, Capacity: 112,
            SourceLayers: new[] { 1, 2 }, TargetLayer: 2, Steps: 250, BatchSize: 8, LearningRate: 3e-3, Distances: new[] { 4, 12, 32, 64, 112 },
            EvalSequences: 64, IncludeFullAttention: false, Seed: 0, TimingRepeats: 3) { Size = "smoke" };

        public static Config Full => new(new RareFactsTask(Length: 2048, Facts: 8, Keys: 64, Values: 32, Fillers: 64), DModel: 256, Heads: 8, Layers: 6,
            Window: 32, Capacity: 2016, SourceLayers: new[] { 2, 4 }, TargetLayer: 5, Steps: 4000, BatchSize: 16, LearningRate: 1e-3,
            Distances: new[] { 8, 24, 128, 512, 1024, 2000 }, EvalSequences: 256, IncludeFullAttention: true, Seed: 0, TimingRepeats: 5) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The shared backbone (token inputs, sinusoidal positions) with MLP ratio <paramref name="mlpRatio"/>.</summary>
        public TinyGptConfig Gpt(double mlpRatio = 4) => new(Layers: Layers, DModel: DModel, Heads: Heads, MlpRatio: mlpRatio, VocabSize: Task.VocabSize,
            Positions: PositionKind.Sinusoidal, MaxLength: Task.Length);
    }

    /// <summary>
    /// The SWA backbone's MLP ratio that gives it the reweaving model's parameter count: the reweaver's parameters spread over
    /// the L MLPs (each hidden unit costs 2d + 1).
    /// </summary>
    public static double BackboneMlpRatio(Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        long extra = ReweaverParameters(config.DModel, config.SourceLayers.Length);
        long units = (long)Math.Round(extra / (double)(config.Layers * (2L * config.DModel + 1)));
        return (config.Gpt().MlpDim + units) / (double)config.DModel;
    }

    /// <summary>Parameters of a <see cref="MemoryReweaver"/>: W_q, W_o (d²), W_k^ℓ, W_v^ℓ (2|𝓛|d²), W_g (2d² + d), w_λ (|𝓛|).</summary>
    public static long ReweaverParameters(int d, int sources) => (2L + 2L * sources) * d * d + 2L * d * d + d + sources;

    /// <summary>A model of the comparison, freshly initialised from <paramref name="seed"/>; the buffer (reweaving only) is returned for disposal.</summary>
    public static (TinyGpt Model, LayeredStateBuffer? Buffer) Build(string name, Config config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        torch.manual_seed(seed);
        switch (name)
        {
            case BackboneName:
                return (new TinyGpt(config.Gpt(BackboneMlpRatio(config)), l => new MemoryReweavingMixer(config.DModel, config.Heads, config.Window, l)), null);
            case ReweaveName:
                var buffer = new LayeredStateBuffer(config.SourceLayers, config.Capacity, config.Window);
                return (new TinyGpt(config.Gpt(), l => new MemoryReweavingMixer(config.DModel, config.Heads, config.Window, l, buffer, config.TargetLayer)),
                    buffer);
            case FullName:
                return (new TinyGpt(config.Gpt(BackboneMlpRatio(config))), null);
            default:
                throw new ArgumentException($"unknown model '{name}' (expected {BackboneName}, {ReweaveName} or {FullName}).", nameof(name));
        }
    }

    /// <summary>Exactness, then train the models on the same batches and read them at every distance.</summary>
    public static MemoryReweavingResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.Distances.Length == 0) throw new ArgumentException("Distances must not be empty.", nameof(config));
        if (config.SourceLayers.Any(l => l > config.TargetLayer) || config.TargetLayer >= config.Layers)
            throw new ArgumentException($"source layers [{string.Join(", ", config.SourceLayers)}] must precede " +
                $"the target {config.TargetLayer} < L = {config.Layers}.",
                nameof(config));
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"[ours] exactness: read vs FIFO twin {Num.Sci(exactness.ReadMaxAbs)} (grads {Num.Sci(exactness.GradMaxAbs)}), " +
            $"gate closed vs backbone " +
                         $"{Num.Sci(exactness.GateClosedMaxAbs)}, causality leak {Num.Sci(exactness.CausalityLeak)}  [{clock.Seconds:F1} s]");
        var rows = new List<RecallRow>();
        var losses = new Dictionary<string, IReadOnlyList<double>>();
        var overhead = new List<OverheadRow>();
        var lambdaTrace = new List<double[]>();
        BufferHeatmap? heatmap = null;
        var names = config.IncludeFullAttention ? new[] { BackboneName, ReweaveName, FullName } : new[] { BackboneName, ReweaveName };
        foreach (var name in names)
        {
            var (model, buffer) = Build(name, config, config.Seed);
            using var owned = model;
            using var ownedBuffer = buffer;
            model.to(device);
            var reweaver = (model.Blocks[config.TargetLayer].Mixer as MemoryReweavingMixer)?.Reweaver;
            progress?.Report($"training {name} ({model.ParameterCount:N0} parameters)");
            int lambdaEvery = Math.Max(1, config.Steps / 25);
            var options = new TrainOptions(config.Steps, config.LearningRate, WarmupSteps: config.Steps / 10, ReportEvery: Math.Max(1, config.Steps / 3));
            var trainClock = System.Diagnostics.Stopwatch.StartNew();
            var history = Trainer.Fit(model, step =>
            {
                if (reweaver is not null && step % lambdaEvery == 0) lambdaTrace.Add(reweaver.Lambda());
                using var batch = config.Task.Generate(config.BatchSize, config.Seed * 1_000_003 + step, device: device);
                return batch.Loss(model.call(batch.Tokens));
            }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {name}: {p}")));
            double msPerStep = trainClock.Elapsed.TotalMilliseconds / config.Steps;
            losses[name] = history.Losses;
            clock.Lap($"train {name}");
            model.eval();
            foreach (int d in config.Distances)
            {
                var row = Evaluate(model, name, config, d, device);
                rows.Add(row);
                progress?.Report($"  {name}: distance {d,4}  accuracy {row.Accuracy:P1} (rare keys {row.RareAccuracy:P1}, frequent {row.FrequentAccuracy:P1})");
            }
            if (reweaver is not null) heatmap = Heatmap(model, reweaver, config, device);
            overhead.Add(Overhead(model, name, config, msPerStep, buffer, device));
            clock.Lap($"test {name}");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new MemoryReweavingResult(config, exactness, rows, losses, lambdaTrace, heatmap!, overhead, clock.Seconds, clock.Phases);
    }

    /// <summary>Accuracy over the F queries of <see cref="Config.EvalSequences"/> sequences at distance <paramref name="distance"/>, split by rare/frequent
    /// key.</summary>
    static RecallRow Evaluate(TinyGpt model, string name, Config config, int distance, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = config.Task.Generate(config.EvalSequences, 7_000_001 + distance, distance, device);
        var predicted = model.call(batch.Tokens).argmax(-1).cpu().data<long>().ToArray();
        var tokens = batch.Tokens.cpu().data<long>().ToArray();
        var labels = batch.Labels.cpu().data<long>().ToArray();
        int[] right = new int[2], total = new int[2];                                     // [frequent, rare]
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] == Data.TokenBatch.Ignore) continue;
            int kind = config.Task.IsRare(tokens[i]) ? 1 : 0;
            total[kind]++;
            if (predicted[i] == labels[i]) right[kind]++;
        }
        static double Share(int r, int n) => n == 0 ? double.NaN : r / (double)n;
        return new RecallRow(name, distance, distance >= config.Window, Share(right[0] + right[1], total[0] + total[1]), Share(right[1], total[1]),
            Share(right[0], total[0]), total[1]);
    }

    /// <summary>The first query's buffer weights (mean over heads) per source layer, on one sequence at the largest distance.</summary>
    static BufferHeatmap Heatmap(TinyGpt model, MemoryReweaver reweaver, Config config, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        int distance = config.Distances.Max();
        using var batch = config.Task.Generate(1, 9_000_001, distance, device);
        reweaver.KeepWeights = true;
        model.call(batch.Tokens);
        var weights = reweaver.LastWeights!;
        reweaver.KeepWeights = false;
        int at = config.Task.FirstQuery;
        var rows = weights.Select(w => w[0, .., at].mean(new long[] { 0 }).to(ScalarType.Float64).cpu().data<double>().ToArray()).ToList();
        foreach (var w in weights) w.Dispose();
        var tokens = batch.Tokens[0].cpu().data<long>().ToArray();
        long key = tokens[at];
        int keyAt = Array.IndexOf(tokens, key);
        return new BufferHeatmap(distance, config.SourceLayers.Select(l => $"layer {l}").ToList(), rows, keyAt);
    }

    /// <summary>ms per training step (as trained), per-token forward time (one sequence, no gradients), parameters and state bytes.</summary>
    static OverheadRow Overhead(TinyGpt model, string name, Config config, double msPerStep, LayeredStateBuffer? buffer, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = config.Task.Generate(1, 11, device: device);
        var time = Benchmark.Time(() => { using var s = NewDisposeScope(); model.call(batch.Tokens); }, warmup: 1, repeats: config.TimingRepeats,
            device: device);
        long windowKv = config.Layers * 2L * config.Window * config.DModel * sizeof(float);       // each layer's window K and V
        long bytes = name switch
        {
            FullName => config.Layers * 2L * config.Task.Length * config.DModel * sizeof(float),
            _ => windowKv + (buffer?.Bytes(config.DModel) ?? 0),
        };
        return new OverheadRow(name, model.ParameterCount, msPerStep, time.MedianMs * 1000.0 / config.Task.Length, bytes);
    }

    /// <summary>
    /// The exactness phase on float64 toy tensors: the masked read vs the FIFO-queue twin (B = 2, T = 13, H = 2, D = 5, Dv = 3,
    /// W = 3, S = 4, two source layers; outputs and the gradients of q, k^ℓ, v^ℓ, w_λ); a reweaving mixer with its gate closed vs a
    /// plain SWA mixer with the same weights; a causality probe on a small reweaving TinyGpt (changing token s leaves every output
    /// before s unchanged); the buffer mask against the queue's contents (capacity and order).
    /// </summary>
    public static ReweavingExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64, generator: gen).to(device);
        const int T = 13, W = 3, S = 4;
        var q = R(2, T, 2, 5).requires_grad_();
        var keys = new[] { R(2, T, 2, 5).requires_grad_(), R(2, T, 2, 5).requires_grad_() };
        var values = new[] { R(2, T, 2, 3).requires_grad_(), R(2, T, 2, 3).requires_grad_() };
        var lambda = R(2).requires_grad_();
        var fast = MemoryReweavingOps.Read(q, keys, values, lambda, W, S).M;
        var naive = MemoryReweavingNaive.Read(q, keys, values, lambda, W, S);
        var g = R(2, T, 2, 3);
        var inputs = new[] { q, keys[0], keys[1], values[0], values[1], lambda };
        var gf = Gradients.Of([(fast * g).sum()], inputs);
        var gn = Gradients.Of([(naive * g).sum()], inputs);
        double readErr = (fast - naive).abs().max().item<double>();
        double gradErr = gf.Zip(gn, (a, b) => (a - b).abs().max().item<double>()).Max();

        // Buffer: row t of the mask equals the queue's contents after token t (⌈capacity⌉ S, oldest first out).
        var mask = MemoryReweavingOps.BufferMask(T, W, S, device).cpu();
        long maskMismatch = 0, overCapacity = 0;
        var queue = new Queue<int>();
        for (int t = 0; t < T; t++)
        {
            if (t - W >= 0) { queue.Enqueue(t - W); if (queue.Count > S) queue.Dequeue(); }
            var row = mask[t].data<bool>().ToArray();
            if (row.Count(b => b) > S) overCapacity++;
            for (int s = 0; s < T; s++) if (row[s] != queue.Contains(s)) maskMismatch++;
        }

        double gateErr = GateClosedGap(device, seed);
        var (leak, reach) = CausalityProbe(device, seed);
        return new ReweavingExactness(readErr, gradErr, gateErr, leak, reach, maskMismatch, overCapacity,
            $"B = 2, T = {T}, H = 2, D = 5, Dv = 3, W = {W}, S = {S}, |𝓛| = 2");
    }

    /// <summary>max |y_reweave − y_backbone| for a target-layer mixer with its gate closed and the backbone mixer with the same W_QKV, W_O (float64, d = 12, T
    /// = 19).</summary>
    public static double GateClosedGap(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        using var buffer = new LayeredStateBuffer(new[] { 0 }, capacity: 5, window: 4);
        using var reweave = new MemoryReweavingMixer(12, 3, 4, 0, buffer, targetLayer: 0);
        using var plain = new MemoryReweavingMixer(12, 3, 4, 0);
        reweave.to(ScalarType.Float64).to(device);
        plain.to(ScalarType.Float64).to(device);
        using (torch.no_grad())
        {
            plain.Qkv.weight!.copy_(reweave.Qkv.weight!); plain.Qkv.bias!.copy_(reweave.Qkv.bias!);
            plain.Proj.weight!.copy_(reweave.Proj.weight!); plain.Proj.bias!.copy_(reweave.Proj.bias!);
        }
        reweave.Reweaver!.CloseGate();
        var x = torch.randn(new long[] { 2, 19, 12 }, dtype: ScalarType.Float64, generator: new Generator((ulong)seed + 3)).to(device);
        return (reweave.call(x) - plain.call(x)).abs().max().item<double>();
    }

    /// <summary>
    /// A float64 reweaving TinyGpt (d = 16, L = 3, W = 4, S = 6, T = 21) with the gate bias raised to 2 so the memory matters: token s = 12
    /// is changed. Leak = max |Δ logits| before s (must be 0); Reach = max |Δ logits| at positions ≥ s + W, reachable only through the
    /// buffer or deeper mixing (must be &gt; 0).
    /// </summary>
    public static (double Leak, double Reach) CausalityProbe(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        var config = Config.Smoke with { Task = new RareFactsTask(Length: 21, Facts: 2, Keys: 4, Values: 4, Fillers: 4), DModel = 16, Heads = 2, Window = 4,
                                         Capacity = 6 };
        var (model, buffer) = Build(ReweaveName, config, seed);
        using var owned = model;
        using var ownedBuffer = buffer;
        model.to(ScalarType.Float64).to(device);
        using (torch.no_grad()) ((MemoryReweavingMixer)model.Blocks[config.TargetLayer].Mixer).Reweaver!.Gate.bias!.fill_(2.0);
        using var noGrad = torch.no_grad();
        const int s = 12;
        var tokens = torch.randint(0, config.Task.VocabSize, new long[] { 1, 21 }, generator: new Generator((ulong)seed + 9)).to(device);
        var changed = tokens.clone();
        changed[0, s] = (tokens[0, s] + 1) % config.Task.VocabSize;
        var delta = (model.call(tokens) - model.call(changed)).abs();
        return (delta.narrow(1, 0, s).max().item<double>(), delta.narrow(1, s + config.Window, 21 - s - config.Window).max().item<double>());
    }
}
