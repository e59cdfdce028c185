using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>
/// P24's experiment: an exactness phase on float64 toy tensors (shift and gather vs the (i, j) loop, the mixer vs its naive twin,
/// the causality probe, the reduction to MHA, decoding), then the four variants (MHA, MDHA, RMHA, RCMHA) as char LMs on the shipped
/// Moby-Dick corpus — same backbone, same batches, equal steps — read at the training length and beyond it (validation loss and
/// next-character accuracy), then ms per training step and the peak memory of one step.
/// </summary>
public sealed class RcmhaExperiment : IPaperExperiment<RcmhaExperiment.Config, RcmhaResult>
{
    RcmhaExperiment() { }

    /// <summary>P24 in the catalogue (notebook notebooks/24-rcmha.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(24, "RCMHA: relative convolutional MHA", "rcmha");

    /// <summary>
    /// One run. Smoke (spec §4): d = 64, L = 2, H = 4, T = 128, read at 128, 256, 512; the four models come from the shipped checkpoints
    /// (<see cref="RcmhaCheckpoint"/>, made by lib/AttentionLab.Checkpoints) because training them does not fit the 60 s notebook; a
    /// missing or mismatched file falls back to <see cref="FallbackSteps"/> steps trained here (the result says which happened).
    /// Full (GPU): d = 256, L = 6, T = 512, 5k steps trained here, read at 512, 1024, 2048.
    /// </summary>
    /// <param name="Layers">L.</param>
    /// <param name="DModel">d.</param>
    /// <param name="Heads">H.</param>
    /// <param name="MlpRatio">MLP width / d.</param>
    /// <param name="Kernel">w, the depthwise convolution width.</param>
    /// <param name="SeqLen">the training length T.</param>
    /// <param name="EvalLengths">evaluation lengths (the first is T).</param>
    /// <param name="BatchSize">windows per step.</param>
    /// <param name="Steps">optimiser steps per variant (the checkpoints' budget at smoke).</param>
    /// <param name="LearningRate">AdamW peak rate.</param>
    /// <param name="WarmupSteps">linear warm-up, then cosine decay.</param>
    /// <param name="EvalWindows">validation windows per length.</param>
    /// <param name="EvalBatch">windows per forward pass at evaluation.</param>
    /// <param name="TimingBatch">windows in the timed training step.</param>
    /// <param name="TimingRepeats">repeats of the timed step.</param>
    /// <param name="MemoryLengths">T of the peak-memory probe (one training step each).</param>
    /// <param name="Seed">seed of weights and batches.</param>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, int Kernel, int SeqLen, int[] EvalLengths, int BatchSize, int Steps,
        double LearningRate, int WarmupSteps, int EvalWindows, int EvalBatch, int TimingBatch, int TimingRepeats, int[] MemoryLengths, int Seed)
        : IPaperConfig<Config>
    {
        /// <summary>Optimiser steps of the shipped smoke checkpoints.</summary>
        public const int CheckpointSteps = 600;

        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, MlpRatio: 4, Kernel: 3, SeqLen: 128, EvalLengths: new[] { 128, 256, 512 },
            BatchSize: 16, Steps: CheckpointSteps, LearningRate: 3e-3, WarmupSteps: 30, EvalWindows: 24, EvalBatch: 8, TimingBatch: 8, TimingRepeats: 3,
            MemoryLengths: new[] { 128, 512 }, Seed: 0) { Size = "smoke", FromCheckpoints = true };

        public static Config Full => new(Layers: 6, DModel: 256, Heads: 8, MlpRatio: 4, Kernel: 3, SeqLen: 512, EvalLengths: new[] { 512, 1024, 2048 },
            BatchSize: 32, Steps: 5000, LearningRate: 1e-3, WarmupSteps: 200, EvalWindows: 64, EvalBatch: 8, TimingBatch: 16, TimingRepeats: 5,
            MemoryLengths: new[] { 512, 2048 }, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>Load the four models from the shipped checkpoints (smoke) instead of training them here.</summary>
        public bool FromCheckpoints { get; init; }

        /// <summary>Steps trained here when a checkpoint is missing or does not match (the train-briefly fallback).</summary>
        public int FallbackSteps { get; init; } = 60;

        /// <summary>The variants compared (default all four).</summary>
        public IReadOnlyList<RcmhaVariant> Variants { get; init; } = RcmhaVariant.All;

        /// <summary>What a checkpoint of <paramref name="variant"/> made with this config records.</summary>
        public RcmhaModelConfig ModelConfig(RcmhaVariant variant) => new(variant.Name, variant.Conv, variant.Relative, Layers, DModel, Heads, MlpRatio,
            Kernel, SeqLen, Steps, BatchSize, LearningRate, WarmupSteps, CorpusName);

        /// <summary>The backbone of <paramref name="variant"/>: sinusoidal absolute positions for MHA/MDHA, none for the relative ones.</summary>
        public TinyGptConfig Gpt(RcmhaVariant variant, int vocab) => new(Layers: Layers, DModel: DModel, Heads: Heads, MlpRatio: MlpRatio,
            VocabSize: vocab, Positions: variant.ModelPositions, MaxLength: EvalLengths.Max());
    }

    /// <summary>The corpus every run reads.</summary>
    public const string CorpusName = "moby-dick-ch01-10";

    static readonly Lazy<TextCorpus> corpus = new(() => TextCorpus.MobyDick());

    /// <summary>The shipped corpus (loaded once).</summary>
    public static TextCorpus Corpus => corpus.Value;

    /// <summary>A model of <paramref name="variant"/>, freshly initialised from <paramref name="seed"/>.</summary>
    public static TinyGpt Build(RcmhaVariant variant, Config config, int seed)
    {
        ArgumentNullException.ThrowIfNull(variant);
        ArgumentNullException.ThrowIfNull(config);
        torch.manual_seed(seed);
        return new TinyGpt(config.Gpt(variant, Corpus.VocabSize), _ => new RcmhaAttention(config.DModel, config.Heads, variant, config.Kernel));
    }

    /// <summary>
    /// Trains <paramref name="model"/> for <paramref name="steps"/> AdamW steps on the seeded windows every variant sees (step i's batch depends only
    /// on the seed and i), warm-up then cosine decay.
    /// </summary>
    public static TrainHistory Train(TinyGpt model, Config config, int steps, Device device, IProgress<TrainProgress>? progress = null,
        Func<int, IReadOnlyDictionary<string, double>>? evaluate = null, int stepsPerEpoch = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        var options = new TrainOptions(steps, config.LearningRate, WarmupSteps: Math.Min(config.WarmupSteps, steps / 5), StepsPerEpoch: stepsPerEpoch,
            ReportEvery: Math.Max(1, steps / 4));
        var text = Corpus;
        return Trainer.Fit(model, step =>
        {
            using var batch = text.Sample(config.BatchSize, config.SeqLen, config.Seed * 1_000_003 + step, device: device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, progress, evaluate);
    }

    /// <summary>
    /// Validation loss (nats/char) and next-character accuracy over every position of <paramref name="windows"/> windows of
    /// <paramref name="length"/>.
    /// </summary>
    public static (double Loss, double Accuracy) Evaluate(TinyGpt model, int length, int windows, int batch, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var noGrad = torch.no_grad();
        double loss = 0, correct = 0, count = 0;
        for (int done = 0; done < windows; done += batch)
        {
            int n = Math.Min(batch, windows - done);
            using var scope = NewDisposeScope();
            using var data = Corpus.Sample(n, length, 50_021 + 7 * length + done, CorpusSplit.Validation, device: device);
            var logits = model.call(data.Tokens);
            loss += data.Loss(logits).item<float>() * n * length;
            correct += data.Accuracy(logits) * n * length;
            count += n * length;
        }
        return (loss / count, correct / count);
    }

    /// <summary>Exactness, then load (smoke) or train the four models on the same batches, read them at every length, time them.</summary>
    public static RcmhaResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.EvalLengths.Length == 0) throw new ArgumentException("EvalLengths must not be empty.", nameof(config));
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: shift vs loop {Num.Sci(exactness.ShiftGap)}, gather vs loop {Num.Sci(exactness.GatherGap)}, mixer vs naive " +
                         $"{Num.Sci(exactness.MixerGap)}, past outputs after a future change {Num.Sci(exactness.CausalPast)}  [{clock.Seconds:F1} s]");
        var runs = new List<RcmhaRun>();
        var rows = new List<RcmhaEval>();
        double[,]? profile = null;
        var kernels = new List<RcmhaKernel>();
        foreach (var variant in config.Variants)
        {
            TinyGpt built;
            string source;
            IReadOnlyList<double> losses = [];
            double? msPerStep = null;
            string why = "not asked for";
            if (config.FromCheckpoints && TryLoad(variant, config, device, out var loaded, out why))
            {
                (built, var entry) = loaded;
                source = $"checkpoint {entry.Name} ({entry.Steps} steps, seed {entry.Seed}, final train loss {entry.FinalLoss:G3})";
            }
            else
            {
                int steps = config.FromCheckpoints ? config.FallbackSteps : config.Steps;
                built = Build(variant, config, config.Seed);
                built.to(device);
                if (config.FromCheckpoints) progress?.Report($"  {variant.Name}: no usable checkpoint ({why}); training {steps} steps here");
                var report = progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {variant.Name}: {p}"));
                var history = Train(built, config, steps, device, report);
                losses = history.Losses;
                msPerStep = history.Elapsed.TotalMilliseconds / Math.Max(1, steps);
                source = $"trained here ({steps} steps, seed {config.Seed}, final train loss {history.Losses[^1]:G3})" +
                         (config.FromCheckpoints ? " — fallback: the checkpoint was not used" : "");
            }
            using var model = built;
            model.eval();
            var reads = config.EvalLengths.Select(t => (Length: t, Read: Evaluate(model, t, config.EvalWindows, config.EvalBatch, device))).ToList();
            foreach (var (t, r) in reads) rows.Add(new RcmhaEval(variant.Name, t, t / (double)config.SeqLen, r.Loss, r.Accuracy));
            progress?.Report($"{variant.Name} ({model.ParameterCount:N0} parameters, {source}): " +
                             string.Join(", ", reads.Select(r => $"T {r.Length} acc {r.Read.Accuracy:P1} loss {r.Read.Loss:F3}")) +
                             $"  [{clock.Seconds:F1} s]");
            var first = (RcmhaAttention)model.Blocks[0].Mixer;
            using (NewDisposeScope())
            {
                if (variant == RcmhaVariant.Rcmha || (profile is null && variant.Relative && config.Variants.All(v => v != RcmhaVariant.Rcmha)))
                    profile = Matrix(first.BiasProfile(Math.Min(64, config.SeqLen)));
                if (first.Convs is { } convs && (variant == RcmhaVariant.Rcmha || kernels.Count == 0))
                {
                    kernels.RemoveAll(_ => true);
                    foreach (var (name, conv) in new[] { ("Q", convs.Q), ("K", convs.K), ("V", convs.V) })
                    {
                        var taps = conv.Weight.detach().squeeze(1).to(float64).cpu();                     // [C, w]
                        kernels.Add(new RcmhaKernel(variant.Name, name, taps.mean(new long[] { 0 }).data<double>().ToArray(),
                            taps.abs().mean(new long[] { 0 }).data<double>().ToArray()));
                    }
                }
            }
            var (timing, peaks) = Cost(model, config, device);
            runs.Add(new RcmhaRun(variant.Name, model.ParameterCount, source, !source.StartsWith("checkpoint", StringComparison.Ordinal), losses,
                msPerStep, timing, peaks));
            clock.Lap($"read {variant.Name}");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new RcmhaResult(config, exactness, runs, rows, profile, kernels, clock.Seconds, clock.Phases);
    }

    static bool TryLoad(RcmhaVariant variant, Config config, Device device, out (TinyGpt, CheckpointEntry) loaded, out string why)
    {
        try
        {
            loaded = RcmhaCheckpoint.Load(variant, config, device);
            why = "";
            return true;
        }
        catch (Exception e) when (e is FileNotFoundException or ArgumentException or InvalidDataException)
        {
            loaded = default;
            why = e.GetType().Name + ": " + e.Message.Split('.')[0];
            return false;
        }
    }

    static double[,] Matrix(Tensor m)
    {
        using var cpu = m.to(float64).cpu();
        long r = m.size(0), c = m.size(1);
        var data = cpu.data<double>().ToArray();
        var result = new double[r, c];
        for (long i = 0; i < r; i++) for (long j = 0; j < c; j++) result[i, j] = data[i * c + j];
        return result;
    }

    /// <summary>
    /// Median ms of one training step (forward, backward, no optimiser) at the training length and batch TimingBatch, and the peak
    /// process memory growth of one such step at each of MemoryLengths (Linux VmHWM; null where the platform does not expose it).
    /// </summary>
    static (double StepMs, IReadOnlyList<RcmhaPeak> Peaks) Cost(TinyGpt model, Config config, Device device)
    {
        model.train();
        void Step(int length, int batch)
        {
            using var data = Corpus.Sample(batch, length, 91 + length, device: device);
            var loss = data.Loss(model.call(data.Tokens));
            loss.backward();
            model.zero_grad();
        }
        var time = Benchmark.Time(() => Step(config.SeqLen, config.TimingBatch), warmup: 1, repeats: config.TimingRepeats, device: device);
        var peaks = new List<RcmhaPeak>();
        foreach (int t in config.MemoryLengths)
        {
            var mem = Benchmark.PeakMemory(() => Step(t, config.TimingBatch));
            peaks.Add(new RcmhaPeak(t, mem.DeltaBytes is { } d ? d / 1048576.0 : null, mem.Method));
        }
        model.eval();
        return (time.MedianMs, peaks);
    }

    /// <summary>
    /// The exactness phase (float64): shift and gather vs the (i, j) loop (B 2, T 9, H 2, D 5 and T = 1), the four mixers vs their
    /// naive twin (outputs and every gradient), the causality probe, the reduction to MHA and token-by-token decoding.
    /// </summary>
    public static RcmhaExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        double shift = 0, gather = 0;
        bool mask = true;
        foreach (var (t, d) in new[] { (9, 5), (1, 3) })
        {
            var s = RcmhaChecks.ScoreGap(RelShiftMode.Shift, 2, t, 2, d, seed, device);
            var g = RcmhaChecks.ScoreGap(RelShiftMode.Gather, 2, t, 2, d, seed, device);
            (shift, gather, mask) = (Math.Max(shift, s.Gap), Math.Max(gather, g.Gap), mask && s.MaskExact && g.MaskExact);
        }
        double mixer = 0, step = 0;
        foreach (var variant in RcmhaVariant.All)
        {
            using var scope = NewDisposeScope();
            using var m = RcmhaChecks.Random(variant, 10, 2, 3, seed, device);
            var gen = new Generator((ulong)seed + 11);
            var x = torch.randn(new long[] { 2, 7, 10 }, generator: gen, dtype: float64).to(device).requires_grad_();
            mixer = Math.Max(mixer, RcmhaChecks.TwinGap(m, x, gen));
            step = Math.Max(step, RcmhaChecks.StepVsForward(variant, device, seed));
        }
        var (past, future) = RcmhaChecks.Causality(device, seed);
        double reduces = RcmhaChecks.ReducesToMha(device, seed);
        return new RcmhaExactness(shift, gather, mask, mixer, past, future, reduces, step);
    }
}
