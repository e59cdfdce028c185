using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

public class AttentionMasksTests
{
    /// <summary>Checks every entry of a [Tq, Tk] mask against keep(p_i, j) with p_i = i + (Tk − Tq), the end-aligned position.</summary>
    static void AssertIsLoop(Tensor mask, long tq, long tk, Func<long, long, bool> keep, string what)
    {
        Assert.Equal(ScalarType.Bool, mask.dtype);
        Assert.Equal(new[] { tq, tk }, mask.shape);
        var got = mask.data<bool>().ToArray();
        for (long i = 0; i < tq; i++)
        for (long j = 0; j < tk; j++)
        {
            long p = i + (tk - tq);
            Assert.True(keep(p, j) == got[i * tk + j], $"{what}: entry (i={i}, j={j}) is {got[i * tk + j]}, the definition says {keep(p, j)}");
        }
    }

    public static TheoryData<long, long> Sizes => new() { { 1, 1 }, { 7, 7 }, { 1, 9 }, { 5, 13 }, { 16, 16 } };

    [Theory, MemberData(nameof(Sizes))]
    public void CausalWindowAndSinkWindowMatchTheirDefinitions(long tq, long tk)
    {
        using var scope = NewDisposeScope();
        AssertIsLoop(AttentionMasks.Causal(tq, tk), tq, tk, (p, j) => j <= p, "causal");
        Assert.True(TensorAssert.Same(AttentionMasks.Causal(tq, tk), ReferenceAttention.CausalKeepMask(tq, tk)));
        foreach (long w in new long[] { 1, 3, 20 })
        {
            AssertIsLoop(AttentionMasks.SlidingWindow(tq, tk, w), tq, tk, (p, j) => j <= p && p - j < w, $"window {w}");
            foreach (long s in new long[] { 0, 2, 4 })
                AssertIsLoop(AttentionMasks.SinkWindow(tq, tk, s, w), tq, tk, (p, j) => j <= p && (j < s || p - j < w), $"sinks {s}, window {w}");
            Assert.True(TensorAssert.Same(AttentionMasks.SinkWindow(tq, tk, 0, w), AttentionMasks.SlidingWindow(tq, tk, w)));
        }
    }

    [Theory, MemberData(nameof(Sizes))]
    public void SparseTransformerPatternsMatchTheirDefinitions(long tq, long tk)
    {
        using var scope = NewDisposeScope();
        foreach (var (l, s) in new (long, long)[] { (1, 1), (2, 3), (3, 4), (4, 2) })
            AssertIsLoop(AttentionMasks.Strided(tq, tk, l, s), tq, tk, (p, j) => j <= p && (p - j < l || (p - j) % s == 0), $"strided l={l} s={s}");
        foreach (var (block, c) in new (long, long)[] { (1, 0), (1, 1), (3, 1), (4, 2), (4, 0), (5, 5) })
            AssertIsLoop(AttentionMasks.Fixed(tq, tk, block, c), tq, tk, (p, j) => j <= p && (j / block == p / block || j % block >= block - c),
                $"fixed ℓ={block} c={c}");
    }

    [Theory, MemberData(nameof(Sizes))]
    public void BlockLocalVerticalStrideMatchesItsDefinition(long tq, long tk)
    {
        using var scope = NewDisposeScope();
        foreach (var (beta, local, stride) in new (long, long, long)[] { (1, 1, 1), (2, 1, 3), (3, 2, 2), (4, 1, 4) })
        for (long r = 0; r < stride; r++)
        foreach (bool causal in new[] { true, false })
        {
            bool Keep(long p, long j)
            {
                long gap = p / beta - j / beta;
                bool isLocal = causal ? gap >= 0 && gap < local : Math.Abs(gap) < local;
                bool keep = isLocal || (j / beta) % stride == r;
                return causal ? keep && j <= p : keep;
            }
            AssertIsLoop(AttentionMasks.BlockLocalVerticalStride(tq, tk, beta, local, stride, r, causal), tq, tk, Keep,
                $"β={beta} L={local} s={stride} r={r} causal={causal}");
        }
    }

