using Complex = System.Numerics.Complex;
using MathNet.Numerics.Distributions;
using MathNet.Numerics.IntegralTransforms;
using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Double;
using MathNet.Numerics.Random;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>
/// Periodic Gaussian random fields on an s×s grid, as the paper's data scripts sample them (FNO's GaussianRF):
/// √λ_k = s²·√2·σ·(4π²|k|² + τ²)^(−α/2), σ = τ^(α−1), √λ_0 = 0; field = Re ifft2(√λ ⊙ ξ), ξ complex standard normal.
/// </summary>
public static class GrfSampler
{
    /// <summary><paramref name="count"/> fields (row-major s·s values each), seeded.</summary>
    public static double[][] Sample(int s, double alpha, double tau, int count, int seed)
    {
        if (s < 3) throw new ArgumentOutOfRangeException(nameof(s), s, "the grid needs at least 3 points per side.");
        if (!(alpha > 1) || !double.IsFinite(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be a finite number > 1.");
        if (!(tau > 0) || !double.IsFinite(tau)) throw new ArgumentOutOfRangeException(nameof(tau), tau, "τ must be a positive number.");
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "sample at least one field.");
        var sqrtEig = SqrtEigenvalues(s, alpha, tau);
        var normal = new Normal(0, Math.Sqrt(0.5), new MersenneTwister(seed));   // torch.randn(cfloat): E|ξ|² = 1
        var fields = new double[count][];
        for (int f = 0; f < count; f++)
        {
            var coefficients = new Complex[s * s];
            for (int i = 0; i < coefficients.Length; i++)
                coefficients[i] = sqrtEig[i] * new Complex(normal.Sample(), normal.Sample());
            InverseFft2(coefficients, s);                                         // (1/s²) Σ_k c_k e^{+2πi k·x/s}
            fields[f] = coefficients.Select(c => c.Real).ToArray();
        }
        return fields;
    }

    /// <summary>The 2-D inverse DFT (1/s² scaling) as 1-D MathNet transforms along rows, then columns, in place.</summary>
    public static void InverseFft2(Complex[] values, int s)
    {
        var line = new Complex[s];
        for (int i = 0; i < s; i++)
        {
            Array.Copy(values, i * s, line, 0, s);
            Fourier.Inverse(line, FourierOptions.AsymmetricScaling);               // (1/s) Σ e^{+2πi k j/s}
            Array.Copy(line, 0, values, i * s, s);
        }
        for (int j = 0; j < s; j++)
        {
            for (int i = 0; i < s; i++) line[i] = values[i * s + j];
            Fourier.Inverse(line, FourierOptions.AsymmetricScaling);
            for (int i = 0; i < s; i++) values[i * s + j] = line[i];
        }
    }

    /// <summary>√λ on the FFT's frequency grid (row-major, frequencies 0, 1, …, −1).</summary>
    public static double[] SqrtEigenvalues(int s, double alpha, double tau)
    {
        double sigma = Math.Pow(tau, alpha - 1);                                  // σ = τ^(½(2α − d)), d = 2
        var result = new double[s * s];
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++)
            {
                int kx = Frequency(i, s), ky = Frequency(j, s);
                result[i * s + j] = s * s * Math.Sqrt(2) * sigma * Math.Pow(4 * Math.PI * Math.PI * (kx * kx + ky * ky) + tau * tau, -alpha / 2);
            }
        result[0] = 0;                                                            // zero-mean field
        return result;
    }

    /// <summary>FFT index → signed frequency (0, 1, …, ⌈s/2⌉ − 1, −⌊s/2⌋, …, −1).</summary>
    public static int Frequency(int index, int s) => index < (s + 1) / 2 ? index : index - s;
}

