using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Double;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>One solve: the solution, its mat-vec count and the convergence history.</summary>
/// <param name="X">The approximate solution.</param>
/// <param name="Matvecs">Products with A spent (Arnoldi steps plus the k products A·Ỹ of a carried-over recycle space).</param>
/// <param name="Cycles">Restart cycles (GMRES) or cycles after the first (GCRO-DR counts its first GMRES cycle too).</param>
/// <param name="ResidualHistory">Relative residual ‖r‖/‖b‖ (the solver's least-squares estimate) after each mat-vec event.</param>
/// <param name="MatvecHistory">The cumulative mat-vec count at each entry of <paramref name="ResidualHistory"/>.</param>
/// <param name="Converged">‖r‖ ≤ tol·‖b‖ reached within the mat-vec budget.</param>
/// <param name="TrueRelativeResidual">‖b − A x‖/‖b‖ recomputed at the end (one product not counted in Matvecs).</param>
/// <param name="Recycle">U (n×k): the recycled subspace to hand to the next system (GCRO-DR), else null.</param>
/// <param name="RecycleC">C = A·U with orthonormal columns, for the invariant checks; null when no subspace.</param>
/// <param name="MaxInvariantError">Largest max(‖A U − C‖_F, ‖CᵀC − I‖_F) seen after any cycle (0 for GMRES).</param>
public sealed record SolveResult(Vector<double> X, int Matvecs, int Cycles, IReadOnlyList<double> ResidualHistory,
    IReadOnlyList<int> MatvecHistory, bool Converged, double TrueRelativeResidual, Matrix<double>? Recycle, Matrix<double>? RecycleC,
    double MaxInvariantError);

/// <summary>Arnoldi's output: A V_j = C B + V_{j+1} H̄_j, with V orthonormal and V ⊥ C.</summary>
/// <param name="V">n × (Steps + 1) orthonormal basis (the last column is zero after a breakdown).</param>
/// <param name="Hbar">(Steps + 1) × Steps upper Hessenberg.</param>
/// <param name="B">Cᵀ A V_j (kc × Steps), or an empty matrix when no C is given.</param>
/// <param name="Steps">Arnoldi steps taken (= mat-vecs).</param>
/// <param name="Breakdown">True when h_{j+1,j} vanished (the Krylov space is invariant).</param>
public sealed record ArnoldiResult(Matrix<double> V, Matrix<double> Hbar, Matrix<double> B, int Steps, bool Breakdown);

/// <summary>
/// GMRES(m) and GCRO-DR(m, k) (Parks, de Sturler, Mackey, Johnson &amp; Maiti 2006; SKR's Alg. 2) in float64 on CPU, with
/// MathNet.Numerics for the products and the small dense algebra (QR, eigenproblems, least squares).
/// </summary>
/// <remarks>
/// Arnoldi: A V_j = V_{j+1} H̄_j (modified Gram–Schmidt, one re-orthogonalisation pass); with a recycle pair (U, C), A U = C,
/// CᵀC = I, the operator is (I − C Cᵀ) A and B = Cᵀ A V_j, orthogonalising twice against C.
/// GCRO-DR cycle: V̂ = [U D, V_j], Ŵ = [C, V_{j+1}], G = [[D, B], [0, H̄_j]] so that A V̂ = Ŵ G; y = argmin ‖Ŵᵀ r − G y‖;
/// x += V̂ y; r −= Ŵ G y. Harmonic Ritz: Gᵀ G z = θ Gᵀ Ŵᵀ V̂ z, P_k = the k smallest |θ|; QR(G P_k) = Q R; C = Ŵ Q;
/// U = V̂ P_k R⁻¹.
/// </remarks>
public static class Krylov
{
    /// <summary>h_{j+1,j} ≤ this × ‖A v_j‖ counts as a breakdown (the Krylov space is invariant).</summary>
    const double BreakdownRatio = 1e-13;

