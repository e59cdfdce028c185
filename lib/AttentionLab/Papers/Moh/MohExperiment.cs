using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Moh;

/// <summary>One model of the comparison: dense MHA (<see cref="Dense"/>) or MoH with h_s shared heads and K routed per token.</summary>
public sealed record MohVariant(string Name, int Shared, int TopK, bool Dense = false)
{
    /// <summary>Share of heads each token uses.</summary>
    public double ActiveRatio(int heads) => Dense ? 1.0 : (Shared + TopK) / (double)heads;
}

/// <summary>
/// P21 MoH: the notebook's experiment. First an exactness phase on toy tensors (the gather and masked paths against the
/// naive twin, the spec's §6 identities); then dense MHA and MoH models (spec §4) trained for equal steps on the same
/// batches of the multi-task opcode LM (<see cref="MohTask"/>), with validation loss, per-opcode accuracy, the routed
/// heads' activation frequency per opcode and layer (the heatmap) and the mutual information between opcode and routing;
/// last a timing of one layer (dense MHA, MoH gather, MoH masked) at a longer sequence.
/// </summary>
public sealed class MohExperiment : IPaperExperiment<MohExperiment.Config, MohResult>
{
    MohExperiment() { }

    /// <summary>P21 in the catalogue (notebook notebooks/21-moh.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(21, "MoH: Multi-Head Attention as Mixture-of-Head Attention", "moh");

