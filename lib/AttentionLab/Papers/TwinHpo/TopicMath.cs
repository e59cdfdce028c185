namespace AttentionLab.Papers.TwinHpo;

/// <summary>Distances, matching and small helpers for topic distributions.</summary>
public static class TopicMath
{
    /// <summary>
    /// Jensen–Shannon distance (base 2, in [0, 1]): √(½ KL(p‖m) + ½ KL(q‖m)), m = ½(p + q). Inputs are normalised first; NaN in → NaN.
    /// </summary>
    public static double JensenShannon(IReadOnlyList<double> p, IReadOnlyList<double> q)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(q);
        if (p.Count != q.Count) throw new ArgumentException($"p has {p.Count} entries and q {q.Count}.", nameof(q));
        if (p.Any(double.IsNaN) || q.Any(double.IsNaN)) return double.NaN;
        if (p.Any(x => x < 0) || q.Any(x => x < 0)) throw new ArgumentException("distributions must be non-negative.", nameof(p));
        double sp = p.Sum(), sq = q.Sum();
        if (!(sp > 0) || !(sq > 0)) throw new ArgumentException("distributions must have positive mass.", nameof(p));
        double js = 0;
        for (int i = 0; i < p.Count; i++)
        {
            double a = p[i] / sp, b = q[i] / sq, m = 0.5 * (a + b);
            if (a > 0) js += 0.5 * a * Math.Log2(a / m);
            if (b > 0) js += 0.5 * b * Math.Log2(b / m);
        }
        return Math.Sqrt(Math.Max(0, js));
    }

    /// <summary>Cost matrix [rows][cols]: JS distance from each recovered topic (row) to each planted topic (column).</summary>
    public static double[,] JsCost(IReadOnlyList<double[]> recovered, IReadOnlyList<double[]> planted)
    {
        var cost = new double[recovered.Count, planted.Count];
        for (int i = 0; i < recovered.Count; i++)
            for (int j = 0; j < planted.Count; j++) cost[i, j] = JensenShannon(recovered[i], planted[j]);
        return cost;
    }

    /// <summary>Mean of the given rows of <paramref name="rows"/> (each the same length).</summary>
    public static double[] MeanRows(IReadOnlyList<double[]> rows, IEnumerable<int> which)
    {
        var idx = which.ToArray();
        if (idx.Length == 0) return rows.Count == 0 ? [] : Enumerable.Repeat(double.NaN, rows[0].Length).ToArray();
        var mean = new double[rows[idx[0]].Length];
        foreach (int i in idx) for (int k = 0; k < mean.Length; k++) mean[k] += rows[i][k] / idx.Length;
        return mean;
    }

    /// <summary>The <paramref name="n"/> highest-weighted word ids of each topic row (ties by lower id).</summary>
    public static int[][] TopWords(IReadOnlyList<double[]> topicWord, int n)
    {
        if (n < 1) throw new ArgumentException($"n must be ≥ 1, got {n}.", nameof(n));
        return topicWord.Select(row => Enumerable.Range(0, row.Length).OrderByDescending(w => row[w]).ThenBy(w => w).Take(n).ToArray()).ToArray();
    }
}

/// <summary>
/// The assignment problem min_σ Σ_i cost[i, σ(i)] by the Hungarian method (Kuhn–Munkres with potentials, O(n² m)); a rectangular matrix
/// assigns every row when rows ≤ columns (else every column). No maintained solver is referenced by the library, so it is written here
/// and tested against brute force over permutations.
/// </summary>
public static class Hungarian
{
    /// <summary>For each row its column (−1 when rows &gt; columns and the row is left out).</summary>
    public static int[] Solve(double[,] cost)
    {
        ArgumentNullException.ThrowIfNull(cost);
        int rows = cost.GetLength(0), cols = cost.GetLength(1);
        if (rows == 0 || cols == 0) throw new ArgumentException("cost must be non-empty.", nameof(cost));
        foreach (double c in cost)
            if (!double.IsFinite(c)) throw new ArgumentException("cost must be finite (a NaN or ∞ entry has no assignment).", nameof(cost));
        bool transpose = rows > cols;
        int n = transpose ? cols : rows, m = transpose ? rows : cols;
        double At(int i, int j) => transpose ? cost[j, i] : cost[i, j];
        // Potentials u (rows), v (columns); p[j] = row matched to column j (1-based, 0 = none); the classic e-maxx formulation.
        var u = new double[n + 1];
        var v = new double[m + 1];
        var p = new int[m + 1];
        var way = new int[m + 1];
        for (int i = 1; i <= n; i++)
        {
            p[0] = i;
            int j0 = 0;
            var minv = Enumerable.Repeat(double.PositiveInfinity, m + 1).ToArray();
            var used = new bool[m + 1];
            do
            {
                used[j0] = true;
                int i0 = p[j0], j1 = 0;
                double delta = double.PositiveInfinity;
                for (int j = 1; j <= m; j++)
                {
                    if (used[j]) continue;
                    double cur = At(i0 - 1, j - 1) - u[i0] - v[j];   // reduced cost
                    if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                    if (minv[j] < delta) { delta = minv[j]; j1 = j; }
                }
                for (int j = 0; j <= m; j++)
                    if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                    else minv[j] -= delta;
                j0 = j1;
            } while (p[j0] != 0);
            do { int j1 = way[j0]; p[j0] = p[j1]; j0 = j1; } while (j0 != 0);   // augment along the alternating path
        }
        var rowToCol = Enumerable.Repeat(-1, rows).ToArray();
        for (int j = 1; j <= m; j++)
        {
            if (p[j] == 0) continue;
            if (transpose) rowToCol[j - 1] = p[j] - 1;
            else rowToCol[p[j] - 1] = j - 1;
        }
        return rowToCol;
    }

    /// <summary>Σ cost[i, σ(i)] over assigned rows.</summary>
    public static double Cost(double[,] cost, int[] assignment) =>
        assignment.Select((j, i) => j < 0 ? 0 : cost[i, j]).Sum();
}
