using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Papers.Based;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Atlas;

/// <summary>What one mixer reached on the memory atlas's recall task.</summary>
/// <param name="Name">the mixer's name.</param>
/// <param name="Family">its family (plot colour).</param>
/// <param name="Role">baseline or memory.</param>
/// <param name="Recall">accuracy over every query of the held-out sequences.</param>
/// <param name="NearRecall">accuracy on queries at most n tokens after their key (inside every window).</param>
/// <param name="FarRecall">accuracy on queries at least <see cref="MemoryAtlasResult.FarFactor"/>·n tokens after their key (beyond the window).</param>
/// <param name="FarQueries">how many held-out queries are far.</param>
/// <param name="StateBytes">decode state of the 2-layer model after T tokens, one sequence (conv + mixer).</param>
/// <param name="StateCounted">true when <paramref name="StateBytes"/> is counted by formula (a mixer that cannot stream), false when measured
/// from the streamed decode state.</param>
/// <param name="MicrosecondsPerToken">forward time per token on the test batch (a timing: reported, not asserted).</param>
/// <param name="Params">trainable parameters of the whole model.</param>
/// <param name="StepVsForwardMaxAbs">max |Step − exact forward| over one streamed sequence (NaN when it cannot stream).</param>
/// <param name="ChunkedVsExactMaxAbs">max |chunked forward − exact recurrent forward| on that sequence (0 for mixers without a chunked approximation).</param>
/// <param name="FinalLoss">mean training loss over the last tenth of the steps.</param>
/// <param name="TrainSeconds">training wall time.</param>
public sealed record MemoryPoint(string Name, string Family, MemoryRole Role, double Recall, double NearRecall, double FarRecall, int FarQueries,
    long StateBytes, bool StateCounted, double MicrosecondsPerToken, long Params, double StepVsForwardMaxAbs, double ChunkedVsExactMaxAbs,
    double FinalLoss, double TrainSeconds);

/// <summary>
/// The memory atlas (issue 12 item 3, notebook 91): the test-time memories (Titans, Miras, HCAM, …) and their baselines (softmax,
/// sliding-window and linear attention, plain and gated) as layer 1 of the same two-layer TinyGpt (layer 0 BASED's short conv,
/// as in atlas 90), trained with the same batches, steps and learning rate on MQAR with uniform query gaps, so that most
/// queries sit far beyond the window; recall near and far, decode-state bytes and time per token, with Pareto fronts.
/// </summary>
public sealed class MemoryAtlas : IPaperExperiment<MemoryAtlas.Config, MemoryAtlasResult>
{
    MemoryAtlas() { }

    /// <summary>The memory atlas in the catalogue (a cross-paper study: 91).</summary>
    public static PaperInfo Paper { get; } = new(91, "Memory atlas: test-time memories vs attention on recall, state and speed", "memory-atlas");

