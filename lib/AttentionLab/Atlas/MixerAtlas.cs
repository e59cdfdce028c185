using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Papers.Based;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Atlas;

/// <summary>What one mixer reached on MQAR: recall, streaming state bytes after T tokens (null when it cannot stream), throughput.</summary>
/// <param name="Name">the mixer's name.</param>
/// <param name="Family">its family (plot colour).</param>
/// <param name="Recall">accuracy at the query positions of held-out sequences.</param>
/// <param name="StateBytes">bytes of the 2-layer model's streaming state after T tokens (conv + mixer), or null.</param>
/// <param name="TokensPerSecond">forward tokens per second on the test batch (a timing: reported, not asserted).</param>
/// <param name="Params">trainable parameters of the whole model.</param>
/// <param name="StepVsForwardMaxAbs">max |Step − forward| over one streamed sequence (NaN when it cannot stream).</param>
/// <param name="TrainSeconds">training wall time.</param>
/// <param name="StateCounted">true when StateBytes is counted from the method's definition (Landmark's working set), not streamed.</param>
/// <param name="FormulaStateBytes">the bytes its streamed state must equal by its paper: the conv's plus the mixer's
/// <see cref="AtlasStateFormula"/> (S2: each head's stride blocks + local window); null for a mixer without one.</param>
public sealed record AtlasPoint(string Name, string Family, double Recall, long? StateBytes, double TokensPerSecond, long Params,
    double StepVsForwardMaxAbs, double TrainSeconds, bool StateCounted = false, long? FormulaStateBytes = null);

/// <summary>
/// The efficient-attention atlas (issue 4, notebook 90): every mixer of <see cref="AtlasMixers"/> trained on the same MQAR
/// task at equal width and depth, then placed on recall vs state size and recall vs throughput — BASED's Pareto frontier
/// extended to the whole library. On the paper contract as number 90; its claims are the atlas's own comparisons.
/// </summary>
public sealed class MixerAtlas : IPaperExperiment<MixerAtlas.Config, AtlasResult>
{
    MixerAtlas() { }

    /// <summary>The atlas in the catalogue (a cross-paper study: 90).</summary>
    public static PaperInfo Paper { get; } = new(90, "Efficient-attention atlas: recall vs state, recall vs speed", "efficient-attention-atlas");

    /// <summary>Sizes of one run.</summary>
    public sealed record Config(int Vocab, int SeqLen, int Pairs, int DModel, int Heads, int Steps, int BatchSize, double LearningRate,
        int TestCount, int Seed, int TimingRepeats, IReadOnlyList<AtlasMixer> Mixers) : IPaperConfig<Config>
    {
        /// <summary>CPU smoke size (BASED notebook's MQAR settings), about a minute on one thread.</summary>
        public static Config Smoke => new(Vocab: 64, SeqLen: 32, Pairs: 4, DModel: 32, Heads: 2, Steps: 200, BatchSize: 32, LearningRate: 1e-2,
            TestCount: 256, Seed: 0, TimingRepeats: 3, Mixers: AtlasMixers.Smoke) { Size = "smoke" };

        /// <summary>zoology-like size for a GPU.</summary>
        public static Config Full => new(Vocab: 8192, SeqLen: 256, Pairs: 32, DModel: 128, Heads: 4, Steps: 4000, BatchSize: 256, LearningRate: 3e-3,
            TestCount: 1000, Seed: 0, TimingRepeats: 5, Mixers: AtlasMixers.Full) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; "custom" once a field changes.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        public Config Validate()
        {
            Guard.Positive(Steps, nameof(Steps)); Guard.Positive(BatchSize, nameof(BatchSize)); Guard.Positive(TestCount, nameof(TestCount));
            if (Mixers is null || Mixers.Count == 0) throw new ArgumentException("Mixers must not be empty.", nameof(Mixers));
            if (DModel % Heads != 0) throw new ArgumentException($"Heads {Heads} must divide DModel {DModel}.", nameof(Heads));
            return this;
        }
    }

