using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

public class SequenceMetricsTests
{
    // ---------------------------------------------------------------- Levenshtein and edit distance

    [Fact]
    public void LevenshteinMatchesHandWorkedCases()
    {
        // kitten → sitting: k→s (1), e→i (2), insert g (3).
        Assert.Equal(3, SequenceMetrics.Levenshtein("kitten".ToArray(), "sitting".ToArray()));
        // flaw → lawn: delete f (1), insert n (2).
        Assert.Equal(2, SequenceMetrics.Levenshtein("flaw".ToArray(), "lawn".ToArray()));
        // nothing → abc: three insertions; abc → abc: none.
        Assert.Equal(3, SequenceMetrics.Levenshtein(Array.Empty<char>(), "abc".ToArray()));
        Assert.Equal(0, SequenceMetrics.Levenshtein("abc".ToArray(), "abc".ToArray()));
        // generic elements: [1, 2, 3] → [1, 3] deletes the 2.
        Assert.Equal(1, SequenceMetrics.Levenshtein(new[] { 1, 2, 3 }, new[] { 1, 3 }));
        // a comparer: case-insensitive strings make "A" equal "a".
        Assert.Equal(1, SequenceMetrics.Levenshtein(new[] { "A", "b" }, new[] { "a", "c" }, StringComparer.OrdinalIgnoreCase));
    }

    [Fact]
    public void WeightedEditDistanceTakesTheCheaperOfSubstitutionAndGaps()
    {
        static double Distance(int x, int y) => Math.Abs(x - y);
        // [0, 5] → [1, 5]: substitute 0→1 costs |0−1| = 1, 5→5 costs 0: total 1 (delete + insert would cost 2).
        Assert.Equal(1, SequenceMetrics.EditDistance(new[] { 0, 5 }, new[] { 1, 5 }, Distance), 12);
        // [0] → [10]: substitution costs 10, delete 0 and insert 10 costs 1 + 1 = 2.
        Assert.Equal(2, SequenceMetrics.EditDistance(new[] { 0 }, new[] { 10 }, Distance), 12);
        // gap cost 0.5: [3] → [] is one deletion = 0.5; [] → [1, 2] two insertions = 1.
        Assert.Equal(0.5, SequenceMetrics.EditDistance(new[] { 3 }, Array.Empty<int>(), Distance, gapCost: 0.5), 12);
        Assert.Equal(1, SequenceMetrics.EditDistance(Array.Empty<int>(), new[] { 1, 2 }, Distance, gapCost: 0.5), 12);
    }

    /// <summary>Independent twin: the minimum over every alignment, by plain recursion (exponential, short sequences only).</summary>
    static double BruteForceEditDistance(int[] a, int[] b, Func<int, int, double> sub, double gap)
    {
        if (a.Length == 0) return b.Length * gap;
        if (b.Length == 0) return a.Length * gap;
        return Math.Min(BruteForceEditDistance(a[1..], b[1..], sub, gap) + sub(a[0], b[0]),
            Math.Min(BruteForceEditDistance(a[1..], b, sub, gap), BruteForceEditDistance(a, b[1..], sub, gap)) + gap);
    }

    [Fact]
    public void EditDistanceEqualsTheBruteForceMinimumOverAlignments()
    {
        var random = new Random(15);
        for (int trial = 0; trial < 60; trial++)
        {
            var a = Enumerable.Range(0, random.Next(0, 6)).Select(_ => random.Next(4)).ToArray();
            var b = Enumerable.Range(0, random.Next(0, 6)).Select(_ => random.Next(4)).ToArray();
            double gap = 0.25 + random.NextDouble();
            double Sub(int x, int y) => 0.7 * Math.Abs(x - y);
            Assert.Equal(BruteForceEditDistance(a, b, Sub, gap), SequenceMetrics.EditDistance(a, b, Sub, gap), 10);
            Assert.Equal(BruteForceEditDistance(a, b, (x, y) => x == y ? 0 : 1, 1), SequenceMetrics.Levenshtein(a, b));
        }
    }

    [Fact]
    public void EditDistanceRejectsBadCostsAndPropagatesNaN()
    {
        var a = new[] { 1, 2 };
        Assert.Equal("gapCost", Assert.Throws<ArgumentException>(() => SequenceMetrics.EditDistance(a, a, (x, y) => 0, gapCost: -1)).ParamName);
        Assert.Equal("substitutionCost", Assert.Throws<ArgumentException>(() => SequenceMetrics.EditDistance(a, a, (x, y) => -1)).ParamName);
        Assert.Throws<ArgumentNullException>(() => SequenceMetrics.Levenshtein(null!, a));
        Assert.True(double.IsNaN(SequenceMetrics.EditDistance(a, a, (x, y) => double.NaN)));
        Assert.True(double.IsNaN(SequenceMetrics.EditDistance(a, new[] { 1 }, (x, y) => x == 1 ? double.NaN : 0)));
    }

