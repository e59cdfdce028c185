using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>Everything <see cref="KrylovRecyclingExperiment.Run"/> measured, its tables, charts and claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Runs">Per solver (GMRES, GCRO-DR no carry, carry unsorted, carry sorted): the solves in sequence order.</param>
/// <param name="SortedOrder">The greedy Frobenius order.</param>
/// <param name="IdentityPathLength">Σ ‖K_i − K_{i+1}‖_F in the sampled order.</param>
/// <param name="SortedPathLength">The same along the sorted order.</param>
/// <param name="DistancesBefore">Parameter distance matrix in the sampled order.</param>
/// <param name="DistancesAfter">The same in the sorted order.</param>
/// <param name="Sweep">Mean mat-vecs (and seconds) per system vs tolerance, GMRES vs sorted GCRO-DR.</param>
/// <param name="Benchmark">Wall-clock per system vs grid size for the three solvers.</param>
/// <param name="Checks">The exactness checks on an independent small sequence.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record KrylovRecyclingResult(KrylovRecyclingExperiment.Config Config,
    IReadOnlyDictionary<string, IReadOnlyList<SkrRunner.SequenceSolve>> Runs, int[] SortedOrder, double IdentityPathLength, double SortedPathLength,
    double[][] DistancesBefore, double[][] DistancesAfter, IReadOnlyList<KrylovRecyclingResult.SweepRow> Sweep,
    IReadOnlyList<KrylovRecyclingResult.BenchmarkRow> Benchmark, KrylovRecyclingResult.ExactnessChecks Checks, double Seconds,
    IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    public const string GmresName = "GMRES(m)";
    public const string NoCarryName = "GCRO-DR no carry-over";
    public const string UnsortedName = "GCRO-DR carry, unsorted";
    public const string SortedName = "GCRO-DR carry, sorted";

    /// <summary>One tolerance of the sweep.</summary>
    public sealed record SweepRow(double Tolerance, double GmresMatvecs, double RecycledMatvecs, double GmresSeconds, double RecycledSeconds)
    {
        /// <summary>GMRES mat-vecs / sorted GCRO-DR mat-vecs.</summary>
        public double MatvecRatio => GmresMatvecs / RecycledMatvecs;
    }

    /// <summary>One (grid, solver) cell of the wall-clock benchmark.</summary>
    public sealed record BenchmarkRow(int Grid, int Unknowns, string Solver, double MillisecondsPerSystem, double MatvecsPerSystem);

    /// <summary>The §6 checks: worst relative error vs dense LU, k = 0 vs GMRES, the textbook twin, GMRES(n) steps.</summary>
    public sealed record ExactnessChecks(double WorstErrorVsLu, double WorstK0VsGmres, double WorstTwinResidualGap, int FullGmresMatvecs,
        int FullGmresSize, double FullGmresResidual);

    /// <summary>The reference prototype's mat-vecs per system (spec §4): GMRES, no carry, sorted, unsorted; NaN where not given.</summary>
    public static (double Gmres, double NoCarry, double Sorted, double Unsorted)? Reference(int grid) => grid switch
    {
        34 => (199, double.NaN, 81, 81.5),
        66 => (480, 240, 134, 139),
        _ => null,
    };

    /// <summary>Mean mat-vecs per system of one solver.</summary>
    public double MeanMatvecs(string solver) => Runs[solver].Average(r => (double)r.Result.Matvecs);

    /// <summary>Mean wall-clock seconds per system of one solver.</summary>
    public double MeanSeconds(string solver) => Runs[solver].Average(r => r.Seconds);

    static readonly string[] Solvers = [GmresName, NoCarryName, UnsortedName, SortedName];

    /// <summary>Columns: solver, mean / min / max mat-vecs per system, the reference's mean, ms per system, converged.</summary>
    public DataFrame ToDataFrame()
    {
        var reference = Reference(Config.GridSize);
        double[] refs = reference is { } r ? [r.Gmres, r.NoCarry, r.Unsorted, r.Sorted] : [double.NaN, double.NaN, double.NaN, double.NaN];
        return new(
            new StringDataFrameColumn("solver", Solvers),
            new DoubleDataFrameColumn("mean mat-vecs", Solvers.Select(s => Math.Round(MeanMatvecs(s), 1))),
            new Int32DataFrameColumn("min", Solvers.Select(s => Runs[s].Min(x => x.Result.Matvecs))),
            new Int32DataFrameColumn("max", Solvers.Select(s => Runs[s].Max(x => x.Result.Matvecs))),
            new DoubleDataFrameColumn("reference mean", refs),
            new DoubleDataFrameColumn("ms / system", Solvers.Select(s => Math.Round(MeanSeconds(s) * 1e3, 1))),
            new BooleanDataFrameColumn("all converged", Solvers.Select(s => Runs[s].All(x => x.Result.Converged))));
    }

    /// <summary>Columns: position, then each solver's mat-vecs for the system at that position of its sequence.</summary>
    public DataFrame PerSystemFrame()
    {
        var columns = new List<DataFrameColumn> { new Int32DataFrameColumn("position", Enumerable.Range(0, Config.Systems)) };
        columns.AddRange(Solvers.Select(s => new Int32DataFrameColumn(s, Runs[s].Select(x => x.Result.Matvecs))));
        return new(columns);
    }

    /// <summary>Columns: tolerance, GMRES and sorted GCRO-DR mat-vecs per system, ratio, ms per system.</summary>
    public DataFrame SweepFrame() => new(
        new DoubleDataFrameColumn("tolerance", Sweep.Select(r => r.Tolerance)),
        new DoubleDataFrameColumn("GMRES mat-vecs", Sweep.Select(r => Math.Round(r.GmresMatvecs, 1))),
        new DoubleDataFrameColumn("GCRO-DR sorted mat-vecs", Sweep.Select(r => Math.Round(r.RecycledMatvecs, 1))),
        new DoubleDataFrameColumn("mat-vec ratio", Sweep.Select(r => Math.Round(r.MatvecRatio, 2))),
        new DoubleDataFrameColumn("GMRES ms", Sweep.Select(r => Math.Round(r.GmresSeconds * 1e3, 1))),
        new DoubleDataFrameColumn("GCRO-DR ms", Sweep.Select(r => Math.Round(r.RecycledSeconds * 1e3, 1))));

    /// <summary>Columns: grid, unknowns, solver, ms per system, mat-vecs per system.</summary>
    public DataFrame BenchmarkFrame() => new(
        new Int32DataFrameColumn("grid s", Benchmark.Select(r => r.Grid)),
        new Int32DataFrameColumn("n", Benchmark.Select(r => r.Unknowns)),
        new StringDataFrameColumn("solver", Benchmark.Select(r => r.Solver)),
        new DoubleDataFrameColumn("ms / system", Benchmark.Select(r => Math.Round(r.MillisecondsPerSystem, 2))),
        new DoubleDataFrameColumn("mat-vecs / system", Benchmark.Select(r => Math.Round(r.MatvecsPerSystem, 1))));

    /// <summary>Relative residual vs cumulative mat-vecs for the systems at positions 0, 1 and 9 of each solver's sequence.</summary>
    public GenericChart ConvergenceChart()
    {
        var positions = new[] { 0, 1, 9 }.Where(p => p < Config.Systems);
        var series = positions.SelectMany(p => new[] { GmresName, SortedName }.Select(s =>
            new Series($"{s}, system {p + 1}", Runs[s][p].Result.MatvecHistory.Select(v => (double)v).ToArray(),
                Runs[s][p].Result.ResidualHistory.ToArray())));
        return Charts.Lines(series, "Convergence: ‖r‖/‖b‖ vs mat-vecs", "mat-vecs", "relative residual", logY: true, markers: false);
    }

    /// <summary>Mean mat-vecs per system of the four solvers.</summary>
    public GenericChart MatvecBars() =>
        Charts.Bars(Solvers, Solvers.Select(MeanMatvecs).ToArray(), $"Mean mat-vecs per system (s = {Config.GridSize})", "mat-vecs / system");

    /// <summary>Mat-vecs of each system along the sequence.</summary>
    public GenericChart PerSystemChart() => Charts.Lines(
        Solvers.Select(s => Series.Of(s, Runs[s].Select(x => (double)x.Result.Matvecs))), "Mat-vecs along the sequence", "position", "mat-vecs");

    /// <summary>The parameter distance matrix before and after sorting (a band after).</summary>
    public (GenericChart Before, GenericChart After) DistanceHeatmaps() => (
        Charts.Heatmap(DistancesBefore, "‖K_i − K_j‖_F, sampled order", xTitle: "system", yTitle: "system"),
        Charts.Heatmap(DistancesAfter, "‖K_i − K_j‖_F, sorted order", xTitle: "position", yTitle: "position"));

    /// <summary>GMRES / GCRO-DR mat-vec ratio vs tolerance.</summary>
    public GenericChart ToleranceChart() => Charts.Lines(
        [new Series("GMRES / sorted GCRO-DR", Sweep.Select(r => r.Tolerance).ToArray(), Sweep.Select(r => r.MatvecRatio).ToArray())],
        "Mat-vec ratio vs tolerance", "tolerance", "GMRES mat-vecs / GCRO-DR mat-vecs", logX: true);

    /// <summary>Wall-clock per system vs unknowns for the three solvers.</summary>
    public GenericChart BenchmarkChart() => Charts.Lines(
        Benchmark.GroupBy(r => r.Solver).Select(g => new Series(g.Key, g.Select(r => (double)r.Unknowns).ToArray(),
            g.Select(r => r.MillisecondsPerSystem).ToArray())), "Wall-clock per system (CPU, float64)", "unknowns n", "ms / system", logX: true, logY: true);

    /// <summary>The paper's claims as this run measured them (spec §4, §6, §7).</summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(KrylovRecyclingExperiment.Paper.Number, Config.Size);
        double tol = Config.Tolerance;
        var all = Runs.Values.SelectMany(v => v).ToList();

        // Exactness (spec §6).
        claims.Exactness("direct-solve", "GMRES and GCRO-DR (carried) solutions equal the dense LU solve (n = 256)",
            $"worst relative error {Checks.WorstErrorVsLu:G2}", "≤ 1e-6 (spec §6)", Checks.WorstErrorVsLu <= 1e-6);
        claims.Exactness("k0-is-gmres", "GCRO-DR with k = 0 is GMRES(m) (m = 10, several cycles)", $"worst relative difference of x {Checks.WorstK0VsGmres:G2}",
            "≤ 1e-10 (spec §6)", Checks.WorstK0VsGmres <= 1e-10);
        claims.Exactness("textbook-twin", "GMRES(8) residuals equal the textbook twin's (dense QR Krylov basis + least squares) step by step",
            $"worst relative gap {Checks.WorstTwinResidualGap:G2}", "≤ 1e-6", Checks.WorstTwinResidualGap <= 1e-6);
        claims.Exactness("exact-in-n", "unrestarted GMRES on an n×n system reaches 1e-12 within n mat-vecs",
            $"{Checks.FullGmresMatvecs} mat-vecs for n = {Checks.FullGmresSize} (true residual {Checks.FullGmresResidual:G2})", "mat-vecs ≤ n",
            Checks.FullGmresMatvecs <= Checks.FullGmresSize && Checks.FullGmresResidual <= 1e-11);
        double invariant = all.Max(r => r.Result.MaxInvariantError);
        claims.Exactness("recycle-invariant", "after every cycle the recycled pair satisfies A U = C and CᵀC = I",
            $"worst max(‖AU − C‖_F, ‖CᵀC − I‖_F) = {invariant:G2}", "≤ 1e-8 (spec §6)", invariant <= 1e-8);
        double worstTrue = all.Max(r => r.Result.TrueRelativeResidual);
        claims.Exactness("true-residual", "every returned x meets the tolerance on the true residual ‖b − A x‖/‖b‖",
            $"worst {worstTrue:G3} at tol {tol:G1}", "≤ tol·(1 + 1e-6) (spec §6)", worstTrue <= tol * (1 + 1e-6) && all.All(r => r.Result.Converged));

        double gm = MeanMatvecs(GmresName), noCarry = MeanMatvecs(NoCarryName), unsorted = MeanMatvecs(UnsortedName), sorted = MeanMatvecs(SortedName);
        var reference = Reference(Config.GridSize);
        string at = $"s = {Config.GridSize}, {Config.Systems} systems, tol {tol:G1}";

        // Reference counts (acceptance: within 15 %).
        if (reference is { } refs && tol == 1e-8 && Config.M == 40 && Config.K == 20)
        {
            double gmGap = gm / refs.Gmres - 1, sortedGap = sorted / refs.Sorted - 1;
            claims.Claim("gmres-reference-count", "GMRES(40) mat-vecs per system match the reference prototype",
                $"{refs.Gmres:F0} (spec §4, s = {Config.GridSize})", $"{gm:F1} ({gmGap:+0%;-0%})", "within ±15 % of the reference (issue 19)",
                Math.Abs(gmGap) <= 0.15, asserted: false,
                note: "the reference's Darcy discretisation is not specified beyond '5-point, Jacobi-scaled'; see docs/decisions.md");
            claims.Claim("gcrodr-reference-count", "sorted GCRO-DR(40, 20) mat-vecs per system match the reference prototype",
                $"{refs.Sorted:F0} (spec §4, s = {Config.GridSize})", $"{sorted:F1} ({sortedGap:+0%;-0%})", "within ±15 % of the reference (issue 19)",
                Math.Abs(sortedGap) <= 0.15, asserted: false);
        }
        else
        {
            claims.NotShown("gmres-reference-count", "GMRES(40) mat-vecs per system match the reference prototype", "199 (s = 34), 480 (s = 66)",
                $"{gm:F1}", "within ±15 %", "the reference has counts only for s = 34 and 66 at tol 1e-8, m = 40, k = 20");
            claims.NotShown("gcrodr-reference-count", "sorted GCRO-DR mat-vecs per system match the reference prototype", "81 (s = 34), 134 (s = 66)",
                $"{sorted:F1}", "within ±15 %", "the reference has counts only for s = 34 and 66 at tol 1e-8, m = 40, k = 20");
        }

        // The paper's claim at this size.
        claims.Claim("recycling-saves-matvecs", "GCRO-DR with recycling needs far fewer mat-vecs than GMRES(m) (spec §6)",
            "≈ 2.4–3.6× fewer on Darcy 32²–64² (reference); up to ~30× fewer iterations (paper)", $"{sorted:F1} vs {gm:F1} ({gm / sorted:F2}×)",
            "mean GCRO-DR ≤ 0.6 × mean GMRES (spec §6)", sorted <= 0.6 * gm, asserted: true);
        claims.Claim("recycling-2x", "at least 2× fewer mat-vecs with recycling (issue 19)", "≈ 2.4–3.6× (reference)", $"{gm / sorted:F2}×",
            "GMRES / sorted GCRO-DR ≥ 2", gm / sorted >= 2, asserted: false);
        claims.Claim("carry-over-gain", "recycling across systems, not deflated restarting alone, gives most of the gain",
            "240 → 134 at s = 66 (≈ 1.8×, reference)", $"{noCarry:F1} → {sorted:F1} ({noCarry / sorted:F2}×)",
            "carry-over (sorted) < no carry-over", sorted < noCarry, asserted: false);
        claims.Claim("sort-ablation", "sorting the sequence reduces the mat-vecs of recycled solves",
            "−9.2 % iterations (paper's ablation); 0–5 % (reference)",
            $"sorted {sorted:F1} vs unsorted {unsorted:F1} ({sorted / unsorted - 1:+0.0%;-0.0%})",
            "sorted ≤ unsorted", sorted <= unsorted, asserted: false, note: "a few per cent on 20–30 systems is within seed noise");
        claims.Claim("greedy-path", "the greedy order shortens the parameter path (spec §6)", "—",
            $"{SortedPathLength:F1} vs {IdentityPathLength:F1} in the sampled order", "greedy path ≤ identity path", SortedPathLength <= IdentityPathLength,
            asserted: true);
        var loosest = Sweep[0];
        var tightest = Sweep[^1];
        claims.Claim("tolerance-sweep", "the saving grows at tighter tolerance", "313/91 = 3.4× at 1e-5 vs 480/134 = 3.6× at 1e-8 (reference, s = 66)",
            string.Join("; ", Sweep.Select(r => $"{r.Tolerance:G1}: {r.MatvecRatio:F2}×")),
            "ratio at the tightest tolerance ≥ ratio at the loosest", tightest.MatvecRatio >= loosest.MatvecRatio, asserted: false);

        // Reported: wall-clock.
        double timeRatio = MeanSeconds(GmresName) / MeanSeconds(SortedName);
        claims.Reported("wall-clock", "wall-clock speed-up of sorted GCRO-DR over GMRES per system (CPU, float64, shared machine)",
            "2.6–4.5× on Darcy (PETSc/HPDDM, paper)", $"{MeanSeconds(GmresName) * 1e3:F1} vs {MeanSeconds(SortedName) * 1e3:F1} ms ({timeRatio:F2}×)",
            "speed-up > 1 (reported, never asserted)", timeRatio > 1,
            note: "noisy on the shared CPU: compare the benchmark table, where the small dense work per step (MathNet QR least squares, "
                + "an eigenproblem per cycle) can outweigh the saved sparse products at n ≤ 1k");
        claims.NotShown("helmholtz-headline", "up to 13.9× wall-clock speed-up (Helmholtz, ASM preconditioner, tol 1e-7)", "13.9× (paper)", "—",
            "speed-up on the paper's Helmholtz sequence", "no Helmholtz sequence, ASM preconditioner or PETSc/HPDDM timings at this size (spec §4 full run)");

        claims.Saw($"At s = {Config.GridSize} (n = {(Config.GridSize - 2) * (Config.GridSize - 2)}), GMRES({Config.M}) spent {gm:F1} mat-vecs per system, "
            + $"GCRO-DR({Config.M}, {Config.K}) {noCarry:F1} without carry-over, {unsorted:F1} carried along the sampled order "
            + $"and {sorted:F1} along the sorted one.");
        claims.Saw($"The first system costs every GCRO-DR variant the same ({Runs[SortedName][0].Result.Matvecs} mat-vecs); from the second on the carried "
            + $"subspace brings the sorted sequence to {Runs[SortedName].Skip(1).Average(r => r.Result.Matvecs):F1} per system.");
        claims.Saw($"Sorting shortened the parameter path from {IdentityPathLength:F1} to {SortedPathLength:F1}; the run took {Seconds:F1} s.");
        return claims;
    }
}
