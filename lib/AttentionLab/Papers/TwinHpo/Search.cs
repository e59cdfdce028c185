using MathNet.Numerics.Distributions;

namespace AttentionLab.Papers.TwinHpo;

/// <summary>One hyperparameter: a continuous or integer range, or an ordered list of choices (searched by index).</summary>
/// <param name="Name">Its name.</param>
/// <param name="Low">Lowest value (an index 0 for choices).</param>
/// <param name="High">Highest value (Choices.Length − 1 for choices).</param>
/// <param name="Integer">Rounded to integers (choices always are).</param>
/// <param name="Choices">The values of an ordered categorical parameter; null for a range.</param>
public sealed record Dimension(string Name, double Low, double High, bool Integer, double[]? Choices = null)
{
    /// <summary>An integer range [low, high].</summary>
    public static Dimension Int(string name, int low, int high) =>
        high >= low ? new(name, low, high, true) : throw new ArgumentException($"{name}: high {high} < low {low}.", nameof(high));

    /// <summary>A continuous range [low, high].</summary>
    public static Dimension Real(string name, double low, double high) =>
        high > low ? new(name, low, high, false) : throw new ArgumentException($"{name}: high {high} ≤ low {low}.", nameof(high));

    /// <summary>Ordered choices, searched by index.</summary>
    public static Dimension Choice(string name, params double[] choices) =>
        choices is { Length: > 0 } ? new(name, 0, choices.Length - 1, true, choices) : throw new ArgumentException($"{name}: no choices.", nameof(choices));

    /// <summary>The value of internal coordinate x (rounded, clamped; a choice's value for its index).</summary>
    public double Decode(double x)
    {
        double c = Math.Clamp(Integer ? Math.Round(x) : x, Low, High);
        return Choices is null ? c : Choices[(int)c];
    }

    /// <summary>The grid of values a grid search enumerates: the choices, every integer, or <paramref name="points"/> even steps.</summary>
    public double[] GridValues(int points = 5) => Choices is not null ? Enumerable.Range(0, Choices.Length).Select(i => (double)i).ToArray()
        : Integer ? Enumerable.Range((int)Low, (int)(High - Low) + 1).Select(i => (double)i).ToArray()
        : Enumerable.Range(0, points).Select(i => Low + (High - Low) * i / (points - 1)).ToArray();
}

/// <summary>One evaluated configuration: order, optimiser, internal coordinates, decoded values, objectives.</summary>
public sealed record Trial(int Number, string Optimiser, double[] X, double[] Values, double[] Objectives);

/// <summary>A search problem: its space, the objectives' directions and the function that evaluates decoded values.</summary>
public sealed record SearchProblem(IReadOnlyList<Dimension> Space, IReadOnlyList<bool> Maximise, Func<double[], double[]> Evaluate)
{
    internal Trial Run(int number, string optimiser, double[] x)
    {
        var values = x.Select((xi, i) => Space[i].Decode(xi)).ToArray();
        var y = Evaluate(values);
        if (y is null || y.Length != Maximise.Count)
            throw new InvalidOperationException($"the objective returned {y?.Length ?? 0} values, not {Maximise.Count}.");
        return new Trial(number, optimiser, x.Select((xi, i) => Space[i].Integer ? Math.Clamp(Math.Round(xi), Space[i].Low, Space[i].High) : xi).ToArray(),
            values, y);
    }

    internal double[] RandomPoint(Random rng) => Space.Select(d => d.Integer
        ? rng.Next((int)d.Low, (int)d.High + 1) : d.Low + (d.High - d.Low) * rng.NextDouble()).ToArray();
}

/// <summary>Exhaustive grid search (the paper's single-objective optimisation; the caller picks the best by its objective).</summary>
public static class GridSearch
{
    /// <summary>Every combination of each dimension's <see cref="Dimension.GridValues"/>, first dimension slowest.</summary>
    public static IReadOnlyList<Trial> Run(SearchProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var grids = problem.Space.Select(d => d.GridValues()).ToArray();
        var trials = new List<Trial>();
        var index = new int[grids.Length];
        while (true)
        {
            trials.Add(problem.Run(trials.Count, "grid", index.Select((c, j) => grids[j][c]).ToArray()));
            int k = grids.Length - 1;
            while (k >= 0 && ++index[k] >= grids[k].Length) { index[k] = 0; k--; }
            if (k < 0) return trials;
        }
    }
}

