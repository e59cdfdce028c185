using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>Everything <see cref="RoutingExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="KMeans">Centroid trajectories and errors of the Gaussian-mixture demo.</param>
/// <param name="Equivalence">max |gather − naive| on random float64 tensors.</param>
/// <param name="LeakBalanced">max change of a past output when the future changes, balanced routing.</param>
/// <param name="LeakNearest">the same for nearest-centroid routing (0 when causal).</param>
/// <param name="Runs">The trained MQAR models.</param>
/// <param name="Heatmap">One routing head's keep-mask, sorted by cluster (null without a routing variant).</param>
/// <param name="Speed">Forward ms vs T.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
public sealed record RoutingResult(RoutingExperiment.Config Config, KMeansDemo.Result KMeans, double Equivalence, double LeakBalanced,
    double LeakNearest, IReadOnlyList<RoutingRun> Runs, float[,]? Heatmap, IReadOnlyList<RoutingSpeedPoint> Speed, double Seconds)
{
    /// <summary>Test accuracy of <paramref name="variant"/>.</summary>
    public double Accuracy(RoutingVariant variant) => Runs.Single(r => r.Variant == variant).Accuracy;

    /// <summary>
    /// The spec's table: one row per trained model (n = MQAR length, ms = one training step) and per speed point
    /// (ms = one forward). Columns: variant, n, C, w, accuracy, ms.
    /// </summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("variant", Runs.Select(r => r.Variant.ToString()).Concat(Speed.Select(p => "speed: " + p.Method))),
        new Int32DataFrameColumn("n", Runs.Select(_ => Config.Task.Length).Concat(Speed.Select(p => p.SeqLen))),
        new Int32DataFrameColumn("C", Runs.Select(r => r.Variant is RoutingVariant.LocalPlusRouting or RoutingVariant.LocalPlusNearest ? (int?)Config.Clusters : null)
            .Concat(Speed.Select(p => p.Method == RoutingBenchmark.RoutingMethod ? (int?)p.Clusters : null))),
        new Int32DataFrameColumn("w", Runs.Select(r => r.Variant == RoutingVariant.LocalPlusRouting ? (int?)Config.Window : null)
            .Concat(Speed.Select(p => p.Method == RoutingBenchmark.RoutingMethod ? (int?)p.Clusters : null))),
        new DoubleDataFrameColumn("accuracy", Runs.Select(r => (double?)r.Accuracy).Concat(Speed.Select(_ => (double?)null))),
        new DoubleDataFrameColumn("ms", Runs.Select(r => r.MsPerStep).Concat(Speed.Select(p => p.MedianMs))));

    /// <summary>
    /// The claims at this size; throws InvalidOperationException naming every part that failed: gather = naive
    /// (≤ <paramref name="tolerance"/>), nearest routing is causal and balanced routing leaks, the k-means demo's error
    /// is below 0.1, and local + routing beats local-only by ≥ <paramref name="minGain"/> accuracy points (default: the config's MinGain).
    /// </summary>
    public void Check(double? minGain = null, double tolerance = 1e-10)
    {
        double margin = minGain ?? Config.MinGain;
        var failures = new List<string>();
        if (!(Equivalence <= tolerance)) failures.Add($"gather vs naive differ by {Equivalence:E2} > {tolerance:E0}");
        if (LeakNearest != 0) failures.Add($"nearest-centroid routing changed a past output by {LeakNearest:E2}");
        if (!(LeakBalanced > 1e-6)) failures.Add($"balanced routing showed no leak ({LeakBalanced:E2}) on this probe");
        if (!(KMeans.FinalError < 0.1)) failures.Add($"k-means centroid error {KMeans.FinalError:F3} ≥ 0.1");
        if (Runs.Any(r => r.Variant == RoutingVariant.LocalOnly) && Runs.Any(r => r.Variant == RoutingVariant.LocalPlusRouting))
        {
            double gain = Accuracy(RoutingVariant.LocalPlusRouting) - Accuracy(RoutingVariant.LocalOnly);
            if (!(gain >= margin)) failures.Add($"local + routing beats local-only by {gain:P1}, not ≥ {margin:P0}");
        }
        if (failures.Count > 0) throw new InvalidOperationException("claim failed at this size: " + string.Join("; ", failures));
    }

    /// <summary>One line for the notebook: the accuracies and the gain.</summary>
    public string ClaimLine() => string.Join(", ", Runs.Select(r => $"{r.Variant} {r.Accuracy:P1}")) +
        (Runs.Any(r => r.Variant == RoutingVariant.LocalOnly) && Runs.Any(r => r.Variant == RoutingVariant.LocalPlusRouting)
            ? $"; routing gain {Accuracy(RoutingVariant.LocalPlusRouting) - Accuracy(RoutingVariant.LocalOnly):+0.0%;-0.0%}" : "");
}