    // ---------------------------------------------------------------- Needleman–Wunsch

    [Fact]
    public void NeedlemanWunschScoresTheTextbookExample()
    {
        // Wikipedia's example: GCATGCG vs GATTACA, match +1, mismatch −1, gap −1 → best score 0, e.g.
        //   G C A T G - C G
        //   G - A T T A C A     = +1 −1 +1 +1 −1 −1 +1 −1 = 0.
        var a = "GCATGCG".ToArray();
        var b = "GATTACA".ToArray();
        var alignment = SequenceMetrics.NeedlemanWunsch(a, b);
        Assert.Equal(0, alignment.Score, 12);
        AssertValidAlignment(alignment, a.Length, b.Length);
        Assert.Equal(alignment.Score, Rescore(alignment, a, b, (x, y) => x == y ? 1 : -1, -1), 12);

        // AC vs A: A–A (+1) and C against a gap (−1) = 0; the alternative C–A (−1) plus a gap (−1) = −2.
        var small = SequenceMetrics.NeedlemanWunsch("AC".ToArray(), "A".ToArray());
        Assert.Equal(0, small.Score, 12);
        Assert.Equal(new[] { (0, 0), (1, -1) }, small.Pairs);

        // Empty against "ab": two gaps = −2; empty against empty: 0 with no pairs.
        Assert.Equal(-2, SequenceMetrics.NeedlemanWunsch(Array.Empty<char>(), "ab".ToArray()).Score, 12);
        Assert.Empty(SequenceMetrics.NeedlemanWunsch(Array.Empty<char>(), Array.Empty<char>()).Pairs);
    }

    [Fact]
    public void NeedlemanWunschWithASimilarityFunctionAlignsByDistance()
    {
        // Fixations on a 1-D row of objects; similarity 2 − |x − y| (2 for the same object, 1 for a neighbour, …), gap −1.
        // [0, 3] vs [1, 3]: 0–1 scores 1, 3–3 scores 2 → 3 (gapping 0 and 1 would give −1 −1 + 2 = 0).
        var alignment = SequenceMetrics.NeedlemanWunsch(new[] { 0, 3 }, new[] { 1, 3 }, (x, y) => 2.0 - Math.Abs(x - y), gap: -1);
        Assert.Equal(3, alignment.Score, 12);
        Assert.Equal(new[] { (0, 0), (1, 1) }, alignment.Pairs);
    }

    [Fact]
    public void NeedlemanWunschWithZeroMatchIsMinusLevenshtein()
    {
        // match 0, mismatch −1, gap −1 maximises −(substitutions + gaps): the negated Levenshtein distance.
        var random = new Random(7);
        for (int trial = 0; trial < 50; trial++)
        {
            var a = Enumerable.Range(0, random.Next(0, 9)).Select(_ => random.Next(3)).ToArray();
            var b = Enumerable.Range(0, random.Next(0, 9)).Select(_ => random.Next(3)).ToArray();
            var alignment = SequenceMetrics.NeedlemanWunsch(a, b, match: 0, mismatch: -1, gap: -1);
            Assert.Equal(-SequenceMetrics.Levenshtein(a, b), alignment.Score, 12);
            AssertValidAlignment(alignment, a.Length, b.Length);
            Assert.Equal(alignment.Score, Rescore(alignment, a, b, (x, y) => x == y ? 0 : -1, -1), 12);
        }
    }

    [Fact]
    public void NeedlemanWunschRejectsAPositiveGapAndPropagatesNaN()
    {
        var a = new[] { 1, 2 };
        Assert.Equal("gap", Assert.Throws<ArgumentException>(() => SequenceMetrics.NeedlemanWunsch(a, a, gap: 1)).ParamName);
        Assert.Equal("gap", Assert.Throws<ArgumentException>(() => SequenceMetrics.NeedlemanWunsch(a, a, (x, y) => 0, double.NegativeInfinity)).ParamName);
        var nan = SequenceMetrics.NeedlemanWunsch(a, a, (x, y) => double.NaN);
        Assert.True(double.IsNaN(nan.Score));
        Assert.Empty(nan.Pairs);
    }

    static void AssertValidAlignment(SequenceAlignment alignment, int n, int m)
    {
        // every index of a and of b appears exactly once and in increasing order; no pair is gap–gap
        Assert.Equal(Enumerable.Range(0, n), alignment.Pairs.Where(p => p.A >= 0).Select(p => p.A));
        Assert.Equal(Enumerable.Range(0, m), alignment.Pairs.Where(p => p.B >= 0).Select(p => p.B));
        Assert.DoesNotContain(alignment.Pairs, p => p.A < 0 && p.B < 0);
    }

    static double Rescore<T>(SequenceAlignment alignment, T[] a, T[] b, Func<T, T, double> sim, double gap) =>
        alignment.Pairs.Sum(p => p.A >= 0 && p.B >= 0 ? sim(a[p.A], b[p.B]) : gap);

