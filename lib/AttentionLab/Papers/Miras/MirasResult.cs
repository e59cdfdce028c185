using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Miras;

/// <summary>One exactness check: max |Δ| against its tolerance.</summary>
public sealed record ExactnessCheck(string Check, double MaxAbs, double Tolerance)
{
    public bool Holds => MaxAbs <= Tolerance;
}

/// <summary>
/// Exp 1, one memory on one task: the θ it picked on the tuning seed (and that seed's error), its relative recall error on the
/// test seed after the last write and after each round (Curve), the fraction of corrupted writes, and the tuning error per θ.
/// </summary>
public sealed record RecallRun(string Model, string Task, double Theta, double TuneError, double TestError, double[] Curve, double CorruptedFraction,
    double[] GridErrors);

/// <summary>A mixer's parameters, decode-state bytes of one sequence and forward time per token (float32, no grad).</summary>
public sealed record MixerTiming(string Model, long Params, long StateBytes, double MsPerToken);

/// <summary>Everything <see cref="MirasExperiment.Run"/> measured, its tables and its claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The exactness phase (float64 toy tensors).</param>
/// <param name="Recall">Exp 1: each memory on the clean and the corrupted task.</param>
/// <param name="Timings">Each mixer's forward time per token and state bytes.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record MirasResult(MirasExperiment.Config Config, IReadOnlyList<ExactnessCheck> Exactness, IReadOnlyList<RecallRun> Recall,
    IReadOnlyList<MixerTiming> Timings, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Spec §6: with 5 % outliers a robust memory's recall error is below this fraction of the ℓ2 memory's.</summary>
    public const double RobustRatio = 0.8;
    /// <summary>A win on corrupted recall also needs the memory to recall: error below this (an empty memory scores 1) [ours].</summary>
    public const double RecallsBelow = 0.5;
    /// <summary>A tie on clean recall [ours]: |error − ℓ2 error| ≤ max(25 % of the ℓ2 error, 0.02 of the value energy).</summary>
    public const double TieRelative = 0.25, TieAbsolute = 0.02;

    /// <summary>The Exp 1 run of a memory on a task.</summary>
    public RecallRun RunOf(string model, string task) => Recall.FirstOrDefault(r => r.Model == model && r.Task == task)
        ?? throw new ArgumentException($"no recall run of '{model}' on '{task}'.", nameof(model));

    /// <summary>Relative recall error of a memory on a task (test seed, after the last write).</summary>
    public double Error(string model, string task) => RunOf(model, task).TestError;

    /// <summary>True when <paramref name="error"/> ties <paramref name="l2"/> (see <see cref="TieRelative"/>).</summary>
    public static bool Ties(double error, double l2) => Math.Abs(error - l2) <= Math.Max(TieRelative * l2, TieAbsolute);

    /// <summary>Columns: model, task, theta, tune_error, test_error, corrupted_fraction.</summary>
    public DataFrame ToDataFrame() => Tables.From(Recall.Select(r => new { r.Model, r.Task, r.Theta, r.TuneError, r.TestError, r.CorruptedFraction }));

    /// <summary>Columns: check, max_abs, tolerance, holds.</summary>
    public DataFrame ExactnessFrame() => Tables.From(Exactness.Select(e => new { e.Check, e.MaxAbs, e.Tolerance, e.Holds }));

    /// <summary>Columns: model, params, state_bytes, ms_per_token.</summary>
    public DataFrame TimingFrame() => Tables.From(Timings);

    /// <summary>The four-axis design table of the presets (spec §5): architecture, bias, retention, optimiser.</summary>
    public static DataFrame DesignTable() => Tables.From(new[]
    {
        new { Model = "l2 (Titans-lite, no momentum)", Memory = "MLP x + LN(W₂ GELU(W₁ x))", Bias = "ℓ2 ‖M(k) − v‖²", Retention = "L2 decay",
            Optimiser = "GD" },
        new { Model = "Moneta", Memory = "MLP x + LN(W₂ GELU(W₁ x))", Bias = "ℓp, p = 3 (smoothed)", Retention = "ℓq normalise, q = 4 (per matrix)",
            Optimiser = "GD" },
        new { Model = "Yaad", Memory = "MLP x + LN(W₂ GELU(W₁ x))", Bias = "Huber, data-dependent δ_t", Retention = "L2 decay", Optimiser = "GD" },
        new { Model = "Memora", Memory = "MLP x + LN(W₂ GELU(W₁ x))", Bias = "ℓ2", Retention = "KL (softmax rows)", Optimiser = "GD" },
    });

    /// <summary>
    /// The claims: exactness (fast forms vs naive twin per mixer, streaming, Memora's simplex, the spec §6 identities; always
    /// asserted), the toy claim of spec §7 (robust losses win on corrupted recall — §6: Yaad &lt; 0.8 × ℓ2 — and tie on clean
    /// recall), the ℓ2 baseline's own result, the LM-scale claim (not shown), and time per token (reported).
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(MirasExperiment.Paper.Number, Config.Size);
        foreach (var name in new[] { MirasExperiment.L2Name, MirasExperiment.MonetaName, MirasExperiment.YaadName, MirasExperiment.MemoraName })
        {
            var group = Exactness.Where(e => e.Check.StartsWith(name + ",", StringComparison.Ordinal)).ToList();
            claims.Exactness($"{name.ToLowerInvariant()}-fast-equals-naive",
                $"{name} mixer: chunked and recurrent forms equal the naive twin (autograd inner gradients), outputs and every parameter gradient",
                $"max |Δ|/(1 + max|ref|) {Num.Sci(group.Max(e => e.MaxAbs))} over {group.Count} checks (float64, T = 13, chunk 4, MLP memory)",
                "≤ 1e-10 (float64, the conformance kit's scaled bound)", group.Count > 0 && group.All(e => e.Holds));
        }
        var stream = Exactness.Where(e => e.Check.Contains("streaming", StringComparison.Ordinal)).ToList();
        claims.Exactness("streaming-equals-forward", "every Miras mixer: Step token by token reproduces the recurrent forward",
            $"max |Δ| {Num.Sci(stream.Max(e => e.MaxAbs))} ({stream.Count} mixers, float64, T = 13)", "≤ 1e-10", stream.All(e => e.Holds));
        var simplex = Exactness.Single(e => e.Check.StartsWith("Memora: every", StringComparison.Ordinal));
        claims.Exactness("memora-simplex", "Memora: every memory W_t is nonnegative and its rows sum to 1",
            $"max error {Num.Sci(simplex.MaxAbs)} over 13 tokens, both MLP matrices", "≤ 1e-6 (spec §6)", simplex.Holds,
            paperFigure: "W stays on the simplex (paper §5, Memora; spec §2)");
        var ids = Exactness.Where(e => e.Check.StartsWith("identity", StringComparison.Ordinal)).ToList();
        claims.Exactness("design-space-identities",
            "ℓp with p = 2 equals ℓ2; Huber with δ → ∞ equals ℓ2; ℓq retention with q = 2 gives W = A; " +
            "the chunked form at b = 1 equals the recurrence",
            $"max |Δ| {Num.Sci(ids.Max(e => e.MaxAbs))} over {ids.Count} identities (float64)", "≤ 1e-12 (spec §6: 1e-6)", ids.All(e => e.Holds));

        // Exp 1: the toy claim.
        string l2 = MirasExperiment.L2Name, moneta = MirasExperiment.MonetaName, yaad = MirasExperiment.YaadName, memora = MirasExperiment.MemoraName;
        string cl = MirasExperiment.Clean, co = MirasExperiment.Corrupted;
        double l2C = Error(l2, co), yaadC = Error(yaad, co), monetaC = Error(moneta, co), memoraC = Error(memora, co);
        double l2K = Error(l2, cl), yaadK = Error(yaad, cl), monetaK = Error(moneta, cl), memoraK = Error(memora, cl);
        double fraction = RunOf(l2, co).CorruptedFraction;
        string setup = $"{Config.Pairs} pairs × {Config.Repeats} writes, key width {Config.KeyDim}, {Config.Streams} streams, " +
                       $"{fraction:P1} of writes with outliers of norm {Config.OutlierScale}·min(|Cauchy|, {Config.OutlierClamp}); " +
                       "each memory's own best θ from the same grid";
        const string figure = "robust attentional biases help under noisy/outlier writes (paper §3–§5, motivation of Moneta and Yaad); " +
                              "toy analogue spec §7; no paper figure for this toy";
        claims.Claim("yaad-robust-corrupted", "Yaad (Huber bias) recalls corrupted pairs better than the ℓ2 memory (equal memory size and writes)",
            figure, $"relative recall error Yaad {yaadC:0.0000} vs ℓ2 {l2C:0.0000} (ratio {yaadC / l2C:0.00}); {setup}",
            $"Yaad < {RobustRatio} × ℓ2 (spec §6, seed 0) and Yaad < {RecallsBelow} (it recalls: an empty memory scores 1) [ours]",
            yaadC < RobustRatio * l2C && yaadC < RecallsBelow, asserted: true,
            deviation: "added: the winner must recall (error < 0.5), so that an empty memory cannot beat an ℓ2 memory that outliers blew up");
        claims.Claim("moneta-robust-corrupted", "Moneta (ℓ3 bias, ℓ4 retention) recalls corrupted pairs better than the ℓ2 memory",
            figure, $"relative recall error Moneta {monetaC:0.0000} vs ℓ2 {l2C:0.0000} (ratio {monetaC / l2C:0.00})",
            $"Moneta < {RobustRatio} × ℓ2 and Moneta < {RecallsBelow} [ours]", monetaC < RobustRatio * l2C && monetaC < RecallsBelow, asserted: false,
            deviation: "spec §6 states the 0.8 ratio for Yaad only; applied to Moneta as well (spec §7 names both), with the recall floor",
            note: "p = 3 > 2 weighs large errors more than ℓ2 does: an ℓp bias is outlier-robust only for p < 2");
        string tieCriterion = $"|Δ| ≤ max({TieRelative:P0} of ℓ2, {TieAbsolute}) [ours: the spec names no threshold]";
        claims.Claim("yaad-tie-clean", "on clean recall Yaad ties with ℓ2", figure,
            $"relative recall error on clean pairs: Yaad {yaadK:0.0000} vs ℓ2 {l2K:0.0000}", tieCriterion, Ties(yaadK, l2K), asserted: true);
        claims.Claim("moneta-tie-clean", "on clean recall Moneta ties with ℓ2", figure,
            $"relative recall error on clean pairs: Moneta {monetaK:0.0000} vs ℓ2 {l2K:0.0000}", tieCriterion, Ties(monetaK, l2K), asserted: false,
            note: "with the per-matrix norm, ‖W‖_q = ‖A‖_q^{3−q}: at q = 4 the retention inverts the memory's scale (docs/decisions.md)");
        claims.Reported("l2-baseline-can-win", "the ℓ2 baseline is not handicapped: on clean recall it is at least as good as every other memory",
            "ℓ2 is the exact loss for noise-free pairs (delta rule)",
            $"clean: ℓ2 {l2K:0.0000}, best other {new[] { yaadK, monetaK, memoraK }.Min():0.0000}",
            "ℓ2 ≤ 1.05 × the best other on clean [ours]", l2K <= 1.05 * new[] { yaadK, monetaK, memoraK }.Min());
        claims.Reported("memora-recall", "Memora (KL retention): recall with a linear memory whose rows stay on the simplex",
            "Memora keeps W on the simplex (spec §2)", $"clean {memoraK:0.0000}, corrupted {memoraC:0.0000} (ℓ2: {l2K:0.0000}, {l2C:0.0000})",
            "reported: a row-stochastic linear memory cannot give signed values, so it is not expected to recall them [ours]", memoraK < 1);

        claims.NotShown("lm-scale", "the three models beat Transformer++, Mamba2, Gated DeltaNet and Titans at 340M–1.3B parameters",
            "760M Yaad Wiki ppl ≈ 20.99; Moneta S-NIAH passkey ≈ 99 % to 8K (third-party extraction, unverified; paper Tables 2–3)",
            "not run", "lower perplexity / higher accuracy than the baselines (spec §7)",
            "LM-scale training (feasibility B) does not fit a CPU notebook; the trained comparison (spec §4 Exp 2) is future work");

        string timing = string.Join(", ", Timings.Select(t => $"{t.Model} {t.MsPerToken * 1000:F1} µs"));
        claims.Reported("time-per-token", "forward time per token of each mixer (shared CPU: reported, never asserted)",
            "linear time and constant state (spec §8)", $"{timing} at T = {Config.SeqLen}, d = {Config.DModel}, chunk 16", "none (timing)", true);
        claims.Reported("state-bytes", "constant-size decode state", "constant state (spec §8)",
            string.Join(", ", Timings.Select(t => $"{t.Model} {t.StateBytes:N0} B")), "reported: bytes by formula, constant in T by construction",
            Timings.All(t => t.StateBytes > 0));

        claims.Saw($"On corrupted pairs ({fraction:P1} of writes with heavy-tailed outliers) the recall error was ℓ2 {l2C:0.000}, Yaad {yaadC:0.000}, " +
                   $"Moneta {monetaC:0.000}, Memora {memoraC:0.000}; on clean pairs ℓ2 {l2K:0.000}, Yaad {yaadK:0.000}, Moneta {monetaK:0.000}, " +
                   $"Memora {memoraK:0.000}.");
        claims.Saw("The step sizes each memory picked on the tuning seed: " + string.Join("; ",
            Recall.Select(r => $"{r.Model} on {r.Task} θ = {r.Theta:0.###}")) + ".");
        return claims;
    }
}