    /// <summary>Sizes of one run. <c>Window</c> is every local attention's n; MQAR gaps are uniform (PowerA = 1).</summary>
    public sealed record Config(int Vocab, int SeqLen, int Pairs, int DModel, int Heads, int Window, MemoryArchitecture Memory, int ChunkSize,
        int Steps, int BatchSize, double LearningRate, int TestCount, int Seed, int TimingRepeats, IReadOnlyList<MemoryMixer> Mixers) : IPaperConfig<Config>
    {
        /// <summary>CPU smoke size: atlas 90's MQAR widths at T = 64 (so that far queries exist), linear memories, one minute on one thread.</summary>
        public static Config Smoke => new(Vocab: 64, SeqLen: 32, Pairs: 4, DModel: 32, Heads: 2, Window: 8, Memory: MemoryArchitecture.Linear, ChunkSize: 16,
            Steps: 200, BatchSize: 32, LearningRate: 1e-2, TestCount: 256, Seed: 0, TimingRepeats: 3, Mixers: MemoryAtlasMixers.Smoke) { Size = "smoke" };

        /// <summary>A GPU size: longer sequences, more pairs, MLP memories.</summary>
        public static Config Full => new(Vocab: 8192, SeqLen: 512, Pairs: 32, DModel: 128, Heads: 4, Window: 32, Memory: MemoryArchitecture.Mlp, ChunkSize: 16,
            Steps: 4000, BatchSize: 64, LearningRate: 3e-3, TestCount: 1000, Seed: 0, TimingRepeats: 5, Mixers: MemoryAtlasMixers.Full) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; "custom" once a field changes.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>MQAR with uniform gaps (PowerA = 1) and random filler: key-to-query distances spread over the whole sequence.</summary>
        public MqarTask Task => new(Vocab, SeqLen, Pairs, PowerA: 1.0, RandomFiller: true);

        /// <summary>What every mixer is built from.</summary>
        public MemoryShape Shape => new(DModel, Heads, Window, SeqLen, Memory, ChunkSize);

        /// <summary>Checks the sizes; an ArgumentException names the bad field.</summary>
        public Config Validate()
        {
            Guard.Positive(Steps, nameof(Steps)); Guard.Positive(BatchSize, nameof(BatchSize)); Guard.Positive(TestCount, nameof(TestCount));
            Guard.Positive(Window, nameof(Window)); Guard.Positive(ChunkSize, nameof(ChunkSize)); Guard.Positive(TimingRepeats, nameof(TimingRepeats));
            if (Mixers is null || Mixers.Count == 0) throw new ArgumentException("Mixers must not be empty.", nameof(Mixers));
            if (Mixers.Select(m => AtlasResult.Slug(m.Name)).Distinct().Count() != Mixers.Count)
                throw new ArgumentException("Mixers holds two names with the same claim id.", nameof(Mixers));
            if (DModel % Heads != 0) throw new ArgumentException($"Heads {Heads} must divide DModel {DModel}.", nameof(Heads));
            if (MemoryAtlasResult.FarFactor * Window >= SeqLen)
                throw new ArgumentException($"Window {Window}: no query can sit {MemoryAtlasResult.FarFactor}·n beyond its key in T = {SeqLen}.",
                    nameof(Window));
            return this;
        }
    }

