namespace AttentionLab.Core;

/// <summary>
/// Metrics over sequences (issue 15): Levenshtein and weighted edit distance, Needleman–Wunsch global alignment, and
/// deletion curves with their area. Generic over the element type; costs and similarities come from the caller.
/// NaN from a cost, similarity or score gives NaN out; bad arguments throw an <see cref="ArgumentException"/> naming them.
/// </summary>
public static class SequenceMetrics
{
    /// <summary>
    /// Levenshtein distance: the fewest insertions, deletions and substitutions that turn <paramref name="a"/> into
    /// <paramref name="b"/> (elements compared with <paramref name="comparer"/>, default equality).
    /// </summary>
    public static int Levenshtein<T>(IReadOnlyList<T> a, IReadOnlyList<T> b, IEqualityComparer<T>? comparer = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        comparer ??= EqualityComparer<T>.Default;
        return (int)EditDistance(a, b, (x, y) => comparer.Equals(x, y) ? 0 : 1, gapCost: 1);
    }

    /// <summary>
    /// Weighted edit distance (the Needleman–Wunsch dynamic programme minimising cost): D[i, j] = min(D[i−1, j−1] + sub(a_i, b_j),
    /// D[i−1, j] + gap, D[i, j−1] + gap), D[i, 0] = i·gap, D[0, j] = j·gap; the distance is D[|a|, |b|].
    /// <paramref name="substitutionCost"/> must return ≥ 0 (0 for a match; e.g. a distance between fixated objects);
    /// <paramref name="gapCost"/> ≥ 0 is the cost of one insertion or deletion.
    /// </summary>
    public static double EditDistance<T>(IReadOnlyList<T> a, IReadOnlyList<T> b, Func<T, T, double> substitutionCost, double gapCost = 1)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(substitutionCost);
        if (gapCost < 0 || double.IsInfinity(gapCost)) throw new ArgumentException($"gapCost must be finite and ≥ 0, got {gapCost}.", nameof(gapCost));
        var previous = new double[b.Count + 1];
        var current = new double[b.Count + 1];
        for (int j = 0; j <= b.Count; j++) previous[j] = j * gapCost;                               // D[0, j] = j·gap
        for (int i = 1; i <= a.Count; i++)
        {
            current[0] = i * gapCost;                                                               // D[i, 0] = i·gap
            for (int j = 1; j <= b.Count; j++)
            {
                double sub = substitutionCost(a[i - 1], b[j - 1]);
                if (sub < 0) throw new ArgumentException($"substitutionCost returned {sub} < 0 for a[{i - 1}], b[{j - 1}].", nameof(substitutionCost));
                current[j] = Math.Min(previous[j - 1] + sub, Math.Min(previous[j], current[j - 1]) + gapCost);   // Math.Min keeps NaN
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Count];
    }

