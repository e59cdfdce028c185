using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

/// <summary>The metrics pack on hand-worked cases (each value worked out in the comment beside it), NaN in → NaN out, bad input named.</summary>
public class MetricsTests
{
    [Fact]
    public void PearsonOnHandWorkedCases()
    {
        Assert.Equal(1, Metrics.Pearson([1, 2, 3, 4], [2, 4, 6, 8]), 12);
        Assert.Equal(-1, Metrics.Pearson([1, 2, 3, 4], [4, 3, 2, 1]), 12);
        // x̄ = ȳ = 2: cov ∝ (−1)(−1) + 0·1 + 1·0 = 1, Σdx² = 2, Σdy² = 2 → r = 1/2
        Assert.Equal(0.5, Metrics.Pearson([1, 2, 3], [1, 3, 2]), 12);
        Assert.True(double.IsNaN(Metrics.Pearson([1, 1, 1], [1, 2, 3])), "a constant side has no correlation");
    }

    [Fact]
    public void SpearmanRanksWithAveragedTies()
    {
        Assert.Equal(1, Metrics.Spearman([1, 2, 3, 4], [1, 8, 27, 64]), 12);              // monotone, not linear
        // ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5 → ρ = 4.5/√22.5
        Assert.Equal(4.5 / Math.Sqrt(22.5), Metrics.Spearman([1, 2, 2, 3], [1, 2, 3, 4]), 12);
    }

    [Fact]
    public void AurocCountsOrderedPairsAndHalvesTies()
    {
        // positives {0.35, 0.8} vs negatives {0.1, 0.4}: 0.35 > 0.1, 0.35 < 0.4, 0.8 > both → 3 of 4 pairs
        Assert.Equal(0.75, Metrics.Auroc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 12);
        Assert.Equal(0.5, Metrics.Auroc([0.5, 0.5], [true, false]), 12);                   // a tie counts ½
        Assert.Equal(1, Metrics.Auroc([3, 2, 1], [true, true, false]), 12);
        Assert.Equal(0, Metrics.Auroc([3, 2, 1], [false, false, true]), 12);
        // against the pair count itself on random scores with ties
        var random = new Random(3);
        var scores = Enumerable.Range(0, 40).Select(_ => (double)random.Next(6)).ToArray();
        var labels = Enumerable.Range(0, 40).Select(i => i % 3 == 0).ToArray();
        double pairs = 0, wins = 0;
        for (int i = 0; i < 40; i++)
            for (int j = 0; j < 40; j++)
                if (labels[i] && !labels[j]) { pairs++; wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0; }
        Assert.Equal(wins / pairs, Metrics.Auroc(scores, labels), 12);
    }

    [Fact]
    public void NdcgAgainstTheIdealOrder()
    {
        // rel [3, 2, 3, 0, 1, 2]: DCG = 3 + 2/log₂3 + 3/2 + 0 + 1/log₂6 + 2/log₂7; ideal [3, 3, 2, 2, 1, 0]
        double dcg = 3 + 2 / Math.Log2(3) + 1.5 + 1 / Math.Log2(6) + 2 / Math.Log2(7);
        double ideal = 3 + 3 / Math.Log2(3) + 1 + 2 / Math.Log2(5) + 1 / Math.Log2(6);
        Assert.Equal(dcg / ideal, Metrics.Ndcg([3, 2, 3, 0, 1, 2], 6), 12);
        Assert.Equal(0.9608081943360617, Metrics.Ndcg([3, 2, 3, 0, 1, 2], 6), 12);
        Assert.Equal(1, Metrics.Ndcg([3, 3, 2, 0], 2), 12);                                  // the top two are ideal
        Assert.Equal(0, Metrics.Ndcg([0, 0], 2));                                           // nothing relevant
        Assert.Equal(Metrics.Ndcg([1, 0, 2], 3), Metrics.Ndcg([1, 0, 2], 10), 12);            // k past the end: the whole list
    }

