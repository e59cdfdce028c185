using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

public class PositionsTests
{
    static Tensor At(params long[] p) => torch.tensor(p);

    [Fact]
    public void RopeScoresDependOnlyOnTheOffset()
    {
        torch.manual_seed(40);
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 1, 1, 8, dtype: float64);
        var k = torch.randn(1, 1, 1, 8, dtype: float64);
        double Dot(long p, long s) => (Positions.Rope(q, At(p)) * Positions.Rope(k, At(s))).sum().item<double>();
        foreach (var offset in new long[] { 0, 1, 5, 17 })
        {
            double reference = Dot(offset, 0);
            foreach (var s in new long[] { 3, 11, 40, 1000 })
                Assert.Equal(reference, Dot(s + offset, s), 9);
        }
        Assert.NotEqual(Dot(1, 0), Dot(2, 0), 6);                                        // the offset matters
        AssertClose.Tensors(Positions.Rope(q, At(0)), q, atol: 0, rtol: 0, what: "position 0 is the identity");
        AssertClose.Tensors(Positions.Rope(q, At(7)).norm(), q.norm(), atol: 1e-12, rtol: 1e-12, what: "rotation keeps the norm");
    }

    [Fact]
    public void RopeMatchesThePairwiseRotationFormula()
    {
        torch.manual_seed(41);
        using var scope = NewDisposeScope();
        int d = 6;
        var x = torch.randn(1, 1, 1, d, dtype: float64);
        var rotated = Positions.Rope(x, At(3), @base: 100).view(d);
        var v = x.view(d);
        for (int i = 0; i < d / 2; i++)
        {
            double angle = 3 * Math.Pow(100, -2.0 * i / d);                              // p · θ_i
            double a = v[i].item<double>(), b = v[i + d / 2].item<double>();
            Assert.Equal(a * Math.Cos(angle) - b * Math.Sin(angle), rotated[i].item<double>(), 12);
            Assert.Equal(b * Math.Cos(angle) + a * Math.Sin(angle), rotated[i + d / 2].item<double>(), 12);
        }
    }

    [Fact]
    public void CachingUnrotatedKeysThenRotatingAtUseEqualsRotatingFirst()
    {
        torch.manual_seed(42);
        using var scope = NewDisposeScope();
        var k = torch.randn(2, 9, 3, 4);
        var rotateThenCache = Positions.Rope(k, torch.arange(9));
        using var cache = new KvCache(2, 3, 4, 4, initialCapacity: 2);
        foreach (var (start, len) in new[] { (0, 4), (4, 1), (5, 4) })
            cache.Append(k.narrow(1, start, len), torch.zeros(2, len, 3, 4));                 // un-rotated
        var rotateAtUse = Positions.Rope(cache.Keys, torch.arange(cache.Length));
        AssertClose.Tensors(rotateAtUse, rotateThenCache, atol: 0, rtol: 0, what: "rotate at use");
        // per-sequence positions [B, T] agree with shared ones
        AssertClose.Tensors(Positions.Rope(k, torch.arange(9).expand(2, 9)), rotateThenCache, atol: 0, rtol: 0, what: "[B, T] positions");
    }

    [Fact]
    public void AlibiSlopesFollowThePapersGeometricSequence()
    {
        var eight = Positions.AlibiSlopes(8);
        Assert.Equal(Enumerable.Range(1, 8).Select(h => 1.0 / (1 << h)), eight);                          // 1/2, 1/4, …, 1/256
        Assert.Equal(new[] { 1.0 / 4, 1.0 / 16, 1.0 / 64, 1.0 / 256 }, Positions.AlibiSlopes(4));         // start = ratio = 2^{−8/4}
        for (int h = 1; h < 8; h++) Assert.Equal(eight[0], eight[h] / eight[h - 1], 12);                 // geometric, ratio = start
        // 6 heads: the 4-head slopes, then every other slope of 8 heads (1/2, 1/8)
        Assert.Equal(new[] { 1.0 / 4, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2, 1.0 / 8 }, Positions.AlibiSlopes(6));
    }

    [Fact]
    public void AlibiBiasIsMinusSlopeTimesDistance()
    {
        using var scope = NewDisposeScope();
        var slopes = Positions.AlibiSlopes(2);
        var bias = Positions.AlibiBias(slopes, torch.arange(2, 5), torch.arange(5), float64);
        Assert.Equal(new long[] { 2, 3, 5 }, bias.shape);
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 5; j++)
                    Assert.Equal(-slopes[h] * (i + 2 - j), bias[h, i, j].item<double>(), 12);
    }

    [Fact]
    public void BadPositionInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => Positions.Rope(torch.randn(1, 2, 1, 3), torch.arange(2))).ParamName);
        Assert.Equal("positions", Assert.Throws<ArgumentException>(() => Positions.Rope(torch.randn(1, 2, 1, 4), torch.arange(3))).ParamName);
        Assert.Equal("positions", Assert.Throws<ArgumentException>(() => Positions.Rope(torch.randn(1, 2, 1, 4), torch.zeros(2))).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => Positions.AlibiSlopes(0)).ParamName);
        Assert.Equal("queryPositions", Assert.Throws<ArgumentException>(
            () => Positions.AlibiBias(new[] { 0.5 }, torch.zeros(2, 2), torch.arange(2))).ParamName);
    }
}
