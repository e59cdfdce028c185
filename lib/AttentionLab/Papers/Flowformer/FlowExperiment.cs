using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>The implied attention of one mechanism on the notebook's random q, k: the matrix [n, n] and its mean row entropy (nats).</summary>
public sealed record AttentionMap(string Mechanism, double[][] Weights, double MeanRowEntropy);

/// <summary>One trained ListOps-lite model: accuracy at the <c>=</c> position, the loss curve, and ms per training step.</summary>
public sealed record ListOpsRun(FlowMixerKind Mechanism, int Seed, double Accuracy, IReadOnlyList<double> Losses, double MsPerStep, long Params);

/// <summary>
/// The notebook's experiment: (a) softmax, plain σ-linear and Flow-Attention materialised on the same random q, k
/// (heatmaps, row entropies, competition weights); (b) fast vs naive forms on awkward shapes; (c) causal TinyGpt
/// models with each mixer trained on ListOps-lite; (d) forward time and memory vs T.
/// </summary>
public static class FlowExperiment
{
    /// <summary>Sizes of one run. Smoke fits a CPU notebook (≈ 25 s on one thread); Full is for a GPU.</summary>
    public sealed record Config(int MapLength, int MapDim, ListOpsLite Task, int Layers, int DModel, int Heads, int Steps, int BatchSize,
        double LearningRate, int TestCount, int[] Seeds, int[] SpeedLengths, int SpeedHeads, int SpeedDim, int SpeedRepeats, int MaxReferenceLength, int Seed)
    {
        public static Config Smoke => new(64, 16, new ListOpsLite(MaxLength: 48, MaxDepth: 3, MaxArgs: 4), Layers: 2, DModel: 64, Heads: 4,
            Steps: 60, BatchSize: 32, LearningRate: 3e-3, TestCount: 512, Seeds: new[] { 0 },
            SpeedLengths: new[] { 256, 512, 1024, 2048 }, SpeedHeads: 4, SpeedDim: 32, SpeedRepeats: 1, MaxReferenceLength: 2048, Seed: 0);

        public static Config Full => new(256, 16, new ListOpsLite(MaxLength: 1024, MaxDepth: 6, MaxArgs: 6, LeafProbability: 0.5), Layers: 4, DModel: 128, Heads: 4,
            Steps: 5000, BatchSize: 32, LearningRate: 1e-3, TestCount: 2000, Seeds: new[] { 0, 1, 2 },
            SpeedLengths: new[] { 256, 512, 1024, 2048, 4096, 8192, 16384, 32768 }, SpeedHeads: 4, SpeedDim: 64, SpeedRepeats: 3, MaxReferenceLength: 16384, Seed: 0);

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;
    }

    /// <summary>The mechanisms compared, in plot order.</summary>
    public static IReadOnlyList<FlowMixerKind> Mechanisms { get; } = new[] { FlowMixerKind.Softmax, FlowMixerKind.Linear, FlowMixerKind.Flow };

    /// <summary>Runs everything on <paramref name="device"/>, one progress line per phase and per training report.</summary>
    public static FlowResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        void Lap(string phase) => clock.Lap(phase);

