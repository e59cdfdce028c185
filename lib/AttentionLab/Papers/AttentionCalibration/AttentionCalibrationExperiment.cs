using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// P26 ACT: the notebook's experiment. (0) Exactness on toy tensors: ACT against its naive loop twin (prefill, decode rows,
/// encoder), the §6 identities, and the hook on the trained model (an empty head list is bitwise the baseline; the calibrated
/// pattern is what multiplies V, for several heads of one layer). (a) A tiny GPT trained on in-context classification with
/// delimiters (<see cref="ActTask"/>), the one-head-at-a-time search on a calibration split, the kept set on a test split, and
/// the forward time with and without ACT. (b) MiniLM zero-shot nearest-prototype sentiment (<see cref="MiniLmPrototypes"/>),
/// searched and tested the same way.
/// </summary>
public sealed class AttentionCalibrationExperiment : IPaperExperiment<AttentionCalibrationExperiment.Config, AttentionCalibrationResult>
{
    AttentionCalibrationExperiment() { }

    /// <summary>P26 in the catalogue (notebook notebooks/26-attention-calibration.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(26, "ACT: attention calibration", "attention-calibration");

    /// <summary>
    /// Sizes of one run. Smoke: spec §4 (2 × 4 heads, all 8 searched on 200 calibration sequences, 400 test; MiniLM searched on
    /// 200 sentences, reported on 400, over heads 0–3 of layers 1–4 as the official script tries heads 0–3 of the inner layers).
    /// Full: 4 × 8 heads, 5 seeds, every MiniLM head.
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, int Demos, int Content, double FlipProbability, int Steps,
        int BatchSize, double LearningRate,
        int CalibCount, int TestCount, int[] Seeds, bool UseMiniLm, int MiniLmCalib, int MiniLmTest, int[] MiniLmLayers, int[] MiniLmHeads,
        double Alpha, double Beta, int TimingRepeats) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, Demos: 4, Content: 8, FlipProbability: 0.2, Steps: 170,
            BatchSize: 32, LearningRate: 3e-3,
            CalibCount: 200, TestCount: 400, Seeds: new[] { 0 }, UseMiniLm: true, MiniLmCalib: 200, MiniLmTest: 400,
            MiniLmLayers: new[] { 1, 2, 3, 4 }, MiniLmHeads: new[] { 0, 1, 2, 3 }, Alpha: 0.1, Beta: 0.4, TimingRepeats: 5) { Size = "smoke" };

        public static Config Full => new(Layers: 4, DModel: 128, Heads: 8, Demos: 6, Content: 16, FlipProbability: 0.2, Steps: 3000,
            BatchSize: 64, LearningRate: 1e-3,
            CalibCount: 900, TestCount: 2000, Seeds: new[] { 0, 1, 2, 3, 4 }, UseMiniLm: true, MiniLmCalib: 900, MiniLmTest: 2000,
            MiniLmLayers: Enumerable.Range(0, 6).ToArray(), MiniLmHeads: Enumerable.Range(0, 12).ToArray(), Alpha: 0.1, Beta: 0.4, TimingRepeats: 10)
        { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The task.</summary>
        public ActTask Task => new(Demos, Content, FlipProbability);

        /// <summary>The tiny GPT (learned positions).</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, 4, Positions: PositionKind.Learned, VocabSize: Task.VocabSize, MaxLength: Task.Length);
    }

    /// <summary>Seeds of the calibration and test splits (offset by the run's seed).</summary>
    public const int CalibSeed = 1_000_003, TestSeed = 2_000_003;

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static AttentionCalibrationResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        var exactness = ActChecks.Toy(config.Alpha, config.Beta, device);
        clock.Lap("exactness");
        progress?.Report($"exactness: fast vs naive {Num.Sci(exactness.NaiveMaxAbs)}, rows sum to 1 within {Num.Sci(exactness.RowSumMaxDev)}");

        var runs = new List<GptRun>();
        foreach (int seed in config.Seeds)
        {
            runs.Add(RunGpt(config, seed, device, progress, first: runs.Count == 0));
            clock.Lap($"tiny GPT seed {seed}");
        }
        MiniLmRun? minilm = null;
        if (config.UseMiniLm)
        {
            minilm = RunMiniLm(config, device, progress);
            clock.Lap("MiniLM");
        }
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new AttentionCalibrationResult(config, exactness, runs, minilm, clock.Seconds, clock.Phases);
    }

    static GptRun RunGpt(Config c, int seed, Device device, IProgress<string>? progress, bool first)
    {
        torch.manual_seed(seed);
        var task = c.Task;
        using var model = new TinyGpt(c.Model);
        model.to(device);
        progress?.Report($"seed {seed}: training a {c.Layers} × {c.Heads}-head GPT ({model.ParameterCount:N0} parameters), " +
            $"{c.Steps} steps of {c.BatchSize} × {task.Length}");
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: Math.Max(1, c.Steps / 3));
        Trainer.Fit(model, step =>
        {
            using var batch = task.Generate(c.BatchSize, seed * 7_919 + step, device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {p}")));
        model.eval();

        using var calib = task.Generate(c.CalibCount, CalibSeed + seed, device);
        using var test = task.Generate(c.TestCount, TestSeed + seed, device);
        double Accuracy(Data.TokenBatch b)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            return ActTask.QueryAccuracy(model.call(b.Tokens), b);
        }
        var candidates = Enumerable.Range(0, c.Layers).SelectMany(l => Enumerable.Range(0, c.Heads).Select(h => (l, h))).ToList();
        progress?.Report($"seed {seed}: head search over {candidates.Count} heads on {c.CalibCount} calibration sequences");
        var search = ActSearch.Run(model, () => Accuracy(calib), candidates, c.Alpha, c.Beta, progress: progress);
        double testBase = Accuracy(test), testAct;
        using (ActHook.On(model, search.Kept, c.Alpha, c.Beta)) testAct = Accuracy(test);
        progress?.Report($"seed {seed}: calibration baseline {search.Baseline:P1}, kept {search.Kept.Count} heads; test {testBase:P1} → {testAct:P1}");

        ActPicture? picture = null;
        ActTiming? timing = null;
        HookExactness? hook = null;
        if (first)
        {
            hook = ActChecks.Hooked(model, test.Tokens.narrow(0, 0, 8), c.Alpha, c.Beta);
            picture = Picture(model, test.Tokens.narrow(0, 0, 1), c);
            timing = Time(model, test.Tokens, candidates, c);
            progress?.Report($"forward on {c.TestCount} × {task.Length}: {timing.BaselineMs:F1} ms, ACT on all heads {timing.ActMs:F1} ms");
        }
        return new GptRun(seed, search, testBase, testAct, hook, picture, timing);
    }

    /// <summary>The head with the largest non-initial ā_j on one sequence: its pattern before and after ACT and ā_j.</summary>
    static ActPicture Picture(TinyGpt model, Tensor tokens, Config c)
    {
        using var scope = NewDisposeScope();
        var patterns = HeadScores.Patterns(model, tokens);                              // [L, 1, H, T, T]
        var flat = patterns.select(1, 0).flatten(0, 1);                                 // [L·H, T, T]
        var abar = AttentionCalibrationOps.ReceivedMass(flat);                          // [L·H, T]
        int best = (int)abar.narrow(1, 1, abar.size(1) - 1).amax(new long[] { 1 }).argmax().item<long>();
        var before = flat[best];
        var after = AttentionCalibrationOps.Act(before, c.Alpha, c.Beta);
        var sinks = AttentionCalibrationOps.SinkSet(before, c.Alpha);
        static double[][] Rows(Tensor m) =>
            Enumerable.Range(0, (int)m.size(0)).Select(i => m[i].to(ScalarType.Float64).cpu().data<double>().ToArray()).ToArray();
        var ids = tokens[0].cpu().data<long>().ToArray();
        var names = ids.Select(TokenName).ToArray();
        return new ActPicture(best / c.Heads, best % c.Heads, names, Rows(before), Rows(after),
            abar[best].to(ScalarType.Float64).cpu().data<double>().ToArray(), sinks.cpu().data<bool>().ToArray());
    }

    static string TokenName(long id) => id switch
    {
        ActTask.Bos => "BOS", ActTask.Arrow => "→", ActTask.Semicolon => ";", ActTask.LabelA => "A", ActTask.LabelB => "B",
        _ => $"x{id - ActTask.FirstContent}",
    };

    static ActTiming Time(TinyGpt model, Tensor tokens, IReadOnlyList<(int, int)> heads, Config c)
    {
        double Once(bool act)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var h = act ? ActHook.On(model, heads, c.Alpha, c.Beta) : null;
            var clock = Stopwatch.StartNew();
            _ = model.call(tokens).sum().item<float>();
            return clock.Elapsed.TotalMilliseconds;
        }
        Once(false); Once(true);                                                        // warm-up
        var plain = new List<double>();
        var calibrated = new List<double>();
        for (int r = 0; r < c.TimingRepeats; r++)                                       // interleaved, so load drift hits both alike
        {
            plain.Add(Once(false));
            calibrated.Add(Once(true));
        }
        static double Median(List<double> x) => x.Order().ElementAt(x.Count / 2);
        return new ActTiming(heads.Count, tokens.size(0), tokens.size(1), Median(plain), Median(calibrated));
    }

    static MiniLmRun RunMiniLm(Config c, Device device, IProgress<string>? progress)
    {
        using var model = MiniLm.LoadPretrained(device: device);
        var (calibTexts, calibLabels) = ActSentences.Generate(c.MiniLmCalib, CalibSeed);
        var (testTexts, testLabels) = ActSentences.Generate(c.MiniLmTest, TestSeed);
        using var calib = new MiniLmPrototypes(model, calibTexts, calibLabels, ActSentences.Prototypes);
        using var test = new MiniLmPrototypes(model, testTexts, testLabels, ActSentences.Prototypes);
        var candidates = c.MiniLmLayers.SelectMany(l => c.MiniLmHeads.Select(h => (l, h))).ToList();
        progress?.Report($"all-MiniLM-L6-v2: head search over {candidates.Count} heads on {c.MiniLmCalib} sentences ([CLS] is the first sink, dropped)");
        var search = ActSearch.Run(model, calib.Accuracy, candidates, c.Alpha, c.Beta, causal: false, progress: progress);
        double testBase = test.Accuracy(), testAct;
        using (ActHook.On(model, search.Kept, c.Alpha, c.Beta, causal: false)) testAct = test.Accuracy();
        progress?.Report($"MiniLM: calibration baseline {search.Baseline:P1}, kept {search.Kept.Count} heads; test {testBase:P1} → {testAct:P1}");
        return new MiniLmRun(search, testBase, testAct, calibTexts.Take(3).ToList());
    }
}
