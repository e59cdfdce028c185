using AttentionLab.Core;
using AttentionLab.Papers.KrylovRecycling;
using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Double;
using TorchSharp;
using Complex = System.Numerics.Complex;

namespace AttentionLab.Tests.Papers;

/// <summary>P03 SKR: GMRES(m) and GCRO-DR(m, k) against a dense direct solve, a textbook GMRES twin and their invariants.</summary>
public class KrylovRecyclingTests
{
    /// <summary>A random non-symmetric matrix with a shifted diagonal (well-posed, not normal).</summary>
    static Matrix<double> RandomMatrix(int n, int seed, double shift = 3)
    {
        var rng = new Random(seed);
        return DenseMatrix.Create(n, n, (i, j) => (i == j ? shift : 0) + rng.NextDouble() - 0.5);
    }

    static Vector<double> RandomVector(int n, int seed)
    {
        var rng = new Random(seed);
        return DenseVector.Create(n, _ => rng.NextDouble() - 0.5);
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", KrylovRecyclingExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", KrylovRecyclingExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (KrylovRecyclingExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(7, 3)]
    [InlineData(13, 5)]
    [InlineData(30, 30)]
    [InlineData(30, 4)]
    public void GmresMatchesTheTextbookTwinStepByStep(int n, int m)
    {
        var A = RandomMatrix(n, n + m, shift: 1.5);
        var b = RandomVector(n, 7 * n);
        var fast = Krylov.Gmres(A, b, m, 1e-9);
        var (x, history) = KrylovRecyclingNaive.Gmres(A, b, m, 1e-9);
        int common = Math.Min(history.Count, fast.ResidualHistory.Count);
        Assert.True(common >= 2);
        for (int i = 0; i < common; i++)
            Assert.True(Math.Abs(history[i] - fast.ResidualHistory[i]) <= 1e-6 * history[i] + 1e-13,
                $"step {i}: textbook {history[i]:G6} vs fast {fast.ResidualHistory[i]:G6}");
        if (history.Count == fast.ResidualHistory.Count) Assert.True((x - fast.X).L2Norm() <= 1e-7 * x.L2Norm());
        Assert.True(fast.Converged);
    }

    [Theory]
    [InlineData(20, 5)]
    [InlineData(40, 40)]
    public void GmresResidualNeverIncreases(int n, int m)
    {
        var A = RandomMatrix(n, 11, shift: 0.8);
        var result = Krylov.Gmres(A, RandomVector(n, 12), m, 1e-10, maxMatvecs: 400);
        for (int i = 1; i < result.ResidualHistory.Count; i++)
            Assert.True(result.ResidualHistory[i] <= result.ResidualHistory[i - 1] * (1 + 1e-12), $"residual rose at step {i}");
        Assert.Equal(result.Matvecs, result.MatvecHistory[^1]);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(12)]
    [InlineData(25)]
    public void UnrestartedGmresIsExactWithinNSteps(int n)
    {
        var A = RandomMatrix(n, n, shift: 0.3);                                 // far from normal, no early convergence
        var b = RandomVector(n, n + 1);
        var result = Krylov.Gmres(A, b, n, 1e-10);
        Assert.True(result.Converged);
        Assert.True(result.Matvecs <= n, $"{result.Matvecs} mat-vecs for n = {n}");
        Assert.True(result.TrueRelativeResidual <= 1e-9);
    }

    [Fact]
    public void SolversMatchTheDenseDirectSolveOnDarcy()
    {
        var systems = Darcy.Sequence(18, 3, 2, 3, 5);                           // n = 256
        Matrix<double>? recycle = null;
        foreach (var system in systems)
        {
            var direct = KrylovRecyclingNaive.DirectSolve(system.A, system.B);
            var gmres = Krylov.Gmres(system.A, system.B, 40, 1e-10);
            var gcro = Krylov.GcroDr(system.A, system.B, 40, 20, 1e-10, recycle);
            recycle = gcro.Recycle;
            Assert.True((gmres.X - direct).L2Norm() <= 1e-6 * direct.L2Norm());
            Assert.True((gcro.X - direct).L2Norm() <= 1e-6 * direct.L2Norm());
            Assert.True(gcro.TrueRelativeResidual <= 1e-10 * (1 + 1e-6));
        }
        Assert.NotNull(recycle);
    }

    [Theory]
    [InlineData(34, 40)]
    [InlineData(10, 7)]
    public void GcroDrWithZeroRecycledDimensionIsGmres(int s, int m)
    {
        var system = Darcy.Sequence(s, 1, 2, 3, 9)[0];
        var gmres = Krylov.Gmres(system.A, system.B, m, 1e-9);
        var plain = Krylov.GcroDr(system.A, system.B, m, 0, 1e-9);
        Assert.Equal(gmres.Matvecs, plain.Matvecs);
        Assert.Equal(gmres.ResidualHistory.Count, plain.ResidualHistory.Count);
        for (int i = 0; i < gmres.ResidualHistory.Count; i++)
            Assert.True(Math.Abs(gmres.ResidualHistory[i] - plain.ResidualHistory[i]) <= 1e-10 * gmres.ResidualHistory[i] + 1e-16);
        Assert.True((gmres.X - plain.X).L2Norm() <= 1e-10 * gmres.X.L2Norm());
        Assert.Null(plain.Recycle);
    }

    [Fact]
    public void ArnoldiRelationsHoldWithAndWithoutC()
    {
        var system = Darcy.Sequence(18, 1, 2, 3, 3)[0];
        var A = system.A;
        var plain = Krylov.Arnoldi(A, system.B, 30);
        double aNorm = A.FrobeniusNorm();
        var Vm = plain.V.SubMatrix(0, A.RowCount, 0, plain.Steps);
        Assert.True((A * Vm - plain.V * plain.Hbar).FrobeniusNorm() <= 1e-10 * aNorm);               // A V_m = V_{m+1} H̄
        Assert.True((plain.V.TransposeThisAndMultiply(plain.V) - DenseMatrix.CreateIdentity(plain.Steps + 1)).FrobeniusNorm() <= 1e-12);

        var C = RandomMatrix(A.RowCount, 4).SubMatrix(0, A.RowCount, 0, 5).QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin).Q;
        var v1 = RandomVector(A.RowCount, 5);
        v1 -= C * C.TransposeThisAndMultiply(v1);
        var deflated = Krylov.Arnoldi(A, v1, 20, C);
        var Vj = deflated.V.SubMatrix(0, A.RowCount, 0, deflated.Steps);
        Assert.True((A * Vj - C * deflated.B - deflated.V * deflated.Hbar).FrobeniusNorm() <= 1e-10 * aNorm);   // A V = C B + V H̄
        Assert.True(C.TransposeThisAndMultiply(deflated.V).FrobeniusNorm() <= 1e-12);                          // V ⊥ C
    }