/// <summary>
/// NSGA-II (Deb et al. 2002): binary crowded tournament, SBX crossover (η_c = 15, p = 0.9), polynomial mutation (η_m = 20, p = 1/n),
/// integer rounding, (μ + λ) survival by non-dominated rank then crowding distance.
/// </summary>
public static class Nsga2
{
    /// <summary>Runs until <paramref name="evaluations"/> trials (the last generation may be partial).</summary>
    public static IReadOnlyList<Trial> Run(SearchProblem problem, int evaluations, int population, int seed, double etaC = 15, double etaM = 20)
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (population < 2) throw new ArgumentException($"population must be ≥ 2, got {population}.", nameof(population));
        if (evaluations < 1) throw new ArgumentException($"evaluations must be ≥ 1, got {evaluations}.", nameof(evaluations));
        var rng = new Random(seed);
        var trials = new List<Trial>();
        var pop = new List<Trial>();
        for (int i = 0; i < population && trials.Count < evaluations; i++)
        {
            var t = problem.Run(trials.Count, "NSGA-II", problem.RandomPoint(rng));
            trials.Add(t); pop.Add(t);
        }
        while (trials.Count < evaluations)
        {
            var (rank, crowd) = RankAndCrowding(pop, problem.Maximise);
            int Tournament()
            {
                int a = rng.Next(pop.Count), b = rng.Next(pop.Count);
                if (rank[a] != rank[b]) return rank[a] < rank[b] ? a : b;
                return crowd[a] >= crowd[b] ? a : b;
            }
            var children = new List<Trial>();
            while (children.Count < population && trials.Count < evaluations)
            {
                var (c1, c2) = Sbx(pop[Tournament()].X, pop[Tournament()].X, problem.Space, etaC, rng);
                foreach (var c in new[] { c1, c2 })
                {
                    if (children.Count >= population || trials.Count >= evaluations) break;
                    var t = problem.Run(trials.Count, "NSGA-II", Mutate(c, problem.Space, etaM, rng));
                    trials.Add(t); children.Add(t);
                }
            }
            pop = Survive(pop.Concat(children).ToList(), population, problem.Maximise);
        }
        return trials;
    }

    static (int[] Rank, double[] Crowd) RankAndCrowding(List<Trial> pop, IReadOnlyList<bool> maximise)
    {
        var fronts = Pareto.NonDominatedSort(pop.Select(t => t.Objectives).ToList(), maximise);
        var rank = new int[pop.Count];
        var crowd = new double[pop.Count];
        for (int f = 0; f < fronts.Length; f++)
        {
            foreach (int i in fronts[f]) rank[i] = f;
            var cd = Crowding(fronts[f].Select(i => pop[i].Objectives).ToList());
            for (int j = 0; j < fronts[f].Length; j++) crowd[fronts[f][j]] = cd[j];
        }
        return (rank, crowd);
    }

    /// <summary>Crowding distance: Σ over objectives of (next − previous)/(max − min) along that objective; the extremes get ∞.</summary>
    public static double[] Crowding(IReadOnlyList<double[]> front)
    {
        int n = front.Count;
        var d = new double[n];
        if (n == 0) return d;
        for (int m = 0; m < front[0].Length; m++)
        {
            var order = Enumerable.Range(0, n).OrderBy(i => front[i][m]).ToArray();
            double span = front[order[^1]][m] - front[order[0]][m];
            d[order[0]] = d[order[^1]] = double.PositiveInfinity;
            if (!(span > 0)) continue;
            for (int j = 1; j < n - 1; j++) d[order[j]] += (front[order[j + 1]][m] - front[order[j - 1]][m]) / span;
        }
        return d;
    }

    static List<Trial> Survive(List<Trial> all, int size, IReadOnlyList<bool> maximise)
    {
        var next = new List<Trial>();
        foreach (var front in Pareto.NonDominatedSort(all.Select(t => t.Objectives).ToList(), maximise))
        {
            if (next.Count + front.Length <= size) { next.AddRange(front.Select(i => all[i])); continue; }
            var cd = Crowding(front.Select(i => all[i].Objectives).ToList());
            next.AddRange(Enumerable.Range(0, front.Length).OrderByDescending(j => cd[j]).Take(size - next.Count).Select(j => all[front[j]]));
            break;
        }
        return next;
    }

    /// <summary>
    /// Simulated binary crossover, bounded form of Deb's reference code (and pymoo's): per variable with p = 0.5, for y1 &lt; y2 in [lo, hi],
    /// β = 1 + 2 (y1 − lo)/(y2 − y1) (resp. (hi − y2)), α = 2 − β^−(η+1), β_q = (uα)^(1/(η+1)) if u ≤ 1/α else (1/(2 − uα))^(1/(η+1)),
    /// c1 = ½((y1 + y2) − β_q (y2 − y1)), c2 = ½((y1 + y2) + β_q (y2 − y1)); the children swap with p = 0.5.
    /// </summary>
    static (double[], double[]) Sbx(double[] a, double[] b, IReadOnlyList<Dimension> space, double eta, Random rng)
    {
        var c1 = (double[])a.Clone();
        var c2 = (double[])b.Clone();
        if (rng.NextDouble() > 0.9) return (c1, c2);
        for (int i = 0; i < a.Length; i++)
        {
            if (rng.NextDouble() > 0.5 || Math.Abs(a[i] - b[i]) < 1e-14) continue;
            double y1 = Math.Min(a[i], b[i]), y2 = Math.Max(a[i], b[i]), lo = space[i].Low, hi = space[i].High, d = y2 - y1;
            double BetaQ(double beta)
            {
                double alpha = 2 - Math.Pow(beta, -(eta + 1)), u = rng.NextDouble();
                return u <= 1 / alpha ? Math.Pow(u * alpha, 1 / (eta + 1)) : Math.Pow(1 / (2 - u * alpha), 1 / (eta + 1));
            }
            double x1 = Math.Clamp(0.5 * (y1 + y2 - BetaQ(1 + 2 * (y1 - lo) / d) * d), lo, hi);
            double x2 = Math.Clamp(0.5 * (y1 + y2 + BetaQ(1 + 2 * (hi - y2) / d) * d), lo, hi);
            if (rng.NextDouble() < 0.5) (x1, x2) = (x2, x1);
            c1[i] = x1;
            c2[i] = x2;
        }
        return (c1, c2);
    }

    /// <summary>Polynomial mutation (bounded form), probability 1/n per variable.</summary>
    static double[] Mutate(double[] x, IReadOnlyList<Dimension> space, double eta, Random rng)
    {
        var y = (double[])x.Clone();
        for (int i = 0; i < y.Length; i++)
        {
            if (rng.NextDouble() > 1.0 / y.Length) continue;
            double lo = space[i].Low, hi = space[i].High, span = hi - lo;
            if (!(span > 0)) continue;
            double d1 = (y[i] - lo) / span, d2 = (hi - y[i]) / span, u = rng.NextDouble(), pow = 1 / (eta + 1), dq;
            if (u < 0.5) dq = Math.Pow(2 * u + (1 - 2 * u) * Math.Pow(1 - d1, eta + 1), pow) - 1;
            else dq = 1 - Math.Pow(2 * (1 - u) + 2 * (u - 0.5) * Math.Pow(1 - d2, eta + 1), pow);
            y[i] = Math.Clamp(y[i] + dq * span, lo, hi);
        }
        return y;
    }
}

