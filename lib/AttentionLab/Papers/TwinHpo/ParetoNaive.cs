namespace AttentionLab.Papers.TwinHpo;

/// <summary>The naive twins of <see cref="Pareto.NonDominatedSort"/> and <see cref="Pareto.Hypervolume"/>.</summary>
public static class ParetoNaive
{
    /// <summary>The naive twin: peel the non-dominated set (checked against every other remaining point) until none remain.</summary>
    public static int[][] NonDominatedSort(IReadOnlyList<double[]> points, IReadOnlyList<bool> maximise)
    {
        var pts = Pareto.AsMinimisation(points, maximise);
        var remaining = Enumerable.Range(0, pts.Length).Where(i => !pts[i].Any(double.IsNaN)).ToList();
        var fronts = new List<int[]>();
        while (remaining.Count > 0)
        {
            var front = remaining.Where(p => !remaining.Any(q => q != p && Pareto.Dominates(pts[q], pts[p]))).ToArray();
            fronts.Add(front);
            remaining = remaining.Except(front).ToList();
        }
        var nan = Enumerable.Range(0, pts.Length).Where(i => pts[i].Any(double.IsNaN)).ToArray();
        if (nan.Length > 0) fronts.Add(nan);
        return fronts.ToArray();
    }

    /// <summary>
    /// The naive twin: split space on every coordinate of every point (and the reference), and add each grid cell whose lower corner is
    /// dominated by some point — exact, O(n^(d+1)).
    /// </summary>
    public static double Hypervolume(IReadOnlyList<double[]> points, double[] reference, IReadOnlyList<bool> maximise)
    {
        var r = reference.Select((x, i) => maximise[i] ? -x : x).ToArray();
        var pts = Pareto.AsMinimisation(points, maximise).Where(p => !p.Any(double.IsNaN) && p.Zip(r).All(z => z.First < z.Second)).ToList();
        if (pts.Count == 0) return 0;
        int dims = r.Length;
        var cuts = Enumerable.Range(0, dims).Select(j => pts.Select(p => p[j]).Append(r[j]).Distinct().OrderBy(x => x).ToArray()).ToArray();
        double volume = 0;
        var index = new int[dims];
        while (true)
        {
            if (index.Select((c, j) => c < cuts[j].Length - 1).All(b => b))
            {
                var corner = index.Select((c, j) => cuts[j][c]).ToArray();
                if (pts.Any(p => p.Zip(corner).All(z => z.First <= z.Second)))
                    volume += index.Select((c, j) => cuts[j][c + 1] - cuts[j][c]).Aggregate(1.0, (a, b) => a * b);
            }
            int k = 0;
            while (k < dims && ++index[k] >= cuts[k].Length) { index[k] = 0; k++; }
            if (k == dims) break;
        }
        return volume;
    }
}
