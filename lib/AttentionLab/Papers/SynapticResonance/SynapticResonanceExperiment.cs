using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SynapticResonance;

/// <summary>
/// P40's experiment, [ours] throughout (the paper gives no equations; this is the spec's operationalisation, not a reproduction):
/// an exactness phase on float64 toy tensors (the engine's three forms vs the token-loop twin with gradients, η = 0 ⇒ the backbone,
/// causality, r ∈ (0, 1)), then two TinyGpts trained on the same batches of noisy multi-query associative recall (every non-query
/// token replaced by a random one with probability p): the SWA backbone and the backbone + resonance memory, read by
/// perplexity on the answers and by recall accuracy split at the backbone's receptive field L·(W − 1).
/// </summary>
public sealed class SynapticResonanceExperiment : IPaperExperiment<SynapticResonanceExperiment.Config, SynapticResonanceResult>
{
    SynapticResonanceExperiment() { }

    /// <summary>P40 in the catalogue (notebook notebooks/40-synaptic-resonance.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(40, "Synaptic Resonance", "synaptic-resonance");

    public const string BackboneName = "SWA backbone", ResonanceName = "SWA + resonance [ours]";

    /// <summary>
    /// One run. Smoke: d = 64, L = 2, T = 64 (spec: 128; halved to fit the 60 s notebook, docs/decisions.md), window 8,
    /// 2 models × 250 steps, p = 0.1 only. Full (GPU): d = 256, L = 6, T = 1024, p ∈ {0, 0.1, 0.2}, 3000 steps.
    /// </summary>
    public sealed record Config(MqarTask Task, int DModel, int Heads, int Layers, int Window, double[] NoiseRates, int Steps, int BatchSize,
        double LearningRate, int EvalSequences, int Seed, int TimingRepeats) : IPaperConfig<Config>
    {
        public static Config Smoke => new(new MqarTask(VocabSize: 64, Length: 64, Pairs: 8), DModel: 64, Heads: 2, Layers: 2, Window: 8,
            NoiseRates: new[] { 0.1 }, Steps: 250, BatchSize: 16, LearningRate: 3e-3, EvalSequences: 128, Seed: 0, TimingRepeats: 3) { Size = "smoke" };

        public static Config Full => new(new MqarTask(VocabSize: 512, Length: 1024, Pairs: 64), DModel: 256, Heads: 8, Layers: 6, Window: 32,
            NoiseRates: new[] { 0.0, 0.1, 0.2 }, Steps: 3000, BatchSize: 32, LearningRate: 1e-3,
                EvalSequences: 256, Seed: 0, TimingRepeats: 5) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The backbone's receptive field in tokens, L·(W − 1): a value farther than this from its query is out of the SWA stack's sight.</summary>
        public int ReceptiveField => Layers * (Window - 1);

        /// <summary>The shared TinyGpt shape (token inputs, sinusoidal positions).</summary>
        public TinyGptConfig Gpt() => new(Layers: Layers, DModel: DModel, Heads: Heads, VocabSize: Task.VocabSize, Positions: PositionKind.Sinusoidal,
            MaxLength: Task.Length);
    }

    /// <summary>A model of the comparison, freshly initialised from <paramref name="seed"/>.</summary>
    public static TinyGpt Build(string name, Config config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        bool resonance = name switch
        {
            BackboneName => false,
            ResonanceName => true,
            _ => throw new ArgumentException($"unknown model '{name}' (expected {BackboneName} or {ResonanceName}).", nameof(name)),
        };
        torch.manual_seed(seed);
        return new TinyGpt(config.Gpt(), _ => new SynapticResonanceLayer(config.DModel, config.Heads, config.Window, resonance));
    }

