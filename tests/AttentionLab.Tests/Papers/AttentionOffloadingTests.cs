using AttentionLab.Attention;
using AttentionLab.Papers.AttentionOffloading;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>Split attention equals the monolithic call; LSE merge edge cases; bad input names its argument.</summary>
public class AttentionOffloadingTests
{
    public static TheoryData<int, int, int, int, int, int> Shapes => new()
    {
        // batch, Tk, Hq, Hkv, D, parts
        { 1, 1, 1, 1, 1, 1 },      // one cached token
        { 5, 37, 8, 4, 12, 3 },    // T not a multiple of parts, GQA, D not a power of two
        { 3, 16, 6, 2, 8, 2 },
        { 4, 9, 4, 4, 5, 4 },
    };

    static (Tensor q, Tensor k, Tensor v) Inputs(int b, int t, int hq, int hkv, int d, ScalarType dtype)
    {
        var gen = new Generator(11);
        return (torch.randn(new long[] { b, 1, hq, d }, generator: gen, dtype: dtype),
                torch.randn(new long[] { b, t, hkv, d }, generator: gen, dtype: dtype) * 3,
                torch.randn(new long[] { b, t, hkv, d }, generator: gen, dtype: dtype));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EverySplitEqualsTheMonolithicCall(int b, int t, int hq, int hkv, int d, int parts)
    {
        // float64 is the exactness check; float32 allows a few ulps of the merge weights exp(ℓ_p − ℓ)
        foreach (var (dtype, tol) in new[] { (ScalarType.Float64, 1e-12), (ScalarType.Float32, 5e-6) })
        {
            using var scope = NewDisposeScope();
            var (q, k, v) = Inputs(b, t, hq, hkv, d, dtype);
            var (o, lse) = SplitAttention.Monolithic(q, k, v);
            var splits = new (string, Func<Tensor, Tensor, Tensor, int, (Tensor, Tensor)>, int)[]
            {
                ("requests", SplitAttention.ByRequests, Math.Min(parts, b)),
                ("heads", SplitAttention.ByHeads, Math.Min(parts, hkv)),
                ("sequence", SplitAttention.BySequence, Math.Min(parts, t)),
            };
            foreach (var (name, run, p) in splits)
            {
                var (so, sl) = run(q, k, v, p);
                Assert.Equal(o.shape, so.shape);
                Assert.Equal(lse.shape, sl.shape);
                // relative to the magnitude: float32 LSEs near 10 carry ulps of ~1e-6
                double eo = (so - o).abs().max().ToDouble() / Math.Max(1, o.abs().max().ToDouble());
                double el = (sl - lse).abs().max().ToDouble() / Math.Max(1, lse.abs().max().ToDouble());
                Assert.True(eo <= tol && el <= tol, $"{name} ({dtype}, {p} parts): output {eo}, LSE {el}");
            }
        }
    }

    [Fact]
    public void PlainAverageOfChunksIsWrongAndMergeHandlesEmptyParts()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 20, 4, 2, 8, ScalarType.Float64);
        var (o, lse) = SplitAttention.Monolithic(q, k, v);
        Assert.True((SplitAttention.BySequenceAveraged(q, k, v, 4) - o).abs().max().ToDouble() > 1e-3);

        // a part with no keys (LSE = −∞, output 0) contributes nothing; all parts empty → o = 0, LSE = −∞
        var empty = (torch.zeros_like(o), torch.full_like(lse, double.NegativeInfinity));
        var (mo, ml) = LseMerge.Combine(new[] { (o, lse), empty });
        Assert.Equal(0, (mo - o).abs().max().ToDouble(), 12);
        Assert.Equal(0, (ml - lse).abs().max().ToDouble(), 12);
        var (eo, el) = LseMerge.Combine(new[] { empty, empty });
        Assert.False(eo.isnan().any().item<bool>());
        Assert.True(el.isneginf().all().item<bool>());
        Assert.Equal(0, eo.abs().max().ToDouble());
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 6, 4, 2, 8, ScalarType.Float32);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => SplitAttention.BySequence(q, k, v, 0)).ParamName);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => SplitAttention.BySequence(q, k, v, 7)).ParamName);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => SplitAttention.ByHeads(q, k, v, 3)).ParamName);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => SplitAttention.ByRequests(q, k, v, 3)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => SplitAttention.ByHeads(q, k.narrow(0, 0, 1), v, 1)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => SplitAttention.BySequence(q[0], k, v, 1)).ParamName);
        var (o, lse) = SplitAttention.Monolithic(q, k, v);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => LseMerge.Combine(Array.Empty<(Tensor, Tensor)>())).ParamName);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => LseMerge.Combine(new[] { (o, lse), (o.narrow(0, 0, 1), lse.narrow(0, 0, 1)) })).ParamName);
        Assert.Equal("parts", Assert.Throws<ArgumentException>(() => LseMerge.Combine(new[] { (o, lse.transpose(1, 2)) })).ParamName);
    }
}
