using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Flowformer;

/// <summary>Everything <see cref="FlowExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Maps">Softmax, plain linear and flow weights on the same random q, k.</param>
/// <param name="Competition">Flow's competition weights C_j on those q, k (Σ_j C_j = m).</param>
/// <param name="Allocation">Flow's allocation A_i on those q, k.</param>
/// <param name="Equivalence">max |fast − naive| per case (float64).</param>
/// <param name="ListOps">The trained models.</param>
/// <param name="Speed">Forward time and memory per method and T.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record FlowResult(FlowExperiment.Config Config, IReadOnlyList<AttentionMap> Maps, double[] Competition, double[] Allocation,
    IReadOnlyDictionary<string, double> Equivalence, IReadOnlyList<ListOpsRun> ListOps, IReadOnlyList<SpeedPoint> Speed,
    double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds)
{
    /// <summary>Mean row entropy (nats) of the map named <paramref name="mechanism"/> (softmax, linear (σ), flow).</summary>
    public double Entropy(string mechanism) => Maps.Single(m => m.Mechanism == mechanism).MeanRowEntropy;

    /// <summary>Mean test accuracy of <paramref name="kind"/> over seeds.</summary>
    public double Accuracy(FlowMixerKind kind) => ListOps.Where(r => r.Mechanism == kind).Average(r => r.Accuracy);

    /// <summary>
    /// The spec's table: one row per trained model (n = the ListOps length, ms_per_iter = one training step) and per speed
    /// point (n = T, ms_per_iter = one forward, peak_bytes = growth of peak RSS). Columns: source, mechanism, n, seed,
    /// accuracy, ms_per_iter, peak_bytes.
    /// </summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("source", ListOps.Select(_ => "listops-lite").Concat(Speed.Select(_ => "speed (forward)"))),
        new StringDataFrameColumn("mechanism", ListOps.Select(r => r.Mechanism.ToString().ToLowerInvariant()).Concat(Speed.Select(p => p.Method))),
        new Int32DataFrameColumn("n", ListOps.Select(_ => Config.Task.MaxLength).Concat(Speed.Select(p => p.SeqLen))),
        new Int32DataFrameColumn("seed", ListOps.Select(r => (int?)r.Seed).Concat(Speed.Select(_ => (int?)null))),
        new DoubleDataFrameColumn("accuracy", ListOps.Select(r => (double?)r.Accuracy).Concat(Speed.Select(_ => (double?)null))),
        new DoubleDataFrameColumn("ms_per_iter", ListOps.Select(r => r.MsPerStep).Concat(Speed.Select(p => p.MedianMs))),
        new Int64DataFrameColumn("peak_bytes", ListOps.Select(_ => (long?)null).Concat(Speed.Select(p => p.PeakMiB is { } m ? (long?)(m * 1048576) : null))));

    /// <summary>Histogram of the competition weights C_j in <paramref name="bins"/> equal bins over [min, max]: bin labels and counts.</summary>
    public (string[] Labels, double[] Counts) CompetitionHistogram(int bins = 12)
    {
        if (bins <= 0) throw new ArgumentException($"bins must be positive, got {bins}.", nameof(bins));
        double lo = Competition.Min(), hi = Competition.Max(), width = Math.Max(hi - lo, 1e-12) / bins;
        var counts = new double[bins];
        foreach (var c in Competition) counts[Math.Min(bins - 1, (int)((c - lo) / width))]++;
        return (Enumerable.Range(0, bins).Select(i => $"{lo + (i + 0.5) * width:F3}").ToArray(), counts);
    }

    /// <summary>Mean of the first and last tenth of a loss curve.</summary>
    public static (double First, double Last) LossEnds(IReadOnlyList<double> losses)
    {
        int w = Math.Max(1, losses.Count / 10);
        return (losses.Take(w).Average(), losses.Skip(losses.Count - w).Average());
    }

    /// <summary>
    /// The claims at this size; throws InvalidOperationException naming every part that failed: every fast form equals
    /// its naive twin (≤ <paramref name="tolerance"/>, float64); Σ_j C_j = m and A ∈ (0, 1); flow's rows are more
    /// concentrated than plain linear's (lower mean row entropy); every model's training loss fell by
    /// <paramref name="minLossDrop"/> (first vs last tenth); causal flow's fitted time slope is below the reference's.
    /// </summary>
    public string CheckClaim(double tolerance = 1e-10, double minLossDrop = 0.05)
    {
        var problems = new List<string>();
        foreach (var (name, err) in Equivalence)
            if (!(err <= tolerance)) problems.Add($"{name}: fast vs naive differ by {err:E2} > {tolerance:E0}");
        double m = Competition.Length, sumC = Competition.Sum();
        if (!(Math.Abs(sumC - m) <= 1e-9 * m)) problems.Add($"Σ_j C_j = {sumC:F6} ≠ m = {m}");
        if (!Allocation.All(a => a > 0 && a < 1)) problems.Add("allocation outside (0, 1)");
        double hFlow = Entropy("flow"), hLinear = Entropy("linear (σ)"), hSoft = Entropy("softmax");
        if (!(hFlow < hLinear)) problems.Add($"flow's mean row entropy {hFlow:F4} is not below plain linear's {hLinear:F4}");
        foreach (var r in ListOps)
        {
            var (first, last) = LossEnds(r.Losses);
            if (!(last < first - minLossDrop)) problems.Add($"{r.Mechanism} (seed {r.Seed}) did not train: loss {first:F3} → {last:F3}");
        }
        var slopes = FlowBenchmark.Slopes(Speed);
        if (slopes.TryGetValue(FlowBenchmark.FlowCausal, out var sFlow) && slopes.TryGetValue(FlowBenchmark.Reference, out var sRef) && !(sFlow < sRef))
            problems.Add($"causal flow's time slope {sFlow:F2} is not below the reference's {sRef:F2}");
        if (problems.Count > 0)
            throw new InvalidOperationException("The Flowformer claim does not hold at this size: " + string.Join("; ", problems) + ".");
        string acc = string.Join(", ", FlowExperiment.Mechanisms.Select(k => $"{k.ToString().ToLowerInvariant()} {Accuracy(k):P1}"));
        string slope = string.Join(", ", slopes.OrderBy(s => s.Key).Select(s => $"{s.Key} {s.Value:F2}"));
        return $"Claim holds: fast == naive (max {Equivalence.Values.Max():E1}); Σ C = m = {m}; A ∈ (0, 1); row entropy flow {hFlow:F4} < linear {hLinear:F4} " +
               $"(softmax {hSoft:F4}, uniform {Math.Log(m):F4}); ListOps-lite accuracy {acc}; time slopes {slope}.";
    }
}