    [Fact]
    public void PerHeadStackUsesEachHeadsResidueAndTheHeadsTogetherCoverEveryBlock()
    {
        using var scope = NewDisposeScope();
        long tq = 6, tk = 23, beta = 3, local = 1, stride = 3;
        var stack = AttentionMasks.BlockLocalVerticalStridePerHead(tq, tk, 5, beta, local, stride);
        Assert.Equal(new[] { 5L, tq, tk }, stack.shape);
        for (int h = 0; h < 5; h++)
            Assert.True(TensorAssert.Same(stack[h], AttentionMasks.BlockLocalVerticalStride(tq, tk, beta, local, stride, h % stride)), $"head {h}");
        // Residues 0..s−1 over the heads: every visible key block is some head's vertical column, so the union is causal.
        Assert.True(TensorAssert.Same(stack.any(0), AttentionMasks.Causal(tq, tk)));

        var custom = AttentionMasks.BlockLocalVerticalStridePerHead(tq, tk, 2, beta, local, stride, residues: new long[] { 2, 2 });
        Assert.True(TensorAssert.Same(custom[0], AttentionMasks.BlockLocalVerticalStride(tq, tk, beta, local, stride, 2)));
        Assert.True(TensorAssert.Same(custom[1], custom[0]));
    }

    [Fact]
    public void DensityCountsKeptEntries()
    {
        using var scope = NewDisposeScope();
        for (long n = 1; n <= 9; n += 4)
            Assert.Equal(n * (n + 1) / 2.0 / (n * n), AttentionMasks.Density(AttentionMasks.Causal(n, n)), 12);
        var window = AttentionMasks.SlidingWindow(5, 12, 3);
        Assert.Equal(window.data<bool>().ToArray().Count(x => x) / 60.0, AttentionMasks.Density(window), 12);
        var stack = AttentionMasks.BlockLocalVerticalStridePerHead(4, 8, 2, 2, 1, 2);
        Assert.Equal(stack.data<bool>().ToArray().Count(x => x) / 64.0, AttentionMasks.Density(stack), 12);
    }

    [Fact]
    public void BadArgumentsNameTheArgument()
    {
        void Throws(string name, Action call) => Assert.Equal(name, Assert.ThrowsAny<ArgumentException>(call).ParamName);
        Throws("tq", () => AttentionMasks.Causal(5, 4));
        Throws("tq", () => AttentionMasks.Causal(0, 4));
        Throws("tk", () => AttentionMasks.SlidingWindow(1, 0, 2));
        Throws("window", () => AttentionMasks.SlidingWindow(4, 4, 0));
        Throws("window", () => AttentionMasks.SinkWindow(4, 4, 2, -1));
        Throws("sinks", () => AttentionMasks.SinkWindow(4, 4, -1, 2));
        Throws("local", () => AttentionMasks.Strided(4, 4, 0, 2));
        Throws("stride", () => AttentionMasks.Strided(4, 4, 2, 0));
        Throws("block", () => AttentionMasks.Fixed(4, 4, 0, 0));
        Throws("summary", () => AttentionMasks.Fixed(4, 4, 2, 3));
        Throws("blockSize", () => AttentionMasks.BlockLocalVerticalStride(4, 4, 0, 1, 2, 0));
        Throws("localBlocks", () => AttentionMasks.BlockLocalVerticalStride(4, 4, 2, 0, 2, 0));
        Throws("residue", () => AttentionMasks.BlockLocalVerticalStride(4, 4, 2, 1, 2, 2));
        Throws("heads", () => AttentionMasks.BlockLocalVerticalStridePerHead(4, 4, 0, 2, 1, 2));
        Throws("residues", () => AttentionMasks.BlockLocalVerticalStridePerHead(4, 4, 2, 2, 1, 2, residues: new long[] { 0 }));
        Throws("residues", () => AttentionMasks.BlockLocalVerticalStridePerHead(4, 4, 2, 2, 1, 2, residues: new long[] { 0, 5 }));
        using var scope = NewDisposeScope();
        Throws("mask", () => AttentionMasks.Density(torch.ones(3, 3)));
    }
}