/// <summary>One Darcy system −∇·(K∇h) = f on the unit square, h = 0 on the boundary, Jacobi-scaled: D⁻¹A h = D⁻¹ b.</summary>
/// <param name="S">Grid points per side (boundary included); unknowns n = (S − 2)².</param>
/// <param name="Permeability">K on the S×S grid (row-major), the parameter the sort compares.</param>
/// <param name="A">The Jacobi-scaled operator D⁻¹A (sparse, n×n).</param>
/// <param name="B">The scaled right-hand side D⁻¹ b.</param>
public sealed record DarcySystem(int S, double[] Permeability, Matrix<double> A, Vector<double> B)
{
    /// <summary>Unknowns (interior nodes).</summary>
    public int N => A.RowCount;
}

/// <summary>The 5-point finite-volume Darcy operator and its sequences.</summary>
public static class Darcy
{
    /// <summary>
    /// (A h)_P = Σ_Q k_PQ (h_P − h_Q)/h², k_PQ = (K_P + K_Q)/2 on the four faces, Dirichlet h = 0 at boundary nodes;
    /// b = f = 1; Jacobi scaling by D = diag(A). The unscaled A is SPD.
    /// </summary>
    public static DarcySystem Build(int s, double[] permeability, double source = 1.0)
    {
        ArgumentNullException.ThrowIfNull(permeability);
        if (s < 3) throw new ArgumentOutOfRangeException(nameof(s), s, "the grid needs at least 3 points per side.");
        if (permeability.Length != s * s) throw new ArgumentException(
            $"permeability has {permeability.Length} values, expected {s}² = {s * s}.", nameof(permeability));
        if (permeability.Any(v => !double.IsFinite(v) || v <= 0))
            throw new ArgumentException("permeability must be finite and positive everywhere.", nameof(permeability));
        if (!double.IsFinite(source)) throw new ArgumentOutOfRangeException(nameof(source), source, "the source must be finite.");
        int m = s - 2, n = m * m;
        double h = 1.0 / (s - 1), inv = 1.0 / (h * h);
        var entries = new List<(int, int, double)>(5 * n);
        var diagonal = new double[n];
        (int di, int dj)[] neighbours = [(-1, 0), (1, 0), (0, -1), (0, 1)];
        for (int i = 1; i <= m; i++)
            for (int j = 1; j <= m; j++)
            {
                int p = (i - 1) * m + (j - 1);
                double kp = permeability[i * s + j];
                foreach (var (di, dj) in neighbours)
                {
                    int qi = i + di, qj = j + dj;
                    double face = 0.5 * (kp + permeability[qi * s + qj]) * inv;   // k_PQ/h²
                    diagonal[p] += face;
                    if (qi >= 1 && qi <= m && qj >= 1 && qj <= m) entries.Add((p, (qi - 1) * m + (qj - 1), -face));
                }
            }
        for (int p = 0; p < n; p++) entries.Add((p, p, diagonal[p]));
        var scaled = entries.Select(e => (e.Item1, e.Item2, e.Item3 / diagonal[e.Item1]));   // D⁻¹ A
        var A = SparseMatrix.OfIndexed(n, n, scaled);
        var b = DenseVector.Create(n, p => source / diagonal[p]);                            // D⁻¹ b
        return new DarcySystem(s, permeability, A, b);
    }

    /// <summary>A seeded sequence: K = exp(GRF(α, τ)) on s×s, one Darcy system per field.</summary>
    public static IReadOnlyList<DarcySystem> Sequence(int s, int count, double alpha, double tau, int seed) =>
        GrfSampler.Sample(s, alpha, tau, count, seed).Select(g => Build(s, g.Select(Math.Exp).ToArray())).ToList();
}

