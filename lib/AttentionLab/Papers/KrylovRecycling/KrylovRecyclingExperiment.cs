using AttentionLab.Core;
using MathNet.Numerics.LinearAlgebra;
using static TorchSharp.torch;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>
/// P03 SKR: Darcy sequences (K = exp(GRF), Jacobi-scaled 5-point operator) solved by GMRES(m), GCRO-DR(m, k) without carry-over,
/// and GCRO-DR with the recycled subspace carried along the unsorted and the greedily sorted sequence; mat-vecs per system,
/// a tolerance sweep, wall-clock per system vs grid size, and the exactness checks (dense LU, k = 0 ≡ GMRES, A U = C).
/// Float64 on the CPU (MathNet.Numerics): the device argument is not used (docs/decisions.md).
/// </summary>
public sealed class KrylovRecyclingExperiment : IPaperExperiment<KrylovRecyclingExperiment.Config, KrylovRecyclingResult>
{
    KrylovRecyclingExperiment() { }

    /// <summary>P03 in the catalogue (notebook notebooks/03-krylov-recycling.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(3, "SKR: Krylov subspace recycling", "krylov-recycling");

    /// <summary>Sizes of one run.</summary>
    /// <param name="GridSize">s: grid points per side (n = (s − 2)² unknowns).</param>
    /// <param name="Systems">Systems in the sequence.</param>
    /// <param name="M">Maximum subspace size m (restart length of GMRES).</param>
    /// <param name="K">Recycled dimension k.</param>
    /// <param name="Tolerance">Relative residual target ‖r‖/‖b‖ of the main runs.</param>
    /// <param name="Alpha">GRF smoothness α.</param>
    /// <param name="Tau">GRF inverse length scale τ.</param>
    /// <param name="Seed">Seed of the fields.</param>
    /// <param name="SweepTolerances">Extra tolerances for the sweep (GMRES vs sorted GCRO-DR); the main tolerance is added.</param>
    /// <param name="BenchmarkGrids">Grid sizes of the wall-clock benchmark.</param>
    /// <param name="BenchmarkSystems">Systems per grid in the benchmark.</param>
    public sealed record Config(int GridSize, int Systems, int M, int K, double Tolerance, double Alpha, double Tau, int Seed,
        double[] SweepTolerances, int[] BenchmarkGrids, int BenchmarkSystems) : IPaperConfig<Config>
    {
        /// <summary>The spec's smoke: s = 34 (n = 1024), 20 systems, m = 40, k = 20, tol 1e-8.</summary>
        public static Config Smoke => new(GridSize: 34, Systems: 20, M: 40, K: 20, Tolerance: 1e-8, Alpha: 2, Tau: 3, Seed: 0,
            SweepTolerances: [1e-4, 1e-6], BenchmarkGrids: [18, 26, 34], BenchmarkSystems: 4) { Size = "smoke" };

        /// <summary>The reference prototype's larger run: s = 66 (n = 4096), 30 systems, sweep incl. the reference's 1e-5 (CPU, ~5 min).</summary>
        public static Config Full => new(GridSize: 66, Systems: 30, M: 40, K: 20, Tolerance: 1e-8, Alpha: 2, Tau: 3, Seed: 0,
            SweepTolerances: [1e-4, 1e-5, 1e-6], BenchmarkGrids: [34, 66, 98], BenchmarkSystems: 4) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
    }

