using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Tests.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>Grouped-KV head maps (issue 13): GQA's mean-pool conversion and DHA's fusion, each against MHA or a weight-space reference.</summary>
public class GroupedKvAttentionTests
{
    const int D = 16, H = 4;

    static CausalSelfAttention Mha(int seed, PositionKind positions = PositionKind.Rope)
    {
        torch.manual_seed(seed);
        var mha = new CausalSelfAttention(D, H, positions);
        mha.to(ScalarType.Float64);
        using (torch.no_grad()) mha.Qkv.bias!.copy_(torch.randn(mha.Qkv.bias!.shape, dtype: ScalarType.Float64) * 0.3);   // biases fuse too
        return mha;
    }

    static Tensor X(int seed, long b = 2, long t = 9) => torch.randn(new[] { b, t, (long)D }, dtype: ScalarType.Float64, generator: new Generator((ulong)seed));

    /// <summary>The weight-space reference: an MHA whose K/V heads of each group are replaced by the group's mean (weights and bias).</summary>
    static CausalSelfAttention MeanPooledMha(CausalSelfAttention mha, int[] kGroups, int[] vGroups)
    {
        var copy = Mha(0, mha.PositionKind);
        using var _ = torch.no_grad();
        copy.Qkv.weight!.copy_(mha.Qkv.weight!);
        copy.Qkv.bias!.copy_(mha.Qkv.bias!);
        copy.Proj.weight!.copy_(mha.Proj.weight!);
        copy.Proj.bias!.copy_(mha.Proj.bias!);
        int dh = D / H;
        void Pool(int part, int[] groups)                                               // part 1 = K rows, 2 = V rows
        {
            foreach (var g in groups.Distinct())
            {
                var members = Enumerable.Range(0, H).Where(h => groups[h] == g).ToArray();
                Tensor Rows(Tensor t, int h) => t.narrow(0, (part * H + h) * dh, dh);
                var meanW = torch.stack(members.Select(h => Rows(mha.Qkv.weight!, h)).ToArray()).mean(new long[] { 0 });
                var meanB = torch.stack(members.Select(h => Rows(mha.Qkv.bias!, h)).ToArray()).mean(new long[] { 0 });
                foreach (var h in members) { Rows(copy.Qkv.weight!, h).copy_(meanW); Rows(copy.Qkv.bias!, h).copy_(meanB); }
            }
        }
        Pool(1, kGroups);
        Pool(2, vGroups);
        return copy;
    }

    [Theory]
    [InlineData(PositionKind.Rope)]
    [InlineData(PositionKind.None)]
    public void IdentityMapsAreMhaExactly(PositionKind positions)
    {
        using var scope = NewDisposeScope();
        using var mha = Mha(1, positions);
        using var gqa = GroupedKvAttention.FromMha(mha, KvHeadMap.Identity(H), KvHeadMap.Identity(H));
        var x = X(2);
        Assert.True(TensorAssert.Same(gqa.call(x), mha.call(x)), "identity fusion at S = H differs from MHA");
        Assert.False(gqa.KeyFusion.requires_grad || gqa.ValueFusion.requires_grad, "GQA's fusion stays fixed through to(float64)");
        Assert.Equal(ScalarType.Float64, gqa.KeyFusion.dtype);
    }

    [Theory]
    [InlineData(new[] { 0, 0, 1, 1 }, new[] { 0, 0, 1, 1 })]      // GQA, G = 2
    [InlineData(new[] { 0, 0, 0, 0 }, new[] { 0, 0, 0, 0 })]      // MQA, G = 1
    [InlineData(new[] { 0, 1, 0, 1 }, new[] { 0, 0, 1, 2 })]      // DHA-style: non-contiguous, K and V grouped apart
    public void MeanPoolEqualsTheWeightSpaceConversion(int[] kGroups, int[] vGroups)
    {
        using var scope = NewDisposeScope();
        using var mha = Mha(3);
        using var grouped = GroupedKvAttention.FromMha(mha, KvHeadMap.FromGroups(kGroups), KvHeadMap.FromGroups(vGroups));
        using var reference = MeanPooledMha(mha, kGroups, vGroups);
        var x = X(4);
        AssertClose.Tensors(grouped.call(x), reference.call(x), 1e-10, 1e-10, "grouped KV vs mean-pooled MHA weights");
        Assert.True(grouped.call(x).sub(mha.call(x)).abs().max().item<double>() > 1e-4, "pooling distinct heads must change the layer");
    }

