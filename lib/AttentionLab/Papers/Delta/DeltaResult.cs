using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>
/// One policy at one budget: accuracy on the second copy, attended tokens per layer and decode step (mean), their ratio
/// to full attention (Σ attended / Σ t), KV bytes read and held per layer and step, and wall time per token.
/// </summary>
public sealed record DeltaRow(string Policy, int BudgetPages, double Accuracy, double AttendedPerToken, double AttendedRatio,
    double KvBytesRead, double KvBytesHeld, double MsPerToken)
{
    public override string ToString() =>
        $"{Policy,-12} K={(BudgetPages == int.MaxValue ? "all" : BudgetPages.ToString()),-3} acc {Accuracy:F3}  attended/token {AttendedPerToken:F1} ({AttendedRatio:P0} of full)  {MsPerToken:F2} ms/token";
}

/// <summary>What <see cref="DeltaExperiment.Run(DeltaExperiment.Config, Device, IProgress{string}?)"/> measured.</summary>
/// <param name="Config">the run's sizes.</param>
/// <param name="Rows">one row per (policy, budget); the full-attention row first.</param>
/// <param name="ScoreRows">headline DELTA, sequence 0: the Δ-layer's page scores per decode step (NaN for pages not yet written).</param>
/// <param name="SelectedRows">the same grid, 1 where the page was selected.</param>
/// <param name="Overlap">[L, L] top-K Jaccard overlap of the layers' page scores, mean over steps with more than K pages.</param>
/// <param name="SparseRecall">per sparse layer: share of its full attention mass on the pages DELTA attended (mean over steps).</param>
/// <param name="RecallBySteps">the same per decode step (x = step, sequence 0), one series per sparse layer.</param>
public sealed record DeltaResult(DeltaExperiment.Config Config, IReadOnlyList<DeltaRow> Rows, IReadOnlyList<double[]> ScoreRows,
    IReadOnlyList<double[]> SelectedRows, double[][] Overlap, IReadOnlyDictionary<int, double> SparseRecall, IReadOnlyList<Series> RecallBySteps)
{
    /// <summary>The row of <paramref name="policy"/> at <paramref name="budget"/> (any budget for full).</summary>
    public DeltaRow Get(string policy, int budget) =>
        Rows.First(r => r.Policy == policy && (policy == DeltaExperiment.FullName || r.BudgetPages == budget));

    /// <summary>Columns: policy, budget, accuracy, attended tokens per token, ratio, KV bytes read / held per step, ms/token.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("policy", Rows.Select(r => r.Policy)),
        new StringDataFrameColumn("budget", Rows.Select(r => r.BudgetPages == int.MaxValue ? "all" : $"{r.BudgetPages}×{Config.PageSize}")),
        new DoubleDataFrameColumn("accuracy", Rows.Select(r => r.Accuracy)),
        new DoubleDataFrameColumn("attended_per_token", Rows.Select(r => r.AttendedPerToken)),
        new DoubleDataFrameColumn("attended_vs_full", Rows.Select(r => r.AttendedRatio)),
        new DoubleDataFrameColumn("kv_bytes_read_per_step", Rows.Select(r => r.KvBytesRead)),
        new DoubleDataFrameColumn("kv_bytes_held_per_step", Rows.Select(r => r.KvBytesHeld)),
        new DoubleDataFrameColumn("ms_per_token", Rows.Select(r => r.MsPerToken)));

    /// <summary>Accuracy against attended-token ratio, one series per policy (full is one point).</summary>
    public IReadOnlyList<Series> AccuracyVsAttended() => Rows.GroupBy(r => r.Policy)
        .Select(g => new Series(g.Key, g.Select(r => r.AttendedRatio).ToArray(), g.Select(r => r.Accuracy).ToArray())).ToList();

    /// <summary>The claim at this size, as a sentence, and whether it holds: DELTA at the headline budget within
    /// <paramref name="fullMargin"/> of full and at least <paramref name="evictionMargin"/> above StreamingLLM.</summary>
    public (bool Holds, string Line) Claim(double fullMargin = 0.05, double evictionMargin = 0.2)
    {
        var (full, delta, stream) = (Get(DeltaExperiment.FullName, 0), Get(DeltaExperiment.DeltaName, Config.HeadlineBudget), Get(DeltaExperiment.StreamingName, Config.HeadlineBudget));
        bool holds = delta.Accuracy >= full.Accuracy - fullMargin && delta.Accuracy >= stream.Accuracy + evictionMargin;
        return (holds, $"DELTA (K = {Config.HeadlineBudget} pages × {Config.PageSize}) accuracy {delta.Accuracy:F3} vs full {full.Accuracy:F3} " +
            $"(needs ≥ full − {fullMargin}) and StreamingLLM {stream.Accuracy:F3} (needs ≤ DELTA − {evictionMargin}); attended {delta.AttendedRatio:P0} of full.");
    }

    internal static DeltaResult From(DeltaExperiment.Config config, List<DeltaRow> rows, DeltaDecoder headline, int layers)
    {
        int deltaLayer = config.DeltaLayers.Min();
        var sel = headline.Selections.Where(s => s.Layer == deltaLayer).ToList();
        int width = sel.Max(s => s.Scores.Length);
        var scores = sel.Select(s => Enumerable.Range(0, width).Select(p => p < s.Scores.Length ? s.Scores[p] : double.NaN).ToArray()).ToList();
        var chosen = sel.Select(s => Enumerable.Range(0, width).Select(p => p < s.Scores.Length ? (s.Pages.Contains(p) ? 1.0 : 0.0) : double.NaN).ToArray()).ToList();
        var overlap = new double[layers][];
        for (int i = 0; i < layers; i++) overlap[i] = new double[layers];
        int counted = 0;
        using (var scope = NewDisposeScope())
            foreach (var c in headline.Captures.Where(c => c.LayerPageScores[0].Length > config.HeadlineBudget))
            {
                var m = torch.tensor(c.LayerPageScores.SelectMany(r => r).ToArray(), new long[] { layers, c.LayerPageScores[0].Length }, dtype: ScalarType.Float64);
                var j = PageScores.LayerTopKOverlap(m, config.HeadlineBudget).data<double>().ToArray();
                for (int a = 0; a < layers; a++) for (int b = 0; b < layers; b++) overlap[a][b] += j[a * layers + b];
                counted++;
            }
        foreach (var row in overlap) for (int b = 0; b < layers; b++) row[b] /= Math.Max(1, counted);
        var recall = headline.Captures.SelectMany(c => c.SparseRecall).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Average(kv => kv.Value));
        var bySteps = recall.Keys.OrderBy(l => l).Select(l => new Series($"layer {l}",
            headline.Captures.Select(c => (double)c.Step).ToArray(), headline.Captures.Select(c => c.SparseRecall[l]).ToArray())).ToList();
        return new DeltaResult(config, rows, scores, chosen, overlap, recall, bySteps);
    }
}
