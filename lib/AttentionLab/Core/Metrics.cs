using MathNet.Numerics.Statistics;

namespace AttentionLab.Core;

/// <summary>
/// The metrics the interpretability notebooks report (issue 14): correlation, ranking and overlap scores over plain
/// numbers. Pearson, Spearman and quantiles come from Math.NET Numerics; the rest are written out beside their formula.
/// NaN in any input gives NaN out; mismatched or empty inputs throw an <see cref="ArgumentException"/> naming the argument.
/// </summary>
public static class Metrics
{
    /// <summary>Pearson's r = cov(x, y) / (σ_x σ_y); NaN when either side is constant or holds a NaN.</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        Paired(x, y, 2);
        if (x.Any(double.IsNaN) || y.Any(double.IsNaN)) return double.NaN;
        return Correlation.Pearson(x, y);
    }

    /// <summary>Spearman's ρ: Pearson's r of the ranks, ties given their average rank; NaN as <see cref="Pearson"/>.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        Paired(x, y, 2);
        if (x.Any(double.IsNaN) || y.Any(double.IsNaN)) return double.NaN;
        return Correlation.Spearman(x, y);
    }

    /// <summary>
    /// Area under the ROC curve of <paramref name="scores"/> for the binary <paramref name="labels"/> (true = positive):
    /// AUROC = P(s⁺ &gt; s⁻) + ½ P(s⁺ = s⁻) over all positive–negative pairs (the Mann–Whitney U / n⁺n⁻). Needs both classes.
    /// </summary>
    public static double Auroc(IReadOnlyList<double> scores, IReadOnlyList<bool> labels)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(labels);
        if (scores.Count != labels.Count)
            throw new ArgumentException($"scores has {scores.Count} values but labels has {labels.Count}.", nameof(labels));
        int positives = labels.Count(l => l), negatives = labels.Count - positives;
        if (positives == 0 || negatives == 0)
            throw new ArgumentException($"AUROC needs both classes; labels has {positives} positive and {negatives} negative.", nameof(labels));
        if (scores.Any(double.IsNaN)) return double.NaN;
        // ranks with ties averaged; U = Σ ranks of positives − n⁺(n⁺ + 1)/2
        var ranks = Statistics.Ranks(scores, RankDefinition.Average);
        double positiveRankSum = Enumerable.Range(0, scores.Count).Where(i => labels[i]).Sum(i => ranks[i]);
        return (positiveRankSum - positives * (positives + 1.0) / 2) / ((double)positives * negatives);
    }

    /// <summary>
    /// nDCG@k of a ranking: DCG@k = Σ_{i=1..k} rel_i / log₂(i + 1) over <paramref name="relevanceInRankedOrder"/> (the
    /// relevance of the items in the order the method ranked them), divided by the DCG@k of the same relevances sorted
    /// descending. 0 when every relevance is 0 (nothing to find); k beyond the list counts the whole list.
    /// </summary>
    public static double Ndcg(IReadOnlyList<double> relevanceInRankedOrder, int k)
    {
        ArgumentNullException.ThrowIfNull(relevanceInRankedOrder);
        Guard.Positive(k, nameof(k));
        if (relevanceInRankedOrder.Count == 0) throw new ArgumentException("the ranking is empty.", nameof(relevanceInRankedOrder));
        if (relevanceInRankedOrder.Any(double.IsNaN)) return double.NaN;
        if (relevanceInRankedOrder.Any(r => r < 0))
            throw new ArgumentException("relevances must be ≥ 0.", nameof(relevanceInRankedOrder));
        static double Dcg(IEnumerable<double> rel, int k) => rel.Take(k).Select((r, i) => r / Math.Log2(i + 2)).Sum();
        double ideal = Dcg(relevanceInRankedOrder.OrderByDescending(r => r), k);
        return ideal == 0 ? 0 : Dcg(relevanceInRankedOrder, k) / ideal;
    }

    /// <summary>
    /// ROUGE-1 F1 of a candidate against a reference, both token lists: clipped unigram overlap m = Σ_w min(c_cand(w),
    /// c_ref(w)), precision m / |cand|, recall m / |ref|, F1 their harmonic mean (0 when m = 0). Tokens compare ordinally.
    /// </summary>
    public static (double Precision, double Recall, double F1) Rouge1(IReadOnlyList<string> candidate, IReadOnlyList<string> reference)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(reference);
        if (candidate.Count == 0) throw new ArgumentException("the candidate has no tokens.", nameof(candidate));
        if (reference.Count == 0) throw new ArgumentException("the reference has no tokens.", nameof(reference));
        var counts = reference.GroupBy(t => t, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        int overlap = 0;
        foreach (var token in candidate)
            if (counts.TryGetValue(token, out int left) && left > 0) { overlap++; counts[token] = left - 1; }
        double precision = overlap / (double)candidate.Count, recall = overlap / (double)reference.Count;
        return (precision, recall, overlap == 0 ? 0 : 2 * precision * recall / (precision + recall));
    }

    /// <summary>Jaccard index |A ∩ B| / |A ∪ B| of two sets (e.g. two circuits' heads); 1 for two empty sets.</summary>
    public static double Jaccard<T>(IEnumerable<T> a, IEnumerable<T> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var setA = a.ToHashSet();
        var union = new HashSet<T>(setA);
        union.UnionWith(b);
        if (union.Count == 0) return 1;
        setA.IntersectWith(b);
        return setA.Count / (double)union.Count;
    }

    /// <summary>
    /// Percentile bootstrap confidence interval for the mean of <paramref name="values"/>: <paramref name="resamples"/> draws
    /// of n values with replacement (seeded), the interval between the (1 − level)/2 and (1 + level)/2 quantiles of their
    /// means. NaN bounds when a value is NaN.
    /// </summary>
    public static BootstrapInterval BootstrapMean(IReadOnlyList<double> values, double level = 0.95, int resamples = 2000, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0) throw new ArgumentException("no values to bootstrap.", nameof(values));
        if (!(level > 0 && level < 1)) throw new ArgumentException($"level must be in (0, 1), got {level}.", nameof(level));
        Guard.Positive(resamples, nameof(resamples));
        double mean = values.Average();
        if (double.IsNaN(mean)) return new BootstrapInterval(double.NaN, double.NaN, double.NaN, level, resamples);
        var random = new Random(seed);
        var means = new double[resamples];
        for (int r = 0; r < resamples; r++)
        {
            double sum = 0;
            for (int i = 0; i < values.Count; i++) sum += values[random.Next(values.Count)];
            means[r] = sum / values.Count;
        }
        Array.Sort(means);
        double Quantile(double tau) => SortedArrayStatistics.QuantileCustom(means, tau, QuantileDefinition.R7);
        return new BootstrapInterval(mean, Quantile((1 - level) / 2), Quantile((1 + level) / 2), level, resamples);
    }

    static void Paired(IReadOnlyList<double> x, IReadOnlyList<double> y, int minimum)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count) throw new ArgumentException($"x has {x.Count} values but y has {y.Count}.", nameof(y));
        if (x.Count < minimum) throw new ArgumentException($"a correlation needs at least {minimum} pairs, got {x.Count}.", nameof(x));
    }
}

/// <summary>A bootstrap interval: the sample mean and the [Low, High] bounds at <see cref="Level"/>.</summary>
/// <param name="Mean">The sample mean.</param>
/// <param name="Low">The lower bound.</param>
/// <param name="High">The upper bound.</param>
/// <param name="Level">The confidence level (e.g. 0.95).</param>
/// <param name="Resamples">The number of bootstrap resamples.</param>
public sealed record BootstrapInterval(double Mean, double Low, double High, double Level, int Resamples)
{
    /// <summary>"0.512 [0.430, 0.590] (95 % bootstrap CI)".</summary>
    public override string ToString() => $"{Mean:G3} [{Low:G3}, {High:G3}] ({Level * 100:G3} % bootstrap CI)";
}