    [Fact]
    public void MeanPoolIsGqasContiguousGroups()
    {
        var map = KvHeadMap.MeanPool(8, 2);
        Assert.Equal(new[] { 0, 0, 0, 0, 1, 1, 1, 1 }, map.SlotOfHead);
        Assert.Equal(0.25, map.Fusion[1, 5]);
        Assert.Equal(0.0, map.Fusion[0, 5]);
    }

    [Fact]
    public void GroupsOfIdenticalHeadsCollapseWithNoChange()
    {
        using var scope = NewDisposeScope();
        using var mha = Mha(5);
        int[] groups = [0, 1, 0, 1];
        int dh = D / H;
        using (torch.no_grad())
            foreach (int part in new[] { 1, 2 })                                          // make head 2 = head 0 and head 3 = head 1 in K and V
                foreach (var (dst, src) in new[] { (2, 0), (3, 1) })
                {
                    mha.Qkv.weight!.narrow(0, (part * H + dst) * dh, dh).copy_(mha.Qkv.weight!.narrow(0, (part * H + src) * dh, dh));
                    mha.Qkv.bias!.narrow(0, (part * H + dst) * dh, dh).copy_(mha.Qkv.bias!.narrow(0, (part * H + src) * dh, dh));
                }
        var collapsed = KvHeadMap.Collapse(KvHeadMap.Decoupled(groups).Fusion, groups);
        using var grouped = GroupedKvAttention.FromMha(mha, collapsed, collapsed);
        var x = X(6);
        AssertClose.Tensors(grouped.call(x), mha.call(x), 1e-10, 1e-10, "collapsed identical heads");
        Assert.Equal(8L * 2 * dh * 2, grouped.KvBytesPerToken(ScalarType.Float64));      // (2 K + 2 V cached heads) · Dh · 8 bytes
    }

    [Fact]
    public void DecoupledFusionStartsAtMhaAndTrainsOnlyInsideGroups()
    {
        using var scope = NewDisposeScope();
        using var mha = Mha(7);
        int[] groups = [0, 1, 1, 0];
        var map = KvHeadMap.Decoupled(groups);
        using var dha = GroupedKvAttention.FromMha(mha, map, map, trainableFusion: true);
        var x = X(8);
        var y = dha.call(x);
        Assert.True(TensorAssert.Same(y, mha.call(x)), "ω = I must reproduce MHA exactly");
        y.pow(2).sum().backward();
        var grad = dha.KeyFusion.grad!;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < H; j++)
                if (groups[i] != groups[j]) Assert.Equal(0.0, grad[i, j].item<double>());
        Assert.True(grad[1, 2].abs().item<double>() > 0, "in-group ω gets a gradient");
        Assert.True(mha.Qkv.weight!.grad is null);

