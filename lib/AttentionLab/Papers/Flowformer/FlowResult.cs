using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Flowformer;

/// <summary>One exactness measurement: its group (one claim each), the case, the measured max |Δ| (or violation) and the tolerance.</summary>
public sealed record FlowCheck(string Group, string Case, double Value, double Tolerance)
{
    /// <summary>Value ≤ tolerance (NaN fails).</summary>
    public bool Holds => Value <= Tolerance;
}

/// <summary>The exactness phase of <see cref="FlowExperiment.Exactness"/>.</summary>
public sealed record FlowExactness(IReadOnlyList<FlowCheck> Checks)
{
    /// <summary>The checks of <paramref name="group"/>.</summary>
    public IReadOnlyList<FlowCheck> Group(string group) => Checks.Where(c => c.Group == group).ToList();

    /// <summary>Columns: group, case, value (max |Δ| or violation), tolerance, holds.</summary>
    public DataFrame ToDataFrame() => Tables.From(Checks.Select(c => new { c.Group, c.Case, c.Value, c.Tolerance, c.Holds }));
}

/// <summary>Everything <see cref="FlowExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">Fast forms vs the naive twin, streaming, identities, causality, permutations.</param>
/// <param name="Maps">Softmax, plain linear and flow weights on the same random q, k.</param>
/// <param name="Competition">Flow's competition weights C_j on those q, k (Σ_j C_j = m).</param>
/// <param name="Allocation">Flow's allocation A_i on those q, k.</param>
/// <param name="ListOps">The trained models (encoders unless the config says causal).</param>
/// <param name="MajorityAccuracy">Test accuracy of always answering the most frequent training label (first seed).</param>
/// <param name="Speed">Forward + backward time and memory per method and T.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record FlowResult(FlowExperiment.Config Config, FlowExactness Exactness, IReadOnlyList<AttentionMap> Maps, double[] Competition,
    double[] Allocation,
    IReadOnlyList<ListOpsRun> ListOps, double MajorityAccuracy, IReadOnlyList<SweepPoint> Speed,
    double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Mean row entropy (nats) of the random-q, k map named <paramref name="mechanism"/> (softmax, linear (σ), flow).</summary>
    public double Entropy(string mechanism) => Maps.Single(m => m.Mechanism == mechanism).MeanRowEntropy;

    /// <summary>Mean test accuracy of <paramref name="kind"/> over seeds.</summary>
    public double Accuracy(FlowMixerKind kind) => ListOps.Where(r => r.Mechanism == kind).Average(r => r.Accuracy);

    /// <summary>Mean row entropy (nats) of <paramref name="kind"/>'s trained attention on the probe rows, over layers and seeds.</summary>
    public double TrainedEntropy(FlowMixerKind kind) => ListOps.Where(r => r.Mechanism == kind).Average(r => r.EntropyTrained);

    /// <summary>The same before training.</summary>
    public double InitialEntropy(FlowMixerKind kind) => ListOps.Where(r => r.Mechanism == kind).Average(r => r.EntropyAtInit);

    /// <summary>
    /// The spec's table: one row per trained model (n = the ListOps length, ms_per_iter = one training step) and per speed
    /// point (n = T, ms_per_iter = one forward + backward, peak_bytes = growth of peak RSS). Columns: source, mechanism, n,
    /// seed, accuracy, ms_per_iter, peak_bytes.
    /// </summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("source", ListOps.Select(r => r.Causal ? "listops-lite (decoder)" : "listops-lite (encoder)").Concat(
            Speed.Select(p => $"speed ({p.Pass})"))),
        new StringDataFrameColumn("mechanism", ListOps.Select(r => r.Mechanism.ToString().ToLowerInvariant()).Concat(Speed.Select(p => p.Method))),
        new Int32DataFrameColumn("n", ListOps.Select(_ => Config.Task.MaxLength).Concat(Speed.Select(p => p.SeqLen))),
        new Int32DataFrameColumn("seed", ListOps.Select(r => (int?)r.Seed).Concat(Speed.Select(_ => (int?)null))),
        new DoubleDataFrameColumn("accuracy", ListOps.Select(r => (double?)r.Accuracy).Concat(Speed.Select(_ => (double?)null))),
        new DoubleDataFrameColumn("ms_per_iter", ListOps.Select(r => r.MsPerStep).Concat(Speed.Select(p => p.MedianMs))),
        new Int64DataFrameColumn("peak_bytes", ListOps.Select(_ => (long?)null).Concat(Speed.Select(p => p.PeakMiB is { } m ? (long?)(m * 1048576) : null))));

    /// <summary>Columns: mechanism, seed, accuracy, entropy_init, entropy_trained (nats, mean over layers), then one column per layer.</summary>
    public DataFrame EntropyFrame()
    {
        int layers = ListOps.Count == 0 ? 0 : ListOps.Max(r => r.LayerEntropy.Length);
        var columns = new List<DataFrameColumn>
        {
            new StringDataFrameColumn("mechanism", ListOps.Select(r => r.Mechanism.ToString().ToLowerInvariant())),
            new Int32DataFrameColumn("seed", ListOps.Select(r => r.Seed)),
            new DoubleDataFrameColumn("accuracy", ListOps.Select(r => r.Accuracy)),
            new DoubleDataFrameColumn("entropy_init", ListOps.Select(r => r.EntropyAtInit)),
            new DoubleDataFrameColumn("entropy_trained", ListOps.Select(r => r.EntropyTrained)),
        };
        for (int l = 0; l < layers; l++)
        {
            int layer = l;
            columns.Add(new DoubleDataFrameColumn($"layer_{layer}",
                ListOps.Select(r => layer < r.LayerEntropy.Length ? r.LayerEntropy[layer] : (double?)null)));
        }
        return new DataFrame(columns);
    }

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

    /// <summary>The paper's LRA ListOps accuracies (paper Table 1, repo <c>pic/LRA_results.png</c>).</summary>
    public const string PaperListOps = "LRA ListOps accuracy: Flowformer 38.70 %, Transformer 36.37 %, Linear Trans. 16.13 % (paper Table 1; repo " +
        "pic/LRA_results.png)";

    /// <summary>Trained entropy gap (linear − flow) must reach this multiple of the gap at initialisation (spec §6: "much larger after training").</summary>
    public const double EntropyGapFactor = 10;

    /// <summary>"Close to softmax" (spec §7): flow at most this far below softmax (accuracy, fraction).</summary>
    public const double CloseToSoftmax = 0.05;

    /// <summary>A model must beat the label prior by this much for the ListOps ranking to mean anything (fraction).</summary>
    public const double AbovePrior = 0.05;

    /// <summary>
    /// The claims: exactness (fast forms == naive twin in outputs and gradients, streaming == causal forward, the flows'
    /// identities, causality and permutation symmetry; always asserted); trained flow attention more concentrated than
    /// plain linear attention (spec §6, with a margin); the LRA-analogue ListOps comparison of the encoders (spec §7);
    /// the entropy gap at initialisation and forward + backward time and memory vs T as reported records.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(FlowExperiment.Paper.Number, Config.Size);
        void Exact(string group, string statement, string criterion)
        {
            var checks = Exactness.Group(group);
            var worst = checks.OrderByDescending(c => double.IsNaN(c.Value) ? double.PositiveInfinity : c.Value / Math.Max(c.Tolerance, 1e-300)).First();
            claims.Exactness(group, statement, $"worst {Num.Sci(worst.Value)} ({worst.Case}; {checks.Count} cases)", criterion,
                checks.Count > 0 && checks.All(c => c.Holds));
        }
        Exact(FlowExperiment.NormalGroup, "normal Flow-Attention (two matrix products) and its materialised matrix equal the per-position naive twin",
            "max |Δ| ≤ 1e-10 in float64 (spec §6)");
        Exact(FlowExperiment.CausalGroup,
            "causal Flow-Attention (parallel, recurrent, chunked engine forms) and its matrix equal an explicit O(n²) per-position loop",
            "max |Δ| ≤ 1e-10 in float64 (spec §6)");
        Exact(FlowExperiment.GradientGroup, "gradients to q, k, v of the fast forms equal the naive twin's",
            "max |Δ| ≤ 1e-10 in float64 (spec §6 tolerance, house rule: gradients too)");
        Exact(FlowExperiment.StreamGroup, "causal Flow-Attention decoded token by token (five running sums + one linear state) reproduces its forward",
            "max |Δ| ≤ 1e-10 in float64");
        Exact(FlowExperiment.InvariantGroup,
            "Σ_j C_j = m, A ∈ (0, 1), Ô clamped to [−1, 1], rows of (φQ/I)φKᵀ sum to ≈ 1; causal C_j/(j+1) = softmax over j′ ≤ j",
            "|Σ C − m| ≤ 1e-10, rows within 1e-4 of 1 (ε), no A or Ô outside (spec §6)");
        Exact(FlowExperiment.SymmetryGroup, "causal output ignores the future; normal output is query-permutation equivariant and (k, v)-permutation invariant",
            "max |Δ| ≤ 1e-12 (spec §6)");

        // the paper's claim: competition keeps attention from degenerating to uniform — on the trained encoders
        double hFlow = TrainedEntropy(FlowMixerKind.Flow), hLinear = TrainedEntropy(FlowMixerKind.Linear), hSoft = TrainedEntropy(FlowMixerKind.Softmax);
        double initGap = Entropy("linear (σ)") - Entropy("flow"), trainedGap = hLinear - hFlow;
        double uniform = Math.Log(Config.Task.MaxLength);
        string variant = Config.Causal ? "decoders" : "encoders";
        claims.Claim("trained-flow-sharper-than-linear",
            "conservation's competition keeps Flow-Attention from degenerating to near-uniform weights: trained flow rows are more concentrated than plain " +
            "σ-linear attention's",
            "'avoid trivial attention' (paper §3, Fig. 2 visualisation; no number); spec §6 prototype 4.145 < 4.152 nats at initialisation, 'much larger " +
            "after training'",
            $"mean row entropy of the trained {variant}: flow {hFlow:F3}, linear {hLinear:F3}, softmax {hSoft:F3} nats (uniform ln {Config.Task.MaxLength} = " +
            $"{uniform:F3}); gap {trainedGap:F3} nats vs {initGap:F4} at initialisation ({(initGap > 0 ? $"{trainedGap / initGap:F0}×" : "n/a")})",
            $"H(flow) < H(linear) by ≥ {EntropyGapFactor:F0}× the initialisation gap (spec §6 criterion; the margin is ours)",
            trainedGap > 0 && trainedGap >= EntropyGapFactor * Math.Max(initGap, 0), asserted: true,
            deviation: "spec §6 asks only H(flow) < H(linear) and says the margin 'should be much larger after training'; we require ≥ " +
            $"{EntropyGapFactor:F0}× the seed-0 initialisation gap measured in the same run so a 0.007-nat pass cannot count",
            note: $"entropy over the query rows of {Config.ProbeCount} test expressions (pads excluded as queries, every key counted), mean over heads and " +
            $"{Config.Layers} layers");

        // the LRA analogue: encoders on ListOps-lite at equal budget
        double aFlow = Accuracy(FlowMixerKind.Flow), aLinear = Accuracy(FlowMixerKind.Linear), aSoft = Accuracy(FlowMixerKind.Softmax);
        double best = new[] { aFlow, aLinear, aSoft }.Max();
        string acc = $"accuracy flow {aFlow:P1}, linear {aLinear:P1}, softmax {aSoft:P1}; label prior {MajorityAccuracy:P1} " +
                     $"({Config.Seeds.Length} seed{(Config.Seeds.Length > 1 ? "s" : "")}, {Config.TestCount} test expressions, T ≤ {Config.Task.MaxLength}, " +
                     $"{Config.Steps} steps × {Config.BatchSize})";
        const string listOpsStatement = "Flow-Attention in a non-causal encoder matches or beats plain linear attention on ListOps and comes close to " +
            "softmax (LRA analogue, same steps, batches, width and seed)";
        string listOpsCriterion = $"flow ≥ linear and flow ≥ softmax − {CloseToSoftmax * 100:F0} pts (spec §7: 'flow ≥ plain linear, close to softmax'), " +
            $"with a model ≥ {AbovePrior * 100:F0} pts above the label prior";
        const string listOpsDeviation = "spec §7 says 'close to softmax' without a number: ours 5 points; the prior check is ours (a ranking of models at " +
            "the prior tests nothing)";
        if (best - MajorityAccuracy < AbovePrior)
            claims.NotShown("listops-lra-analogue", listOpsStatement, PaperListOps, acc, listOpsCriterion,
                $"no model is {AbovePrior * 100:F0} points above the label prior at this size: the ranking is noise", deviation: listOpsDeviation);
        else
            claims.Claim("listops-lra-analogue", listOpsStatement, PaperListOps, acc, listOpsCriterion,
                aFlow >= aLinear && aFlow >= aSoft - CloseToSoftmax, asserted: Config.Seeds.Length >= 3,
                deviation: listOpsDeviation,
                note: Config.Seeds.Length >= 3 ? null
                    : $"one seed and {Config.TestCount} test expressions (sampling error ≈ {100 * Math.Sqrt(0.25 / Config.TestCount):F0} pts): recorded, not " +
                    "asserted; the full size runs 3 seeds");

        // reported: the gap at initialisation (the spec's prototype), and forward + backward cost vs T
        claims.Reported("entropy-at-init", "at random initialisation flow's implied attention is already (slightly) less uniform than plain σ-linear's",
            "spec §6 numpy prototype: 4.145 < 4.152 nats (n = 64, d = 16, seed 0)",
            $"flow {Entropy("flow"):F4} vs linear {Entropy("linear (σ)"):F4} nats, softmax {Entropy("softmax"):F4} (n = {Config.MapLength}, d = " +
            $"{Config.MapDim}, seed {Config.Seed})",
            "H(flow) < H(linear) (spec §6)", Entropy("flow") < Entropy("linear (σ)"),
            note: "a margin of thousandths of a nat at random q, k: reported; the claim is tested on trained models above");

        var fb = Speed.Where(p => p.Pass == FlowBenchmark.ForwardBackward).ToList();
        var slopes = Sweep.Slopes(fb, FlowBenchmark.ForwardBackward);
        double S(string m) => slopes.TryGetValue(m, out var s) ? s : double.NaN;
        int maxT = fb.Count == 0 ? 0 : fb.Max(p => p.SeqLen);
        int refMax = fb.Where(p => p.Method == FlowBenchmark.Reference).Select(p => p.SeqLen).DefaultIfEmpty(0).Max();
        string range = fb.Count == 0 ? "not measured" : $"T = {fb.Min(p => p.SeqLen)}…{maxT}"
            + (refMax > 0 && refMax < maxT ? $", reference softmax to {refMax}" : "");
        claims.Reported("fwd-bwd-linear-time", "Flow-Attention's forward + backward time grows linearly in n, softmax attention's quadratically",
            "O((n + m)·d²) (paper §3.3); spec §7: log-log slope ≈ 1 vs 2",
            $"fitted slopes ({range}, fwd + bwd): causal flow {S(FlowBenchmark.FlowCausal):F2}, normal flow {S(FlowBenchmark.FlowNormal):F2}, σ-linear " +
            $"{S(FlowBenchmark.Linear):F2}, reference softmax {S(FlowBenchmark.Reference):F2}, SDPA {S(FlowBenchmark.Sdpa):F2}",
            "causal flow ≤ 1.3 and reference softmax ≥ 1.7 (spec §7 '≈ 1 vs 2'; ±0.3 is ours)",
            S(FlowBenchmark.FlowCausal) <= 1.3 && S(FlowBenchmark.Reference) >= 1.7,
            deviation: "spec §7 says '≈ 1 vs 2' without a tolerance: ours ±0.3", note: "timings on a shared CPU, one torch thread: reported, never asserted");

        var memory = Sweep.MemorySlopes(fb, FlowBenchmark.ForwardBackward);
        double M(string m) => memory.TryGetValue(m, out var s) ? s : double.NaN;
        claims.Reported("fwd-bwd-linear-memory",
            "Flow-Attention's forward + backward memory grows linearly in n, softmax attention's (explicit scores) quadratically",
            "linear memory (paper §3.3); spec §8: memory vs n",
            $"peak-RSS growth slopes ({range}, fwd + bwd): causal flow {M(FlowBenchmark.FlowCausal):F2}, normal flow {M(FlowBenchmark.FlowNormal):F2}, " +
            $"reference softmax {M(FlowBenchmark.Reference):F2}",
            "causal flow ≤ 1.3 and reference softmax ≥ 1.7 (as the time slopes)",
            M(FlowBenchmark.FlowCausal) <= 1.3 && M(FlowBenchmark.Reference) >= 1.7,
            deviation: "the spec gives no memory slope: the time criterion ('≈ 1 vs 2', ±0.3 ours) is reused",
            note: "process peak RSS (Linux VmHWM) per call: page-granular and noisy at small T");

        int? cross = Sweep.Crossover(fb, FlowBenchmark.FlowCausal, FlowBenchmark.Sdpa, FlowBenchmark.ForwardBackward);
        double? vsSdpa = Sweep.Speedup(fb, FlowBenchmark.FlowCausal, FlowBenchmark.Sdpa, maxT, FlowBenchmark.ForwardBackward);
        double? vsRef = refMax > 0 ? Sweep.Speedup(fb, FlowBenchmark.FlowCausal, FlowBenchmark.Reference, refMax, FlowBenchmark.ForwardBackward) : null;
        string crossOurs = $"crossover {(cross is { } c ? $"from T = {c}" : "none")} in {range}; at T = {maxT} causal flow is " +
            $"{(vsSdpa is { } a ? $"{a:F2}×" : "n/a")} SDPA's speed" +
                           (vsRef is { } r ? $", {r:F1}× the reference softmax's at T = {refMax}" : "");
        const string crossStatement = "causal Flow-Attention (fwd + bwd) overtakes the fused SDPA kernel at long n";
        const string crossPaper = "spec §8: crossover with SDPA expected around 2–8k tokens on a GPU (no paper figure)";
        const string crossCriterion = "a crossover at T ≤ 8192 (spec §8)";
        if (cross is { } found && found <= 8192)
            claims.Reported("fwd-bwd-crossover-sdpa", crossStatement, crossPaper, crossOurs, crossCriterion, true, note: "timings on a shared CPU: reported");
        else if (maxT < 8192)
            claims.NotShown("fwd-bwd-crossover-sdpa", crossStatement, crossPaper, crossOurs, crossCriterion,
                $"measured only to T = {maxT} (the expected crossover lies at 2–8k); run the full size or `AttentionLab.Bench flowformer`",
                kind: ClaimKind.Reported);
        else
            claims.Reported("fwd-bwd-crossover-sdpa", crossStatement, crossPaper, crossOurs, crossCriterion, false, note: "timings on a shared CPU: reported");

        // what we saw
        claims.Saw($"Trained as encoders on ListOps-lite with the same batches, flow reaches {aFlow:P1}, plain σ-linear {aLinear:P1} and softmax {aSoft:P1} " +
            $"(label prior {MajorityAccuracy:P1}).");
        claims.Saw($"Training moves the mean row entropy of flow's attention from {InitialEntropy(FlowMixerKind.Flow):F3} to {hFlow:F3} nats, plain linear's " +
            $"from {InitialEntropy(FlowMixerKind.Linear):F3} to {hLinear:F3}, softmax's from {InitialEntropy(FlowMixerKind.Softmax):F3} to {hSoft:F3} " +
            $"(uniform {uniform:F3}).");
        claims.Saw($"On random q, k the gap between flow and plain linear is {initGap:F4} nats; after training it is {trainedGap:F3}.");
        var causalFlow = fb.Where(p => p.Method == FlowBenchmark.FlowCausal && p.SeqLen == maxT).Select(p => p.MedianMs).FirstOrDefault(double.NaN);
        var sdpa = fb.Where(p => p.Method == FlowBenchmark.Sdpa && p.SeqLen == maxT).Select(p => p.MedianMs).FirstOrDefault(double.NaN);
        if (fb.Count > 0)
            claims.Saw($"One forward + backward at T = {maxT}: causal flow {causalFlow:F1} ms, SDPA {sdpa:F1} ms; fitted time slopes causal flow " +
                $"{S(FlowBenchmark.FlowCausal):F2} vs reference softmax {S(FlowBenchmark.Reference):F2}.");
        return claims;
    }
}