    [Fact]
    public void RougeOneClipsRepeatedTokens()
    {
        // "the cat sat on the mat" vs "the cat is on the mat": the ×2, cat, on, mat match → 5 of 6 each way
        var (p, r, f) = Metrics.Rouge1("the cat sat on the mat".Split(' '), "the cat is on the mat".Split(' '));
        Assert.Equal((5 / 6.0, 5 / 6.0, 5 / 6.0), (p, r, f));
        // "the the the" vs "the cat": clipped overlap 1 → P = 1/3, R = 1/2, F1 = 2·(1/6)/(5/6) = 0.4
        var clipped = Metrics.Rouge1(["the", "the", "the"], ["the", "cat"]);
        Assert.Equal(1 / 3.0, clipped.Precision, 12);
        Assert.Equal(0.5, clipped.Recall, 12);
        Assert.Equal(0.4, clipped.F1, 12);
        Assert.Equal(0, Metrics.Rouge1(["a"], ["b"]).F1);
    }

    [Fact]
    public void JaccardOfSets()
    {
        Assert.Equal(0.5, Metrics.Jaccard([1, 2, 3], [2, 3, 4]));                            // {2, 3} / {1, 2, 3, 4}
        Assert.Equal(1, Metrics.Jaccard([(0, 1), (1, 2)], [(1, 2), (0, 1), (0, 1)]));        // duplicates are one element
        Assert.Equal(0, Metrics.Jaccard(["a"], ["b"]));
        Assert.Equal(1, Metrics.Jaccard(Array.Empty<int>(), Array.Empty<int>()));
    }

    [Fact]
    public void BootstrapIntervalsAreSeededAndCoverTheMean()
    {
        var constant = Metrics.BootstrapMean([2, 2, 2]);
        Assert.Equal((2.0, 2.0, 2.0), (constant.Mean, constant.Low, constant.High));
        var coin = Enumerable.Range(0, 100).Select(i => (double)(i % 2)).ToArray();          // mean 0.5, standard error 0.05
        var ci = Metrics.BootstrapMean(coin, seed: 7);
        Assert.Equal(0.5, ci.Mean, 12);
        Assert.InRange(ci.Low, 0.38, 0.45);                                                  // ≈ 0.5 − 1.96 · 0.05
        Assert.InRange(ci.High, 0.55, 0.62);
        Assert.Equal(ci, Metrics.BootstrapMean(coin, seed: 7));
        var narrow = Metrics.BootstrapMean(coin, level: 0.5, seed: 7);
        Assert.True(narrow.High - narrow.Low < ci.High - ci.Low, "a 50 % interval is narrower than a 95 % one");
        Assert.Contains("95 % bootstrap CI", ci.ToString());
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        Assert.True(double.IsNaN(Metrics.Pearson([1, double.NaN, 3], [1, 2, 3])));
        Assert.True(double.IsNaN(Metrics.Spearman([1, 2, 3], [1, double.NaN, 3])));
        Assert.True(double.IsNaN(Metrics.Auroc([double.NaN, 1], [true, false])));
        Assert.True(double.IsNaN(Metrics.Ndcg([1, double.NaN], 2)));
        var ci = Metrics.BootstrapMean([1, double.NaN]);
        Assert.True(double.IsNaN(ci.Mean) && double.IsNaN(ci.Low) && double.IsNaN(ci.High));
    }

    [Fact]
    public void BadInputIsNamed()
    {
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => Metrics.Pearson([1, 2], [1, 2, 3])).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => Metrics.Spearman([1], [1])).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => Metrics.Auroc([1, 2], [true, true])).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => Metrics.Auroc([1, 2], [true])).ParamName);
        Assert.Equal("k", Assert.ThrowsAny<ArgumentException>(() => Metrics.Ndcg([1], 0)).ParamName);
        Assert.Equal("relevanceInRankedOrder", Assert.Throws<ArgumentException>(() => Metrics.Ndcg([-1, 2], 2)).ParamName);
        Assert.Equal("candidate", Assert.Throws<ArgumentException>(() => Metrics.Rouge1([], ["a"])).ParamName);
        Assert.Equal("level", Assert.Throws<ArgumentException>(() => Metrics.BootstrapMean([1, 2], level: 1)).ParamName);
        Assert.Equal("values", Assert.Throws<ArgumentException>(() => Metrics.BootstrapMean([])).ParamName);
    }
}
