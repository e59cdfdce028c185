using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Titans;

/// <summary>
/// The notebook's experiment: an exactness phase on toy tensors (the mixers' fast forms against the naive twin, streaming
/// against the recurrent forward, causality), then the toy claim — multi-query associative recall (MQAR, zero filler,
/// uniform query gaps) where the distance from key to query runs far beyond the attention window — with a sliding-window
/// baseline and the Titans variants trained on the same batches, steps and learning rate; accuracy by distance, state
/// bytes and forward time per token.
/// </summary>
public sealed class TitansExperiment : IPaperExperiment<TitansExperiment.Config, TitansResult>
{
    TitansExperiment() { }

    /// <summary>P16 in the catalogue (notebook notebooks/16-titans.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(16, "Titans: neural memory", "titans");

    /// <summary>
    /// Sizes of one run. Smoke fits a CPU notebook on one thread; Full is for a GPU. <c>Variants</c>: the Titans models
    /// trained beside the sliding-window baseline ("MAG", "MAL", "MAC").
    /// </summary>
    public sealed record Config(int VocabSize, int SeqLen, int Pairs, int DModel, int Heads, int Layers, int Window, int PersistentTokens,
        MemoryArchitecture Memory, int ChunkSize, int Steps, int BatchSize, double LearningRate, int TrainSequences, int TestSequences,
        string[] Variants, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(VocabSize: 16, SeqLen: 64, Pairs: 4, DModel: 32, Heads: 2, Layers: 2, Window: 8, PersistentTokens: 4,
            Memory: MemoryArchitecture.Linear, ChunkSize: 16, Steps: 250, BatchSize: 32, LearningRate: 1e-2, TrainSequences: 4096,
            TestSequences: 512, Variants: ["MAG"], Seed: 0) { Size = "smoke" };

        public static Config Full => new(VocabSize: 256, SeqLen: 1024, Pairs: 32, DModel: 256, Heads: 4, Layers: 4, Window: 64, PersistentTokens: 16,
            Memory: MemoryArchitecture.Mlp, ChunkSize: 16, Steps: 5000, BatchSize: 32, LearningRate: 1e-3, TrainSequences: 65536,
            TestSequences: 1024, Variants: ["MAG", "MAL", "MAC"], Seed: 0) { Size = "full", MaxLr = 0.1 };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>MQAR with zero filler and uniform gaps (PowerA = 1), so that distances spread over the whole sequence.</summary>
        public MqarTask Task => new(VocabSize, SeqLen, Pairs, PowerA: 1.0, RandomFiller: false);
        /// <summary>The backbone every model shares (sinusoidal positions; the mixers differ).</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, MlpRatio: 2, VocabSize: VocabSize, Positions: PositionKind.Sinusoidal,
            MaxLength: SeqLen);
        /// <summary>
        /// θ's bound. Full: 0.1 — at 0.5 the MLP memory's chunked form at chunk 16 overshoots (16 gradient steps at one memory) and
        /// float32 turned NaN by T ≈ 60 in a probe while float64 stayed finite; the linear smoke memory keeps 0.5.
        /// </summary>
        public double MaxLr { get; init; } = 0.5;
        /// <summary>The memory's settings.</summary>
        public TitansMemoryOptions MemoryOptions => new() { Architecture = Memory, ChunkSize = ChunkSize, MaxLr = MaxLr };
        /// <summary>Chance on a far query: one of the V/2 value tokens.</summary>
        public double Chance => 2.0 / VocabSize;
    }

    public const string SwaName = "SWA", MagName = "MAG", MalName = "MAL", MacName = "MAC";

    /// <summary>
    /// The mixer factory of a model: "SWA" (persistent-token sliding window), "MAG", "MAL" or "MAC" (segments of the window's
    /// length, so that its attention spans what SWA's does).
    /// </summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Mixers(string model, Config c) => model switch
    {
        SwaName => _ => new PersistentWindowAttention(c.DModel, c.Heads, c.Window, c.PersistentTokens),
        MagName or MalName or MacName => _ => Variant(model, c.DModel, c.Heads, c.Window, c.PersistentTokens, c.MemoryOptions),
        _ => throw new ArgumentException($"unknown model '{model}' (SWA, MAG, MAL, MAC).", nameof(model)),
    };

    /// <summary>A Titans variant by name: "MAG", "MAL" (window n) or "MAC" (segment n).</summary>
    public static TitansVariant Variant(string name, int dModel, int heads, int window, int persistentTokens, TitansMemoryOptions options) => name switch
    {
        MagName => new TitansMag(dModel, heads, window, persistentTokens, options),
        MalName => new TitansMal(dModel, heads, window, persistentTokens, options),
        MacName => new TitansMac(dModel, heads, window, persistentTokens, options),
        _ => throw new ArgumentException($"unknown variant '{name}' (MAG, MAL, MAC).", nameof(name)),
    };

    /// <summary>The naive twin of a variant's forward (<see cref="TitansNaive"/>), the memory's chunked form at <paramref name="chunk"/>.</summary>
    static Tensor NaiveForward(TitansVariant variant, Tensor x, int chunk) => variant switch
    {
        TitansMag mag => TitansNaive.Forward(mag, x, chunk),
        TitansMal mal => TitansNaive.Forward(mal, x, chunk),
        TitansMac mac => TitansNaive.Forward(mac, x, chunk),
        _ => throw new ArgumentException($"no naive twin for {variant.GetType().Name}.", nameof(variant)),
    };

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase.</summary>
    public static TitansResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        foreach (var v in config.Variants)
            if (v is not (MagName or MalName or MacName)) throw new ArgumentException($"Variants holds '{v}'; known: MAG, MAL, MAC.", nameof(config));
        var clock = new PhaseClock();
        using var scope = NewDisposeScope();
        progress?.Report("exactness: fast forms vs the naive twin, streaming vs forward, causality (float64, toy tensors)");
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report("mechanism (no outer training): recall of stored pairs after a gap of 4 windows, memory vs SWA");
        var mechanism = Mechanism(config, device);
        clock.Lap("mechanism");
        using var train = config.Task.Generate(config.TrainSequences, config.Seed, device);
        using var test = config.Task.Generate(config.TestSequences, config.Seed + 1, device);
        clock.Lap("data");

        var runs = new List<ModelRun>();
        TinyGpt? mag = null;
        foreach (var name in new[] { SwaName }.Concat(config.Variants))
        {
            torch.manual_seed(config.Seed);
            var model = new TinyGpt(config.Model, Mixers(name, config)).to(device);
            runs.Add(Fit(name, model, config, train, test, device, progress));
            if (name == MagName) mag = model; else model.Dispose();
            clock.Lap($"train {name}");
        }
        var gates = mag is null ? null : GateTrace(mag, test);
        mag?.Dispose();
        clock.Lap("gate trace");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new TitansResult(config, exactness, mechanism, runs, gates, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// The exactness phase, float64, T = 13 (odd), d = 12, 2 heads of width 6, chunk 4 (not dividing T; MAC's segments of 5 tokens,
    /// so that chunks and segments do not align): each mixer's fast form against the naive twin (outputs and every parameter
    /// gradient), streaming Step against the recurrent forward, and causality.
    /// </summary>
    public static IReadOnlyList<ExactnessCheck> Exactness(Device device, int seed = 0)
    {
        const int T = 13, D = 12, H = 2, C = 4;
        var checks = new List<ExactnessCheck>();
        var mlp = new TitansMemoryOptions { Architecture = MemoryArchitecture.Mlp, ChunkSize = C };
        var linear = new TitansMemoryOptions { Architecture = MemoryArchitecture.Linear, ChunkSize = C };
        Tensor Input(Generator g) => torch.randn(2, T, D, generator: g, dtype: float64).to(device);

        foreach (var (label, options) in new[] { ("MLP memory", mlp), ("linear memory", linear) })
            foreach (var form in new[] { TitansMemoryForm.Chunked, TitansMemoryForm.Recurrent })
            {
                using var scope = NewDisposeScope();
                torch.manual_seed(seed);
                using var mixer = new TitansMemory(D, H, options with { Form = form });
                mixer.to(float64).to(device);
                var x = Input(new Generator((ulong)seed));
                int chunk = form == TitansMemoryForm.Chunked ? C : 1;
                var (output, grads, _, _) = FormAgreement.Of(mixer, () => mixer.call(x), () => TitansNaive.Forward(mixer, x, chunk));
                string what = form == TitansMemoryForm.Chunked ? $"chunked (C = {C})" : "recurrent";
                checks.Add(new ExactnessCheck($"{label}, {what} vs naive twin: outputs", output, 1e-10));
                checks.Add(new ExactnessCheck($"{label}, {what} vs naive twin: parameter gradients", grads, 1e-10));
            }

        foreach (var variant in new[] { MagName, MalName, MacName })
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(seed);
            using var mixer = Variant(variant, D, H, variant == MacName ? 5 : 4, 3, mlp);
            mixer.to(float64).to(device);
            var x = Input(new Generator((ulong)seed + 1));
            var (output, grads, _, _) = FormAgreement.Of(mixer, () => mixer.call(x), () => NaiveForward(mixer, x, C));
            checks.Add(new ExactnessCheck($"{variant} (MLP memory, chunked C = {C}) vs naive twin: outputs", output, 1e-10));
            checks.Add(new ExactnessCheck($"{variant} (MLP memory, chunked C = {C}) vs naive twin: parameter gradients", grads, 1e-10));
        }

        foreach (var variant in new[] { "memory", MagName, MalName, MacName })
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(seed);
            var options = mlp with { Form = TitansMemoryForm.Recurrent };
            using nn.Module<Tensor, Tensor> mixer = variant == "memory" ? new TitansMemory(D, H, options)
                : Variant(variant, D, H, variant == MacName ? 5 : 4, 3, options);
            mixer.to(float64).to(device);
            var x = Input(new Generator((ulong)seed + 2));
            var streaming = (IStreamingMixer)mixer;
            using var state = streaming.NewState(x.size(0), ScalarType.Float64, device);
            var steps = torch.stack(Enumerable.Range(0, T).Select(t => streaming.Step(x.select(1, t), state)).ToArray(), 1);
            double error = (steps - mixer.call(x)).abs().max().item<double>();
            checks.Add(new ExactnessCheck($"{variant}: streaming Step over {T} tokens vs the recurrent forward", error, 1e-10));
        }

        foreach (var variant in new[] { MagName, MacName })
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(seed);
            using var mixer = Variant(variant, D, H, variant == MacName ? 5 : 4, 3, mlp);
            mixer.to(float64).to(device);
            var x = Input(new Generator((ulong)seed + 3));
            int at = variant == MacName ? 7 : T - 1;                                            // MAC: a token inside its second segment
            var bumped = x.clone();
            bumped.select(1, at).add_(1.0);                                                     // perturb one token only
            double error = (mixer.call(bumped).narrow(1, 0, at) - mixer.call(x).narrow(1, 0, at)).abs().max().item<double>();
            checks.Add(new ExactnessCheck($"{variant} (chunked C = {C}): perturbing x_{at + 1} leaves outputs 1 … {at} unchanged", error, 0.0));
        }
        return checks;
    }

    /// <summary>
    /// Spec §4 task A, no outer training: P random unit keys with random unit values are written (θ = 0.5, one delta-rule
    /// overwrite), then 4n filler tokens that write nothing (θ = 0), then the P keys are read back (θ = 0). A read is correct
    /// when its nearest stored value (cosine) is the right one; chance = 1/P. The same stream through sliding-window
    /// attention with q = k (window n) sees only the last n tokens. Memories: linear, MLP (Dh = 2D), each with and without
    /// momentum (η = 0.5) and forgetting (α = 0.01).
    /// </summary>
    public static IReadOnlyList<RecallPoint> Mechanism(Config c, Device device)
    {
        using var scope = NewDisposeScope();
        int d = c.DModel, gap = 4 * c.Window;
        var points = new List<RecallPoint>();
        var gen = new Generator((ulong)c.Seed + 11);
        foreach (int pairs in new[] { d / 4, d / 2, d, 2 * d })
        {
            using var inner = NewDisposeScope();
            int t = 2 * pairs + gap;
            var keys = nn.functional.normalize(torch.randn(1, pairs, 1, d, generator: gen, dtype: float64), 2, -1).to(device);
            var values = nn.functional.normalize(torch.randn(1, pairs, 1, d, generator: gen, dtype: float64), 2, -1).to(device);
            var zeros = torch.zeros(1, gap, 1, d, dtype: float64, device: device);
            var k = torch.cat(new[] { keys, zeros, torch.zeros_like(keys) }, 1);           // writes, filler, reads
            var v = torch.cat(new[] { values, zeros, torch.zeros_like(values) }, 1);
            var q = torch.cat(new[] { torch.zeros_like(keys), zeros, keys }, 1);
            var write = torch.cat(new[] { torch.ones(1, pairs, 1, dtype: float64), torch.zeros(1, pairs + gap, 1, dtype: float64) }, 1).to(device);
            double Score(Tensor y) => (y.narrow(1, pairs + gap, pairs)[0, .., 0].matmul(values[0, .., 0].t()).argmax(-1)
                                       .eq(torch.arange(pairs, device: device))).to(float64).mean().item<double>();
            foreach (var architecture in new[] { MemoryArchitecture.Linear, MemoryArchitecture.Mlp })
                foreach (var (momentum, forget) in new[] { (false, false), (true, false), (false, true), (true, true) })
                {
                    var options = new AssociativeMemoryOptions { Architecture = architecture };
                    var gates = new MemoryGates(write * 0.5, momentum ? torch.full_like(write, 0.5) : null, forget ? torch.full_like(write, 0.01) : null);
                    MemoryState? start = null;
                    if (architecture == MemoryArchitecture.Mlp)
                    {
                        torch.manual_seed(c.Seed);
                        var w1 = torch.randn(1, 1, 2 * d, d, dtype: float64, device: device) / Math.Sqrt(d);
                        var w2 = torch.zeros(1, 1, d, 2 * d, dtype: float64, device: device);
                        start = new MemoryState([w1, w2], momentum ? [torch.zeros_like(w1), torch.zeros_like(w2)] : null);
                    }
                    using var r = AssociativeMemory.Recurrent(q, k, v, gates, start, options);
                    points.Add(new RecallPoint($"{architecture}{(momentum ? " + momentum" : "")}{(forget ? " + forgetting" : "")}".ToLowerInvariant(),
                        pairs, gap, Score(r.Output)));
                }
            points.Add(new RecallPoint(SwaName, pairs, gap, Score(SlidingWindowAttention.Attend(q, k, v, c.Window))));
        }
        return points;
    }

    static ModelRun Fit(string name, TinyGpt model, Config c, MqarBatch train, MqarBatch test, Device device, IProgress<string>? progress)
    {
        progress?.Report($"training {name} ({model.ParameterCount:N0} parameters, {c.Steps} steps)");
        var rng = new Random(c.Seed);                                                           // same batches for every model
        var rows = new long[c.Steps * (long)c.BatchSize];
        for (long i = 0; i < rows.Length; i++) rows[i] = rng.Next((int)train.Count);
        using var batches = torch.tensor(rows, new long[] { c.Steps, c.BatchSize }, device: device);
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: Math.Max(1, c.Steps / 4));
        var history = Trainer.Fit(model, step =>
        {
            var index = batches[step];
            var logits = model.call(train.Tokens.index(index));
            return nn.functional.cross_entropy(logits.reshape(-1, c.VocabSize), train.Labels.index(index).reshape(-1), ignore_index: TokenBatch.Ignore);
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {name}: {p}")));

        model.eval();
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var sw = Stopwatch.StartNew();
        var logits = model.call(test.Tokens);
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
        double msPerToken = sw.Elapsed.TotalMilliseconds / (test.Count * test.Length);
        var predicted = logits.argmax(-1);                                                      // [N, T]
        // Each query: key k_i at 2i, query at 2P + 2g_i; distance = query − key position.
        var gaps = test.Gaps.cpu().data<long>().ToArray();
        var pred = predicted.cpu().data<long>().ToArray();
        var labels = test.Labels.cpu().data<long>().ToArray();
        var queries = new List<QueryOutcome>();
        long t = test.Length;
        for (int n = 0; n < test.Count; n++)
            for (int i = 0; i < c.Pairs; i++)
            {
                long q = 2 * c.Pairs + 2 * gaps[n * c.Pairs + i];
                queries.Add(new QueryOutcome((int)(q - 2 * i), pred[n * t + q] == labels[n * t + q]));
            }
        long stateBytes = model.Blocks.Sum(b => b.Mixer switch
        {
            PersistentWindowAttention a => a.StateBytes(),
            TitansVariant v => v.StateBytes(),
            _ => 0L,
        });
        progress?.Report($"  {name}: far accuracy {queries.Where(o => o.Distance >= 4 * c.Window).Average(o => o.Correct ? 1.0 : 0.0):P1}");
        return new ModelRun(name, model.ParameterCount, stateBytes, msPerToken, history.Losses, queries);
    }

    /// <summary>θ_t and α_t of layer 0, head 0 of the trained MAG on the first test sequence, with its tokens.</summary>
    static GateTrace GateTrace(TinyGpt mag, MqarBatch test)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = test.Tokens.narrow(0, 0, 1);
        var h = mag.Blocks[0].Norm1.call(mag.Embedded(x, start: 0));
        var g = ((TitansMag)mag.Blocks[0].Mixer).Memory.Gates(h);
        double[] Row(Tensor? u) => u is null ? [] : u[0, .., 0].to(ScalarType.Float64).cpu().data<double>().ToArray();
        return new GateTrace(x[0].cpu().data<long>().ToArray(), Row(g.Theta), Row(g.Alpha), Row(g.Eta));
    }
}
