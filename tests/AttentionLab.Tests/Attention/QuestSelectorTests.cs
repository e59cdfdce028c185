using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

public class QuestSelectorTests
{
    /// <summary>U_p by loops: Σ over the group's query heads and dims of max(q_i·min_j k_ji, q_i·max_j k_ji).</summary>
    static double NaiveBound(double[,,] q, double[,,,] k, int b, int kvHead, int page, int pageSize)
    {
        int hq = q.GetLength(1), d = q.GetLength(2), hkv = k.GetLength(2), g = hq / hkv;
        double total = 0;
        for (int h = kvHead * g; h < (kvHead + 1) * g; h++)
            for (int i = 0; i < d; i++)
            {
                double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                for (int j = page * pageSize; j < (page + 1) * pageSize; j++) { lo = Math.Min(lo, k[b, j, kvHead, i]); hi = Math.Max(hi, k[b, j, kvHead, i]); }
                total += Math.Max(q[b, h, i] * lo, q[b, h, i] * hi);
            }
        return total;
    }

    static double[,,] To3(Tensor t) { var a = new double[t.shape[0], t.shape[1], t.shape[2]]; var d = t.data<double>().ToArray();
        Buffer.BlockCopy(d, 0, a, 0, d.Length * 8); return a; }
    static double[,,,] To4(Tensor t) { var a = new double[t.shape[0], t.shape[1], t.shape[2], t.shape[3]]; var d = t.data<double>().ToArray();
        Buffer.BlockCopy(d, 0, a, 0, d.Length * 8); return a; }

    [Theory]
    [InlineData(1, 13, 2, 2, 3, 4)]    // partial current page, MHA
    [InlineData(2, 16, 4, 2, 5, 4)]    // GQA (2 query heads per KV head), n a multiple of P
    [InlineData(1, 7, 1, 1, 1, 2)]     // D = 1
    public void BoundsMatchLoopsAndBoundEveryScore(int batch, int n, int hq, int hkv, int d, int pageSize)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(4);
        var q = torch.randn(batch, hq, d, dtype: ScalarType.Float64);
        var k = torch.randn(batch, n, hkv, d, dtype: ScalarType.Float64);
        var u = QuestSelector.PageBounds(q, k, pageSize);
        int pages = (n - 1) / pageSize;
        Assert.Equal(new long[] { batch, hkv, pages }, u.shape);
        var (qa, ka) = (To3(q), To4(k));
        int g = hq / hkv;
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < hkv; c++)
                for (int p = 0; p < pages; p++)
                {
                    double bound = u[b, c, p].item<double>();
                    Assert.Equal(NaiveBound(qa, ka, b, c, p, pageSize), bound, 10);
                    double best = double.NegativeInfinity;                          // Σ_g max_j q_g·k_j ≤ U_p
                    for (int j = p * pageSize; j < (p + 1) * pageSize; j++)
                    {
                        double s = 0;
                        for (int h = c * g; h < (c + 1) * g; h++) for (int i = 0; i < d; i++) s += qa[b, h, i] * ka[b, j, c, i];
                        best = Math.Max(best, s);
                    }
                    Assert.True(best <= bound + 1e-12, $"page {p}: max score {best} above its bound {bound}");
                }
    }

    [Fact]
    public void SelectsTheTopBoundPagesPlusTheCurrentPage()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(9);
        int n = 22, pageSize = 4, budget = 3;
        var q = torch.randn(1, 2, 3, dtype: ScalarType.Float64);
        var k = torch.randn(1, n, 2, 3, dtype: ScalarType.Float64) * 0.1;
        k[0, 9, 0] = q[0, 0] * 10;                                                   // page 2 of KV head 0 holds a key aligned with q
        var selector = new QuestSelector(pageSize, budget);
        var chosen = selector.Select(new KvSelectQuery(n, 1, 2, torch.CPU, q, k))!;
        Assert.Equal(new long[] { 1, 2, (budget - 1) * pageSize + 2 }, chosen.shape);   // 2 pages of 4 + current page's 2 tokens
        var head0 = chosen[0, 0].data<long>().ToArray();
        Assert.Contains(9L, head0);
        Assert.Equal(new long[] { 20, 21 }, head0[^2..]);                           // the current page is always read
        var u = QuestSelector.PageBounds(q, k, pageSize);
        for (int c = 0; c < 2; c++)
        {
            var expected = u[0, c].data<double>().ToArray().Select((v, p) => (v, p)).OrderByDescending(x => x.v).Take(budget - 1).Select(x => x.p).Order()
                .SelectMany(p => Enumerable.Range(p * pageSize, pageSize).Select(j => (long)j)).Concat(new long[] { 20, 21 });
            Assert.Equal(expected, chosen[0, c].data<long>().ToArray());
        }
    }

    [Fact]
    public void WithinBudgetItIsFullAttention()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        var (q, k, v) = (torch.randn(1, 12, 2, 4, dtype: ScalarType.Float64), torch.randn(1, 12, 2, 4, dtype: ScalarType.Float64),
            torch.randn(1, 12, 2, 4, dtype: ScalarType.Float64));
        using var quest = new SelectiveKvCache(new QuestSelector(pageSize: 4, budgetPages: 3));
        using var full = new SelectiveKvCache(new FullSelector());
        for (int t = 0; t < 12; t++)
        {
            var a = quest.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
            var f = full.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
            Assert.True((a.Output - f.Output).abs().max().item<double>() < 1e-12, $"step {t}");
        }
        Assert.All(quest.Trace, s => Assert.Equal(s.Step + 1, s.AttendedTokens[0]));
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        Assert.Equal("budgetPages", Assert.Throws<ArgumentException>(() => new QuestSelector(4, 1)).ParamName);
        Assert.Equal("pageSize", Assert.ThrowsAny<ArgumentException>(() => new QuestSelector(0, 3)).ParamName);
        var selector = new QuestSelector(2, 2);
        Assert.Equal("query", Assert.Throws<ArgumentException>(() => selector.Select(new KvSelectQuery(9, 1, 1, torch.CPU))).ParamName);
        using var q = torch.randn(1, 3, 4);
        using var k = torch.randn(1, 9, 2, 4);
        Assert.Equal("query", Assert.Throws<ArgumentException>(() => QuestSelector.PageBounds(q, k, 2)).ParamName);   // 3 heads over 2 KV heads
    }
}