/// <summary>
/// A TPE sampler in Optuna's style (Bergstra et al. 2011; Optuna's defaults): <c>startup</c> random trials, then the trials are split
/// into good (γ(n) = min(⌈0.1 n⌉, 25)) and bad; per dimension (independent sampler) Parzen estimators l(x) (good) and g(x) (bad) —
/// truncated Gaussians at the observations plus a prior at the centre (σ = range), bandwidths = distance to the farther neighbour clipped
/// to [range / min(100, n + 1), range] — draw <c>candidates</c> from l and keep the one maximising l(x)/g(x).
/// Several objectives (MOTPE): the good set is filled front by front of the non-dominated sort, the last front by hypervolume
/// contribution.
/// </summary>
public static class Tpe
{
    /// <summary>γ(n) = min(⌈0.1 n⌉, 25).</summary>
    public static int Gamma(int n) => Math.Min((int)Math.Ceiling(0.1 * n), 25);

    public static IReadOnlyList<Trial> Run(SearchProblem problem, int trials, int seed, int startup = 10, int candidates = 24)
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (trials < 1) throw new ArgumentException($"trials must be ≥ 1, got {trials}.", nameof(trials));
        if (startup < 1) throw new ArgumentException($"startup must be ≥ 1, got {startup}.", nameof(startup));
        if (candidates < 1) throw new ArgumentException($"candidates must be ≥ 1, got {candidates}.", nameof(candidates));
        string name = problem.Maximise.Count == 1 ? "TPE" : "MOTPE";
        var rng = new Random(seed);
        var done = new List<Trial>();
        while (done.Count < trials)
        {
            double[] x = done.Count < startup ? problem.RandomPoint(rng) : Suggest(problem, done, candidates, rng);
            done.Add(problem.Run(done.Count, name, x));
        }
        return done;
    }

    /// <summary>Indices of the good trials: best γ(n) by the single objective, or by non-dominated rank and then HV contribution.</summary>
    public static int[] GoodSet(IReadOnlyList<double[]> objectives, IReadOnlyList<bool> maximise)
    {
        int nGood = Math.Max(1, Gamma(objectives.Count));
        var valid = Enumerable.Range(0, objectives.Count).Where(i => !objectives[i].Any(double.IsNaN)).ToList();
        if (maximise.Count == 1)
            return valid.OrderBy(i => maximise[0] ? -objectives[i][0] : objectives[i][0]).Take(nGood).ToArray();
        var good = new List<int>();
        var fronts = Pareto.NonDominatedSort(objectives, maximise);
        var reference = Enumerable.Range(0, maximise.Count).Select(m =>
        {
            var vals = valid.Select(i => objectives[i][m]).ToArray();
            double worst = maximise[m] ? vals.Min() : vals.Max(), span = vals.Max() - vals.Min();
            return worst + (maximise[m] ? -1 : 1) * (0.1 * span + 1e-9);   // just beyond the worst value seen
        }).ToArray();
        foreach (var front in fronts)
        {
            var f = front.Where(valid.Contains).ToArray();
            if (good.Count + f.Length <= nGood) { good.AddRange(f); if (good.Count == nGood) break; continue; }
            var contrib = Pareto.Contributions(f.Select(i => objectives[i]).ToList(), reference, maximise);
            good.AddRange(Enumerable.Range(0, f.Length).OrderByDescending(j => contrib[j]).Take(nGood - good.Count).Select(j => f[j]));
            break;
        }
        return good.ToArray();
    }

    static double[] Suggest(SearchProblem problem, List<Trial> done, int candidates, Random rng)
    {
        var good = GoodSet(done.Select(t => t.Objectives).ToList(), problem.Maximise).ToHashSet();
        var x = new double[problem.Space.Count];
        for (int d = 0; d < x.Length; d++)
        {
            var dim = problem.Space[d];
            double lo = dim.Integer ? dim.Low - 0.5 : dim.Low, hi = dim.Integer ? dim.High + 0.5 : dim.High;
            var l = new Parzen(done.Where(t => good.Contains(t.Number)).Select(t => t.X[d]).ToArray(), lo, hi);
            var g = new Parzen(done.Where(t => !good.Contains(t.Number)).Select(t => t.X[d]).ToArray(), lo, hi);
            double best = double.NegativeInfinity;
            for (int c = 0; c < candidates; c++)
            {
                double cand = l.Sample(rng);
                double score = l.LogPdf(cand) - g.LogPdf(cand);   // EI ∝ l(x)/g(x)
                if (score > best) { best = score; x[d] = cand; }
            }
            if (dim.Integer) x[d] = Math.Clamp(Math.Round(x[d]), dim.Low, dim.High);
        }
        return x;
    }

    /// <summary>A mixture of truncated Gaussians on [lo, hi]: one per observation and a prior N(centre, range), equal weights.</summary>
    public sealed class Parzen
    {
        readonly double[] mu, sigma;
        readonly double lo, hi;

        public Parzen(double[] observations, double lo, double hi)
        {
            this.lo = lo; this.hi = hi;
            double range = hi - lo;
            var all = observations.Append(0.5 * (lo + hi)).ToArray();
            var order = Enumerable.Range(0, all.Length).OrderBy(i => all[i]).ToArray();
            mu = all;
            sigma = new double[all.Length];
            double minSigma = range / Math.Min(100.0, all.Length + 1.0);   // Optuna's magic clip
            for (int j = 0; j < order.Length; j++)
            {
                int i = order[j];
                if (i == all.Length - 1) { sigma[i] = range; continue; }   // the prior
                double left = j > 0 ? all[i] - all[order[j - 1]] : all[i] - lo;
                double right = j < order.Length - 1 ? all[order[j + 1]] - all[i] : hi - all[i];
                sigma[i] = Math.Clamp(Math.Max(left, right), minSigma, range);
            }
        }

        public double Sample(Random rng)
        {
            int i = rng.Next(mu.Length);
            for (int tries = 0; tries < 100; tries++)
            {
                double x = Normal.Sample(rng, mu[i], sigma[i]);
                if (x >= lo && x <= hi) return x;
            }
            return Math.Clamp(mu[i], lo, hi);
        }

        public double LogPdf(double x)
        {
            double p = 0;
            for (int i = 0; i < mu.Length; i++)
            {
                double mass = Normal.CDF(mu[i], sigma[i], hi) - Normal.CDF(mu[i], sigma[i], lo);
                p += Normal.PDF(mu[i], sigma[i], x) / Math.Max(mass, 1e-300) / mu.Length;
            }
            return Math.Log(Math.Max(p, 1e-300));
        }
    }
}
