namespace AttentionLab.Papers.TwinHpo;

/// <summary>
/// Pareto dominance, non-dominated sorting (Deb et al. 2002) and the hypervolume (HSO slicing, While et al. 2006), for objectives
/// each marked maximise or minimise.
/// </summary>
public static class Pareto
{
    /// <summary>The points as minimisation: maximised objectives negated.</summary>
    public static double[][] AsMinimisation(IReadOnlyList<double[]> points, IReadOnlyList<bool> maximise)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(maximise);
        foreach (var p in points)
            if (p is null || p.Length != maximise.Count)
                throw new ArgumentException($"every point needs {maximise.Count} objectives.", nameof(points));
        return points.Select(p => p.Select((x, i) => maximise[i] ? -x : x).ToArray()).ToArray();
    }

    /// <summary>a dominates b (minimisation): a ≤ b in every objective and &lt; in one.</summary>
    public static bool Dominates(double[] a, double[] b)
    {
        bool strictly = false;
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] > b[i]) return false;
            if (a[i] < b[i]) strictly = true;
        }
        return strictly;
    }

    /// <summary>
    /// Fronts of the fast non-dominated sort: front 0 = the non-dominated points, front 1 = those dominated only by front 0, …
    /// Points with a NaN objective are put in a last front of their own.
    /// </summary>
    public static int[][] NonDominatedSort(IReadOnlyList<double[]> points, IReadOnlyList<bool> maximise)
    {
        var pts = AsMinimisation(points, maximise);
        int n = pts.Length;
        var nan = Enumerable.Range(0, n).Where(i => pts[i].Any(double.IsNaN)).ToArray();
        var ok = Enumerable.Range(0, n).Where(i => !pts[i].Any(double.IsNaN)).ToArray();
        var dominatedBy = new int[n];                     // n_p: how many dominate p
        var dominates = ok.ToDictionary(i => i, _ => new List<int>());   // S_p: whom p dominates
        foreach (int p in ok)
            foreach (int q in ok)
            {
                if (p == q) continue;
                if (Dominates(pts[p], pts[q])) dominates[p].Add(q);
                else if (Dominates(pts[q], pts[p])) dominatedBy[p]++;
            }
        var fronts = new List<int[]>();
        var current = ok.Where(p => dominatedBy[p] == 0).ToList();
        while (current.Count > 0)
        {
            fronts.Add(current.ToArray());
            var next = new List<int>();
            foreach (int p in current)
                foreach (int q in dominates[p])
                    if (--dominatedBy[q] == 0) next.Add(q);
            current = next.OrderBy(i => i).ToList();
        }
        if (nan.Length > 0) fronts.Add(nan);
        return fronts.ToArray();
    }

    /// <summary>
    /// Hypervolume dominated by <paramref name="points"/> and bounded by <paramref name="reference"/> (same directions as the points: a
    /// maximised objective's reference is its worst value). Points not strictly better than the reference in every objective add nothing.
    /// HSO: sort by the last objective, HV_d = Σ_i (x_{i+1,d} − x_{i,d}) · HV_{d−1}(points up to i).
    /// </summary>
    public static double Hypervolume(IReadOnlyList<double[]> points, double[] reference, IReadOnlyList<bool> maximise)
    {
        ArgumentNullException.ThrowIfNull(reference);
        if (reference.Length != maximise.Count) throw new ArgumentException($"reference needs {maximise.Count} objectives.", nameof(reference));
        if (reference.Any(x => !double.IsFinite(x))) throw new ArgumentException("reference must be finite.", nameof(reference));
        var r = reference.Select((x, i) => maximise[i] ? -x : x).ToArray();
        var pts = AsMinimisation(points, maximise).Where(p => !p.Any(double.IsNaN) && p.Zip(r).All(z => z.First < z.Second)).ToList();
        return Hso(pts, r, r.Length);
    }

    static double Hso(List<double[]> pts, double[] r, int dims)
    {
        if (pts.Count == 0) return 0;
        int d = dims - 1;
        if (dims == 1) return r[0] - pts.Min(p => p[0]);
        var sorted = pts.OrderBy(p => p[d]).ToList();
        double volume = 0;
        for (int i = 0; i < sorted.Count; i++)
        {
            double upper = i + 1 < sorted.Count ? sorted[i + 1][d] : r[d];
            double depth = upper - sorted[i][d];
            if (depth > 0) volume += depth * Hso(sorted.Take(i + 1).ToList(), r, dims - 1);   // slice [x_i,d, x_{i+1},d)
        }
        return volume;
    }

    /// <summary>Each point's exclusive hypervolume contribution HV(all) − HV(all but it).</summary>
    public static double[] Contributions(IReadOnlyList<double[]> points, double[] reference, IReadOnlyList<bool> maximise)
    {
        double all = Hypervolume(points, reference, maximise);
        return Enumerable.Range(0, points.Count)
            .Select(i => all - Hypervolume(points.Where((_, j) => j != i).ToList(), reference, maximise)).ToArray();
    }
}
