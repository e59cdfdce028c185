using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>
/// P12 Retrieval heads (Wu et al. 2024): exactness checks of the score and the mask (spec §6); retrieval-score detection on a
/// length × depth grid of NIAH prompts (decode-time attention, <see cref="RetrievalScore"/>); NIAH with no mask, the top-k
/// retrieval heads masked and k random heads masked (drawn outside the top k: the official <c>construct_random_head</c>
/// never excludes anything, spec §9), for k = 1 … K; zero and mean ablation of the top heads beside the paper's mask.
/// </summary>
/// <remarks>
/// Score (official <c>retrieval_calculate</c>): at decode step t with emitted w_t and head row a^{l,h} = A^{l,h}[last, :],
/// j* = argmax_j a_j; score_{l,h} += 1/(e − s) if s ≤ j* &lt; e and x_{j*} = w_t. A run counts only if ROUGE-1 recall &gt; 0.5;
/// the head's score is the mean over counted runs; retrieval head: score &gt; 0.1. Mask: s^{l,h}_{ij} ← 0 (j ≤ i), so the head
/// attends uniformly, A_ij = 1/(i+1).
/// </remarks>
public sealed class RetrievalHeadsExperiment : IPaperExperiment<RetrievalHeadsExperiment.Config, RetrievalHeadsResult>
{
    RetrievalHeadsExperiment() { }

    /// <summary>P12 in the catalogue (notebook notebooks/12-retrieval-heads.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(12, "Retrieval heads", "retrieval-heads");

    /// <summary>
    /// Sizes of one run. Smoke: the shipped 2 × 4 checkpoint (<see cref="RetrievalHeadsCheckpoint"/>), a 4 × 4 grid (haystack
    /// 12–48, depth 0–100 %), 4 detection and 8 evaluation prompts per cell, k = 1 … 4, 5 random draws. Full: a 4 × 8 model
    /// (d 128, MLP) trained in the run for <see cref="TrainSteps"/> on NIAH up to 240 filler tokens, a 10 × 10 grid.
    /// </summary>
    public sealed record Config(int[] Haystacks, double[] Depths, int DetectPerCell, int EvalPerCell, int MaxK, int ClaimK, int RandomDraws,
        int TrainSteps, int BatchSize, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Haystacks: [12, 24, 36, 48], Depths: [0, 1 / 3.0, 2 / 3.0, 1], DetectPerCell: 4, EvalPerCell: 8, MaxK: 4,
            ClaimK: 2, RandomDraws: 5, TrainSteps: 0, BatchSize: 64, Seed: 0) { Size = "smoke" };

