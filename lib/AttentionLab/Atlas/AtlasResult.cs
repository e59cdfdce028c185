using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Atlas;

/// <summary>The atlas's points with its table, its two Pareto charts and the check of what must hold at any size.</summary>
public sealed record AtlasResult(MixerAtlas.Config Config, IReadOnlyList<AtlasPoint> Points, double Seconds)
{
    /// <summary>One row per mixer.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("mixer", Points.Select(p => p.Name)),
        new StringDataFrameColumn("family", Points.Select(p => p.Family)),
        new DoubleDataFrameColumn("recall", Points.Select(p => p.Recall)),
        new Int64DataFrameColumn("state_bytes", Points.Select(p => p.StateBytes)),
        new DoubleDataFrameColumn("tokens_per_s", Points.Select(p => Math.Round(p.TokensPerSecond))),
        new Int64DataFrameColumn("params", Points.Select(p => p.Params)),
        new DoubleDataFrameColumn("step_vs_forward", Points.Select(p => p.StepVsForwardMaxAbs)),
        new DoubleDataFrameColumn("train_s", Points.Select(p => p.TrainSeconds)),
        new StringDataFrameColumn("state_kind", Points.Select(p => p.StateBytes is null ? "cannot stream" : p.StateCounted ? "counted" : "streamed")));

    /// <summary>Recall against streaming state bytes (log x) with the Pareto front; mixers that cannot stream are left out.</summary>
    public GenericChart RecallVsState() => AnalysisCharts.Pareto(
        Points.Where(p => p.StateBytes is > 0).Select(p => new LabeledPoint(p.Name, p.StateBytes!.Value, p.Recall)).ToList(),
        $"MQAR recall vs recurrent state after T = {Config.SeqLen} tokens", "state bytes (2 layers, batch 1)", "recall", logX: true);

    /// <summary>Recall against time per token of the forward pass (log x) with the Pareto front.</summary>
    public GenericChart RecallVsSpeed() => AnalysisCharts.Pareto(
        Points.Select(p => new LabeledPoint(p.Name, 1e6 / p.TokensPerSecond, p.Recall)).ToList(),
        $"MQAR recall vs forward time per token (T = {Config.SeqLen}, batch {Config.TestCount})", "µs per token (lower is faster)", "recall", logX: true);

    /// <summary>The mixers on the recall-vs-state Pareto front, smallest state first.</summary>
    public IReadOnlyList<string> StateFront()
    {
        var streaming = Points.Where(p => p.StateBytes is > 0).ToList();
        return Numerics.ParetoFront(streaming.Select(p => (double)p.StateBytes!.Value).ToList(), streaming.Select(p => p.Recall).ToList())
            .Select(i => streaming[i]).OrderBy(p => p.StateBytes).Select(p => p.Name).ToList();
    }

    /// <summary>
    /// Throws with every reason when what must hold fails: each streaming mixer's Step reproduces its forward pass (1e-3),
    /// softmax attention solves the task (recall ≥ <paramref name="attentionRecall"/>), and every mixer beats chance
    /// (1 / number of value tokens) by <paramref name="overChance"/>. Timings are reported, not checked.
    /// </summary>
    public string CheckClaim(double attentionRecall = 0.9, double overChance = 0.05)
    {
        var problems = new List<string>();
        foreach (var p in Points.Where(p => p.StateBytes is not null && !p.StateCounted && !(p.StepVsForwardMaxAbs < 1e-3)))
            problems.Add($"{p.Name}: Step differs from the forward pass by {p.StepVsForwardMaxAbs:E2}");
        var softmax = Points.FirstOrDefault(p => p.Name == AtlasMixers.Softmax.Name);
        if (softmax is not null && !(softmax.Recall >= attentionRecall)) problems.Add($"softmax attention recall {softmax.Recall:P1} < {attentionRecall:P0}");
        double chance = 2.0 / Config.Vocab;                                      // values come from half the vocabulary
        foreach (var p in Points.Where(p => !(p.Recall > chance + overChance)))
            problems.Add($"{p.Name}: recall {p.Recall:P1} is not above chance {chance:P1} + {overChance:P0}");
        if (problems.Count > 0) throw new InvalidOperationException("The atlas does not hold at this size: " + string.Join("; ", problems) + ".");
        var best = Points.OrderByDescending(p => p.Recall).First();
        return $"Atlas holds: {Points.Count} mixers; best recall {best.Name} {best.Recall:P1}; recall-vs-state front: {string.Join(" → ", StateFront())}; " +
               $"every streaming mixer's Step = forward (max {Points.Where(p => p.StateBytes is not null && !p.StateCounted).Select(p => p.StepVsForwardMaxAbs).DefaultIfEmpty(0).Max():E1}).";
    }
}