    /// <summary>
    /// Sizes of one run. Smoke: spec §4 (d = 64, L = 2, h = 8, T = 64; MHA, MoH-75 %, MoH-50 %) with 200 steps of batch 16
    /// instead of 300 so the notebook stays under a minute (docs/decisions.md). Full: spec §4's GPU size (d = 256, L = 6,
    /// h = 16, T = 256, 5k steps), one seed per run; the spec's fixed 6-head MHA is not built.
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, int SeqLen, int Symbols, int BatchSize, int Steps,
        double LearningRate, int WarmupSteps, double AuxWeight, int EvalBatch, MohVariant[] Variants, int TimingSeqLen, int TimingRepeats, int Seed)
        : IPaperConfig<Config>
    {
        /// <summary>The spec's three smoke models.</summary>
        public static MohVariant[] SmokeVariants =>
            new[] { new MohVariant("MHA", 8, 0, Dense: true), new MohVariant("MoH-75%", 4, 2), new MohVariant("MoH-50%", 2, 2) };

        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 8, MlpRatio: 4, SeqLen: 64, Symbols: 16, BatchSize: 16, Steps: 200,
            LearningRate: 3e-3, WarmupSteps: 20, AuxWeight: 0.01, EvalBatch: 64, Variants: SmokeVariants, TimingSeqLen: 512, TimingRepeats: 7, Seed: 0)
        { Size = "smoke" };

        public static Config Full => new(Layers: 6, DModel: 256, Heads: 16, MlpRatio: 4, SeqLen: 256, Symbols: 16, BatchSize: 32, Steps: 5000,
            LearningRate: 1e-3, WarmupSteps: 200, AuxWeight: 0.01, EvalBatch: 256,
            Variants: new[] { new MohVariant("MHA", 16, 0, Dense: true), new MohVariant("MoH-75%", 8, 4), new MohVariant("MoH-50%", 4, 4) },
            TimingSeqLen: 4096, TimingRepeats: 10, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The task.</summary>
        public MohTask Task => new(SeqLen, Symbols);

        /// <summary>The backbone every model shares (learned positions).</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, MlpRatio, Positions: PositionKind.Learned, VocabSize: Task.VocabSize, MaxLength: SeqLen);
    }

    /// <summary>The model names the claims look up.</summary>
    public const string DenseName = "MHA", Moh75Name = "MoH-75%", Moh50Name = "MoH-50%";

    /// <summary>Label shuffles behind the mutual-information null.</summary>
    public const int NullShuffles = 20;

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static MohResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: gather vs naive {Num.Sci(exactness.GatherMaxAbs)}, masked vs naive {Num.Sci(exactness.MaskedMaxAbs)} (float64)");

        var task = config.Task;
        using var eval = task.Generate(config.EvalBatch, seed: 1_000_003 + config.Seed, device: device);
        var runs = new List<MohRun>();
        var maps = new List<RoutingMap>();
        var gateSamples = new List<GateSample>();
        foreach (var variant in config.Variants)
        {
            var (run, layerMaps, gates) = Train(variant, task, eval, config, device, progress);
            runs.Add(run);
            maps.AddRange(layerMaps);
            if (gates is not null) gateSamples.Add(gates);
            clock.Lap($"train {variant.Name}");
        }
        var timings = Timing(config, device);
        clock.Lap("timing");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new MohResult(config, exactness, runs, maps, gateSamples, timings, clock.Seconds, clock.Phases);
    }

    static (MohRun Run, List<RoutingMap> Maps, GateSample? Gates) Train(MohVariant variant, MohTask task, MohBatch eval, Config c, Device device,
        IProgress<string>? progress)
    {
        torch.manual_seed(c.Seed);
        var cfg = c.Model;
        var mixers = new List<MixtureOfHeadAttention>();
        using var model = variant.Dense ? new TinyGpt(cfg) : new TinyGpt(cfg, _ =>
        {
            var m = new MixtureOfHeadAttention(c.DModel, c.Heads, variant.Shared, variant.TopK);
            mixers.Add(m);
            return m;
        });
        model.to(device);
        progress?.Report($"training {variant.Name} ({model.ParameterCount:N0} parameters, {variant.ActiveRatio(c.Heads):P0} of heads per token), " +
            $"{c.Steps} steps of {c.BatchSize} × {c.SeqLen}");
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.WarmupSteps, ReportEvery: Math.Max(1, c.Steps / 2));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = task.Generate(c.BatchSize, seed: c.Seed * 7_919 + step, device: device);   // the same batches for every model
            var loss = batch.Loss(model.call(batch.Tokens));
            foreach (var m in mixers) loss = loss + c.AuxWeight * m.LastRouting!.AuxLoss;   // task + β·L_b per layer
            return loss;
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {variant.Name}: {p}")));

        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        var logits = model.call(eval.Tokens);
        double validation = eval.Loss(logits).item<float>();
        var correct = logits.argmax(-1).eq(eval.Labels).logical_and(eval.Determined);
        var opAccuracy = new double[MohTask.Opcodes];
        for (int op = 0; op < MohTask.Opcodes; op++)
        {
            var where = eval.Determined.logical_and(eval.Opcodes.eq(op));
            opAccuracy[op] = correct.logical_and(where).sum().item<long>() / (double)Math.Max(1, where.sum().item<long>());
        }
        double determined = correct.sum().item<long>() / (double)Math.Max(1, eval.Determined.sum().item<long>());
        var maps = new List<RoutingMap>();
        GateSample? gates = null;
        var opcodes = eval.Opcodes.reshape(-1).cpu().data<long>().ToArray();
        for (int layer = 0; layer < mixers.Count; layer++)
        {
            var r = mixers[layer].LastRouting!;
            var mask = r.RoutedMask.to(ScalarType.Float64).cpu();                       // [N, E]
            maps.Add(RoutingMap.From(variant.Name, layer, mixers[layer].Shared, opcodes, mask, c.Seed));
            if (layer == mixers.Count - 1)
            {
                var routed = r.RoutedGates.reshape(-1, mixers[layer].Routed).to(ScalarType.Float64).cpu();
                var chosen = routed.masked_select(r.RoutedMask.gt(0.5).cpu()).data<double>().ToArray();
                var alpha = r.Balance.reshape(-1, 2).select(1, 1).to(ScalarType.Float64).cpu().data<double>().ToArray();
                gates = new GateSample(variant.Name, layer, chosen, alpha);
            }
        }
        progress?.Report($"  {variant.Name}: validation loss {validation:F3} nats, determined-token accuracy {determined:P1}");
        return (new MohRun(variant.Name, variant.ActiveRatio(c.Heads), model.ParameterCount, validation, determined, opAccuracy, history.Losses,
            history.Elapsed.TotalSeconds), maps, gates);
    }

    /// <summary>
    /// Median forward time (no grad) of one layer at B = 1, T = TimingSeqLen: dense MHA (the library's causal attention),
    /// MoH-75 % by gather and by masking; fresh weights (the routing balance is the untrained router's), the forms interleaved.
    /// </summary>
    static List<MohTiming> Timing(Config c, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(c.Seed);
        var x = torch.randn(1, c.TimingSeqLen, c.DModel, device: device);
        var moh = c.Variants.FirstOrDefault(v => v.Name == Moh75Name) ?? c.Variants.First(v => !v.Dense);
        var forms = new List<(string Name, nn.Module<Tensor, Tensor> Layer, double Active)>
        {
            ("dense MHA", new CausalSelfAttention(c.DModel, c.Heads), 1.0),
            ($"{moh.Name} gather", new MixtureOfHeadAttention(c.DModel, c.Heads, moh.Shared, moh.TopK, MohPath.Gather), moh.ActiveRatio(c.Heads)),
            ($"{moh.Name} masked", new MixtureOfHeadAttention(c.DModel, c.Heads, moh.Shared, moh.TopK, MohPath.Masked), moh.ActiveRatio(c.Heads)),
        };
        var ms = forms.Select(_ => new List<double>()).ToList();
        try
        {
            foreach (var f in forms)
            {
                f.Layer.to(device);
                f.Layer.call(x).Dispose();                                              // warm-up
            }
            for (int i = 0; i < c.TimingRepeats; i++)
                for (int f = 0; f < forms.Count; f++)                                   // interleaved: a load spike hits every form alike
                {
                    var sw = Stopwatch.StartNew();
                    using var y = forms[f].Layer.call(x);
                    _ = y.sum().item<float>();                                          // wait for the device
                    ms[f].Add(sw.Elapsed.TotalMilliseconds);
                }
        }
        finally
        {
            foreach (var f in forms) f.Layer.Dispose();
        }
        var rows = new List<MohTiming>();
        for (int f = 0; f < forms.Count; f++)
        {
            ms[f].Sort();
            rows.Add(new MohTiming(forms[f].Name, c.TimingSeqLen, forms[f].Active, ms[f][ms[f].Count / 2]));
        }
        return rows;
    }

    /// <summary>
    /// The exactness phase (float64, B = 2, T = 7, H = 5, Dk = 3, Dv = 4, d = 11): gather and masked paths vs
    /// <see cref="MohNaive"/> (outputs and every gradient), L_b vs its loop form, and the spec's §6 identities.
    /// </summary>
    public static MohExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        const int B = 2, T = 7, H = 5, Dk = 3, Dv = 4, D = 11, Hs = 2, K = 2;
        double gather = 0, masked = 0, balance = 0;
        foreach (var path in new[] { MohPath.Gather, MohPath.Masked })
        {
            torch.manual_seed(seed);
            using var mixer = new MixtureOfHeadAttention(D, H, Hs, K, path, Dk, Dv);
            mixer.to(float64).to(device);
            var x = torch.randn(B, T, D, generator: gen, dtype: float64).to(device).requires_grad_();
            double err = MohChecks.TwinGap(mixer, x, gen);
            if (path == MohPath.Gather) gather = err; else masked = err;
            balance = Math.Max(balance, Math.Abs(mixer.Route(x.detach()).AuxLoss.item<double>() - MohNaive.LoadBalance(mixer, x.detach())));
        }
        double allShared = MohChecks.AllSharedIsMha(device, seed);
        var (kOnes, routedSum, sharedSum) = MohChecks.GateSums(device, seed);
        double uniform = MohChecks.UniformBalanceMinusK(device, seed);
        double step = MohChecks.StepVsForward(device, seed);
        return new MohExactness(gather, masked, balance, allShared, kOnes, routedSum, sharedSum, uniform, step);
    }
}