        var omega = KvHeadMap.Collapse(dha.KeyFusionValues(), groups);                   // ω = I collapses to the group mean
        var pool = KvHeadMap.FromGroups(groups);
        Assert.Equal(pool.SlotOfHead, omega.SlotOfHead);
        for (int g = 0; g < 2; g++) for (int h = 0; h < H; h++) Assert.Equal(pool.Fusion[g, h], omega.Fusion[g, h], 15);
    }

    [Fact]
    public void FusedWeightsGiveTheCachedKeys()
    {
        using var scope = NewDisposeScope();
        using var mha = Mha(9);
        using (torch.no_grad()) mha.Qkv.bias!.zero_();
        var map = new KvHeadMap([0, 1, 1, 0], new double[,] { { 0.7, 0, 0, 0.3 }, { 0, 0.2, 0.8, 0 } });
        using var layer = GroupedKvAttention.FromMha(mha, map, map);
        var x = X(10);
        var (_, k, _) = layer.Project(x);                                                  // k̃ [B, T, S, D]
        var expected = torch.einsum("btd,sdk->btsk", x, layer.FusedKeyWeights());         // x W̃_K
        AssertClose.Tensors(k, expected, 1e-12, 1e-12, "x W̃_K vs the fused projected keys");
    }

    [Fact]
    public void DecodeEqualsForwardAndCachesOnlyTheGroups()
    {
        using var scope = NewDisposeScope();
        using var mha = Mha(11);
        using var gqa = GroupedKvAttention.FromMha(mha, KvHeadMap.MeanPool(H, 2), KvHeadMap.FromGroups([0, 1, 2, 2]));
        var x = X(12, b: 2, t: 7);
        using var _ = torch.no_grad();
        var full = gqa.call(x);
        using var state = gqa.NewState(2, ScalarType.Float64, CPU);
        var steps = Enumerable.Range(0, 7).Select(t => gqa.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, 1e-10, 1e-10, "grouped decode vs forward");
        long perToken = (2 + 3) * (D / H) * 8L;                                            // S_K = 2, S_V = 3 heads of Dh float64
        Assert.Equal(perToken, gqa.KvBytesPerToken(ScalarType.Float64));
        Assert.Equal(7 * 2 * perToken, state.Bytes);
        using var mhaState = mha.NewState(2, ScalarType.Float64, CPU);
        foreach (var t in Enumerable.Range(0, 7)) mha.Step(x.select(1, t), mhaState);
        Assert.Equal(7 * 2 * 2 * H * (D / H) * 8L, mhaState.Bytes);                        // MHA caches H K and H V heads
    }

    [Fact]
    public void ConvertedTinyGptAtIdentityEqualsMhaAndDecodes()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(13);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: D, Heads: H, Positions: PositionKind.Rope, VocabSize: 11));
        var x = torch.randint(0, 11, new long[] { 2, 8 });
        using var same = GroupedKvAttention.Convert(model, _ => (KvHeadMap.Identity(H), KvHeadMap.Identity(H)));
        Assert.True(TensorAssert.Same(same.call(x), model.call(x)), "identity-converted TinyGpt differs from the MHA");
        using var gqa = GroupedKvAttention.Convert(model, l => (KvHeadMap.MeanPool(H, l + 1), KvHeadMap.MeanPool(H, 2)));
        using var _ = torch.no_grad();
        var full = gqa.call(x);
        using var state = gqa.NewState(2);
        var steps = Enumerable.Range(0, 8).Select(t => gqa.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, 1e-5, 1e-5, "converted GQA TinyGpt decode vs forward");
        Assert.Equal(8 * 2 * ((1 + 2) + (2 + 2)) * (D / H) * 4L, state.Bytes);           // layer 0: 1 K + 2 V heads, layer 1: 2 + 2, float32
    }

    [Fact]
    public void BadMapsThrowNamingTheArgument()
    {
        Assert.Equal("groups", Assert.Throws<ArgumentException>(() => KvHeadMap.MeanPool(6, 4)).ParamName);
        Assert.Equal("slotOfHead", Assert.Throws<ArgumentException>(() => KvHeadMap.FromGroups([0, 2])).ParamName);
        Assert.Equal("fusion", Assert.Throws<ArgumentException>(() => new KvHeadMap([0, 0], new double[,] { { 1, 0, 0 } })).ParamName);
        Assert.Equal("fusion", Assert.Throws<ArgumentException>(() => new KvHeadMap([0, 0], new double[,] { { 1, 1 } }, new[,] { { true, false } })).ParamName);
        Assert.Equal("omega", Assert.Throws<ArgumentException>(() => KvHeadMap.Collapse(new double[3, 3], [0, 0])).ParamName);
        Assert.Equal("keys", Assert.Throws<ArgumentException>(() => new GroupedKvAttention(D, H, KvHeadMap.Identity(2), KvHeadMap.Identity(H))).ParamName);
        Assert.Equal("positions", Assert.Throws<ArgumentException>(
            () => new GroupedKvAttention(D, H, KvHeadMap.Identity(H), KvHeadMap.Identity(H), PositionKind.Alibi)).ParamName);
        using var gated = new CausalSelfAttention(D, H, kind: AttentionKind.GatedG1);
        Assert.Equal("mha", Assert.Throws<ArgumentException>(() => GroupedKvAttention.FromMha(gated, KvHeadMap.Identity(H), KvHeadMap.Identity(H))).ParamName);
    }
}