    // ---------------------------------------------------------------- nDCG (the cases MetricsTests does not cover)

    [Fact]
    public void NdcgCutsTheRankingAtK()
    {
        // rel [0, 1]: at k = 1 the ranking shows only the 0 while the ideal shows the 1 → 0 / 1 = 0;
        // at k = 2, DCG = 0 + 1/log₂3 and the ideal DCG = 1 → 1/log₂3 ≈ 0.6309.
        Assert.Equal(0, Metrics.Ndcg([0, 1], 1), 12);
        Assert.Equal(1 / Math.Log2(3), Metrics.Ndcg([0, 1], 2), 12);
        Assert.Equal("relevanceInRankedOrder", Assert.Throws<ArgumentException>(() => Metrics.Ndcg([], 1)).ParamName);
    }

    // ---------------------------------------------------------------- deletion curves

    [Fact]
    public void DeletionCurveAndAreaMatchTheHandWorkedExample()
    {
        // score = 10 − Σ w over deleted features, w = [5, 3, 2]; delete in the order 0, 1, 2:
        // scores 10, 5, 2, 0 at x = 0, 1/3, 2/3, 1; area = (1/3)·[(10+5)/2 + (5+2)/2 + (2+0)/2] = (1/3)·12 = 4.
        double[] w = { 5, 3, 2 };
        double Score(IReadOnlyList<int> deleted) => 10 - deleted.Sum(f => w[f]);
        var curve = SequenceMetrics.Deletion(Score, new[] { 0, 1, 2 });
        Assert.Equal(new[] { 0, 1, 2, 3 }, curve.Deleted);
        Assert.Equal(new[] { 10.0, 5, 2, 0 }, curve.Scores);
        Assert.Equal(4, curve.Area, 12);

        // The reverse order is less faithful: scores 10, 8, 5, 0; area = (1/3)·[(10+8)/2 + (8+5)/2 + (5+0)/2] = (1/3)·18 = 6.
        Assert.Equal(6, SequenceMetrics.Deletion(Score, new[] { 2, 1, 0 }).Area, 12);

        // stride 2: points after 0, 2, 3 deletions: scores 10, 2, 0 at x = 0, 2/3, 1;
        // area = (2/3)·(10+2)/2 + (1/3)·(2+0)/2 = 4 + 1/3.
        var strided = SequenceMetrics.Deletion(Score, new[] { 0, 1, 2 }, stride: 2);
        Assert.Equal(new[] { 0, 2, 3 }, strided.Deleted);
        Assert.Equal(4 + 1.0 / 3, strided.Area, 12);
    }

    [Fact]
    public void DeletionPassesTheDeletedPrefixInOrder()
    {
        var seen = new List<string>();
        SequenceMetrics.Deletion(d => { seen.Add(string.Join(",", d)); return 0; }, new[] { 4, 1 });
        Assert.Equal(new[] { "", "4", "4,1" }, seen);
    }

    [Fact]
    public void DeletionRejectsBadOrdersAndPropagatesNaN()
    {
        static double Zero(IReadOnlyList<int> _) => 0;
        Assert.Equal("order", Assert.Throws<ArgumentException>(() => SequenceMetrics.Deletion(Zero, Array.Empty<int>())).ParamName);
        Assert.Equal("order", Assert.Throws<ArgumentException>(() => SequenceMetrics.Deletion(Zero, new[] { 0, 0 })).ParamName);
        Assert.Equal("order", Assert.Throws<ArgumentException>(() => SequenceMetrics.Deletion(Zero, new[] { -1 })).ParamName);
        Assert.Equal("stride", Assert.Throws<ArgumentException>(() => SequenceMetrics.Deletion(Zero, new[] { 0 }, stride: 0)).ParamName);
        Assert.True(double.IsNaN(SequenceMetrics.Deletion(d => d.Count == 1 ? double.NaN : 1, new[] { 0, 1 }).Area));
    }

    [Fact]
    public void TrapezoidIntegratesALineExactlyAndRejectsBadAxes()
    {
        // y = 2x on [0, 3] sampled unevenly at 0, 1, 3: (1)(0+2)/2 + (2)(2+6)/2 = 1 + 8 = 9 = ∫ 2x dx.
        Assert.Equal(9, SequenceMetrics.Trapezoid(new double[] { 0, 1, 3 }, new double[] { 0, 2, 6 }), 12);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => SequenceMetrics.Trapezoid(new double[] { 0, 0 }, new double[] { 1, 1 })).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => SequenceMetrics.Trapezoid(new double[] { 0 }, new double[] { 1 })).ParamName);
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => SequenceMetrics.Trapezoid(new double[] { 0, 1 }, new double[] { 1 })).ParamName);
        Assert.True(double.IsNaN(SequenceMetrics.Trapezoid(new double[] { 0, 1 }, new[] { 1, double.NaN })));
    }
}