    /// <summary>Every non-query token (label = ignore) replaced by a uniform random token with probability <paramref name="p"/>.</summary>
    public static Tensor Corrupt(TokenBatch batch, double p, int vocab, int seed)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!(p >= 0 && p <= 1)) throw new ArgumentException($"p must be in [0, 1], got {p}.", nameof(p));
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var flip = torch.rand(batch.Tokens.shape, generator: gen).lt(p).to(batch.Tokens.device) & batch.Labels.eq(TokenBatch.Ignore);
        var noise = torch.randint(0, vocab, batch.Tokens.shape, generator: gen, dtype: ScalarType.Int64).to(batch.Tokens.device);
        return torch.where(flip, noise, batch.Tokens).MoveToOuterDisposeScope();
    }

    /// <summary>Exactness, then train both models per noise rate on the same batches and read them.</summary>
    public static SynapticResonanceResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.NoiseRates.Length == 0) throw new ArgumentException("NoiseRates must not be empty.", nameof(config));
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"[ours] exactness: forms vs token loop {Num.Sci(exactness.TwinOutput)} " +
            $"(grads {Num.Sci(exactness.TwinGradients)}), η = 0 vs backbone " +
            $"{Num.Sci(exactness.SilencedGap)}, causality leak {Num.Sci(exactness.CausalityLeak)}, " +
            $"r ∈ [{exactness.MinResonance:F3}, {exactness.MaxResonance:F3}]");
        var rows = new List<NoiseRow>();
        var overhead = new List<CostRow>();
        var losses = new Dictionary<string, IReadOnlyList<double>>();
        Trace? trace = null;
        foreach (double p in config.NoiseRates)
            foreach (var name in new[] { BackboneName, ResonanceName })
            {
                using var model = Build(name, config, config.Seed);
                model.to(device);
                progress?.Report($"training {name} at p = {p} ({model.ParameterCount:N0} parameters)");
                var options = new TrainOptions(config.Steps, config.LearningRate, WarmupSteps: config.Steps / 10, ReportEvery: Math.Max(1, config.Steps / 3));
                var trainClock = System.Diagnostics.Stopwatch.StartNew();
                var history = Trainer.Fit(model, step =>
                {
                    using var batch = config.Task.Generate(config.BatchSize, config.Seed * 1_000_003 + step, device);
                    var tokens = Corrupt(batch, p, config.Task.VocabSize, 17 + step);
                    return batch.Loss(model.call(tokens));
                }, options, progress is null ? null : new InlineProgress<TrainProgress>(x => progress.Report($"  {name}: {x}")));
                double msPerStep = trainClock.Elapsed.TotalMilliseconds / config.Steps;
                losses[$"{name}, p = {p}"] = history.Losses;
                model.eval();
                var row = Evaluate(model, name, config, p, device);
                rows.Add(row);
                progress?.Report($"  {name}: ppl {row.Perplexity:F2}, accuracy {row.Accuracy:P1} " +
                    $"(within reach {row.WithinAccuracy:P1}, beyond {row.BeyondAccuracy:P1})");
                if (p == config.NoiseRates[0])
                {
                    overhead.Add(Cost(model, name, config, msPerStep, device));
                    if (name == ResonanceName) trace = TraceOf(model, config, p, device);
                }
                clock.Lap($"{name}, p = {p}");
            }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new SynapticResonanceResult(config, exactness, rows, overhead, losses, trace!, clock.Seconds, clock.Phases);
    }

    /// <summary>Perplexity on the answers and accuracy, split by value-to-query distance at the receptive field.</summary>
    static NoiseRow Evaluate(TinyGpt model, string name, Config config, double p, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = config.Task.Generate(config.EvalSequences, 7_000_001, device);
        var tokens = Corrupt(batch, p, config.Task.VocabSize, 7_000_003);
        var logits = model.call(tokens);
        double ppl = Math.Exp(batch.Loss(logits).item<float>());
        var pred = logits.argmax(-1).cpu().data<long>().ToArray();
        var labels = batch.Labels.cpu().data<long>().ToArray();
        var clean = batch.Tokens.cpu().data<long>().ToArray();
        int n = config.EvalSequences, t = config.Task.Length, pairs = config.Task.Pairs;
        int within = 0, withinRight = 0, beyond = 0, beyondRight = 0;
        for (int s = 0; s < n; s++)
            for (int i = 2 * pairs; i < t; i++)
            {
                long label = labels[s * t + i];
                if (label == TokenBatch.Ignore) continue;
                int key = Enumerable.Range(0, pairs).First(j => clean[s * t + 2 * j] == clean[s * t + i]);
                int distance = i - (2 * key + 1);                                             // query to its value
                bool right = pred[s * t + i] == label;
                if (distance > config.ReceptiveField) { beyond++; if (right) beyondRight++; }
                else { within++; if (right) withinRight++; }
            }
        static double Ratio(int a, int b) => b == 0 ? double.NaN : a / (double)b;
        return new NoiseRow(name, p, ppl, Ratio(withinRight + beyondRight, within + beyond), Ratio(withinRight, within), Ratio(beyondRight, beyond), beyond);
    }

    /// <summary>Parameters, ms per training step, µs per token of a forward pass, bytes to decode (float32, formula).</summary>
    static CostRow Cost(TinyGpt model, string name, Config config, double msPerStep, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = config.Task.Generate(1, 11, device);
        var time = Benchmark.Time(() => { using var s = NewDisposeScope(); model.call(batch.Tokens); },
            warmup: 1, repeats: config.TimingRepeats, device: device);
        long bytes = config.Layers * SynapticResonanceLayer.StateBytes(config.DModel, config.Heads, config.Window, name == ResonanceName);
        return new CostRow(name, model.ParameterCount, msPerStep, time.MedianMs * 1000.0 / config.Task.Length, bytes);
    }

    /// <summary>r_t of every layer and ‖S_t‖ of the last layer along one noisy eval sequence (token loop twin).</summary>
    static Trace TraceOf(TinyGpt model, Config config, double p, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = config.Task.Generate(1, 7_000_001, device);
        var tokens = Corrupt(batch, p, config.Task.VocabSize, 7_000_003);
        var gates = new List<double[]>();
        double[] norms = Array.Empty<double>();
        var h = model.Embedded(tokens, 0);
        foreach (var block in model.Blocks)
        {
            var layer = (SynapticResonanceLayer)block.Mixer;
            var x = block.Norm1.call(h);
            var (q, k, v) = layer.Project(x);
            var (ka, kb, gamma, logLambda, eta) = layer.Knobs();
            var (_, r, sNorms, _) = SynapticResonanceNaive.Forward(x, q, k, v, ka, kb, gamma, logLambda, eta);
            gates.Add(r[0].cpu().to(ScalarType.Float64).data<double>().ToArray());
            norms = sNorms[0].cpu().to(ScalarType.Float64).data<double>().ToArray();
            h = block.call(h);
        }
        var noisy = tokens.ne(batch.Tokens)[0].cpu().data<bool>().ToArray();
        return new Trace(gates, norms, Enumerable.Range(0, noisy.Length).Where(i => noisy[i]).ToArray(), 2 * config.Task.Pairs);
    }

    /// <summary>
    /// The exactness phase on float64 toy tensors (d = 12, H = 3, W = 4): the layer with its read by the engine's Parallel,
    /// Recurrent and Chunked (chunk 5) forms vs <see cref="SynapticResonanceNaive.Layer"/> at T ∈ {1, 7, 13} (outputs and every
    /// parameter gradient); η = 0 vs the plain SWA layer with the same W_QKV, W_O; causality (token s changed: outputs before s
    /// unchanged, outputs at ≥ s + W changed — only through the memory); r over random inputs.
    /// </summary>
    public static ResonanceExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        using var layer = new SynapticResonanceLayer(12, 3, 4);
        layer.to(ScalarType.Float64).to(device);
        layer.ChunkSize = 5;
        double output = 0, grads = 0;
        foreach (int t in new[] { 1, 7, 13 })
        {
            var x = torch.randn(new long[] { 2, t, 12 }, dtype: ScalarType.Float64, generator: new Generator((ulong)seed + (ulong)t)).to(device);
            foreach (var form in new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked })
            {
                layer.Form = form;
                var agree = FormAgreement.Of(layer, () => layer.call(x), () => SynapticResonanceNaive.Layer(layer, x));
                output = Math.Max(output, agree.Output);
                grads = Math.Max(grads, agree.Gradients);
            }
        }
        layer.Form = LinearForm.Chunked;

        var x19 = torch.randn(new long[] { 2, 19, 12 }, dtype: ScalarType.Float64, generator: new Generator((ulong)seed + 3)).to(device);
        using var plain = new SynapticResonanceLayer(12, 3, 4, resonance: false);
        plain.to(ScalarType.Float64).to(device);
        using var silenced = new SynapticResonanceLayer(12, 3, 4);
        silenced.to(ScalarType.Float64).to(device);
        double silencedGap, leak, reach, rMin, rMax;
        using (torch.no_grad())
        {
            plain.Qkv.weight!.copy_(silenced.Qkv.weight!); plain.Qkv.bias!.copy_(silenced.Qkv.bias!);
            plain.Proj.weight!.copy_(silenced.Proj.weight!); plain.Proj.bias!.copy_(silenced.Proj.bias!);
            silenced.Silence();
            silencedGap = (silenced.call(x19) - plain.call(x19)).abs().max().item<double>();

            const int s = 9;
            var changed = x19.clone();
            changed[.., s] = changed[.., s] + 1.0;
            var delta = (layer.call(x19) - layer.call(changed)).abs();
            leak = delta.narrow(1, 0, s).max().item<double>();
            reach = delta.narrow(1, s + 4, 19 - s - 4).max().item<double>();

            var r = layer.Resonance(x19 * 3);
            rMin = r.min().item<double>();
            rMax = r.max().item<double>();
        }
        return new ResonanceExactness(output, grads, silencedGap, leak, reach, rMin, rMax,
            "B = 2, T ∈ {1, 7, 13}, d = 12, H = 3, W = 4, chunk 5; three engine forms");
    }
}
