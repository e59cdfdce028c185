using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Double;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>
/// The textbook twin of <see cref="Krylov.Gmres"/>: no Hessenberg matrix, no recurrences. Each step re-orthonormalises the
/// Krylov basis K_j = span{r, A r, …, A^{j−1} r} with a dense Householder QR and solves x_j = x_0 + Q_j argmin ‖r − A Q_j y‖ by
/// a dense least-squares solve (MathNet); residuals are recomputed as b − A x. Restarts after m steps. Slow: O(n·j²) per step.
/// </summary>
public static class KrylovRecyclingNaive
{
    /// <summary>Restarted GMRES(m) the slow way; the residual history is the true ‖b − A x_j‖/‖b‖ after each mat-vec.</summary>
    public static (Vector<double> X, IReadOnlyList<double> ResidualHistory) Gmres(Matrix<double> A, Vector<double> b, int m, double tol,
        int maxMatvecs = 20000)
    {
        Krylov.Validate(A, b, m, 0, tol, maxMatvecs);
        var dense = DenseMatrix.OfMatrix(A);
        int n = A.RowCount;
        double bNorm = b.L2Norm();
        Vector<double> x = DenseVector.Create(n, 0);
        var history = new List<double> { 1.0 };
        if (bNorm == 0) return (x, history);
        int matvecs = 0;
        while ((b - dense * x).L2Norm() > tol * bNorm && matvecs < maxMatvecs)
        {
            var x0 = x.Clone();
            var r0 = b - dense * x0;
            var krylov = new List<Vector<double>> { r0 / r0.L2Norm() };
            for (int j = 1; j <= m && matvecs < maxMatvecs; j++)
            {
                var basis = DenseMatrix.OfColumnVectors(krylov);
                var Q = basis.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin).Q;   // orthonormal basis of K_j
                var AQ = dense * Q;
                matvecs++;
                var y = AQ.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin).Solve(r0);   // argmin ‖r0 − A Q y‖
                x = x0 + Q * y;
                double relative = (b - dense * x).L2Norm() / bNorm;
                history.Add(relative);
                if (relative <= tol) break;
                var next = dense * Q.Column(j - 1);                              // the next Krylov direction A q_j
                double norm = next.L2Norm();
                var perpendicular = next - Q * Q.TransposeThisAndMultiply(next);
                if (norm == 0 || perpendicular.L2Norm() <= 1e-13 * norm) break;   // the Krylov space is invariant
                krylov.Add(perpendicular / perpendicular.L2Norm());
            }
        }
        return (x, history);
    }

    /// <summary>The dense direct solve (MathNet LU): the reference every solver is checked against.</summary>
    public static Vector<double> DirectSolve(Matrix<double> A, Vector<double> b)
    {
        Krylov.CheckMatrix(A, nameof(A));
        ArgumentNullException.ThrowIfNull(b);
        return DenseMatrix.OfMatrix(A).LU().Solve(b);
    }
}
