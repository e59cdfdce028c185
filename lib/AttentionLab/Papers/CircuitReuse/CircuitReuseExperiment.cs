using System.Diagnostics;
using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.CircuitReuse;

/// <summary>
/// P46 Circuit component reuse (Merullo, Eickhoff, Pavlick, ICLR 2024): on one tiny GPT trained on an IOI analogue and a
/// Colored-Objects analogue, path-patch every head into the END logits for both tasks, take the circuits, their overlap,
/// the mover heads' attention, and the intervention that gives the shared mover heads their IOI pattern on CO.
/// </summary>
public sealed class CircuitReuseExperiment : IPaperExperiment<CircuitReuseExperiment.Config, CircuitReuseResult>
{
    CircuitReuseExperiment() { }

    /// <summary>P46 in the catalogue (notebook notebooks/46-circuit-reuse.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(46, "Circuit component reuse", "circuit-reuse");

    /// <summary>Sizes of one run (both presets use the shipped checkpoint; Full patches more prompts).</summary>
    /// <param name="Prompts">Clean/corrupt pairs per task.</param>
    /// <param name="Threshold">A head is in a circuit when |normalised path effect| exceeds this.</param>
    /// <param name="MaxInterventionHeads">At most this many shared heads get the IOI pattern (the paper: 4).</param>
    /// <param name="Seed">Prompt seed.</param>
    public sealed record Config(int Prompts, double Threshold, int MaxInterventionHeads, int Seed) : IPaperConfig<Config>
    {
        /// <summary>128 pairs per task.</summary>
        public static Config Smoke => new(Prompts: 128, Threshold: 0.1, MaxInterventionHeads: 4, Seed: 0) { Size = "smoke" };
        /// <summary>1024 pairs per task.</summary>
        public static Config Full => new(Prompts: 1024, Threshold: 0.1, MaxInterventionHeads: 4, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
    }

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase.</summary>
    public static CircuitReuseResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        Guard.Positive(config.Prompts, "config.Prompts");
        Guard.Positive(config.MaxInterventionHeads, "config.MaxInterventionHeads");
        if (!(config.Threshold >= 0)) throw new ArgumentException($"config.Threshold must be ≥ 0, got {config.Threshold}.", nameof(config));
        var clock = new PhaseClock();
        using var model = CircuitReuseCheckpoint.Load(device);
        var ioi = ReuseData.Pairs(ReuseTask.Ioi, config.Prompts, config.Seed, device);
        var co = ReuseData.Pairs(ReuseTask.ColoredObjects, config.Prompts, config.Seed + 1, device);
        try
        {
            var ldIoi = CircuitReuseOps.LogitDiffs(model, ioi);
            var ldCo = CircuitReuseOps.LogitDiffs(model, co);
            var correctIoi = CircuitReuseOps.Correct(model, ioi);
            var correctCo = CircuitReuseOps.Correct(model, co);
            progress?.Report($"checkpoint {CircuitReuseCheckpoint.Name}: IOI accuracy {Mean(correctIoi):P1} " +
                $"(LD {ldIoi.Clean:F2} → {ldIoi.Corrupt:F2} corrupted), " +
                $"CO accuracy {Mean(correctCo):P1} (LD {ldCo.Clean:F2} → {ldCo.Corrupt:F2})");
            clock.Lap("load");

            var sw = Stopwatch.StartNew();
            var effIoi = CircuitReuseOps.PathEffects(model, ioi);
            double sweep = sw.Elapsed.TotalSeconds;
            var effCo = CircuitReuseOps.PathEffects(model, co);
            progress?.Report($"path patching: {model.LayerCount * model.HeadCount} senders per task, {sweep:F2} s per sweep");
            clock.Lap("path patching");

            var naiveIoi = CircuitReuseNaive.PathEffects(model, ioi);
            var naiveCo = CircuitReuseNaive.PathEffects(model, co);
            double naiveGap = Math.Max(MaxAbsDiff(effIoi, naiveIoi), MaxAbsDiff(effCo, naiveCo));
            double freezeGap = Math.Max(
                MaxAbsDiff(CircuitReuseOps.PathEffects(model, ioi, freezeOtherHeads: false), CircuitReuseOps.ActivationEffects(model, ioi)),
                MaxAbsDiff(CircuitReuseOps.PathEffects(model, co, freezeOtherHeads: false), CircuitReuseOps.ActivationEffects(model, co)));
            var same = ioi with { Corrupt = ioi.Clean };
            double zeroMax = 0;
            for (int l = 0; l < model.LayerCount; l++)
                for (int h = 0; h < model.HeadCount; h++) zeroMax = Math.Max(zeroMax, Math.Abs(CircuitReuseNaive.RawPathEffect(model, same, l, h)));
            double patchAllGap = Math.Max(Math.Abs(CircuitReuseOps.PatchEverything(model, ioi) - ldIoi.Corrupt),
                Math.Abs(CircuitReuseOps.PatchEverything(model, co) - ldCo.Corrupt));
            progress?.Report($"checks: naive twin {naiveGap:G2}, unfrozen vs activation patching {freezeGap:G2}, corrupt = clean {zeroMax:G2}, " +
                $"patch everything vs LD_corr {patchAllGap:G2}");
            clock.Lap("checks");

            var circuitIoi = CircuitReuseOps.Circuit(effIoi, config.Threshold);
            var circuitCo = CircuitReuseOps.Circuit(effCo, config.Threshold);
            double overlap = CircuitReuseOps.Overlap(circuitIoi, circuitCo);
            var attnIoi = CircuitReuseOps.AnswerAttention(model, ioi);
            var attnCo = CircuitReuseOps.AnswerAttention(model, co);
            var shared = circuitIoi.Intersect(circuitCo).ToList();
            var movers = shared.OrderByDescending(lh => attnIoi[lh.Layer, lh.Head]).Take(config.MaxInterventionHeads).ToList();
            var topIoi = ArgMax(attnIoi);
            var topCo = ArgMax(attnCo);
            var shown = movers.Count > 0 ? movers[0] : topIoi;
            var patternIoi = CircuitReuseOps.EndPattern(model, ioi, shown.Layer, shown.Head);
            var patternCo = CircuitReuseOps.EndPattern(model, co, shown.Layer, shown.Head);
            progress?.Report($"circuits (|effect| > {config.Threshold}): IOI {circuitIoi.Count}, CO {circuitCo.Count}, " +
                $"shared {shared.Count}, Jaccard {overlap:F2}");
            clock.Lap("circuits");

            bool[] after = movers.Count > 0 ? CircuitReuseOps.Correct(model, co, CircuitReuseOps.AttendToAnswer(model, co, movers)) : correctCo;
            progress?.Report($"intervention on {movers.Count} shared heads: CO accuracy {Mean(correctCo):P1} → {Mean(after):P1}");
            clock.Lap("intervention");

            return new CircuitReuseResult(config, model.LayerCount, model.HeadCount, ldIoi, ldCo, Mean(correctIoi), Mean(correctCo), effIoi, effCo,
                circuitIoi, circuitCo, overlap, attnIoi, attnCo, topIoi, topCo, movers, shown, patternIoi, patternCo,
                ioi.Clean[0].data<long>().ToArray(), co.Clean[0].data<long>().ToArray(), correctCo, after,
                naiveGap, freezeGap, zeroMax, patchAllGap, sweep, clock.Seconds, clock.Phases);
        }
        finally
        {
            foreach (var t in new[] { ioi.Clean, ioi.Corrupt, co.Clean, co.Corrupt }) t.Dispose();
        }
    }

    static double Mean(bool[] xs) => xs.Length == 0 ? double.NaN : xs.Count(x => x) / (double)xs.Length;

    static double MaxAbsDiff(double[,] a, double[,] b)
    {
        double m = 0;
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++) m = Math.Max(m, double.IsNaN(a[i, j] - b[i, j]) ? double.PositiveInfinity : Math.Abs(a[i, j] - b[i, j]));
        return m;
    }

    static (int Layer, int Head) ArgMax(double[,] a)
    {
        var best = (0, 0);
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++) if (a[i, j] > a[best.Item1, best.Item2]) best = (i, j);
        return best;
    }
}
