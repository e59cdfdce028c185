using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Aaren;

/// <summary>One final metric. StateBytesAtN: streaming state of one sequence after N tokens (KV cache, RNN state, last value).</summary>
public sealed record MetricRow(string Model, string Task, string Metric, double Value, long Params, long StateBytesAtN);

/// <summary>One streaming step: the t-th token's Step latency and the state size after it.</summary>
public sealed record StreamPoint(string Model, int T, double LatencyMs, long StateBytes);

/// <summary>Forward time (median) and peak memory growth of one form at one sequence length.</summary>
public sealed record ScalingPoint(string Form, int SeqLen, double MedianMs, double? PeakMiB, string MemoryMethod);

/// <summary>The learned queries' weights at the last position: one row per layer and head (RowLabels), one column per t.</summary>
public sealed record QueryWeightMap(IReadOnlyList<string> RowLabels, IReadOnlyList<double[]> Weights, double[] Sample);

/// <summary>Everything <see cref="AarenExperiment.Run"/> measured, as tables and as series for the plots.</summary>
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

    /// <summary>Columns: form, seq_len, median_ms, peak_mib (empty where memory was not measurable).</summary>
    public DataFrame ScalingFrame() => new(
        new StringDataFrameColumn("form", Scaling.Select(p => p.Form)),
        new Int32DataFrameColumn("seq_len", Scaling.Select(p => p.SeqLen)),
        new DoubleDataFrameColumn("median_ms", Scaling.Select(p => p.MedianMs)),
        new DoubleDataFrameColumn("peak_mib", Scaling.Select(p => p.PeakMiB)));

    /// <summary>Streaming at a few t: columns model, t, latency_ms (median of the steps up to t since the previous row), state_bytes.</summary>
    public DataFrame StreamingFrame(int rowsPerModel = 8)
    {
        var rows = new List<(string Model, int T, double Ms, long Bytes)>();
        foreach (var group in Streaming.GroupBy(p => p.Model))
        {
            var points = group.ToList();
            var marks = Enumerable.Range(1, rowsPerModel).Select(i => Math.Max(1, points.Count * i / rowsPerModel)).Distinct().ToList();
            int from = 0;
            foreach (int to in marks)
            {
                var ms = points.Skip(from).Take(to - from).Select(p => p.LatencyMs).OrderBy(x => x).ToList();
                rows.Add((group.Key, points[to - 1].T, ms.Count == 0 ? double.NaN : ms[ms.Count / 2], points[to - 1].StateBytes));
                from = to;
            }
        }
        return new DataFrame(
            new StringDataFrameColumn("model", rows.Select(r => r.Model)),
            new Int32DataFrameColumn("t", rows.Select(r => r.T)),
            new DoubleDataFrameColumn("latency_ms", rows.Select(r => r.Ms)),
            new Int64DataFrameColumn("state_bytes", rows.Select(r => r.Bytes)));
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
