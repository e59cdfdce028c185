using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// The notebook's experiment: (1) the constant-speed sweep — fixed tokens per batch, growing n, forward + backward of
/// Lightning (chunked and tiled) vs softmax (reference, SDPA) and the naive masked linear form; (2) the tiled loop's
/// intra vs inter time; (3) a small char LM on Moby-Dick, a TNL stack (Lightning mixers) vs a softmax TinyGpt with the
/// same backbone, same batches; (4) the trained TNL model decoding token by token at constant state size.
/// </summary>
public static class LightningExperiment
{
    /// <summary>Sizes of one run. Smoke fits a one-thread CPU notebook (≈ 40 s); Full is for a GPU.</summary>
    public sealed record Config(int TokensPerBatch, int[] Lengths, int Heads, int HeadDim, int Block, int MaxQuadraticLength,
        int BenchWarmup, int BenchRepeats, int LmLayers, int LmDModel, int LmHeads, int LmSeqLen, int LmBatch, int LmSteps,
        double LearningRate, int EvalBatch, int StreamLength, int Seed)
    {
        public static Config Smoke => new(TokensPerBatch: 4096, Lengths: new[] { 256, 512, 1024, 2048 }, Heads: 4, HeadDim: 64, Block: 64,
            MaxQuadraticLength: 512, BenchWarmup: 1, BenchRepeats: 3, LmLayers: 2, LmDModel: 64, LmHeads: 4, LmSeqLen: 64, LmBatch: 16,
            LmSteps: 120, LearningRate: 3e-3, EvalBatch: 32, StreamLength: 128, Seed: 0);

        public static Config Full => new(TokensPerBatch: 65536, Lengths: new[] { 1024, 2048, 4096, 8192, 16384, 32768, 65536 }, Heads: 8,
            HeadDim: 128, Block: 64, MaxQuadraticLength: 8192, BenchWarmup: 2, BenchRepeats: 5, LmLayers: 4, LmDModel: 128, LmHeads: 8,
            LmSeqLen: 256, LmBatch: 32, LmSteps: 3000, LearningRate: 1e-3, EvalBatch: 64, StreamLength: 4096, Seed: 0);

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The LM backbone: token inputs, RoPE for the softmax model, no positions for TNL (the decay orders tokens).</summary>
        public TinyGptConfig Model(int vocab, bool softmax) => new(LmLayers, LmDModel, LmHeads, MlpRatio: 2,
            Positions: softmax ? PositionKind.Rope : PositionKind.None, VocabSize: vocab, MaxLength: LmSeqLen + 1);
    }

    public const string TnlName = "TNL (lightning)", SoftmaxName = "softmax Transformer";

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase and per measurement.</summary>
    public static LightningResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        void Lap(string phase) => clock.Lap(phase);

        progress?.Report($"constant-speed sweep: {config.TokensPerBatch} tokens per batch, n = {string.Join(", ", config.Lengths)}, forward + backward");
        var speed = LightningBenchmarks.Sweep(config.Lengths, config.TokensPerBatch, heads: config.Heads, headDim: config.HeadDim, block: config.Block,
            backward: true, maxQuadraticLength: config.MaxQuadraticLength, warmup: config.BenchWarmup, repeats: config.BenchRepeats,
            measureMemory: device.type == DeviceType.CPU, seed: config.Seed, device: device,
            progress: new InlineProgress<SpeedRow>(r => progress?.Report($"  n = {r.SeqLen,5} × B = {r.Batch,3}  {r.Method,-22} {r.Ms,9:F1} ms  {r.TokensPerSecond / 1000,8:F1} k tok/s")));
        Lap("speed sweep");
        int splitN = config.Lengths.Max() / config.Block * config.Block;
        var (intra, inter) = LightningBenchmarks.IntraInterSplit(splitN, Math.Max(1, config.TokensPerBatch / splitN), config.Heads, config.HeadDim,
            config.Block, config.BenchWarmup, config.BenchRepeats, config.Seed, device);
        progress?.Report($"tiled loop at n = {splitN}: intra {intra.MedianMs:F1} ms, inter {inter.MedianMs:F1} ms");
        Lap("intra/inter split");

