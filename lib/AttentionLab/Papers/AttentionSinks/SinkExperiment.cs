using System.Diagnostics;
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
/// The notebook's experiment (P47 §4): one data set (character-level Moby-Dick, a BOS token at position 0), one model
/// family (TinyGpt, RoPE), one seed grid; only the attention variant changes. For each variant and seed: train, log the
/// sink rate during training, measure sink scores, massive activation and the no-op ratio at the end, then stream
/// 4× the training length under a dense cache, a window, sink + window (StreamingLLM) and a recomputed window.
/// </summary>
public static class SinkExperiment
{
    /// <summary>Sizes of one run. Smoke fits a CPU notebook; Full is the spec's GPU run.</summary>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, int SeqLen, int BatchSize, int Steps,
        double LearningRate, int WarmupSteps, int EvalEvery, int EvalBatch, AttentionKind[] Variants, int[] Seeds,
        int StreamFactor, int SinkTokens, int[] SweepBudgets, double Epsilon = 0.3)
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, MlpRatio: 2, SeqLen: 64, BatchSize: 16, Steps: 100,
            LearningRate: 3e-3, WarmupSteps: 10, EvalEvery: 20, EvalBatch: 16, Variants: Enum.GetValues<AttentionKind>(),
            Seeds: new[] { 0 }, StreamFactor: 4, SinkTokens: 4, SweepBudgets: new[] { 8, 32 });

        public static Config Full => new(Layers: 4, DModel: 128, Heads: 8, MlpRatio: 4, SeqLen: 256, BatchSize: 32, Steps: 20000,
            LearningRate: 1e-3, WarmupSteps: 500, EvalEvery: 500, EvalBatch: 32, Variants: Enum.GetValues<AttentionKind>(),
            Seeds: new[] { 0, 1, 2 }, StreamFactor: 32, SinkTokens: 4, SweepBudgets: new[] { 16, 32, 64, 128, 256 });

        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The model of one variant.</summary>
        public TinyGptConfig Model(int vocab, AttentionKind kind) => new(Layers, DModel, Heads, MlpRatio, Positions: PositionKind.Rope,
            VocabSize: vocab, MaxLength: SeqLen + 1, Attention: kind);

        /// <summary>StreamingLLM's window: half the training length.</summary>
        public int Window => SeqLen / 2;

        public Config Validate()
        {
            Guard.Positive(Steps, nameof(Steps)); Guard.Positive(EvalEvery, nameof(EvalEvery)); Guard.Positive(SeqLen, nameof(SeqLen));
            if (Variants.Length == 0) throw new ArgumentException("Variants must not be empty.", nameof(Variants));
            if (Seeds.Length == 0) throw new ArgumentException("Seeds must not be empty.", nameof(Seeds));
            if (StreamFactor < 1) throw new ArgumentException($"StreamFactor must be ≥ 1, got {StreamFactor}.", nameof(StreamFactor));
            if (SweepBudgets.Any(b => b <= SinkTokens)) throw new ArgumentException($"every SweepBudgets entry must exceed SinkTokens {SinkTokens}.", nameof(SweepBudgets));
            if (SinkTokens < 1 || SinkTokens >= Window) throw new ArgumentException($"SinkTokens must be in [1, {Window}), got {SinkTokens}.", nameof(SinkTokens));
            return this;
        }
    }

    /// <summary>Names of the streaming set-ups, in plot order.</summary>
    public const string Dense = "dense cache", WindowOnly = "window", SinkWindow = "sink + window", Recompute = "recompute window";

    /// <summary>Runs every (variant, seed) on <paramref name="device"/>; one progress line per phase and per training report.</summary>
    public static SinkResult Run(Config config, TextCorpus corpus, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(corpus);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var runs = new List<VariantRun>();
        foreach (int seed in config.Seeds)
            foreach (var kind in config.Variants)
            {
                progress?.Report($"{kind}, seed {seed}: training {config.Steps} steps");
                runs.Add(RunOne(config, corpus, kind, seed, device, progress));
            }
        return new SinkResult(config, runs, corpus.UnigramLoss(), clock.Elapsed);
    }

    static VariantRun RunOne(Config config, TextCorpus corpus, AttentionKind kind, int seed, Device device, IProgress<string>? progress)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(config.Model(corpus.VocabSize, kind));
        model.to(device);
        using var eval = corpus.Sample(config.EvalBatch, config.SeqLen, seed: 1_000 + seed, CorpusSplit.Validation, device: device);
        var curve = new List<CurvePoint>();
        var options = new TrainOptions(config.Steps, config.LearningRate, WarmupSteps: config.WarmupSteps, StepsPerEpoch: config.EvalEvery,
            ReportEvery: Math.Max(1, config.Steps / 4));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = corpus.Sample(config.BatchSize, config.SeqLen, seed: seed * 1_000_003 + step, device: device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {kind}: {p}")), epoch =>
        {
            var m = Measure(model, eval, config.Epsilon);
            curve.Add(new CurvePoint(epoch * config.EvalEvery, m.ValidationLoss, m.SinkRate, m.MaxSinkScore));
            return new Dictionary<string, double> { ["validation loss"] = m.ValidationLoss, ["sink rate"] = m.SinkRate };
        });
        var final = Measure(model, eval, config.Epsilon);
        progress?.Report($"  {kind}: streaming {config.StreamFactor}× the training length");
        var streamClock = Stopwatch.StartNew();
        var streaming = Stream(model, corpus, config, device);
        var sweep = kind == config.Variants[0] && seed == config.Seeds[0] ? CacheSweep(model, corpus, config, device) : Array.Empty<CacheSweepPoint>();
        return new VariantRun(kind, seed, history.Losses[^1], final, curve, streaming, history.Elapsed, streamClock.Elapsed, sweep);
    }

    /// <summary>Validation loss and every sink measurement of <paramref name="model"/> on <paramref name="eval"/>.</summary>
    public static SinkMeasurement Measure(TinyGpt model, TokenBatch eval, double epsilon = 0.3)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(eval);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (logits, cache) = model.RunWithCache(eval.Tokens, n => n.EndsWith("hook_pattern") || n.EndsWith("hook_v") || n.EndsWith("hook_resid_post") || n.EndsWith("hook_gate"));
        using (cache)
        {
            var scores = HeadScores.SinkScore(cache, 0, causal: true).to(ScalarType.Float64).cpu();           // a_0 [L, H]
            var ratio = SinkMeasurements.ValueNormRatio(cache).cpu();                                       // ρ [L, H]
            var (pattern, head) = StrongestSinkPattern(cache, scores);
            var patterns = HeadScores.Patterns(cache).to(ScalarType.Float64);                              // [L, B, H, T, T]
            double nowhere = (1 - patterns.sum(-1)).mean().item<double>();                                 // mean 1 − Σ_j A_ij (0 for softmax)
            double gateClosed = cache.Contains("blocks.0.attn.hook_gate")
                ? Enumerable.Range(0, cache.LayerCount).Average(l => 1 - cache["gate", l].to(ScalarType.Float64).mean().item<double>())   // mean 1 − σ(g)
                : double.NaN;
            return new SinkMeasurement(eval.Loss(logits).item<float>(), Rows(scores), HeadScores.SinkRate(scores, epsilon),
                scores.max().item<double>(), SinkMeasurements.MassiveActivation(cache), Rows(ratio), head, pattern, nowhere, gateClosed);
        }
    }

    static Dictionary<string, double[]> Stream(TinyGpt model, TextCorpus corpus, Config config, Device device)
    {
        int n = config.StreamFactor * config.SeqLen, w = config.Window;
        using var stream = corpus.Contiguous(n, CorpusSplit.Validation, device: device);
        return new Dictionary<string, double[]>
        {
            [Dense] = StreamingEval.PolicyLoss(model, stream, w),
            [WindowOnly] = StreamingEval.PolicyLoss(model, stream, w, _ => KvPolicy.SinkWindow(w + config.SinkTokens, nSink: 0)),
            [SinkWindow] = StreamingEval.PolicyLoss(model, stream, w, _ => KvPolicy.SinkWindow(w, config.SinkTokens)),
            [Recompute] = StreamingEval.RecomputeWindowLoss(model, stream, w, w + config.SinkTokens),
        };
    }

    /// <summary>Mean streaming loss over 4× (StreamFactor×) the training length at several cache budgets: window vs sink + window.</summary>
    static CacheSweepPoint[] CacheSweep(TinyGpt model, TextCorpus corpus, Config config, Device device)
    {
        int n = config.StreamFactor * config.SeqLen;
        using var stream = corpus.Contiguous(n, CorpusSplit.Validation, device: device);
        return config.SweepBudgets.SelectMany(budget => new[]
        {
            new CacheSweepPoint(WindowOnly, budget, StreamingEval.PolicyLoss(model, stream, n, _ => KvPolicy.SinkWindow(budget, nSink: 0))[0]),
            new CacheSweepPoint(SinkWindow, budget, StreamingEval.PolicyLoss(model, stream, n, _ => KvPolicy.SinkWindow(budget - config.SinkTokens, config.SinkTokens))[0]),
        }).ToArray();
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