    /// <summary>Runs <paramref name="steps"/> Arnoldi steps from v1 (normalised here), against C when given.</summary>
    public static ArnoldiResult Arnoldi(Matrix<double> A, Vector<double> v1, int steps, Matrix<double>? C = null)
    {
        CheckMatrix(A, nameof(A));
        ArgumentNullException.ThrowIfNull(v1);
        if (v1.Count != A.RowCount) throw new ArgumentException($"v1 has {v1.Count} entries but A is {A.RowCount}×{A.ColumnCount}.", nameof(v1));
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "Arnoldi needs at least one step.");
        if (C is not null && C.RowCount != A.RowCount) throw new ArgumentException($"C has {C.RowCount} rows, A has {A.RowCount}.", nameof(C));
        double norm = v1.L2Norm();
        if (!(norm > 0) || !double.IsFinite(norm)) throw new ArgumentException("v1 must be a finite, non-zero vector.", nameof(v1));
        var process = new ArnoldiProcess(A, v1.ToArray(), norm, steps, Columns(C));
        while (process.Steps < steps && process.Step()) { }
        int j = process.Steps;
        var V = DenseMatrix.Create(A.RowCount, j + 1, 0);
        for (int c = 0; c <= j; c++) V.SetColumn(c, process.V[c]);
        return new ArnoldiResult(V, process.Hbar(j), process.Bmat(j), j, process.BrokeDown);
    }

    /// <summary>
    /// Restarted GMRES(m) from x0 = 0: each cycle A V_m = V_{m+1} H̄_m from r/β; y = argmin ‖β e1 − H̄ y‖; x += V_m y;
    /// r = V_{m+1}(β e1 − H̄ y). Stops inside a cycle as soon as the least-squares residual reaches tol·‖b‖.
    /// </summary>
    public static SolveResult Gmres(Matrix<double> A, Vector<double> b, int m = 40, double tol = 1e-8, int maxMatvecs = 20000)
    {
        Validate(A, b, m, 0, tol, maxMatvecs);
        int n = A.RowCount;
        double bNorm = b.L2Norm();
        var x = new double[n];
        var r = b.ToArray();
        var history = new List<double> { 1.0 };
        var matvecHistory = new List<int> { 0 };
        if (bNorm == 0) return Finish(A, b, x, 0, 0, history, matvecHistory, true, null, null, 0);
        int matvecs = 0, cycles = 0;
        double rNorm = bNorm;
        while (rNorm > tol * bNorm && matvecs < maxMatvecs)
        {
            (_, _, r, rNorm) = GmresCycle(A, x, r, rNorm, m, tol * bNorm, bNorm, history, matvecHistory, ref matvecs, maxMatvecs);
            cycles++;
        }
        return Finish(A, b, x, matvecs, cycles, history, matvecHistory, rNorm <= tol * bNorm, null, null, 0);
    }

    /// <summary>
    /// One GMRES cycle from r (‖r‖ = <paramref name="rNorm"/>): Arnoldi steps until m, the target or a breakdown, each with
    /// y = argmin ‖β e1 − H̄ y‖ and its residual recorded; then x += V_j y and r = V_{j+1}(β e1 − H̄ y). Returns the process,
    /// H̄ (for harmonic Ritz vectors), the new residual and its norm.
    /// </summary>
    static (ArnoldiProcess Process, Matrix<double> Hbar, double[] R, double RNorm) GmresCycle(Matrix<double> A, double[] x, double[] r, double rNorm,
        int m, double target, double bNorm, List<double> history, List<int> matvecHistory, ref int matvecs, int maxMatvecs)
    {
        var process = new ArnoldiProcess(A, r, rNorm, m, []);
        double[] y = [];
        Matrix<double> hbar = DenseMatrix.Create(1, 0, 0);
        double[] rhs = [];
        while (process.Steps < m && matvecs < maxMatvecs)
        {
            bool more = process.Step();
            matvecs++;
            int j = process.Steps;
            hbar = process.Hbar(j);
            rhs = new double[j + 1];
            rhs[0] = rNorm;                                                       // β e1
            (y, double res) = LeastSquares(hbar, rhs);                            // y = argmin ‖β e1 − H̄ y‖
            history.Add(res / bNorm);
            matvecHistory.Add(matvecs);
            if (!more) { ThrowIfSingular(res, target, j); break; }
            if (res <= target) break;
        }
        int steps = process.Steps;
        for (int c = 0; c < steps; c++) Axpy(y[c], process.V[c], x);              // x += V_m y
        var residualCoefficients = Subtract(rhs, hbar.Multiply(DenseVector.OfArray(y)).ToArray());
        var next = new double[x.Length];
        for (int c = 0; c <= steps; c++) Axpy(residualCoefficients[c], process.V[c], next);   // r = V_{m+1}(β e1 − H̄ y)
        return (process, hbar, next, Norm(next));
    }

    /// <summary>
    /// GCRO-DR(m, k) from x0 = 0. With <paramref name="recycle"/> = Ỹ (n×k, from the previous system): QR(A Ỹ) = Q R; C = Q;
    /// U = Ỹ R⁻¹; x += U Cᵀ r; r −= C Cᵀ r (k mat-vecs). Without it, the first cycle is GMRES(m) and its harmonic Ritz vectors
    /// seed (U, C). Then cycles of m − k Arnoldi steps with (I − C Cᵀ)A until ‖r‖ ≤ tol·‖b‖. Returns U for the next system.
    /// With k = 0 it is GMRES(m).
    /// </summary>
    public static SolveResult GcroDr(Matrix<double> A, Vector<double> b, int m = 40, int k = 20, double tol = 1e-8,
        Matrix<double>? recycle = null, int maxMatvecs = 20000)
    {
        Validate(A, b, m, k, tol, maxMatvecs);
        int n = A.RowCount;
        if (recycle is not null)
        {
            if (recycle.RowCount != n) throw new ArgumentException($"recycle has {recycle.RowCount} rows but A is {n}×{n}.", nameof(recycle));
            if (recycle.ColumnCount >= m)
                throw new ArgumentException($"recycle has {recycle.ColumnCount} columns; it must have fewer than m = {m}.", nameof(recycle));
            if (!AllFinite(recycle)) throw new ArgumentException("recycle contains NaN or infinite entries.", nameof(recycle));
        }
        double bNorm = b.L2Norm();
        var x = new double[n];
        var r = b.ToArray();
        var history = new List<double> { 1.0 };
        var matvecHistory = new List<int> { 0 };
        if (bNorm == 0) return Finish(A, b, x, 0, 0, history, matvecHistory, true, null, null, 0);
        int matvecs = 0, cycles = 0;
        double rNorm = bNorm, maxInvariant = 0;
        double[][] U = [], C = [];

        if (recycle is not null && recycle.ColumnCount > 0 && k > 0)
        {
            var AY = A.Multiply(recycle);                                         // A Ỹ (k mat-vecs)
            matvecs += recycle.ColumnCount;
            var qr = AY.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
            var uMat = recycle.Multiply(qr.R.Inverse());                           // U = Ỹ R⁻¹
            C = Columns(qr.Q);                                                    // C = Q
            U = Columns(uMat);
            var ctr = C.Select(c => Dot(c, r)).ToArray();                        // Cᵀ r
            for (int i = 0; i < C.Length; i++) { Axpy(ctr[i], U[i], x); Axpy(-ctr[i], C[i], r); }   // x += U Cᵀ r; r −= C Cᵀ r
            rNorm = Norm(r);
            history.Add(rNorm / bNorm);
            matvecHistory.Add(matvecs);
            maxInvariant = Math.Max(maxInvariant, InvariantError(A, U, C));
        }
        else
        {
            // First cycle: GMRES(m), then harmonic Ritz vectors of (H_m + h²_{m+1,m} H_m⁻ᵀ e_m e_mᵀ).
            (var process, var hbar, r, rNorm) = GmresCycle(A, x, r, rNorm, m, tol * bNorm, bNorm, history, matvecHistory, ref matvecs, maxMatvecs);
            int steps = process.Steps;
            cycles++;
            if (k > 0 && steps > k && !process.BrokeDown)
            {
                var P = HarmonicRitzGmres(hbar, k);                                // m × k (k + 1 with a split conjugate pair)
                var Vm = process.V.Take(steps).ToArray();
                var Vm1 = process.V.Take(steps + 1).ToArray();
                (U, C) = RecyclePair(Vm, Vm1, hbar, P);
                maxInvariant = Math.Max(maxInvariant, InvariantError(A, U, C));
            }
        }

        while (rNorm > tol * bNorm && matvecs < maxMatvecs)
        {
            int kc = C.Length;
            int budget = m - kc;
            var process = new ArnoldiProcess(A, r, rNorm, budget, C);
            var D = U.Select(u => 1.0 / Norm(u)).ToArray();                       // D = diag(1/‖u_j‖)
            var ctr = C.Select(c => Dot(c, r)).ToArray();                        // Cᵀ r (≈ 0: r ⊥ C)
            double[] y = [];
            double[] rhs = [];
            Matrix<double> G = DenseMatrix.Create(1, 0, 0);
            while (process.Steps < budget && matvecs < maxMatvecs)
            {
                bool more = process.Step();
                matvecs++;
                int j = process.Steps;
                G = AssembleG(D, process.Bmat(j), process.Hbar(j));              // G = [[D, B], [0, H̄]]
                rhs = new double[kc + j + 1];                                     // Ŵᵀ r = [Cᵀ r; β e1]
                Array.Copy(ctr, rhs, kc);
                rhs[kc] = rNorm;
                (y, double res) = LeastSquares(G, rhs);                          // y = argmin ‖Ŵᵀ r − G y‖
                history.Add(res / bNorm);
                matvecHistory.Add(matvecs);
                if (!more) { ThrowIfSingular(res, tol * bNorm, j); break; }
                if (res <= tol * bNorm) break;
            }
            int steps = process.Steps;
            var Vhat = U.Select((u, i) => Scale(u, D[i])).Concat(process.V.Take(steps)).ToArray();   // V̂ = [U D, V_j]
            var What = C.Concat(process.V.Take(steps + 1)).ToArray();                             // Ŵ = [C, V_{j+1}]
            for (int c = 0; c < Vhat.Length; c++) Axpy(y[c], Vhat[c], x);                          // x += V̂ y
            var gy = G.Multiply(DenseVector.OfArray(y));
            for (int c = 0; c < What.Length; c++) Axpy(-gy[c], What[c], r);                        // r −= Ŵ G y
            rNorm = Norm(r);
            cycles++;
            if (k > 0 && Vhat.Length > k && !process.BrokeDown)
            {
                var WtV = WhatTransposeVhat(C, process.V.Take(steps + 1).ToArray(), Vhat.Take(kc).ToArray(), steps);
                var P = HarmonicRitzGeneralized(G, WtV, k);                                        // Gᵀ G z = θ Gᵀ Ŵᵀ V̂ z
                (U, C) = RecyclePair(Vhat, What, G, P);
                maxInvariant = Math.Max(maxInvariant, InvariantError(A, U, C));
            }
        }
        return Finish(A, b, x, matvecs, cycles, history, matvecHistory, rNorm <= tol * bNorm,
            U.Length == 0 ? null : FromColumns(U), C.Length == 0 ? null : FromColumns(C), maxInvariant);
    }

    /// <summary>
    /// The first cycle's harmonic Ritz vectors: (H_m + h²_{m+1,m} H_m⁻ᵀ e_m e_mᵀ) z = θ z, the k smallest |θ| (real and
    /// imaginary parts of a complex pair kept together, so k may become k + 1).
    /// </summary>
    public static Matrix<double> HarmonicRitzGmres(Matrix<double> hbar, int k)
    {
        int m = hbar.ColumnCount;
        var H = hbar.SubMatrix(0, m, 0, m);
        double h = hbar[m, m - 1];
        var em = DenseVector.Create(m, i => i == m - 1 ? 1.0 : 0.0);
        var f = H.Transpose().Solve(em);                                         // H_m⁻ᵀ e_m
        var M = H + h * h * f.OuterProduct(em);                                  // H_m + h² H_m⁻ᵀ e_m e_mᵀ
        var evd = M.Evd();
        var order = Enumerable.Range(0, m).OrderBy(i => evd.EigenValues[i].Magnitude).ToList();
        return SelectEigenvectors(evd.EigenVectors, evd.EigenValues, order, k);
    }

    /// <summary>
    /// Harmonic Ritz vectors of a GCRO-DR cycle: Gᵀ G z = θ Gᵀ Ŵᵀ V̂ z, reduced with a solve to (GᵀG)⁻¹ Gᵀ Ŵᵀ V̂ z = θ⁻¹ z
    /// (GᵀG is SPD when G has full rank); the k smallest |θ| are the k largest |θ⁻¹|.
    /// </summary>
    public static Matrix<double> HarmonicRitzGeneralized(Matrix<double> G, Matrix<double> WhatTransposeVhat, int k)
    {
        var GtG = G.TransposeThisAndMultiply(G);
        var rhs = G.TransposeThisAndMultiply(WhatTransposeVhat);
        var M = GtG.Cholesky().Solve(rhs);
        var evd = M.Evd();
        int size = M.RowCount;
        var order = Enumerable.Range(0, size).OrderByDescending(i => evd.EigenValues[i].Magnitude).ToList();
        return SelectEigenvectors(evd.EigenVectors, evd.EigenValues, order, k);
    }

    /// <summary>The first k eigenvectors in <paramref name="order"/> as real columns, a conjugate pair never split.</summary>
    static Matrix<double> SelectEigenvectors(Matrix<double> vectors, Vector<System.Numerics.Complex> values, List<int> order, int k)
    {
        var chosen = new List<int>();
        foreach (int i in order)
        {
            if (chosen.Count >= k) break;
            if (chosen.Contains(i)) continue;
            chosen.Add(i);
            if (values[i].Imaginary != 0)
            {
                // MathNet stores a conjugate pair in adjacent columns as its real and imaginary parts (JAMA's convention).
                int partner = i + 1 < values.Count && values[i + 1] == System.Numerics.Complex.Conjugate(values[i]) ? i + 1 : i - 1;
                if (!chosen.Contains(partner)) chosen.Add(partner);
            }
        }
        chosen.Sort();
        var P = DenseMatrix.Create(vectors.RowCount, chosen.Count, 0);
        for (int c = 0; c < chosen.Count; c++) P.SetColumn(c, vectors.Column(chosen[c]));
        return P;
    }

    /// <summary>Ỹ = V̂ P_k; QR(G P_k) = Q R; C = Ŵ Q; U = Ỹ R⁻¹.</summary>
    static (double[][] U, double[][] C) RecyclePair(double[][] Vhat, double[][] What, Matrix<double> G, Matrix<double> P)
    {
        var qr = G.Multiply(P).QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
        var rInv = qr.R.Inverse();
        var yCoefficients = P.Multiply(rInv);                                    // U = V̂ (P_k R⁻¹)
        int n = Vhat[0].Length, kk = P.ColumnCount;
        var U = new double[kk][];
        var C = new double[kk][];
        for (int c = 0; c < kk; c++)
        {
            U[c] = new double[n];
            for (int i = 0; i < Vhat.Length; i++) Axpy(yCoefficients[i, c], Vhat[i], U[c]);
            C[c] = new double[n];
            for (int i = 0; i < What.Length; i++) Axpy(qr.Q[i, c], What[i], C[c]);   // C = Ŵ Q
        }
        return (U, C);
    }

    /// <summary>Ŵᵀ V̂ = [[Cᵀ Ũ, 0], [V_{j+1}ᵀ Ũ, I]] with Ũ = U D (V ⊥ C and V orthonormal by construction).</summary>
    static Matrix<double> WhatTransposeVhat(double[][] C, double[][] Vj1, double[][] Utilde, int steps)
    {
        int kc = C.Length;
        var M = DenseMatrix.Create(kc + steps + 1, kc + steps, 0);
        for (int a = 0; a < kc; a++)
            for (int c = 0; c < kc; c++) M[a, c] = Dot(C[a], Utilde[c]);
        for (int a = 0; a <= steps; a++)
            for (int c = 0; c < kc; c++) M[kc + a, c] = Dot(Vj1[a], Utilde[c]);
        for (int a = 0; a < steps; a++) M[kc + a, kc + a] = 1;
        return M;
    }

    /// <summary>G = [[D, B], [0, H̄]], (kc + j + 1) × (kc + j).</summary>
    static Matrix<double> AssembleG(double[] D, Matrix<double> B, Matrix<double> hbar)
    {
        int kc = D.Length, j = hbar.ColumnCount;
        var G = DenseMatrix.Create(kc + j + 1, kc + j, 0);
        for (int i = 0; i < kc; i++) G[i, i] = D[i];
        if (kc > 0) G.SetSubMatrix(0, kc, B);
        G.SetSubMatrix(kc, 0 + kc, hbar);
        return G;
    }

    /// <summary>min ‖rhs − M y‖ by MathNet's QR (its SVD pseudo-inverse when M is numerically rank-deficient); returns y and the residual norm.</summary>
    static (double[] Y, double Residual) LeastSquares(Matrix<double> M, double[] rhs)
    {
        var b = DenseVector.OfArray(rhs);
        var qr = M.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
        Vector<double> y;
        double largest = Enumerable.Range(0, M.ColumnCount).Max(i => Math.Abs(qr.R[i, i]));
        bool fullRank = Enumerable.Range(0, M.ColumnCount).All(i => Math.Abs(qr.R[i, i]) > 1e-14 * largest);
        y = fullRank ? qr.Solve(b) : M.PseudoInverse() * b;                    // rank-deficient: the SVD pseudo-inverse's least squares
        return (y.ToArray(), (b - M.Multiply(y)).L2Norm());
    }

    static void ThrowIfSingular(double residual, double target, int step)
    {
        if (residual > target)
            throw new ArgumentException($"A is singular: the Krylov space became invariant after {step} steps while the residual "
                + $"({residual:G3}) is still above the target ({target:G3}); b is not in A's range along it.", "A");
    }

    /// <summary>max(‖A U − C‖_F, ‖CᵀC − I‖_F): the recycle invariants (one product per column, not counted as mat-vecs).</summary>
    static double InvariantError(Matrix<double> A, double[][] U, double[][] C)
    {
        var Um = FromColumns(U);
        var Cm = FromColumns(C);
        double au = Frobenius(A.Multiply(Um) - Cm);
        double cc = (Cm.TransposeThisAndMultiply(Cm) - DenseMatrix.CreateIdentity(C.Length)).FrobeniusNorm();
        return Math.Max(au, cc);
    }

    /// <summary>
    /// ‖X‖_F = √(Σ x²) over the stored values. MathNet's dense <c>FrobeniusNorm()</c> forms X·Xᵀ (n × n for a tall n × k X:
    /// 96 s of a 112 s run at n = 4096 — the reason the full preset did not finish).
    /// </summary>
    static double Frobenius(Matrix<double> x) => Math.Sqrt(x.Enumerate().Sum(v => v * v));

    static SolveResult Finish(Matrix<double> A, Vector<double> b, double[] x, int matvecs, int cycles, List<double> history,
        List<int> matvecHistory, bool converged, Matrix<double>? U, Matrix<double>? C, double maxInvariant)
    {
        var xv = DenseVector.OfArray(x);
        double bNorm = b.L2Norm();
        double trueRes = bNorm == 0 ? 0 : (b - A.Multiply(xv)).L2Norm() / bNorm;
        return new SolveResult(xv, matvecs, cycles, history, matvecHistory, converged, trueRes, U, C, maxInvariant);
    }

    internal static void Validate(Matrix<double> A, Vector<double> b, int m, int k, double tol, int maxMatvecs)
    {
        CheckMatrix(A, nameof(A));
        ArgumentNullException.ThrowIfNull(b);
        if (b.Count != A.RowCount) throw new ArgumentException($"b has {b.Count} entries but A is {A.RowCount}×{A.ColumnCount}.", nameof(b));
        if (b.Any(v => !double.IsFinite(v))) throw new ArgumentException("b contains NaN or infinite entries.", nameof(b));
        if (m < 1) throw new ArgumentOutOfRangeException(nameof(m), m, "the subspace size m must be at least 1.");
        if (k < 0 || k >= m) throw new ArgumentOutOfRangeException(nameof(k), k, $"the recycled dimension k must satisfy 0 ≤ k < m = {m}.");
        if (!(tol > 0) || !double.IsFinite(tol)) throw new ArgumentOutOfRangeException(nameof(tol), tol, "the tolerance must be a positive number.");
        if (maxMatvecs < 1) throw new ArgumentOutOfRangeException(nameof(maxMatvecs), maxMatvecs, "the mat-vec budget must be at least 1.");
    }

    /// <summary>Square, finite, no zero row (a zero row makes A singular).</summary>
    internal static void CheckMatrix(Matrix<double> A, string name)
    {
        ArgumentNullException.ThrowIfNull(A, name);
        if (A.RowCount != A.ColumnCount) throw new ArgumentException($"A must be square, got {A.RowCount}×{A.ColumnCount}.", name);
        if (A.RowCount == 0) throw new ArgumentException("A is empty.", name);
        var rowHasEntry = new bool[A.RowCount];
        foreach (var (i, _, v) in A.EnumerateIndexed(Zeros.AllowSkip))
        {
            if (!double.IsFinite(v)) throw new ArgumentException($"A contains NaN or infinite entries (row {i}).", name);
            if (v != 0) rowHasEntry[i] = true;
        }
        int zeroRow = Array.IndexOf(rowHasEntry, false);
        if (zeroRow >= 0) throw new ArgumentException($"A is singular: row {zeroRow} is zero.", name);
    }

    static bool AllFinite(Matrix<double> M) => M.Enumerate(Zeros.AllowSkip).All(double.IsFinite);

    internal static double[][] Columns(Matrix<double>? M) =>
        M is null ? [] : Enumerable.Range(0, M.ColumnCount).Select(c => M.Column(c).ToArray()).ToArray();

    internal static Matrix<double> FromColumns(double[][] cols) => DenseMatrix.OfColumnArrays(cols);

    internal static double Dot(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    internal static double Norm(double[] a) => Math.Sqrt(Dot(a, a));

    /// <summary>y += α x.</summary>
    internal static void Axpy(double alpha, double[] x, double[] y)
    {
        for (int i = 0; i < x.Length; i++) y[i] += alpha * x[i];
    }

    static double[] Scale(double[] x, double alpha) => x.Select(v => v * alpha).ToArray();

    static double[] Subtract(double[] a, double[] b) => a.Select((v, i) => v - b[i]).ToArray();

    /// <summary>Arnoldi, one step at a time (the solvers test convergence after each step).</summary>
    sealed class ArnoldiProcess
    {
        readonly Matrix<double> a;
        readonly double[][] c;
        readonly double[,] h;
        readonly double[,] bc;
        public readonly List<double[]> V = [];
        public int Steps { get; private set; }
        public bool BrokeDown { get; private set; }

        public ArnoldiProcess(Matrix<double> A, double[] start, double startNorm, int maxSteps, double[][] C)
        {
            a = A;
            c = C;
            h = new double[maxSteps + 1, maxSteps];
            bc = new double[C.Length, maxSteps];
            V.Add(start.Select(v => v / startNorm).ToArray());                  // v1 = r/‖r‖
        }

        /// <summary>One step: w = A v_j; w −= C(Cᵀw) twice (B); w −= V(Vᵀw) by MGS twice (H̄); v_{j+1} = w/‖w‖. False on breakdown.</summary>
        public bool Step()
        {
            int j = Steps;
            var w = new double[a.RowCount];
            a.Multiply(new DenseVector(V[j]), new DenseVector(w));               // w = A v_j
            double wNorm = Norm(w);
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < c.Length; i++)
                {
                    double coefficient = Dot(c[i], w);                           // B_{ij} = c_iᵀ A v_j
                    bc[i, j] += coefficient;
                    Axpy(-coefficient, c[i], w);
                }
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i <= j; i++)
                {
                    double coefficient = Dot(V[i], w);                           // h_{ij} = v_iᵀ w
                    h[i, j] += coefficient;
                    Axpy(-coefficient, V[i], w);
                }
            double next = Norm(w);
            Steps = j + 1;
            if (!(next > BreakdownRatio * wNorm))
            {
                h[j + 1, j] = 0;
                V.Add(new double[a.RowCount]);
                BrokeDown = true;
                return false;
            }
            h[j + 1, j] = next;                                                  // h_{j+1,j} = ‖w‖
            for (int i = 0; i < w.Length; i++) w[i] /= next;
            V.Add(w);
            return true;
        }

        public Matrix<double> Hbar(int j) => DenseMatrix.Create(j + 1, j, (r, col) => h[r, col]);

        public Matrix<double> Bmat(int j) => DenseMatrix.Create(c.Length, j, (r, col) => bc[r, col]);
    }
}