    /// <summary>Trains and measures every mixer in turn; one progress line per mixer.</summary>
    public static AtlasResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        var task = new MqarTask(VocabSize: config.Vocab, Length: config.SeqLen, Pairs: config.Pairs);
        using var train = task.Generate(config.Steps * config.BatchSize, config.Seed, device);
        using var test = task.Generate(config.TestCount, config.Seed + 1, device);
        var points = new List<AtlasPoint>();
        foreach (var mixer in config.Mixers)
        {
            var point = One(mixer, config, train, test, device);
            clock.Lap(mixer.Name);
            progress?.Report($"{mixer.Name}: recall {point.Recall:P1}, state {(point.StateBytes is { } b ? $"{b:N0} B" : "n/a")}, " +
                $"{point.TokensPerSecond:N0} tokens/s, trained in {point.TrainSeconds:F1} s");
            points.Add(point);
        }
        return new AtlasResult(config, points, clock.Seconds);
    }

    static AtlasPoint One(AtlasMixer mixer, Config c, MqarBatch train, MqarBatch test, Device device)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(c.Seed);
        // A mixer with its own sequences (Landmark: a landmark token after every ℓ_b tokens, labels −100 there) reads those.
        var seq = mixer.Sequences;
        Tensor Tokens(Tensor t) => seq is null ? t : seq.Tokens(t, c.Vocab);
        Tensor Labels(Tensor l) => seq is null ? l : seq.Labels(l);
        var (trainTokens, trainLabels, testTokens, testLabels) = (Tokens(train.Tokens), Labels(train.Labels), Tokens(test.Tokens), Labels(test.Labels));
        var model = new TinyGptConfig(Layers: 2, DModel: c.DModel, Heads: c.Heads, VocabSize: c.Vocab + (seq?.ExtraVocab ?? 0), Mlp: false,
            MaxLength: (int)testTokens.shape[1]);
        using var net = new TinyGpt(model, layer => layer == 0 ? new BaseConv(c.DModel) : mixer.Build(c.DModel, c.Heads)).to(device);
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: c.Steps);
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)c.BatchSize, (step + 1L) * c.BatchSize, device: device);
            var logits = net.call(trainTokens.index_select(0, rows));
            var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), trainLabels.index_select(0, rows).reshape(-1),
                ignore_index: TokenBatch.Ignore);
            return mixer.AuxLoss?.Invoke(net.Blocks[1].Mixer) is { } aux ? loss + aux : loss;       // MoH: + β·L_b
        }, options);
        net.eval();
        double recall;
        using (torch.no_grad())
        {
            var predicted = net.call(testTokens).argmax(-1);
            var scored = testLabels.ne(TokenBatch.Ignore);
            recall = predicted.eq(testLabels).logical_and(scored).sum().item<long>() / (double)Math.Max(1, scored.sum().item<long>());
        }
        var time = Benchmark.Time(() => { using var _ = torch.no_grad(); net.call(testTokens).Dispose(); }, warmup: 1, repeats: c.TimingRepeats);
        double tokensPerSecond = test.Tokens.numel() / (time.MinMs / 1000.0);                 // ordinary tokens (inserted ones are overhead)
        if (mixer.CountedStateBytes is { } counted)
        {
            long conv = ((BaseConv)net.Blocks[0].Mixer).StateBytes();
            long working = counted(c.SeqLen, c.Heads, c.DModel / c.Heads);
            return new AtlasPoint(mixer.Name, mixer.Family, recall, conv + working, tokensPerSecond, net.ParameterCount, double.NaN,
                history.Elapsed.TotalSeconds, StateCounted: true);
        }
        var (bytes, error) = Stream(net, test.Tokens.narrow(0, 0, 1));
        long? formula = mixer.StateFormula is { } f                                                // what the paper says it holds
            ? ((BaseConv)net.Blocks[0].Mixer).StateBytes() + f.Bytes(net.Blocks[1].Mixer, c.SeqLen) : null;
        return new AtlasPoint(mixer.Name, mixer.Family, recall, bytes, tokensPerSecond, net.ParameterCount, error, history.Elapsed.TotalSeconds,
            FormulaStateBytes: formula);
    }

    /// <summary>State bytes after streaming one sequence and max |Step − forward|; (null, NaN) for a mixer that cannot stream.</summary>
    static (long? Bytes, double MaxAbs) Stream(TinyGpt net, Tensor tokens)
    {
        if (net.Blocks.Any(b => b.Mixer is not IStreamingMixer { CanStream: true })) return (null, double.NaN);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = net.NewState(1);
        var steps = new List<Tensor>();
        for (int t = 0; t < tokens.shape[1]; t++) steps.Add(net.Step(tokens.select(1, t), state));
        return (state.Bytes, (torch.stack(steps, 1) - net.call(tokens)).abs().max().item<float>());
    }
}
