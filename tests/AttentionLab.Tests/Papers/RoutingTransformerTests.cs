using AttentionLab.Core;
using AttentionLab.Papers.RoutingTransformer;
using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>Routing attention: gather form vs the dense naive twin, the spec's invariants, the causal leak, k-means, bad inputs.</summary>
public class RoutingTransformerTests
{
    /// <summary>B, T, H, D, Dv, C, w.</summary>
    public static TheoryData<int, int, int, int, int, int, int> Shapes => new()
    {
        { 1, 1, 1, 4, 3, 1, 1 },      // T = 1
        { 2, 7, 2, 3, 5, 3, 2 },      // odd T, odd D, C·w < T (unselected tokens)
        { 1, 13, 3, 5, 2, 4, 5 },     // C·w > T (overlapping clusters), D not a power of two
        { 2, 16, 1, 6, 4, 4, 4 },     // C = w = √T
        { 1, 9, 2, 1, 1, 2, 9 },      // D = Dv = 1, w = T
    };

    static Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64);

    static Tensor Scores(Tensor x, Tensor mu) =>                                          // [B, T, H, D], [H, C, D] → [B, H, T, C]
        x.permute(0, 2, 1, 3).matmul(mu.transpose(1, 2).unsqueeze(0));

    [Theory]
    [MemberData(nameof(Shapes))]
    public void GatherFormAgreesWithTheNaiveTwinOnOutputsAndGradients(int b, int t, int h, int d, int dv, int c, int w)
    {
        torch.manual_seed(t * 31 + d);
        using var scope = NewDisposeScope();
        foreach (bool shared in new[] { true, false })
        foreach (bool causal in new[] { true, false })
        {
            var q = R(b, t, h, d).requires_grad_();
            var k = shared ? q : R(b, t, h, d).requires_grad_();
            var v = R(b, t, h, dv).requires_grad_();
            var mu = R(h, c, d);
            var qs = Scores(q.detach(), mu);
            var ks = shared ? qs : Scores(k.detach(), mu);
            var fast = Routing.Attend(q, k, v, qs, ks, w, causal);
            var naive = RoutingNaive.Attend(q, k, v, qs, ks, w, causal);
            Assert.Equal(new long[] { b, t, h, dv }, fast.shape);
            string what = $"shared={shared} causal={causal}";
            AssertClose.Tensors(fast, naive, atol: 1e-10, rtol: 1e-10, what: what);
            var g = R(b, t, h, dv);
            var inputs = shared ? new[] { q, v } : new[] { q, k, v };
            var gf = torch.autograd.grad(new[] { (fast * g).sum() }, inputs);
            var gn = torch.autograd.grad(new[] { (naive * g).sum() }, inputs);
            for (int i = 0; i < gf.Count; i++) AssertClose.Tensors(gf[i], gn[i], atol: 1e-10, rtol: 1e-10, what: $"grad {i} {what}");
        }
    }

    [Fact]
    public void OneClusterHoldingEveryTokenIsFullCausalAttention()
    {
        torch.manual_seed(1);
        using var scope = NewDisposeScope();
        var (q, k, v) = (R(2, 11, 3, 5), R(2, 11, 3, 5), R(2, 11, 3, 4));
        var s = R(2, 3, 11, 1);
        using var full = ReferenceAttention.Softmax(q, k, v, causal: true);
        AssertClose.Tensors(Routing.Attend(q, k, v, s, s, 11, causal: true, countEpsilon: 0), full.Output, atol: 1e-6, rtol: 1e-6, what: "C = 1, w = n");
        AssertClose.Tensors(Routing.Attend(q, k, v, s, s, 11, causal: true), full.Output / 1.01, atol: 1e-6, rtol: 1e-6, what: "official ÷ (1 + 1e-2)");
    }

    [Fact]
    public void EachClusterHoldsExactlyWSortedTokens()
    {
        torch.manual_seed(2);
        using var scope = NewDisposeScope();
        var s = R(2, 3, 20, 5);
        var idx = Routing.TopWindow(s, 6);
        Assert.Equal(new long[] { 2, 3, 5, 6 }, idx.shape);
        Assert.True((idx.diff(dim: -1) > 0).all().item<bool>(), "indices sorted and distinct per cluster");
        Assert.True((Routing.Membership(s, 6, balanced: true).sum(-1) == 6).all().item<bool>());
        Assert.True((Routing.Membership(s, 6, balanced: true) == RoutingNaive.Membership(s, 6)).all().item<bool>());
        Assert.True((Routing.Membership(s, 6, balanced: false).sum(2) == 1).all().item<bool>(), "nearest: one cluster per token");
    }

    [Fact]
    public void ScatterAverageWeightsAreRightOnAHandBuiltExample()
    {
        using var scope = NewDisposeScope();
        // T = 3, C = 2, w = 2. Cluster 0 prefers tokens {0, 1}, cluster 1 prefers {1, 2}: token 1 sits in both.
        var s = torch.tensor(new double[] { 3, 0, 2, 2, 0, 3 }, new long[] { 1, 1, 3, 2 });
        var q = torch.zeros(1, 3, 1, 1, dtype: ScalarType.Float64);                       // equal scores: uniform softmax
        var v = torch.tensor(new double[] { 1, 10, 100 }, new long[] { 1, 3, 1, 1 });
        var y = Routing.Attend(q, q, v, s, s, 2, causal: true, countEpsilon: 0).flatten();
        // token 0: cluster 0 → v0 = 1; token 1: (mean(v0, v1) + v1) / 2 = (5.5 + 10) / 2; token 2: cluster 1 → mean(v1, v2) = 55
        AssertClose.Tensors(y, torch.tensor(new double[] { 1, 7.75, 55 }), atol: 1e-12, rtol: 1e-12, what: "scatter-average");
        var official = Routing.Attend(q, q, v, s, s, 2, causal: true).flatten();
        AssertClose.Tensors(official, torch.tensor(new double[] { 1 / 1.01, 15.5 / 2.01, 55 / 1.01 }), atol: 1e-12, rtol: 1e-12, what: "÷ (count + 1e-2)");
        var none = Routing.Attend(q, q, v, s, s, 1, causal: true).flatten();               // w = 1: token 1 selected by nobody
        Assert.Equal(0.0, none[1].item<double>());
    }

    [Fact]
    public void NoAttentionWeightFallsOnAFuturePosition()
    {
        torch.manual_seed(3);
        using var scope = NewDisposeScope();
        var s = R(2, 2, 16, 4);
        var t = torch.ones(16, 16, dtype: ScalarType.Bool).triu(1);
        foreach (bool balanced in new[] { true, false })
            Assert.False((Routing.Mask(s, s, 4, balanced) & t).any().item<bool>(), $"balanced={balanced}");
    }

    [Fact]
    public void NearestRoutingIsStrictlyCausalAndBalancedRoutingLeaksTheFuture()
    {
        Assert.Equal(0.0, CausalityProbe.FutureLeak(balanced: false));
        Assert.True(CausalityProbe.FutureLeak(balanced: true) > 1e-3, "balanced top-w: the future moved a past output");
    }

    [Fact]
    public void NearestFormEqualsItsPerClusterNaiveTwin()
    {
        torch.manual_seed(4);
        using var scope = NewDisposeScope();
        var (q, v) = (R(2, 10, 2, 3), R(2, 10, 2, 4));
        var s = Scores(q, R(2, 3, 3));
        var member = Routing.Membership(s, 1, balanced: false);
        var y = Routing.AttendNearest(q, q, v, s, s, countEpsilon: 0);
        for (long c = 0; c < 3; c++)
        {
            var keep = member.select(2, c).unsqueeze(-1) & member.select(2, c).unsqueeze(-2);
            using var r = ReferenceAttention.Softmax(q, q, v, causal: true, mask: keep);
            var rows = member.select(2, c).permute(0, 2, 1).unsqueeze(-1);
            AssertClose.Tensors(y * rows, r.Output * rows, atol: 1e-12, rtol: 1e-12, what: $"cluster {c}");
        }
    }

    [Fact]
    public void EmaKMeansFindsAFourComponentGaussianMixture()
    {
        using var scope = NewDisposeScope();
        var result = KMeansDemo.Run(new KMeansDemo.Config(Updates: 200, Decay: 0.9, Seed: 0));
        Assert.True(result.FinalError < 0.1, $"centroid error {result.FinalError:F3} after 200 updates");
    }

    [Fact]
    public void MixerRunsTrainsCentroidsAndDoesNotLeak()
    {
        torch.manual_seed(5);
        using var attn = new RoutingAttention(16, 4, clusters: 3, window: 4, localHeads: 2, localWindow: 3);
        using var x = torch.randn(2, 10, 16);
        using (var before = attn.KMeans.Means.clone())
        using (var y = attn.call(x))
        {
            Assert.Equal(new long[] { 2, 10, 16 }, y.shape);
            Assert.True(attn.KMeans.Initialized);
            Assert.False(attn.KMeans.Means.allclose(before), "EMA moved the centroids");
            Assert.NotNull(attn.AuxLoss);
        }
        attn.eval();
        using (var m = attn.RoutingMask(x)) Assert.Equal(new long[] { 2, 2, 10, 10 }, m.shape);
        LeakCheck.AssertNoLeak(() => attn.call(x).Dispose(), "RoutingAttention");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheMixerIsCausalWithNearestRoutingAndLeaksWithBalancedRouting(bool balanced)
    {
        torch.manual_seed(6);
        using var scope = NewDisposeScope();
        using var attn = new RoutingAttention(16, 2, clusters: 3, window: 4, balanced: balanced, localHeads: 1, localWindow: 2);
        var x = torch.randn(1, 32, 16);
        attn.call(x);                                                                     // training forward: k-means start + one EMA step
        attn.eval();
        var x2 = x.clone();
        x2.narrow(1, 12, 20).copy_(torch.randn(1, 20, 16));                               // new future after position 11
        double change = (attn.call(x) - attn.call(x2)).narrow(1, 0, 12).abs().max().item<float>();
        if (balanced) Assert.True(change > 1e-5, $"balanced: past outputs moved by {change:E2}");
        else Assert.Equal(0.0, change);
        var y = attn.call(x);
        y.sum().backward();
        Assert.True(attn.parameters().All(p => p.grad is not null && p.grad.abs().sum().item<float>() > 0), "every projection gets a gradient");
    }

    [Fact]
    public void BadShapesThrowArgumentExceptionsNamingTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, v) = (R(1, 6, 2, 3), R(1, 6, 2, 4));
        var s = R(1, 2, 6, 2);
        Assert.Equal("window", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, s, s, 7)).ParamName);
        Assert.Equal("window", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, s, s, 0)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => Routing.Attend(q.flatten(2), q, v, s, s, 2)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => Routing.Attend(q, R(1, 5, 2, 3), v, s, s, 2)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, R(1, 6, 3, 4), s, s, 2)).ParamName);
        Assert.Equal("qScores", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, R(1, 6, 2, 2), s, 2)).ParamName);
        Assert.Equal("kScores", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, s, R(1, 2, 6, 3), 2)).ParamName);
        using var km = new OnlineKMeans(2, 3, 3);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => km.Assign(R(1, 6, 3, 3))).ParamName);
        Assert.Equal("idx", Assert.Throws<ArgumentException>(() => km.Update(q, torch.zeros(1, 2, 5, dtype: ScalarType.Int64))).ParamName);
        Assert.Equal("localHeads", Assert.Throws<ArgumentException>(() => new RoutingAttention(8, 2, 2, 2, localHeads: 3)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => new RoutingAttention(8, 3, 2, 2)).ParamName);
    }
}
