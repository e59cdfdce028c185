using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Aaren;

/// <summary>One final metric. StateBytesAtN: streaming state of one sequence after N tokens (KV cache, RNN state, last value).</summary>
public sealed record MetricRow(string Model, string Task, string Metric, double Value, long Params, long StateBytesAtN);

/// <summary>One streaming step: the t-th token's Step latency and the state size after it.</summary>
public sealed record StreamPoint(string Model, int T, double LatencyMs, long StateBytes);

/// <summary>A streaming curve summarised in windows: t, median latency (ms) and state bytes per window.</summary>
public sealed record StreamCurve(string Model, int[] T, double[] LatencyMs, long[] StateBytes);

/// <summary>Forward time (median) and peak memory growth of one form at one sequence length.</summary>
public sealed record ScalingPoint(string Form, int SeqLen, double MedianMs, double? PeakMiB, string MemoryMethod);

/// <summary>The learned queries' weights at the last position: one row per layer and head (RowLabels), one column per t.</summary>
public sealed record QueryWeightMap(IReadOnlyList<string> RowLabels, IReadOnlyList<double[]> Weights, double[] Sample);

/// <summary>Everything <see cref="AarenExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Metrics">Final metrics (see <see cref="ToDataFrame"/>).</param>
/// <param name="AarenTestMse">Aaren's forecast test MSE at t = N after each epoch.</param>
/// <param name="TransformerTestMse">The causal Transformer's, same schedule and batches.</param>
/// <param name="LastValueMse">Repeat x_{N−1} for every horizon (a horizontal line on the MSE plot).</param>
/// <param name="AarenTrainLoss">Training loss per step (forecast MSE + bucket cross-entropy).</param>
/// <param name="TransformerTrainLoss">The Transformer's.</param>
/// <param name="Streaming">Every Step of both models on one long series (latency, state bytes).</param>
/// <param name="Scaling">Time and peak memory of naive / recurrent / scan forms per sequence length.</param>
/// <param name="QueryWeights">The learned queries' weights over t on the first test series.</param>
/// <param name="StepVsForwardMaxAbs">max |Step − Forward| of the trained Aaren stack on the streamed series.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record AarenResult(
    AarenExperiment.Config Config,
    IReadOnlyList<MetricRow> Metrics,
    IReadOnlyList<double> AarenTestMse,
    IReadOnlyList<double> TransformerTestMse,
    double LastValueMse,
    IReadOnlyList<double> AarenTrainLoss,
    IReadOnlyList<double> TransformerTrainLoss,
    IReadOnlyList<StreamPoint> Streaming,
    IReadOnlyList<ScalingPoint> Scaling,
    QueryWeightMap QueryWeights,
    double StepVsForwardMaxAbs,
    double Seconds,
    IReadOnlyDictionary<string, double> PhaseSeconds)
{
    /// <summary>Final forecast test MSE of Aaren.</summary>
    public double AarenMse => AarenTestMse[^1];
    /// <summary>Final forecast test MSE of the Transformer.</summary>
    public double TransformerMse => TransformerTestMse[^1];

    /// <summary>Columns: model, task, metric, value, params, state_bytes_at_N.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("model", Metrics.Select(m => m.Model)),
        new StringDataFrameColumn("task", Metrics.Select(m => m.Task)),
        new StringDataFrameColumn("metric", Metrics.Select(m => m.Metric)),
        new DoubleDataFrameColumn("value", Metrics.Select(m => m.Value)),
        new Int64DataFrameColumn("params", Metrics.Select(m => m.Params)),
        new Int64DataFrameColumn("state_bytes_at_N", Metrics.Select(m => m.StateBytesAtN)));

    /// <summary>Columns: form, seq_len, median_ms, peak_mib (empty where memory was not measurable), memory (what was measured).</summary>
    public DataFrame ScalingFrame() => new(
        new StringDataFrameColumn("form", Scaling.Select(p => p.Form)),
        new Int32DataFrameColumn("seq_len", Scaling.Select(p => p.SeqLen)),
        new DoubleDataFrameColumn("median_ms", Scaling.Select(p => p.MedianMs)),
        new DoubleDataFrameColumn("peak_mib", Scaling.Select(p => p.PeakMiB)),
        new StringDataFrameColumn("memory", Scaling.Select(p => p.MemoryMethod)));

    /// <summary>
    /// One model's streaming curve in <paramref name="points"/> windows of consecutive steps: t at each window's end,
    /// the median Step latency inside the window, and the state bytes at its end (for line plots of long streams).
    /// </summary>
    public StreamCurve StreamingCurve(string model, int points = 64)
    {
        var steps = Streaming.Where(p => p.Model == model).ToList();
        if (steps.Count == 0) throw new ArgumentException($"no streaming points for model '{model}'.", nameof(model));
        if (points <= 0) throw new ArgumentOutOfRangeException(nameof(points), points, "points must be positive.");
        var ends = Enumerable.Range(1, points).Select(i => Math.Max(1, (int)((long)steps.Count * i / points))).Distinct().ToList();
        var (t, ms, bytes) = (new List<int>(), new List<double>(), new List<long>());
        int from = 0;
        foreach (int end in ends)
        {
            var window = steps.Skip(from).Take(end - from).Select(p => p.LatencyMs).OrderBy(x => x).ToList();
            t.Add(steps[end - 1].T);
            ms.Add(window[window.Count / 2]);
            bytes.Add(steps[end - 1].StateBytes);
            from = end;
        }
        return new StreamCurve(model, t.ToArray(), ms.ToArray(), bytes.ToArray());
    }

    /// <summary>Streaming at a few t (see <see cref="StreamingCurve"/>): columns model, t, latency_ms, state_bytes.</summary>
    public DataFrame StreamingFrame(int rowsPerModel = 8)
    {
        var curves = Streaming.Select(p => p.Model).Distinct().Select(m => StreamingCurve(m, rowsPerModel)).ToList();
        return new DataFrame(
            new StringDataFrameColumn("model", curves.SelectMany(c => c.T.Select(_ => c.Model))),
            new Int32DataFrameColumn("t", curves.SelectMany(c => c.T)),
            new DoubleDataFrameColumn("latency_ms", curves.SelectMany(c => c.LatencyMs)),
            new Int64DataFrameColumn("state_bytes", curves.SelectMany(c => c.StateBytes)));
    }

    /// <summary>
    /// The paper's claim at toy scale: Aaren's forecast MSE is below the last-value baseline and at most
    /// <paramref name="factor"/> × the Transformer's. Throws InvalidOperationException saying which part failed.
    /// </summary>
    public string CheckClaim(double factor = 2.0)
    {
        var problems = new List<string>();
        if (!(AarenMse < LastValueMse))
            problems.Add($"Aaren's test MSE {AarenMse:G4} is not below the last-value baseline {LastValueMse:G4}: it did not learn to forecast");
        if (!(AarenMse <= factor * TransformerMse))
            problems.Add($"Aaren's test MSE {AarenMse:G4} is more than {factor}× the Transformer's {TransformerMse:G4}: not comparable");
        if (problems.Count > 0)
            throw new InvalidOperationException("The Aaren claim does not hold at this size: " + string.Join("; ", problems) + ".");
        return $"Claim holds: Aaren MSE {AarenMse:G4} < last value {LastValueMse:G4}, and ≤ {factor}× Transformer {TransformerMse:G4} " +
               $"(ratio {AarenMse / TransformerMse:F2}).";
    }
}