    /// <summary>
    /// Needleman–Wunsch global alignment maximising Σ similarity(a_i, b_j) over aligned pairs + gap × (number of gaps):
    /// S[i, j] = max(S[i−1, j−1] + sim(a_i, b_j), S[i−1, j] + gap, S[i, j−1] + gap), S[i, 0] = i·gap, S[0, j] = j·gap.
    /// The alignment is traced back preferring a pair, then a gap in b, then a gap in a. NaN anywhere: Score NaN, no pairs.
    /// </summary>
    /// <param name="a">The first sequence.</param>
    /// <param name="b">The second sequence.</param>
    /// <param name="similarity">Score of aligning a_i with b_j (higher is more alike; e.g. +1 match / −1 mismatch).</param>
    /// <param name="gap">Score of one gap (≤ 0; a penalty).</param>
    public static SequenceAlignment NeedlemanWunsch<T>(IReadOnlyList<T> a, IReadOnlyList<T> b, Func<T, T, double> similarity, double gap = -1)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(similarity);
        if (gap > 0 || double.IsInfinity(gap)) throw new ArgumentException($"gap must be finite and ≤ 0 (a penalty), got {gap}.", nameof(gap));
        int n = a.Count, m = b.Count;
        var s = new double[n + 1, m + 1];
        var sim = new double[n, m];
        for (int i = 0; i <= n; i++) s[i, 0] = i * gap;
        for (int j = 0; j <= m; j++) s[0, j] = j * gap;
        for (int i = 1; i <= n; i++)
            for (int j = 1; j <= m; j++)
            {
                sim[i - 1, j - 1] = similarity(a[i - 1], b[j - 1]);
                s[i, j] = Math.Max(s[i - 1, j - 1] + sim[i - 1, j - 1], Math.Max(s[i - 1, j], s[i, j - 1]) + gap);
            }
        double score = s[n, m];
        if (double.IsNaN(score)) return new SequenceAlignment(double.NaN, Array.Empty<(int, int)>());
        var pairs = new List<(int A, int B)>();
        for (int i = n, j = m; i > 0 || j > 0;)
        {
            if (i > 0 && j > 0 && s[i, j] == s[i - 1, j - 1] + sim[i - 1, j - 1]) { pairs.Add((--i, --j)); }
            else if (i > 0 && s[i, j] == s[i - 1, j] + gap) pairs.Add((--i, -1));               // a_i against a gap
            else pairs.Add((-1, --j));                                                           // b_j against a gap
        }
        pairs.Reverse();
        return new SequenceAlignment(score, pairs);
    }

    /// <summary>Needleman–Wunsch with the textbook scores: +<paramref name="match"/> for equal elements, <paramref name="mismatch"/> otherwise.</summary>
    public static SequenceAlignment NeedlemanWunsch<T>(IReadOnlyList<T> a, IReadOnlyList<T> b, double match = 1, double mismatch = -1, double gap = -1,
                                                       IEqualityComparer<T>? comparer = null)
    {
        comparer ??= EqualityComparer<T>.Default;
        return NeedlemanWunsch(a, b, (x, y) => comparer.Equals(x, y) ? match : mismatch, gap);
    }

    /// <summary>
    /// Deletion curve: the score with nothing deleted, then after deleting the first <paramref name="stride"/>, 2·stride, …
    /// features of <paramref name="order"/> (most important first), ending with all of them; x = deleted / |order| ∈ [0, 1]
    /// and the area under the curve by the trapezoid rule (<see cref="Trapezoid"/>). A faithful importance ordering makes the
    /// score fall fast, so a lower area is better. <paramref name="score"/> receives the deleted features, in order.
    /// </summary>
    public static DeletionCurve Deletion(Func<IReadOnlyList<int>, double> score, IReadOnlyList<int> order, int stride = 1)
    {
        ArgumentNullException.ThrowIfNull(score);
        ArgumentNullException.ThrowIfNull(order);
        if (order.Count == 0) throw new ArgumentException("order must name at least one feature to delete.", nameof(order));
        if (order.Any(f => f < 0)) throw new ArgumentException($"order holds a negative feature index: [{string.Join(", ", order)}].", nameof(order));
        if (order.Distinct().Count() != order.Count)
            throw new ArgumentException($"order deletes a feature twice: [{string.Join(", ", order)}].", nameof(order));
        if (stride < 1) throw new ArgumentException($"stride must be ≥ 1, got {stride}.", nameof(stride));
        var deletedCounts = new List<int>();
        for (int k = 0; k < order.Count; k += stride) deletedCounts.Add(k);
        deletedCounts.Add(order.Count);
        var scores = deletedCounts.Select(k => score(order.Take(k).ToArray())).ToArray();
        var fractions = deletedCounts.Select(k => k / (double)order.Count).ToArray();
        return new DeletionCurve(deletedCounts, fractions, scores, Trapezoid(fractions, scores));
    }

    /// <summary>∫ y dx by the trapezoid rule over strictly increasing <paramref name="x"/>: Σ_k (x_{k+1} − x_k)(y_k + y_{k+1}) / 2.</summary>
    public static double Trapezoid(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count) throw new ArgumentException($"x has {x.Count} values but y has {y.Count}.", nameof(y));
        if (x.Count < 2) throw new ArgumentException($"the trapezoid rule needs at least 2 points, got {x.Count}.", nameof(x));
        if (x.Any(double.IsNaN)) return double.NaN;
        double area = 0;
        for (int k = 0; k + 1 < x.Count; k++)
        {
            if (!(x[k + 1] > x[k])) throw new ArgumentException($"x must be strictly increasing, but x[{k}] = {x[k]} and x[{k + 1}] = {x[k + 1]}.", nameof(x));
            area += (x[k + 1] - x[k]) * (y[k] + y[k + 1]) / 2;
        }
        return area;
    }
}

/// <summary>A global alignment: its score and the aligned index pairs in order, −1 marking a gap on that side.</summary>
public sealed record SequenceAlignment(double Score, IReadOnlyList<(int A, int B)> Pairs);

/// <summary>A deletion curve: features deleted at each point, that count as a fraction of the order, the scores, and the area.</summary>
public sealed record DeletionCurve(IReadOnlyList<int> Deleted, IReadOnlyList<double> Fractions, IReadOnlyList<double> Scores, double Area);