    /// <summary>Runs everything (CPU, float64), reporting one line per phase.</summary>
    public static KrylovRecyclingResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.GridSize < 4) throw new ArgumentOutOfRangeException(nameof(config), config.GridSize, "GridSize must be at least 4.");
        if (config.Systems < 2) throw new ArgumentOutOfRangeException(nameof(config), config.Systems, "a sequence needs at least 2 systems.");
        var clock = new PhaseClock();
        int s = config.GridSize, m = config.M, k = config.K;
        progress?.Report($"P03 SKR: {config.Systems} Darcy systems on {s}×{s} (n = {(s - 2) * (s - 2)}), GMRES({m}) vs GCRO-DR({m}, {k}), "
            + $"tol {config.Tolerance:G2}");

        var warmUp = Darcy.Sequence(10, 2, config.Alpha, config.Tau, config.Seed + 4);   // JIT warm-up so the first timed solves are fair
        SkrRunner.SolveSequence(warmUp, [0, 1], SolverKind.Gmres, Math.Min(m, 20), Math.Min(k, 10), config.Tolerance);
        SkrRunner.SolveSequence(warmUp, [0, 1], SolverKind.GcroDrCarry, Math.Min(m, 20), Math.Min(k, 10), config.Tolerance);
        var systems = Darcy.Sequence(s, config.Systems, config.Alpha, config.Tau, config.Seed);
        var parameters = systems.Select(x => x.Permeability).ToList();
        var identity = Enumerable.Range(0, systems.Count).ToArray();
        var sorted = SkrSort.GreedyFrobenius(parameters);
        clock.Lap("sample + sort");

        var runs = new Dictionary<string, IReadOnlyList<SkrRunner.SequenceSolve>>();
        foreach (var (name, kind, order) in new[]
                 {
                     (KrylovRecyclingResult.GmresName, SolverKind.Gmres, identity),
                     (KrylovRecyclingResult.NoCarryName, SolverKind.GcroDrNoCarry, identity),
                     (KrylovRecyclingResult.UnsortedName, SolverKind.GcroDrCarry, identity),
                     (KrylovRecyclingResult.SortedName, SolverKind.GcroDrCarry, sorted),
                 })
        {
            runs[name] = SkrRunner.SolveSequence(systems, order, kind, m, k, config.Tolerance);
            progress?.Report($"  {name}: {runs[name].Average(r => r.Result.Matvecs):F1} mat-vecs/system");
            clock.Lap(name);
        }

        var sweep = new List<KrylovRecyclingResult.SweepRow>();
        foreach (double tol in config.SweepTolerances.Append(config.Tolerance).Distinct().OrderByDescending(t => t))
        {
            var gm = tol == config.Tolerance ? runs[KrylovRecyclingResult.GmresName]
                : SkrRunner.SolveSequence(systems, identity, SolverKind.Gmres, m, k, tol);
            var gc = tol == config.Tolerance ? runs[KrylovRecyclingResult.SortedName]
                : SkrRunner.SolveSequence(systems, sorted, SolverKind.GcroDrCarry, m, k, tol);
            sweep.Add(new(tol, gm.Average(r => r.Result.Matvecs), gc.Average(r => r.Result.Matvecs),
                gm.Average(r => r.Seconds), gc.Average(r => r.Seconds)));
        }
        progress?.Report($"  tolerance sweep: {string.Join(", ", sweep.Select(r => $"{r.Tolerance:G1} → {r.MatvecRatio:F2}×"))}");
        clock.Lap("tolerance sweep");

        var benchmark = new List<KrylovRecyclingResult.BenchmarkRow>();
        foreach (int grid in config.BenchmarkGrids)
        {
            var benchSystems = Darcy.Sequence(grid, config.BenchmarkSystems, config.Alpha, config.Tau, config.Seed + 1);
            var benchOrder = SkrSort.GreedyFrobenius(benchSystems.Select(x => x.Permeability).ToList());
            foreach (var (name, kind) in new[]
                     {
                         (KrylovRecyclingResult.GmresName, SolverKind.Gmres), (KrylovRecyclingResult.NoCarryName, SolverKind.GcroDrNoCarry),
                         (KrylovRecyclingResult.SortedName, SolverKind.GcroDrCarry),
                     })
            {
                var solves = SkrRunner.SolveSequence(benchSystems, benchOrder, kind, m, k, config.Tolerance);
                benchmark.Add(new(grid, (grid - 2) * (grid - 2), name, solves.Average(r => r.Seconds) * 1e3, solves.Average(r => r.Result.Matvecs)));
            }
        }
        clock.Lap("benchmark");

        var exactness = Exactness(config);
        clock.Lap("exactness checks");
        return new KrylovRecyclingResult(config, runs, sorted, SkrSort.PathLength(parameters, identity), SkrSort.PathLength(parameters, sorted),
            SkrSort.DistanceMatrix(parameters, identity), SkrSort.DistanceMatrix(parameters, sorted), sweep, benchmark, exactness,
            clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// The checks of spec §6 on an independent small sequence (s = 18, n = 256): GMRES and GCRO-DR vs the dense LU solve, GCRO-DR
    /// with k = 0 vs GMRES(m) iterate by iterate, GMRES vs the textbook twin, and GMRES(n) exact within n steps.
    /// </summary>
    static KrylovRecyclingResult.ExactnessChecks Exactness(Config config)
    {
        var small = Darcy.Sequence(18, 3, config.Alpha, config.Tau, config.Seed + 2);
        double lu = 0, k0 = 0, twin = 0;
        Matrix<double>? recycle = null;
        foreach (var system in small)
        {
            var direct = KrylovRecyclingNaive.DirectSolve(system.A, system.B);
            var gmres = Krylov.Gmres(system.A, system.B, config.M, config.Tolerance);
            var gcro = Krylov.GcroDr(system.A, system.B, config.M, Math.Min(config.K, config.M - 1), config.Tolerance, recycle);
            recycle = gcro.Recycle;
            double dn = direct.L2Norm();
            lu = Math.Max(lu, Math.Max((gmres.X - direct).L2Norm() / dn, (gcro.X - direct).L2Norm() / dn));
            var restarted = Krylov.Gmres(system.A, system.B, 10, config.Tolerance);   // m = 10: several restart cycles
            var plain = Krylov.GcroDr(system.A, system.B, 10, 0, config.Tolerance);
            k0 = Math.Max(k0, (plain.X - restarted.X).L2Norm() / restarted.X.L2Norm());
        }
        var first = small[0];
        var textbook = KrylovRecyclingNaive.Gmres(first.A, first.B, 8, 1e-8);
        var fast = Krylov.Gmres(first.A, first.B, 8, 1e-8);
        int common = Math.Min(textbook.ResidualHistory.Count, fast.ResidualHistory.Count);
        for (int i = 0; i < common; i++)                                          // same residual after each mat-vec
            twin = Math.Max(twin, Math.Abs(textbook.ResidualHistory[i] - fast.ResidualHistory[i]) / textbook.ResidualHistory[i]);
        var tiny = Darcy.Sequence(8, 1, config.Alpha, config.Tau, config.Seed + 3)[0];   // n = 36
        var full = Krylov.Gmres(tiny.A, tiny.B, tiny.N, 1e-12);
        return new(lu, k0, twin, full.Matvecs, tiny.N, full.TrueRelativeResidual);
    }
}