/// <summary>Alg. 1: order the systems so that neighbours in the sequence have similar parameters.</summary>
public static class SkrSort
{
    /// <summary>order = [0]; repeatedly append argmin over unvisited j of ‖P(last) − P(j)‖_F (ties: lowest index).</summary>
    public static int[] GreedyFrobenius(IReadOnlyList<double[]> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Count == 0) throw new ArgumentException("no parameters to sort.", nameof(parameters));
        int len = parameters[0].Length;
        if (parameters.Any(p => p is null || p.Length != len)) throw new ArgumentException("parameters differ in length.", nameof(parameters));
        if (parameters.Any(p => p.Any(v => !double.IsFinite(v)))) throw new ArgumentException("parameters contain NaN or infinity.", nameof(parameters));
        int count = parameters.Count;
        var visited = new bool[count];
        var order = new int[count];
        visited[0] = true;
        for (int step = 1; step < count; step++)
        {
            int last = order[step - 1], best = -1;
            double bestDistance = double.PositiveInfinity;
            for (int j = 0; j < count; j++)
            {
                if (visited[j]) continue;
                double d = Distance(parameters[last], parameters[j]);
                if (d < bestDistance) { bestDistance = d; best = j; }
            }
            order[step] = best;
            visited[best] = true;
        }
        return order;
    }

    /// <summary>‖P − Q‖_F.</summary>
    public static double Distance(double[] p, double[] q)
    {
        double s = 0;
        for (int i = 0; i < p.Length; i++) s += (p[i] - q[i]) * (p[i] - q[i]);
        return Math.Sqrt(s);
    }

    /// <summary>Σ ‖P(order[i]) − P(order[i+1])‖_F along the sequence.</summary>
    public static double PathLength(IReadOnlyList<double[]> parameters, IReadOnlyList<int> order)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(order);
        double total = 0;
        for (int i = 0; i + 1 < order.Count; i++) total += Distance(parameters[order[i]], parameters[order[i + 1]]);
        return total;
    }

    /// <summary>The distance matrix with rows and columns in <paramref name="order"/> (a band after sorting).</summary>
    public static double[][] DistanceMatrix(IReadOnlyList<double[]> parameters, IReadOnlyList<int> order) =>
        order.Select(a => order.Select(b => Distance(parameters[a], parameters[b])).ToArray()).ToArray();
}

/// <summary>Which solver a sequence is run with.</summary>
public enum SolverKind
{
    /// <summary>GMRES(m) on every system.</summary>
    Gmres,
    /// <summary>GCRO-DR(m, k) on every system from scratch (deflated restarting only).</summary>
    GcroDrNoCarry,
    /// <summary>GCRO-DR(m, k), the recycled subspace carried from each system to the next.</summary>
    GcroDrCarry,
}

/// <summary>Solves a sequence of systems in a given order.</summary>
public static class SkrRunner
{
    /// <summary>One solve of a sequence: its place, the system's index, the result and the wall-clock seconds.</summary>
    public sealed record SequenceSolve(int Position, int System, SolveResult Result, double Seconds);

    /// <summary>Solves systems[order[0]], systems[order[1]], … with <paramref name="kind"/>, carrying U when asked.</summary>
    public static IReadOnlyList<SequenceSolve> SolveSequence(IReadOnlyList<DarcySystem> systems, IReadOnlyList<int> order, SolverKind kind,
        int m = 40, int k = 20, double tol = 1e-8)
    {
        ArgumentNullException.ThrowIfNull(systems);
        ArgumentNullException.ThrowIfNull(order);
        if (order.Any(i => i < 0 || i >= systems.Count)) throw new ArgumentException("order has an index out of range.", nameof(order));
        var results = new List<SequenceSolve>();
        Matrix<double>? recycle = null;
        for (int position = 0; position < order.Count; position++)
        {
            var system = systems[order[position]];
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var result = kind switch
            {
                SolverKind.Gmres => Krylov.Gmres(system.A, system.B, m, tol),
                SolverKind.GcroDrNoCarry => Krylov.GcroDr(system.A, system.B, m, k, tol),
                _ => Krylov.GcroDr(system.A, system.B, m, k, tol, recycle),
            };
            clock.Stop();
            if (kind == SolverKind.GcroDrCarry && result.Recycle is not null) recycle = result.Recycle;
            results.Add(new SequenceSolve(position, order[position], result, clock.Elapsed.TotalSeconds));
        }
        return results;
    }
}