        var corpus = TextCorpus.MobyDick();
        var runs = new List<LmRun>();
        foreach (bool softmax in new[] { false, true })
        {
            string name = softmax ? SoftmaxName : TnlName;
            torch.manual_seed(config.Seed);
            var model = softmax ? new TinyGpt(config.Model(corpus.VocabSize, true)) : LightningStack.Create(config.Model(corpus.VocabSize, false), block: config.Block);
            model.to(device);
            runs.Add(Train(name, model, corpus, config, device, progress));
            Lap($"train {name}");
        }
        var (stream, stepError) = Stream(runs, corpus, config, device);
        foreach (var r in runs) r.Model.Dispose();
        Lap("decode");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new LightningResult(config, speed, splitN, intra, inter, runs.Select(r => r.Summary).ToList(), corpus.UnigramLoss(),
            stream, stepError, clock.Seconds, clock.Phases);
    }

    sealed record LmRun(TinyGpt Model, LmSummary Summary);

    static LmRun Train(string name, TinyGpt model, TextCorpus corpus, Config c, Device device, IProgress<string>? progress)
    {
        progress?.Report($"training {name} ({model.ParameterCount:N0} parameters), {c.LmSteps} steps of {c.LmBatch} × {c.LmSeqLen} characters");
        using var eval = corpus.Sample(c.EvalBatch, c.LmSeqLen, seed: 1_000 + c.Seed, CorpusSplit.Validation, device: device);
        var options = new TrainOptions(c.LmSteps, c.LearningRate, WarmupSteps: c.LmSteps / 10, ReportEvery: Math.Max(1, c.LmSteps / 3));
        var clock = Stopwatch.StartNew();
        var history = Trainer.Fit(model, step =>
        {
            using var batch = corpus.Sample(c.LmBatch, c.LmSeqLen, seed: c.Seed * 1_000_003 + step, device: device);   // same batches for both
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {name}: {p}")));
        double seconds = clock.Elapsed.TotalSeconds;
        double validation;
        using (var scope = NewDisposeScope())
        using (torch.no_grad())
        {
            model.eval();
            validation = eval.Loss(model.call(eval.Tokens)).item<float>();
        }
        progress?.Report($"  {name}: validation loss {validation:F3} nats/char");
        return new LmRun(model, new LmSummary(name, model.ParameterCount, history.Losses, validation, seconds));
    }

    /// <summary>Both trained models decode one validation window token by token; TNL's Step is checked against its forward pass.</summary>
    static (IReadOnlyList<DecodePoint> Points, double StepError) Stream(IReadOnlyList<LmRun> runs, TextCorpus corpus, Config c, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var window = corpus.Contiguous(c.StreamLength, CorpusSplit.Validation, device: device);
        var points = new List<DecodePoint>();
        double stepError = double.NaN;
        foreach (var run in runs)
        {
            var model = run.Model;
            using var state = model.NewState(1);
            var outputs = new List<Tensor>();
            int check = Math.Min(c.LmSeqLen, c.StreamLength);
            for (int t = 0; t < c.StreamLength; t++)
            {
                using var step = NewDisposeScope();
                var x = window.Tokens.narrow(1, t, 1).squeeze(1);                                            // [1]
                var clock = Stopwatch.StartNew();
                var y = model.Step(x, state);
                if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                points.Add(new DecodePoint(run.Summary.Name, t + 1, clock.Elapsed.TotalMilliseconds, state.Bytes));
                if (run.Summary.Name == TnlName && t < check) outputs.Add(y.MoveToOuterDisposeScope());
            }
            if (run.Summary.Name == TnlName)
            {
                var full = model.call(window.Tokens.narrow(1, 0, check));
                stepError = (torch.stack(outputs, 1) - full).abs().max().item<float>();
            }
        }
        return (points, stepError);
    }
}
