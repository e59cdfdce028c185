namespace AttentionLab.Core;

/// <summary>Small numerical helpers shared by plots and benchmarks: log-log slope fits and Pareto fronts.</summary>
public static class Numerics
{
    /// <summary>
    /// Least-squares fit of log y = a + b·log x; returns (slope b, intercept a, R²). Needs ≥ 2 points with x, y &gt; 0
    /// (a benchmark's "time ∝ T^b").
    /// </summary>
    public static (double Slope, double Intercept, double RSquared) LogLogFit(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count) throw new ArgumentException($"x has {x.Count} values but y has {y.Count}.", nameof(y));
        if (x.Count < 2) throw new ArgumentException($"a fit needs at least 2 points, got {x.Count}.", nameof(x));
        if (x.Any(v => !(v > 0))) throw new ArgumentException("every x must be positive for a log-log fit.", nameof(x));
        if (y.Any(v => !(v > 0))) throw new ArgumentException("every y must be positive for a log-log fit.", nameof(y));
        var lx = x.Select(v => Math.Log(v)).ToArray();
        var ly = y.Select(v => Math.Log(v)).ToArray();
        double mx = lx.Average(), my = ly.Average();
        double sxx = lx.Sum(v => (v - mx) * (v - mx));
        if (sxx == 0) throw new ArgumentException("all x are equal: no slope.", nameof(x));
        double sxy = lx.Zip(ly, (a, b) => (a - mx) * (b - my)).Sum();
        double slope = sxy / sxx, intercept = my - slope * mx;                      // b = Sxy/Sxx, a = ȳ − b·x̄
        double ssTot = ly.Sum(v => (v - my) * (v - my));
        double ssRes = lx.Zip(ly, (a, b) => Math.Pow(b - (intercept + slope * a), 2)).Sum();
        return (slope, intercept, ssTot == 0 ? 1 : 1 - ssRes / ssTot);
    }

    /// <summary>
    /// Indices of the Pareto-optimal points when <paramref name="x"/> should be small and <paramref name="y"/> large
    /// (e.g. state size vs recall): no other point has x' ≤ x and y' ≥ y with one strict. Sorted by x.
    /// </summary>
    public static IReadOnlyList<int> ParetoFront(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count) throw new ArgumentException($"x has {x.Count} values but y has {y.Count}.", nameof(y));
        var order = Enumerable.Range(0, x.Count).OrderBy(i => x[i]).ThenByDescending(i => y[i]).ToList();
        var front = new List<int>();
        double best = double.NegativeInfinity;
        foreach (int i in order)
            if (y[i] > best) { front.Add(i); best = y[i]; }                        // strictly better y than every smaller x
        return front;
    }

    /// <summary>Fitted log-log slope of time against length per method, for benchmark rows (methods with ≥ 2 lengths).</summary>
    public static IReadOnlyDictionary<string, double> SlopesByMethod<T>(IEnumerable<T> rows, Func<T, string> method, Func<T, int> length, Func<T, double> ms)
    {
        ArgumentNullException.ThrowIfNull(rows);
        return rows.GroupBy(method).Where(g => g.Count() >= 2)
            .ToDictionary(g => g.Key, g => LogLogFit(g.Select(r => (double)length(r)).ToList(), g.Select(ms).ToList()).Slope);
    }

    /// <summary>
    /// The smallest measured length from which <paramref name="candidate"/> is faster than <paramref name="baseline"/> at every
    /// larger length both ran at; null when it never is (at these lengths) or when the two are the same method. Several
    /// rows of one method at one length (repeated runs, batches) count by their fastest.
    /// </summary>
    public static int? Crossover<T>(IEnumerable<T> rows, Func<T, string> method, Func<T, int> length, Func<T, double> ms, string candidate, string baseline)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (candidate == baseline) return null;
        var list = rows.ToList();
        Dictionary<int, double> Fastest(string name) =>
            list.Where(r => method(r) == name).GroupBy(length).ToDictionary(g => g.Key, g => g.Min(ms));
        var (a, b) = (Fastest(candidate), Fastest(baseline));
        var common = a.Keys.Intersect(b.Keys).OrderBy(t => t).ToList();
        int? result = null;
        for (int i = common.Count - 1; i >= 0 && a[common[i]] < b[common[i]]; i--) result = common[i];
        return result;
    }
}