    [Fact]
    public void RecycledPairStaysInvariantAcrossTheSequence()
    {
        var systems = Darcy.Sequence(26, 4, 2, 3, 1);
        var order = SkrSort.GreedyFrobenius(systems.Select(s => s.Permeability).ToList());
        var solves = SkrRunner.SolveSequence(systems, order, SolverKind.GcroDrCarry, 30, 10, 1e-8);
        foreach (var solve in solves)
        {
            var r = solve.Result;
            Assert.NotNull(r.Recycle);
            Assert.NotNull(r.RecycleC);
            var A = systems[solve.System].A;
            Assert.True((A * r.Recycle! - r.RecycleC!).FrobeniusNorm() <= 1e-8);                                 // C = A U
            Assert.True((r.RecycleC!.TransposeThisAndMultiply(r.RecycleC!) - DenseMatrix.CreateIdentity(r.RecycleC!.ColumnCount)).FrobeniusNorm() <= 1e-10);
            Assert.True(r.MaxInvariantError <= 1e-8);
            Assert.InRange(r.Recycle!.ColumnCount, 10, 11);                                                    // k, or k + 1 for a pair
        }
        Assert.True(solves.Skip(1).Average(s => s.Result.Matvecs) < solves[0].Result.Matvecs);
    }

    [Fact]
    public void HarmonicRitzFormsAgreeOnAGmresCycle()
    {
        var system = Darcy.Sequence(18, 1, 2, 3, 4)[0];
        var arnoldi = Krylov.Arnoldi(system.A, system.B, 20);
        int m = arnoldi.Steps;
        var WtV = DenseMatrix.Create(m + 1, m, (i, j) => i == j ? 1 : 0);       // Ŵ = V_{m+1}, V̂ = V_m
        var P1 = Krylov.HarmonicRitzGmres(arnoldi.Hbar, 6);
        var P2 = Krylov.HarmonicRitzGeneralized(arnoldi.Hbar, WtV, 6);
        Assert.Equal(P1.ColumnCount, P2.ColumnCount);
        var Q1 = P1.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin).Q;
        var Q2 = P2.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin).Q;
        Assert.True((Q1 * Q1.Transpose() - Q2 * Q2.Transpose()).FrobeniusNorm() <= 1e-8);                       // same subspace
    }

    [Fact]
    public void ComplexPairsAreKeptTogether()
    {
        // Rotation blocks: eigenvalues ±i·a in conjugate pairs; asking for 3 must return 4 real columns (two full pairs) or 3 + 1.
        var hbar = DenseMatrix.Create(7, 6, 0);
        double[] scales = [1, 2, 3];
        for (int p = 0; p < 3; p++)
        {
            hbar[2 * p, 2 * p + 1] = scales[p];
            hbar[2 * p + 1, 2 * p] = -scales[p];
        }
        hbar[6, 5] = 1e-3;
        var P = Krylov.HarmonicRitzGmres(hbar, 3);
        Assert.Equal(4, P.ColumnCount);
    }

    [Fact]
    public void GreedySortRecoversAShuffledLine()
    {
        var positions = new[] { 0.0, 5, 2, 9, 1, 7, 3 };
        var parameters = positions.Select(p => new[] { p, 2 * p }).ToList();
        var order = SkrSort.GreedyFrobenius(parameters);
        Assert.Equal(new[] { 0, 4, 2, 6, 1, 5, 3 }, order);
        Assert.Equal(Enumerable.Range(0, positions.Length), order.OrderBy(i => i));
        Assert.True(SkrSort.PathLength(parameters, order) <= SkrSort.PathLength(parameters, Enumerable.Range(0, positions.Length).ToArray()));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(6)]
    public void InverseFftMatchesTheDirectSum(int s)
    {
        var rng = new Random(s);
        var input = Enumerable.Range(0, s * s).Select(_ => new Complex(rng.NextDouble(), rng.NextDouble())).ToArray();
        var fast = (Complex[])input.Clone();
        GrfSampler.InverseFft2(fast, s);
        for (int x = 0; x < s; x++)
            for (int y = 0; y < s; y++)
            {
                Complex sum = 0;
                for (int kx = 0; kx < s; kx++)
                    for (int ky = 0; ky < s; ky++)
                        sum += input[kx * s + ky] * Complex.Exp(new Complex(0, 2 * Math.PI * (kx * x + ky * y) / s));
                Assert.True((sum / (s * s) - fast[x * s + y]).Magnitude <= 1e-12);
            }
    }

    [Fact]
    public void GrfIsSeededZeroMeanAndDarcyIsJacobiScaled()
    {
        var a = GrfSampler.Sample(16, 2, 3, 2, 42);
        var b = GrfSampler.Sample(16, 2, 3, 2, 42);
        Assert.Equal(a[1], b[1]);
        Assert.True(Math.Abs(a[0].Average()) <= 1e-12);                          // √λ_0 = 0
        Assert.NotEqual(a[0], a[1]);
        var constant = Darcy.Build(6, Enumerable.Repeat(1.0, 36).ToArray());   // K = 1: the 5-point Laplacian / 4
        for (int i = 0; i < constant.N; i++) Assert.Equal(1.0, constant.A[i, i], 12);
        Assert.Equal(-0.25, constant.A[0, 1], 12);
        Assert.Equal(-0.25, constant.A[0, 4], 12);
        Assert.Equal(0.0, constant.A[0, 5], 12);
    }

    [Fact]
    public void BadInputsThrowNamingTheArgument()
    {
        var A = RandomMatrix(4, 1);
        var b = RandomVector(4, 2);
        Assert.Equal("A", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(DenseMatrix.Create(4, 3, 1), b)).ParamName);
        Assert.Equal("A", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(DenseMatrix.Create(3, 4, 1), RandomVector(3, 1))).ParamName);
        var zeroRow = A.Clone();
        zeroRow.ClearRow(2);
        Assert.Contains("singular", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(zeroRow, b)).Message);
        var rankOne = DenseMatrix.OfArray(new double[,] { { 1, 1 }, { 1, 1 } });   // b not in its range: invariant Krylov space
        var ex = Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(rankOne, DenseVector.OfArray([1.0, -0.5]), 2));
        Assert.Equal("A", ex.ParamName);
        Assert.Contains("singular", ex.Message);
        Assert.Equal("A", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(rankOne, DenseVector.OfArray([1.0, -0.5]), 2, 1)).ParamName);
        var nanA = A.Clone();
        nanA[1, 1] = double.NaN;
        Assert.Equal("A", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(nanA, b)).ParamName);
        var nanB = b.Clone();
        nanB[0] = double.NaN;
        Assert.Equal("b", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(A, nanB, 3, 1)).ParamName);
        Assert.Equal("b", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(A, RandomVector(5, 1))).ParamName);
        Assert.Equal("tol", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(A, b, tol: 0)).ParamName);
        Assert.Equal("tol", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(A, b, 3, 1, tol: -1e-8)).ParamName);
        Assert.Equal("tol", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(A, b, tol: double.NaN)).ParamName);
        Assert.Equal("m", Assert.ThrowsAny<ArgumentException>(() => Krylov.Gmres(A, b, m: 0)).ParamName);
        Assert.Equal("k", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(A, b, m: 5, k: 5)).ParamName);
        Assert.Equal("k", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(A, b, m: 5, k: -1)).ParamName);
        Assert.Equal("recycle", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(A, b, 3, 1, recycle: DenseMatrix.Create(5, 1, 1))).ParamName);
        Assert.Equal("recycle", Assert.ThrowsAny<ArgumentException>(() => Krylov.GcroDr(A, b, 3, 1, recycle: DenseMatrix.Create(4, 3, 1))).ParamName);
        var nanField = Enumerable.Repeat(1.0, 16).ToArray();
        nanField[15] = double.NaN;
        Assert.Equal("permeability", Assert.ThrowsAny<ArgumentException>(() => Darcy.Build(4, nanField)).ParamName);
        Assert.Equal("permeability", Assert.ThrowsAny<ArgumentException>(() => Darcy.Build(4, new double[15])).ParamName);
        Assert.Equal("parameters", Assert.ThrowsAny<ArgumentException>(() => SkrSort.GreedyFrobenius([[1.0], [double.NaN]])).ParamName);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = KrylovRecyclingExperiment.Run(KrylovRecyclingExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(KrylovRecyclingExperiment.Paper.Number, claims.Paper);
        Assert.Equal(ClaimStatus.Holds, claims["recycling-saves-matvecs"].Status);
        Assert.Equal(20, result.Runs[KrylovRecyclingResult.SortedName].Count);
        Assert.Equal(result.SortedOrder.OrderBy(i => i), Enumerable.Range(0, 20));
    }
}