        progress?.Report($"maps: softmax, linear, flow on random q, k (n = {config.MapLength}, d = {config.MapDim})");
        var (maps, competition, allocation) = Maps(config.MapLength, config.MapDim, config.Seed);
        var equivalence = Equivalence(config.Seed);
        Lap("maps");
        var runs = new List<ListOpsRun>();
        foreach (int seed in config.Seeds)
            foreach (var kind in Mechanisms)
                runs.Add(TrainListOps(kind, config, seed, device, progress));
        Lap("listops");
        progress?.Report($"speed: T = {string.Join(", ", config.SpeedLengths)}");
        var speed = FlowBenchmark.Speed(config.SpeedLengths, heads: config.SpeedHeads, headDim: config.SpeedDim, repeats: config.SpeedRepeats,
            maxReferenceLength: config.MaxReferenceLength, measureMemory: true, device: device);
        Lap("speed");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new FlowResult(config, maps, competition, allocation, equivalence, runs, speed, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// Softmax (scale 1/√d), plain σ-linear (normalised) and normal Flow-Attention weights on one head of random q, k
    /// [1, n, 1, d] (float64, seed): the matrices, mean row entropies, and Flow's competition C [m] and allocation A [n].
    /// </summary>
    public static (IReadOnlyList<AttentionMap> Maps, double[] Competition, double[] Allocation) Maps(int n, int d, int seed)
    {
        Guard.Positive(n, nameof(n)); Guard.Positive(d, nameof(d));
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        var q = torch.randn(new long[] { 1, n, 1, d }, dtype: ScalarType.Float64);
        var k = torch.randn(new long[] { 1, n, 1, d }, dtype: ScalarType.Float64);
        Tensor softmax;
        using (var r = ReferenceAttention.Softmax(q, k, k)) softmax = r.Probabilities[0, 0].alias();
        var fq = torch.sigmoid(q[0, .., 0]); var fk = torch.sigmoid(k[0, .., 0]);
        var kernel = fq.matmul(fk.t());                                                  // φq_i·φk_j
        var linear = kernel / kernel.sum(-1, keepdim: true);                             // plain linear, normalised
        var flow = FlowAttention.Materialize(q, k, causal: false)[0, 0];
        using var w = FlowWeights.Compute(q, k, causal: false);
        var maps = new[] { ("softmax", softmax), ("linear (σ)", linear), ("flow", flow) }
            .Select(m => new AttentionMap(m.Item1, Rows(m.Item2), MeanRowEntropy(m.Item2))).ToList();
        return (maps, w.Competition[0, 0].data<double>().ToArray(), w.Allocation[0, 0].data<double>().ToArray());
    }

    /// <summary>Mean over rows of −Σ_j p_ij log p_ij with p = |W| row-normalised (nats; ln m for uniform rows).</summary>
    public static double MeanRowEntropy(Tensor weights)
    {
        Guard.NotNull(weights, nameof(weights));
        using var scope = NewDisposeScope();
        var p = weights.abs().to(ScalarType.Float64);
        p = p / p.sum(-1, keepdim: true);
        return (-(p * p.clamp_min(1e-300).log()).sum(-1)).mean().item<double>();
    }

    /// <summary>
    /// max |fast − naive| (float64) of <see cref="FlowAttention.Attend"/> against <see cref="FlowAttentionNaive"/> on awkward
    /// shapes: normal with n ≠ m and odd D, causal with T = 1 and odd T through every engine form, and Materialize·V.
    /// </summary>
    public static IReadOnlyDictionary<string, double> Equivalence(int seed)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        var result = new Dictionary<string, double>();
        Tensor R(long b, long t, long h, long d) => torch.randn(new[] { b, t, h, d }, dtype: ScalarType.Float64);
        double Diff(Tensor a, Tensor b) => (a - b).abs().max().item<double>();
        var (q, k, v) = (R(2, 7, 2, 5), R(2, 11, 2, 5), R(2, 11, 2, 3));
        var naive = FlowAttentionNaive.Attend(q, k, v, causal: false);
        result["normal n=7 m=11 D=5"] = Diff(FlowAttention.Attend(q, k, v, causal: false), naive);
        result["normal Materialize·V"] = Diff(FlowAttention.Materialize(q, k, causal: false).matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3), naive);
        foreach (int t in new[] { 1, 13 })
        {
            var (qc, kc, vc) = (R(1, t, 2, 5), R(1, t, 2, 5), R(1, t, 2, 3));
            var naiveC = FlowAttentionNaive.Attend(qc, kc, vc, causal: true);
            foreach (var form in new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked })
                result[$"causal T={t} {form}"] = Diff(FlowAttention.Attend(qc, kc, vc, causal: true, form: form, chunkSize: 4), naiveC);
        }
        return result;
    }

    /// <summary>Trains a causal TinyGpt with <paramref name="kind"/> mixers on fresh ListOps-lite batches; accuracy on a held-out draw.</summary>
    public static ListOpsRun TrainListOps(FlowMixerKind kind, Config c, int seed, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        using var scope = NewDisposeScope();
        using var train = c.Task.Generate(c.Steps * c.BatchSize, 1000 + seed, device);
        using var test = c.Task.Generate(c.TestCount, 2000 + seed, device);
        var config = new TinyGptConfig(Layers: c.Layers, DModel: c.DModel, Heads: c.Heads, VocabSize: c.Task.VocabSize,
            Positions: PositionKind.Learned, MaxLength: c.Task.MaxLength);
        torch.manual_seed(seed);
        using var net = new TinyGpt(config, FlowMixers.Factory(kind, c.DModel, c.Heads)).to(device);
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: Math.Max(1, c.Steps / 2));
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)c.BatchSize, (step + 1L) * c.BatchSize, device: device);
            var labels = train.Labels.index_select(0, rows);
            var logits = net.call(train.Tokens.index_select(0, rows));
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), labels.reshape(-1), ignore_index: TokenBatch.Ignore);
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {kind} (seed {seed}): {p}")));
        net.eval();
        double accuracy;
        using (torch.no_grad()) accuracy = test.Accuracy(net.call(test.Tokens));
        double msPerStep = history.Elapsed.TotalMilliseconds / Math.Max(1, history.Losses.Count);
        progress?.Report($"  {kind} (seed {seed}): accuracy {accuracy:P1}, {msPerStep:F0} ms/step");
        return new ListOpsRun(kind, seed, accuracy, history.Losses, msPerStep, net.ParameterCount);
    }

    static double[][] Rows(Tensor m)
    {
        var x = m.to(ScalarType.Float64).contiguous();
        return Enumerable.Range(0, (int)x.shape[0]).Select(i => x[i].data<double>().ToArray()).ToArray();
    }
}
