using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Papers.VAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>The real caches: contiguous slots vs the paged pool (gather and block loop) vs the naive per-sequence twin.</summary>
public class VAttentionTests
{
    public static TheoryData<long[], int, int, int, int, int> Shapes => new()
    {
        // lengths, Tq, Hq, Hkv, D, β
        { new long[] { 1 }, 1, 1, 1, 1, 1 },                 // one token, one everything
        { new long[] { 5, 17, 33 }, 1, 2, 2, 7, 16 },         // lengths across block edges, odd D
        { new long[] { 40, 9, 23, 64 }, 1, 4, 2, 5, 8 },      // grouped-query heads
        { new long[] { 30, 12 }, 4, 2, 1, 3, 5 },             // prefill of 4 queries, β not dividing anything
        { new long[] { 7, 7 }, 7, 2, 2, 4, 3 },               // Tq = L: full causal prefill
    };

    sealed class Caches : IDisposable
    {
        public required SlotKvCache Slots { get; init; }
        public required PagedKvCache Paged { get; init; }
        public required List<(Tensor K, Tensor V)> Exact { get; init; }
        public void Dispose() { Slots.Dispose(); Paged.Dispose(); }
    }

    static Caches Fill(long[] lengths, int hkv, int d, int beta, ScalarType dtype, int extra = 3)
    {
        var exact = lengths.Select(l => (torch.randn(l, hkv, d, dtype: dtype), torch.randn(l, hkv, d + 1, dtype: dtype))).ToList();
        var slots = new SlotKvCache(lengths.Length, (int)lengths.Max() + extra, hkv, d, d + 1, dtype: dtype);
        var paged = new PagedKvCache(lengths.Length, hkv, d, d + 1, beta, initialBlocks: 1, dtype: dtype);
        for (int b = 0; b < lengths.Length; b++)
        {
            slots.Append(b, exact[b].Item1, exact[b].Item2);
            // the paged cache gets the same tokens in two appends (exercises block boundaries and pool growth)
            long half = lengths[b] / 2;
            if (half > 0) paged.Append(b, exact[b].Item1.narrow(0, 0, half), exact[b].Item2.narrow(0, 0, half));
            paged.Append(b, exact[b].Item1.narrow(0, half, lengths[b] - half), exact[b].Item2.narrow(0, half, lengths[b] - half));
        }
        return new Caches { Slots = slots, Paged = paged, Exact = exact.Select(e => (e.Item1.unsqueeze(0), e.Item2.unsqueeze(0))).ToList() };
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ContiguousPagedAndNaiveAgreeInFloat32(long[] lengths, int tq, int hq, int hkv, int d, int beta)
    {
        torch.manual_seed(lengths.Length + tq + d);
        using var scope = NewDisposeScope();
        using var c = Fill(lengths, hkv, d, beta, float32);
        var q = torch.randn(lengths.Length, tq, hq, d);
        using var contiguous = DecodeAttention.Contiguous(c.Slots, q);
        using var gathered = DecodeAttention.PagedGather(c.Paged, q);
        var (blocks, blockLse) = DecodeAttention.PagedBlocks(c.Paged, q);
        var naive = VAttentionNaive.Decode(c.Exact, q);
        Assert.Equal(new long[] { lengths.Length, tq, hq, d + 1 }, contiguous.Output.shape);
        AssertClose.Tensors(gathered.Output, contiguous.Output, atol: 1e-6, rtol: 0, what: "paged gather vs contiguous");   // same values, same masked math
        AssertClose.Tensors(contiguous.Output, naive, atol: 1e-6, rtol: 1e-6, what: "length-masked slot vs exact-length tensor");
        AssertClose.Tensors(blocks, contiguous.Output, atol: 1e-5, rtol: 1e-5, what: "block loop vs contiguous");
        AssertClose.Tensors(blockLse, contiguous.LogSumExp, atol: 1e-5, rtol: 1e-5, what: "block loop LSE");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BlockLoopMatchesNaiveInFloat64(long[] lengths, int tq, int hq, int hkv, int d, int beta)
    {
        torch.manual_seed(100 + lengths.Length + tq + d);
        using var scope = NewDisposeScope();
        using var c = Fill(lengths, hkv, d, beta, float64);
        var q = torch.randn(lengths.Length, tq, hq, d, dtype: float64) * 3;
        var (blocks, _) = DecodeAttention.PagedBlocks(c.Paged, q);
        AssertClose.Tensors(blocks, VAttentionNaive.Decode(c.Exact, q), atol: 1e-12, rtol: 1e-12, what: "block loop vs naive");
    }

    [Fact]
    public void AReusedSlotAttendsOnlyToItsNewTokens()
    {
        torch.manual_seed(7);
        using var scope = NewDisposeScope();
        using var slots = new SlotKvCache(2, 16, 2, 4, 4);
        slots.Append(0, torch.randn(12, 2, 4) * 5, torch.randn(12, 2, 4) * 5);            // the old request: long, large values
        slots.Append(1, torch.randn(6, 2, 4), torch.randn(6, 2, 4));
        slots.Free(0);
        Assert.Equal(0, slots.Lengths[0]);
        var (k, v) = (torch.randn(3, 2, 4), torch.randn(3, 2, 4));
        slots.Append(0, k, v);
        var q = torch.randn(2, 1, 2, 4);
        using var r = DecodeAttention.Contiguous(slots, q);
        var expected = VAttentionNaive.Decode(new[] { (k.unsqueeze(0), v.unsqueeze(0)), slots.Slot(1) }, q);
        AssertClose.Tensors(r.Output, expected, atol: 1e-6, rtol: 1e-6, what: "reused slot");
        Assert.Equal(9 * slots.BytesPerToken, slots.Bytes);
        Assert.Equal(2 * 16 * slots.BytesPerToken, slots.ReservedBytes);
    }

    [Fact]
    public void MappedBytesFollowTheCeilingFormula()
    {
        using var scope = NewDisposeScope();
        using var slots = new SlotKvCache(3, 100, 1, 2, 2, pageTokens: 32);
        slots.Append(0, torch.randn(1, 1, 2), torch.randn(1, 1, 2));
        slots.Append(1, torch.randn(32, 1, 2), torch.randn(32, 1, 2));
        slots.Append(2, torch.randn(33, 1, 2), torch.randn(33, 1, 2));
        Assert.Equal((32 + 32 + 64) * slots.BytesPerToken, slots.MappedBytes);            // ⌈1/32⌉ + ⌈32/32⌉ + ⌈33/32⌉ pages
    }

    [Fact]
    public void DecodeMemoryTraceHoldsEqualOutputsAndOrderedBytes()
    {
        var steps = DecodeAttentionBench.DecodeMemory(new long[] { 10, 3, 40 }, steps: 20, blockTokens: 16, pageTokens: 32, heads: 2, dim: 8, torch.CPU);
        Assert.Equal(20, steps.Count);
        foreach (var s in steps)
        {
            Assert.True(s.MaxAbsPagedVsContiguous <= 1e-6, $"step {s.Step}: {s.MaxAbsPagedVsContiguous}");
            Assert.True(s.UsedBytes <= s.PagedAllocatedBytes && s.PagedAllocatedBytes <= s.PagedPoolBytes);
            Assert.True(s.UsedBytes <= s.VirtualMappedBytes && s.VirtualMappedBytes <= s.FullBytes);
        }
        Assert.Equal((10 + 3 + 40 + 3 * 20) * 2 * 2 * 8 * 4, steps[^1].UsedBytes);
    }

    [Fact]
    public void NoTensorLeaks()
    {
        torch.manual_seed(3);
        using var scope = NewDisposeScope();
        using var c = Fill(new long[] { 9, 20 }, 2, 4, 4, float32);
        var q = torch.randn(2, 1, 2, 4);
        LeakCheck.AssertNoLeak(() => DecodeAttention.Contiguous(c.Slots, q).Dispose(), "Contiguous");
        LeakCheck.AssertNoLeak(() => DecodeAttention.PagedGather(c.Paged, q).Dispose(), "PagedGather");
        LeakCheck.AssertNoLeak(() => { var (o, l) = DecodeAttention.PagedBlocks(c.Paged, q); o.Dispose(); l.Dispose(); }, "PagedBlocks");
        LeakCheck.AssertNoLeak(() => VAttentionNaive.Decode(c.Exact, q).Dispose(), "Naive");
    }

    [Fact]
    public void BadInputIsRejectedNamingTheArgument()
    {
        using var scope = NewDisposeScope();
        using var slots = new SlotKvCache(2, 8, 2, 4, 4);
        using var paged = new PagedKvCache(2, 2, 4, 4, 4);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => slots.Append(0, torch.randn(3, 2, 5), torch.randn(3, 2, 4))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => slots.Append(0, torch.randn(1, 3, 2, 4), torch.randn(3, 2, 4))).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => slots.Append(0, torch.randn(3, 2, 4), torch.randn(2, 2, 4))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => slots.Append(0, torch.randn(9, 2, 4), torch.randn(9, 2, 4))).ParamName);   // beyond max_ctx
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => slots.Append(0, torch.randn(3, 2, 4, dtype: float64), torch.randn(3, 2, 4))).ParamName);
        Assert.Equal("slot", Assert.Throws<ArgumentOutOfRangeException>(() => slots.Free(2)).ParamName);
        Assert.Equal("slots", Assert.Throws<ArgumentOutOfRangeException>(() => new SlotKvCache(0, 8, 2, 4, 4)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => DecodeAttention.Contiguous(slots, torch.randn(3, 1, 2, 4))).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => DecodeAttention.Contiguous(slots, torch.randn(2, 2, 4))).ParamName);
        Assert.Equal("cache", Assert.Throws<ArgumentException>(() => DecodeAttention.PagedGather(paged, torch.randn(2, 1, 2, 4))).ParamName);
        Assert.Equal("cache", Assert.Throws<ArgumentException>(() => DecodeAttention.PagedBlocks(paged, torch.randn(2, 1, 2, 4))).ParamName);
        Assert.Equal("lengths", Assert.Throws<ArgumentException>(() => DecodeAttention.LengthMask(Array.Empty<long>(), 1, 4)).ParamName);
        Assert.Equal("sequences", Assert.Throws<ArgumentException>(() =>
            VAttentionNaive.Decode(new[] { (torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4)) }, torch.randn(1, 2, 2, 4))).ParamName);
        Assert.Equal("kvHeads", Assert.Throws<ArgumentException>(() =>
            DecodeAttentionBench.Run(new[] { 8 }, new[] { 4 }, 1, 3, 2, 4, 1, 0, 1, torch.CPU)).ParamName);
    }
}