    /// <summary>Trains and measures every mixer in turn; one progress line per mixer.</summary>
    public static MemoryAtlasResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        using var train = config.Task.Generate(config.Steps * config.BatchSize, config.Seed, device);
        using var test = config.Task.Generate(config.TestCount, config.Seed + 1, device);
        var distances = Distances(test, config.Pairs);
        var points = new List<MemoryPoint>();
        foreach (var mixer in config.Mixers)
        {
            var point = One(mixer, config, train, test, distances, device);
            clock.Lap(mixer.Name);
            progress?.Report($"{mixer.Name}: recall {point.Recall:P1} (far {point.FarRecall:P1}), state {point.StateBytes:N0} B" +
                $"{(point.StateCounted ? " (counted)" : "")}, {point.MicrosecondsPerToken:F2} µs/token, trained in {point.TrainSeconds:F1} s");
            points.Add(point);
        }
        return new MemoryAtlasResult(config, points, clock.Seconds);
    }

    /// <summary>Key-to-query distance of every query [N, P]: key i sits at 2i, its query at 2P + 2·gap.</summary>
    public static long[,] Distances(MqarBatch batch, int pairs)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var gaps = batch.Gaps.cpu().data<long>().ToArray();
        int n = (int)batch.Gaps.shape[0];
        var d = new long[n, pairs];
        for (int s = 0; s < n; s++)
            for (int i = 0; i < pairs; i++) d[s, i] = 2L * pairs + 2 * gaps[s * pairs + i] - 2L * i;
        return d;
    }

    static TinyGpt Model(Config c, Func<MemoryShape, nn.Module<Tensor, Tensor>> build) =>
        new(new TinyGptConfig(Layers: 2, DModel: c.DModel, Heads: c.Heads, VocabSize: c.Vocab, Mlp: false, MaxLength: c.SeqLen),
            layer => layer == 0 ? new BaseConv(c.DModel) : build(c.Shape));

    static MemoryPoint One(MemoryMixer mixer, Config c, MqarBatch train, MqarBatch test, long[,] distances, Device device)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(c.Seed);
        using var net = Model(c, mixer.Build).to(device);
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: c.Steps);
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)c.BatchSize, (step + 1L) * c.BatchSize, device: device);
            var logits = net.call(train.Tokens.index_select(0, rows));
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), train.Labels.index_select(0, rows).reshape(-1),
                ignore_index: TokenBatch.Ignore);
        }, options);
        net.eval();
        var (all, near, far, farCount) = Score(net, test, distances, c);
        var time = Benchmark.Time(() => { using var _ = torch.no_grad(); net.call(test.Tokens).Dispose(); }, warmup: 1, repeats: c.TimingRepeats,
            device: device);
        double usPerToken = 1000.0 * time.MinMs / test.Tokens.numel();
        long conv = ((BaseConv)net.Blocks[0].Mixer).StateBytes();
        double finalLoss = history.Losses.Count == 0 ? double.NaN : history.Losses.TakeLast(Math.Max(1, history.Losses.Count / 10)).Average();
        if (mixer.CountedStateBytes is { } counted)
            return new MemoryPoint(mixer.Name, mixer.Family, mixer.Role, all, near, far, farCount, conv + counted(c.Shape), true, usPerToken,
                net.ParameterCount, double.NaN, 0, finalLoss, history.Elapsed.TotalSeconds);
        var tokens = test.Tokens.narrow(0, 0, 1);
        using var twin = mixer.ExactTwin is { } exact ? Model(c, exact).to(device) : null;
        twin?.load_state_dict(net.state_dict());
        twin?.eval();
        var (bytes, stepError, chunkGap) = Stream(net, twin, tokens);
        return new MemoryPoint(mixer.Name, mixer.Family, mixer.Role, all, near, far, farCount, bytes, false, usPerToken, net.ParameterCount, stepError,
            chunkGap, finalLoss, history.Elapsed.TotalSeconds);
    }

    /// <summary>Accuracy over all queries, near ones (distance ≤ n) and far ones (distance ≥ FarFactor·n), and the far count.</summary>
    static (double All, double Near, double Far, int FarCount) Score(TinyGpt net, MqarBatch test, long[,] distances, Config c)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var predicted = net.call(test.Tokens).argmax(-1).cpu().data<long>().ToArray();
        var labels = test.Labels.cpu().data<long>().ToArray();
        var gaps = test.Gaps.cpu().data<long>().ToArray();
        int t = c.SeqLen, p = c.Pairs;
        long farFrom = MemoryAtlasResult.FarFactor * (long)c.Window;
        int hits = 0, count = 0, nearHits = 0, nearCount = 0, farHits = 0, farCount = 0;
        for (int n = 0; n < test.Count; n++)
            for (int i = 0; i < p; i++)
            {
                long q = 2L * p + 2 * gaps[n * p + i];
                bool ok = predicted[n * t + q] == labels[n * t + q];
                count++; hits += ok ? 1 : 0;
                if (distances[n, i] <= c.Window) { nearCount++; nearHits += ok ? 1 : 0; }
                if (distances[n, i] >= farFrom) { farCount++; farHits += ok ? 1 : 0; }
            }
        static double Ratio(int h, int n) => n == 0 ? double.NaN : h / (double)n;
        return (Ratio(hits, count), Ratio(nearHits, nearCount), Ratio(farHits, farCount), farCount);
    }

    /// <summary>
    /// Streams one sequence through <paramref name="net"/>: the decode state's bytes after T tokens, max |Step − exact forward|
    /// (the twin's recurrent forward where given, else the net's own) and max |trained forward − exact forward|.
    /// </summary>
    static (long Bytes, double StepError, double ChunkGap) Stream(TinyGpt net, TinyGpt? twin, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = net.NewState(1);
        var steps = new List<Tensor>();
        for (int t = 0; t < tokens.shape[1]; t++) steps.Add(net.Step(tokens.select(1, t), state));
        var forward = net.call(tokens);
        var exact = twin?.call(tokens) ?? forward;
        double stepError = (torch.stack(steps, 1) - exact).abs().max().item<float>();
        double chunkGap = (forward - exact).abs().max().item<float>();
        return (state.Bytes, stepError, chunkGap);
    }
}