        public static Config Full => new(Haystacks: Enumerable.Range(1, 10).Select(i => 24 * i).ToArray(),
            Depths: Enumerable.Range(0, 10).Select(i => i / 9.0).ToArray(), DetectPerCell: 8, EvalPerCell: 16, MaxK: 8, ClaimK: 2, RandomDraws: 10,
            TrainSteps: 4000, BatchSize: 64, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>True when the run loads the shipped checkpoint (<see cref="TrainSteps"/> = 0).</summary>
        public bool UsesCheckpoint => TrainSteps == 0;

        /// <summary>The task: the checkpoint's, or for a trained run one long enough for the largest haystack.</summary>
        public NiahTask Task => UsesCheckpoint ? RetrievalHeadsCheckpoint.Task
            : new NiahTask(Symbols: 128, MinHaystack: 8, MaxHaystack: Haystacks.Max());

        /// <summary>The model: the checkpoint's, or 4 layers × 8 heads (d 128, MLP, RoPE) for a trained run.</summary>
        public TinyGptConfig Model => UsesCheckpoint ? RetrievalHeadsCheckpoint.Config
            : new TinyGptConfig(Layers: 4, DModel: 128, Heads: 8, VocabSize: Task.VocabSize, Positions: PositionKind.Rope, MaxLength: Task.MaxLength + 8);
    }

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static RetrievalHeadsResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.Haystacks.Length == 0 || config.Depths.Length == 0) throw new ArgumentException("the grid is empty.", nameof(config));
        Guard.Positive(config.MaxK, nameof(config));
        var clock = new PhaseClock();
        var task = config.Task;
        using var model = MakeModel(config, task, device, progress);
        clock.Lap(config.UsesCheckpoint ? "load" : "train");
        int layers = model.LayerCount, heads = model.HeadCount;
        if (config.ClaimK > config.MaxK || config.MaxK >= layers * heads)
            throw new ArgumentException($"need ClaimK ≤ MaxK < {layers * heads} heads, got {config.ClaimK}, {config.MaxK}.", nameof(config));

        var exact = RetrievalHeadsChecks.Run(model, task, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: hand-built score {exact.HandScore:F3} (expect {exact.HandExpected:F3}), naive twin Δ {Num.Sci(exact.TwinMaxAbs)}, " +
            $"masked row Δ {Num.Sci(exact.MaskedRowMaxAbs)}, masked z Δ {Num.Sci(exact.MaskedZMaxAbs)}, no-mask bitwise {exact.NoMaskBitwise}");

        // Detection: one greedy decode per prompt, scoring every head at every step.
        var detectGrid = new NiahGrid(config.Haystacks, config.Depths, config.DetectPerCell);
        var runs = new List<RetrievalRun>();
        for (int i = 0; i < config.Haystacks.Length; i++)
            for (int j = 0; j < config.Depths.Length; j++)
                foreach (var p in detectGrid.Cell(task, i, j, config.Seed + 1))
                    runs.Add(RetrievalScore.Detect(model, p.Tokens, p.NeedleStart, p.NeedleEnd, p.Answer, task.ValueLength));
        var scores = RetrievalScore.Average(runs, layers, heads);
        var ranking = Rank(scores);
        clock.Lap("detection");
        progress?.Report($"detection: {runs.Count} runs, {runs.Count(r => r.Counts)} retrieved; top heads " +
            string.Join(", ", ranking.Take(4).Select(x => $"L{x.Layer}H{x.Head} {scores[x.Layer, x.Head]:F2}")));

        // NIAH under masks.
        var evalGrid = new NiahGrid(config.Haystacks, config.Depths, config.EvalPerCell);
        int evalSeed = config.Seed + 2;
        var clean = Niah.Evaluate(model, task, evalGrid, evalSeed);
        var topAcc = new double[config.MaxK + 1];
        var randomAcc = new double[config.MaxK + 1, config.RandomDraws];
        var randomHeads = new List<(int K, int Draw, (int Layer, int Head)[] Heads)>();
        double[,]? topGrid = null, randomGrid = null;
        topAcc[0] = Mean(clean);
        var rng = new Random(config.Seed + 3);
        for (int k = 1; k <= config.MaxK; k++)
        {
            var top = ranking.Take(k).ToArray();
            var g = Niah.Evaluate(model, task, evalGrid, evalSeed, HeadMask.Hooks(model, top));
            topAcc[k] = Mean(g);
            if (k == config.ClaimK) topGrid = g;
            var pool = ranking.Skip(k).ToArray();                                   // random heads exclude the top k (spec §9 fixed)
            for (int d = 0; d < config.RandomDraws; d++)
            {
                var pick = pool.OrderBy(_ => rng.Next()).Take(k).OrderBy(x => x).ToArray();
                randomHeads.Add((k, d, pick));
                var r = Niah.Evaluate(model, task, evalGrid, evalSeed, HeadMask.Hooks(model, pick));
                randomAcc[k, d] = Mean(r);
                if (k == config.ClaimK && d == 0) randomGrid = r;
            }
            double randomMean = Enumerable.Range(0, config.RandomDraws).Average(d => randomAcc[k, d]);
            progress?.Report($"k = {k}: top-{k} masked {topAcc[k]:F3}, random-{k} masked {randomMean:F3}");
        }
        for (int d = 0; d < config.RandomDraws; d++) randomAcc[0, d] = topAcc[0];
        var claimTop = ranking.Take(config.ClaimK).ToArray();
        var zeroAcc = Mean(Niah.Evaluate(model, task, evalGrid, evalSeed, HeadMask.Hooks(model, claimTop, MaskKind.Zero)));
        using var meanZ = MeanZ(model, task, config.Seed + 4);
        var meanAcc = Mean(Niah.Evaluate(model, task, evalGrid, evalSeed, HeadMask.Hooks(model, claimTop, MaskKind.Mean, meanZ)));
        clock.Lap("masking");
        progress?.Report($"top-{config.ClaimK} masked: uniform {topAcc[config.ClaimK]:F3}, zero {zeroAcc:F3}, mean {meanAcc:F3}; done in {clock.Seconds:F1} s");
        return new RetrievalHeadsResult(config, layers, heads, exact, scores, ranking, runs.Count, runs.Count(r => r.Counts), clean, topGrid!, randomGrid!,
            topAcc, randomAcc, randomHeads, zeroAcc, meanAcc, clock.Seconds, clock.Phases);
    }

    static TinyGpt MakeModel(Config config, NiahTask task, Device device, IProgress<string>? progress)
    {
        if (config.UsesCheckpoint)
        {
            progress?.Report($"loading {RetrievalHeadsCheckpoint.Name} (2 layers × 4 heads, trained by: {RetrievalHeadsCheckpoint.Command})");
            return RetrievalHeadsCheckpoint.Load(device);
        }
        torch.manual_seed(config.Seed);
        var model = new TinyGpt(config.Model);
        model.to(device);
        progress?.Report($"training {config.Model.Layers} × {config.Model.Heads} ({model.ParameterCount:N0} parameters), {config.TrainSteps} steps");
        RetrievalHeadsCheckpoint.Train(model, task, config.TrainSteps, config.BatchSize, config.Seed,
            new InlineProgress<Train.TrainProgress>(p => progress?.Report("  " + p)), acc => progress?.Report($"  eval: answer accuracy {acc:F3}"));
        model.eval();
        return model;
    }

    /// <summary>Heads by score, highest first (ties: lower layer, then lower head); NaN scores last.</summary>
    public static (int Layer, int Head)[] Rank(double[,] scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var all = new List<(int, int)>();
        for (int l = 0; l < scores.GetLength(0); l++)
            for (int h = 0; h < scores.GetLength(1); h++) all.Add((l, h));
        return all.OrderByDescending(x => double.IsNaN(scores[x.Item1, x.Item2]) ? double.NegativeInfinity : scores[x.Item1, x.Item2])
            .ThenBy(x => x.Item1).ThenBy(x => x.Item2).ToArray();
    }

    static double Mean(double[,] g) => g.Cast<double>().Average();

    static Tensor MeanZ(TinyGpt model, NiahTask task, int seed)
    {
        var (x, y) = task.Batch(32, seed, model.FinalNorm.Weight.device);
        using (x) using (y) return Ablation.MeanZ(model, x);
    }
}
