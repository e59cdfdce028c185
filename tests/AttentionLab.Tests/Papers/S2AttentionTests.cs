using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Papers.S2Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class S2AttentionTests
{
    static (Tensor Q, Tensor K, Tensor V) Qkv(int b, int t, int hq, int hkv, int d, int dv, ScalarType dtype = ScalarType.Float64, bool grad = false)
    {
        torch.manual_seed(5);
        return (torch.randn(b, t, hq, d, dtype: dtype).requires_grad_(grad), torch.randn(b, t, hkv, d, dtype: dtype).requires_grad_(grad),
                torch.randn(b, t, hkv, dv, dtype: dtype).requires_grad_(grad));
    }

    static void Close(Tensor a, Tensor b, double tol, string what) =>
        Assert.True(a.allclose(b, rtol: tol, atol: tol), $"{what}: max |Δ| = {(a - b).abs().max().to(ScalarType.Float64).item<double>()}");

    /// <summary>A local-stride pattern on the shared grid: the grid's H is the KV heads, its chunk the block size b.</summary>
    public sealed record Pattern(string Name, int Local, int Stride, bool Homo = false, bool Dense = false, int Groups = 1)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<object[]> Patterns() => Conformance.ShapesWith(
        new Pattern("ℓ2 s4", 2, 4), new Pattern("GQA ×2, ℓ1 (diagonal only) s3", 1, 3, Groups: 2),
        new Pattern("homogeneous ℓ3 s2", 3, 2, Homo: true), new Pattern("one dense head, ℓ2 s5", 2, 5, Dense: true));

    /// <summary>
    /// The gather (block-sparse) and strided-local forms against dense masked attention (S2Naive) on outputs, the LSE
    /// (a final state here) and the gradients of q, k, v; float64 1e−10, float32 1e−5 (the spec's) against the float64 twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(Patterns))]
    public void FormsConformToDenseMaskedAttention(Shape shape, Pattern p)
    {
        var mask = S2Pattern.LocalStride(shape.H, shape.T, shape.Chunk, p.Local, p.Stride, p.Homo, p.Dense ? 1 : 0);
        var residues = S2Pattern.Residues(shape.H, p.Stride, p.Homo, p.Dense ? 1 : 0);
        Tensor[] Inputs(Shape s, ScalarType dtype, Generator g) =>
        [
            torch.randn(s.B, s.T, s.H * p.Groups, s.D, generator: g, dtype: ScalarType.Float64).to(dtype),
            torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: ScalarType.Float64).to(dtype),
            torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: ScalarType.Float64).to(dtype),
        ];
        Form Of(string name, Func<Tensor, Tensor, Tensor, (Tensor Output, Tensor Lse)> f) =>
            new(name, x => { var (o, l) = f(x[0], x[1], x[2]); return new FormOutput(o, l); });
        Conformance.Check(shape, Inputs, Of("naive", (q, k, v) =>
            { using var r = S2Naive.Forward(q, k, v, mask); return (r.Output.alias(), r.LogSumExp.alias()); }),
        [
            Of("gather", (q, k, v) => BlockSparseAttention.Forward(q, k, v, mask)),
            Of("strided", (q, k, v) => StridedLocalAttention.Forward(q, k, v, shape.Chunk, p.Local, p.Stride, residues)),
        ], tol32: 1e-5);
    }

    [Fact]
    public void HeterogeneousCoversEverythingHomogeneousOneOverS()
    {
        var hetero = S2Pattern.LocalStride(4, 512, 16, 4, 4);
        Assert.Equal(1.0, hetero.Coverage());
        Assert.Equal(1.0, hetero.DistantCoverage());
        Assert.Empty(S2Pattern.Warnings(hetero));
        // distant block pairs (i − j ≥ ℓ): with s | the count of columns per row, exactly 1/s are on the shared stride
        var homo = S2Pattern.LocalStride(4, 16 * 4 * 8 + 16 * 4, 16, 4, 4, homoHead: true);
        long pairs = 0, hits = 0;
        for (int i = 0; i < homo.Blocks; i++)
            for (int j = 0; j + homo.LocalBlocks <= i; j++) { pairs++; if (homo.Allows(0, i, j)) hits++; }
        Assert.Equal((double)hits / pairs, homo.DistantCoverage(), 12);
        Assert.InRange(homo.DistantCoverage(), 0.25 - 0.03, 0.25 + 0.03);
        Assert.NotEmpty(S2Pattern.Warnings(homo));
        // a full residue cycle: columns j = 0 … s·m − 1 below the window, exactly 1/s
        var exact = S2Pattern.LocalStride(1, 8 * 2, 1, 2, 4, homoHead: true);   // one head, b = 1
        int rows = 0, seen = 0;
        for (int j = 0; j < 4; j++) { rows++; if (exact.Allows(0, 15, j)) seen++; }
        Assert.Equal(0.25, (double)seen / rows);
    }

    [Fact]
    public void EveryRowHasAKeyAndNoFutureBlock()
    {
        using var scope = NewDisposeScope();
        var mask = S2Pattern.LocalStride(3, 70, 8, 2, 5, denseHeads: 1);
        var dense = mask.ToDense(70);
        Assert.True(dense.any(-1).all().item<bool>());                                     // every row reads ≥ 1 key
        Assert.False((dense & AttentionMasks.Causal(70, 70).logical_not()).any().item<bool>());   // no future key
        Assert.Throws<ArgumentException>(() => new BlockMask(new bool[1, 2, 2], 4, 1));    // diagonal missing → NaN row
        // without token causality the diagonal block leaks the future
        Assert.True((mask.ToDense(70, causal: false) & AttentionMasks.Causal(70, 70).logical_not()).any().item<bool>());
    }

    [Fact]
    public void KvTokensPerHeadEqualsColumnsUsedAndAreEfficient()
    {
        using var scope = NewDisposeScope();
        int t = 157;
        var mask = S2Pattern.LocalStride(4, t, 8, 3, 4);
        var dense = mask.ToDense(t);
        var kv = mask.KvTokensPerHead(t);
        for (int h = 0; h < 4; h++)
        {
            Assert.Equal(dense[h, t - 1].sum().item<long>(), kv[h]);
            for (int p = 0; p < t; p++) Assert.Equal(dense[h, p].sum().item<long>(), mask.AttendedTokens(h, p));
        }
        Assert.Empty(mask.KvInefficiencies());
        // a relative stride (i − j) mod s = 0 breaks KV-cache efficiency
        int nb = 12, s = 3;
        var rel = new bool[1, nb, nb];
        for (int i = 0; i < nb; i++) for (int j = 0; j <= i; j++) rel[0, i, j] = i - j < 2 || (i - j) % s == 0;
        Assert.NotEmpty(new BlockMask(rel, 4, 2).KvInefficiencies());
    }

    [Fact]
    public void DensityCountsTheDenseMask()
    {
        using var scope = NewDisposeScope();
        int t = 100;
        var mask = S2Pattern.LocalStride(3, t, 8, 2, 4, denseHeads: 1);
        var dense = mask.ToDense(t);
        for (int h = 0; h < 3; h++)
            Assert.Equal(dense[h].sum().item<long>() / (t * (t + 1) / 2.0), mask.Density(h, t), 12);
        Assert.Equal(1.0, mask.Density(2, t), 12);                                          // the dense head
    }

    [Fact]
    public void LseMergeOfPartitionsEqualsMonolithic()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv(2, 23, 2, 2, 4, 3);
        using var full = ReferenceAttention.Softmax(q, k, v, causal: true);
        var parts = new List<(Tensor, Tensor)>();
        foreach (var (start, len) in new[] { (0, 7), (7, 9), (16, 7) })
        {
            var keep = torch.zeros(23, 23, dtype: ScalarType.Bool);
            keep.narrow(1, start, len).fill_(true);
            var r = ReferenceAttention.Softmax(q, k, v, causal: true, mask: keep);
            parts.Add((r.Output, r.LogSumExp));
        }
        var (o, l) = LseMerge.Combine(parts);
        Close(o, full.Output, 1e-12, "merged output");
        Close(l, full.LogSumExp, 1e-12, "merged LSE");
    }

    [Fact]
    public void BadShapesNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var mask = S2Pattern.LocalStride(2, 16, 4, 2, 2);
        var (q, k, v) = Qkv(1, 16, 2, 2, 4, 4);
        Assert.Equal("mask", Assert.Throws<ArgumentException>(() => BlockSparseAttention.Forward(q, k, v, S2Pattern.LocalStride(3, 16, 4, 2, 2))).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => S2Naive.Forward(q.reshape(16, 2, 4), k, v, mask)).ParamName);
        var (q2, k2, v2) = Qkv(1, 20, 2, 2, 4, 4);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => BlockSparseAttention.Forward(q2, k2, v2, mask)).ParamName);
        Assert.Equal("residues", Assert.Throws<ArgumentException>(() => StridedLocalAttention.Forward(q, k, v, 4, 2, 2, new int?[] { 0 })).ParamName);
        Assert.Equal("residues", Assert.Throws<ArgumentException>(() => StridedLocalAttention.Forward(q, k, v, 4, 2, 2, new int?[] { 0, 2 })).ParamName);
        Assert.Equal("block", Assert.Throws<ArgumentException>(() => StridedLocalAttention.Forward(q, k, v, 0, 2, 2, new int?[] { 0, 1 })).ParamName);
        Assert.Equal("denseHeads", Assert.Throws<ArgumentException>(() => S2Pattern.LocalStride(2, 16, denseHeads: 3)).ParamName);
        Assert.Equal("seqLen", Assert.Throws<ArgumentException>(() => mask.ToDense(17)).ParamName);
    }

    [Fact]
    public void FormsDoNotLeak()
    {
        var mask = S2Pattern.LocalStride(2, 40, 8, 2, 2);
        var (q, k, v) = Qkv(1, 40, 2, 2, 4, 4);
        LeakCheck.AssertNoLeak(() => { var (o, l) = BlockSparseAttention.Forward(q, k, v, mask); o.Dispose(); l.Dispose(); }, "BlockSparseAttention");
        LeakCheck.AssertNoLeak(() => { var (o, l) = StridedLocalAttention.Forward(q, k, v, 8, 2, 2, S2Pattern.Residues(2, 2)); o.Dispose(); l.Dispose(); },
            "StridedLocalAttention");
        LeakCheck.AssertNoLeak(() => S2Naive.Forward(q, k, v, mask).Dispose(), "S2Naive");
    }
}
