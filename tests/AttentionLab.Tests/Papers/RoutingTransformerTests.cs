using AttentionLab.Core;
using AttentionLab.Papers.RoutingTransformer;
using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// Routing attention: the sparse forms (balanced, nearest-centroid, block-local) vs their dense twins, the spec's invariants,
/// the self-token rule, the k-means update and commitment loss, the causal leak, the mixer, bad inputs.
/// </summary>
public class RoutingTransformerTests
{
    static Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64);

    static Tensor Scores(Tensor x, Tensor mu) =>                                          // [B, T, H, D], [H, C, D] → [B, H, T, C]
        x.permute(0, 2, 1, 3).matmul(mu.transpose(1, 2).unsqueeze(0));

    /// <summary>A routing variant on the shared grid: C clusters, shared Q/K (with the self-token rule) or not, causal or not.</summary>
    public sealed record RoutingCase(int Clusters, bool Shared, bool Causal)
    {
        public override string ToString() => $"C{Clusters} {(Shared ? "shared" : "separate")} {(Causal ? "causal" : "non-causal")}";
    }

    /// <summary>
    /// Shared × causal as before; C = 2 or 5 alternates so both meet every grid shape (C·w &lt; T leaves tokens unrouted,
    /// C·w &gt; T overlaps).
    /// </summary>
    public static IEnumerable<object[]> RoutingCases() => Conformance.ShapesWith(
        new RoutingCase(2, Shared: true, Causal: true), new RoutingCase(5, Shared: true, Causal: false),
        new RoutingCase(5, Shared: false, Causal: true), new RoutingCase(2, Shared: false, Causal: false));

    delegate Tensor RoutingForm(Tensor q, Tensor k, Tensor v, Tensor qs, Tensor ks, int w, bool causal, double? self);

    /// <summary>
    /// One routing form against its dense twin: inputs q, (k), v [B, T, H, D/Dv] and random affinities (qs, (ks)) [B, H, T, C]
    /// (random normals: no membership ties, which rank (naive) and topk (fast) break differently); shared Q/K passes the same
    /// tensors as k and ks and applies the self-token rule. The affinities only decide membership: held fixed (no gradient).
    /// </summary>
    static void RoutingConforms(Shape shape, RoutingCase p, int window, RoutingForm naive, RoutingForm fast, string name)
    {
        Tensor[] Inputs(Shape s, ScalarType dtype, Generator g)
        {
            Tensor N(params long[] size) => torch.randn(size, generator: g, dtype: ScalarType.Float64).to(dtype);
            return p.Shared
                ? [N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.Dv), N(s.B, s.H, s.T, p.Clusters)]
                : [N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.Dv), N(s.B, s.H, s.T, p.Clusters), N(s.B, s.H, s.T, p.Clusters)];
        }
        double? self = p.Shared ? Routing.SelfTokenScore : null;                          // the self-token rule with shared Q/K
        Form Of(string n, RoutingForm f) => new(n, x => new FormOutput(p.Shared
            ? f(x[0], x[0], x[1], x[2], x[2], window, p.Causal, self)
            : f(x[0], x[1], x[2], x[3], x[4], window, p.Causal, self)));
        Conformance.Check(shape, Inputs, Of("naive", naive), [Of(name, fast)], fixedInputs: p.Shared ? [2] : [3, 4]);
    }

    /// <summary>
    /// Balanced routing (top-w gather) against RoutingNaive.Attend: outputs and the gradients of q, k, v, float64 1e−10,
    /// float32 1e−5 against the float64 twin. w = the grid's chunk capped at T (top-w needs w ≤ T).
    /// </summary>
    [Theory]
    [MemberData(nameof(RoutingCases))]
    public void BalancedGatherFormConformsToTheNaiveTwin(Shape shape, RoutingCase p) =>
        RoutingConforms(shape, p, Math.Min(shape.Chunk, shape.T),
            (q, k, v, qs, ks, w, causal, self) => RoutingNaive.Attend(q, k, v, qs, ks, w, causal, selfScore: self),
            (q, k, v, qs, ks, w, causal, self) => Routing.Attend(q, k, v, qs, ks, w, causal, selfScore: self), "balanced");

    /// <summary>Nearest-centroid routing (sorted chunks of w) against RoutingNaive.AttendNearest; w = the grid's chunk (w > T allowed).</summary>
    [Theory]
    [MemberData(nameof(RoutingCases))]
    public void NearestChunkedFormConformsToTheNaiveTwin(Shape shape, RoutingCase p) =>
        RoutingConforms(shape, p, shape.Chunk,
            (q, k, v, qs, ks, w, causal, self) => RoutingNaive.AttendNearest(q, k, v, qs, ks, w, causal, selfScore: self),
            (q, k, v, qs, ks, w, causal, self) => Routing.AttendNearest(q, k, v, qs, ks, w, causal, selfScore: self), "nearest");

    /// <summary>A block-local variant: causal or not, with or without the learned relative bias [H, BiasLength(L, causal)].</summary>
    public sealed record LocalCase(bool Causal, bool Bias)
    {
        public override string ToString() => $"{(Causal ? "causal" : "non-causal")}{(Bias ? " bias" : "")}";
    }

    public static IEnumerable<object[]> LocalCases() =>
        Conformance.ShapesWith(new LocalCase(true, false), new LocalCase(false, false), new LocalCase(true, true), new LocalCase(false, true));

    /// <summary>
    /// Block-local attention (own and previous block, L = the grid's chunk: L = 1, L ∤ T and L > T included) against
    /// RoutingNaive.LocalBlock: outputs and the gradients of q, k, v and the bias, float64 1e−10, float32 1e−5.
    /// </summary>
    [Theory]
    [MemberData(nameof(LocalCases))]
    public void BlockLocalFormConformsToTheNaiveTwin(Shape shape, LocalCase p)
    {
        int block = shape.Chunk;
        Tensor[] Inputs(Shape s, ScalarType dtype, Generator g)
        {
            Tensor N(params long[] size) => torch.randn(size, generator: g, dtype: ScalarType.Float64).to(dtype);
            return [N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.Dv),
                .. p.Bias ? new[] { N(s.H, LocalBlockAttention.BiasLength(block, p.Causal)) } : []];
        }
        Form Of(string n, Func<Tensor, Tensor, Tensor, int, bool, Tensor?, Tensor> f) =>
            new(n, x => new FormOutput(f(x[0], x[1], x[2], block, p.Causal, x.Length > 3 ? x[3] : null)));
        Conformance.Check(shape, Inputs, Of("naive", (q, k, v, l, c, bias) => RoutingNaive.LocalBlock(q, k, v, l, c, relativeBias: bias)),
            [Of("local", (q, k, v, l, c, bias) => LocalBlockAttention.Attend(q, k, v, l, c, relativeBias: bias))]);
    }

    [Fact]
    public void BlockLocalMaskIsOwnAndPreviousBlock()
    {
        using var scope = NewDisposeScope();
        var m = RoutingNaive.LocalBlockMask(7, 3);                                        // blocks {0,1,2} {3,4,5} {6}
        var expected = new bool[7, 7];
        for (int i = 0; i < 7; i++) for (int j = 0; j <= i; j++) expected[i, j] = i / 3 - j / 3 <= 1;
        for (int i = 0; i < 7; i++) for (int j = 0; j < 7; j++) Assert.Equal(expected[i, j], m[i, j].item<bool>());
        Assert.False(m[6, 2].item<bool>(), "token 6 (block 2) does not see block 0");
        Assert.True(m[6, 3].item<bool>(), "token 6 sees block 1");
        var both = RoutingNaive.LocalBlockMask(7, 3, causal: false);
        Assert.True(both[0, 5].item<bool>() && !both[0, 6].item<bool>(), "non-causal: previous, own and next block");
        // a causal query sees between L + 1 and 2L keys once past the first block
        var counts = RoutingNaive.LocalBlockMask(40, 4).sum(-1);
        Assert.True((counts.narrow(0, 4, 36) >= 5).all().item<bool>() && (counts <= 8).all().item<bool>());
    }

    [Fact]
    public void NearestWithAWindowAsLongAsTheSequenceIsAttentionInsideEachNearestCluster()
    {
        torch.manual_seed(4);
        using var scope = NewDisposeScope();
        var (q, v) = (R(2, 10, 2, 3), R(2, 10, 2, 4));
        var s = Scores(q, R(2, 3, 3));
        var member = Routing.Membership(s, 1, balanced: false);
        var y = Routing.AttendNearest(q, q, v, s, s, 10, countEpsilon: 0);
        for (long c = 0; c < 3; c++)
        {
            var keep = member.select(2, c).unsqueeze(-1) & member.select(2, c).unsqueeze(-2);
            using var r = ReferenceAttention.Softmax(q, q, v, causal: true, mask: keep);
            var rows = member.select(2, c).permute(0, 2, 1).unsqueeze(-1);
            AssertClose.Tensors(y * rows, r.Output * rows, atol: 1e-12, rtol: 1e-12, what: $"cluster {c}");
        }
    }

    [Fact]
    public void NearestQueriesSeeAtMostTwoChunksOfTheirCluster()
    {
        torch.manual_seed(9);
        using var scope = NewDisposeScope();
        var s = R(1, 2, 60, 2);                                                           // 2 clusters of ≈ 30 tokens
        var mask = Routing.Mask(s, s, 4, balanced: false);
        Assert.True((mask.sum(-1) <= 8).all().item<bool>(), "at most 2w keys per query");
        var same = Routing.Mask(s, s, 60, balanced: false);                               // w ≥ T: the whole causal cluster
        Assert.True((mask & same.logical_not()).any().item<bool>() == false, "the chunked mask is inside the cluster mask");
        Assert.True((same.sum(-1) > mask.sum(-1)).any().item<bool>(), "long clusters are cut to the recent chunks");
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
        AssertClose.Tensors(Routing.AttendNearest(q, k, v, s, s, 11, causal: true, countEpsilon: 0), full.Output, atol: 1e-6, rtol: 1e-6,
            what: "nearest, C = 1, w = n");
    }

    [Fact]
    public void SelfTokenRuleKeepsAQueryOffItsOwnKeyUnlessItHasNoOther()
    {
        using var scope = NewDisposeScope();
        // T = 3, one cluster holding every token, shared Q/K; v = 1, 10, 100
        var q = torch.tensor(new double[] { 1, 0, 1, 0, 0, 3 }, new long[] { 1, 3, 1, 2 });
        var v = torch.tensor(new double[] { 1, 10, 100 }, new long[] { 1, 3, 1, 1 });
        var s = torch.zeros(1, 1, 3, 1, dtype: ScalarType.Float64);
        var ruled = Routing.Attend(q, q, v, s, s, 3, countEpsilon: 0, selfScore: Routing.SelfTokenScore).flatten();
        // token 0 has no other key: its own value; token 1 sees only token 0; token 2 sees 0 and 1 with equal scores (q2·k0 = q2·k1 = 0)
        AssertClose.Tensors(ruled, torch.tensor(new double[] { 1, 1, 5.5 }), atol: 1e-12, rtol: 1e-12, what: "self-token rule");
        var unruled = Routing.Attend(q, q, v, s, s, 3, countEpsilon: 0).flatten();
        Assert.Equal(5.5, unruled[1].item<double>(), 12);                                  // without the rule token 1 also weighs itself
        Assert.True(unruled[2].item<double>() > 95, "without the rule token 2 puts nearly all its weight on itself (q·q = 9 vs 0)");
        // the dense twins apply the same rule
        AssertClose.Tensors(RoutingNaive.Attend(q, q, v, s, s, 3, countEpsilon: 0, selfScore: Routing.SelfTokenScore).flatten(), ruled, atol: 1e-12,
            rtol: 1e-12, what: "naive");
        AssertClose.Tensors(Routing.AttendNearest(q, q, v, s, s, 3, countEpsilon: 0, selfScore: Routing.SelfTokenScore).flatten(), ruled, atol: 1e-12,
            rtol: 1e-12, what: "nearest");
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
        Assert.False((RoutingNaive.LocalBlockMask(16, 3) & t).any().item<bool>(), "local");
    }

    [Fact]
    public void NearestRoutingIsStrictlyCausalAndBalancedRoutingLeaksTheFuture()
    {
        foreach (int seed in new[] { 0, 1, 2 })
        {
            Assert.Equal(0.0, CausalityProbe.FutureLeak(balanced: false, seed: seed));
            Assert.True(CausalityProbe.FutureLeak(balanced: true, seed: seed) > 1e-3, $"balanced top-w: the future moved a past output (seed {seed})");
        }
    }

    [Fact]
    public void EmaUpdateEqualsItsDefinitionWithLaplaceSmoothing()
    {
        using var scope = NewDisposeScope();
        const double eps = OnlineKMeans.LaplaceEpsilon;
        using var km = new OnlineKMeans(1, 2, 1, decay: 0.5);
        km.to(ScalarType.Float64);
        km.SetMeans(torch.tensor(new double[] { 0, 10 }, new long[] { 1, 2, 1 }));        // count = 1, sum = μ
        var x = torch.tensor(new double[] { 1, 2, 9 }, new long[] { 1, 3, 1, 1 });
        var (_, idx) = km.Assign(x);
        Assert.Equal(new long[] { 0, 0, 1 }, idx.flatten().data<long>().ToArray());
        km.Update(x, idx);
        // count = 0.5·1 + 0.5·n = (1.5, 1); sum = 0.5·μ + 0.5·S = (1.5, 9.5); N = 2.5; ĉount = (count + ε)/(N + 2ε)·N
        double c0 = (1.5 + eps) / (2.5 + 2 * eps) * 2.5, c1 = (1 + eps) / (2.5 + 2 * eps) * 2.5;
        AssertClose.Tensors(km.Means.flatten(), torch.tensor(new[] { 1.5 / c0, 9.5 / c1 }), atol: 1e-14, rtol: 1e-14, what: "μ after one update");
        AssertClose.Tensors(km.Counts.flatten(), torch.tensor(new[] { 1.5, 1.0 }), atol: 1e-14, rtol: 1e-14, what: "counts");
    }

    [Fact]
    public void CommitmentLossIsTheMeanSquaredErrorOfTheReferences()
    {
        torch.manual_seed(8);
        using var scope = NewDisposeScope();
        using var km = new OnlineKMeans(2, 3, 5, commitment: 1e-4);
        km.to(ScalarType.Float64);
        km.SetMeans(R(2, 3, 5));
        var x = R(2, 7, 2, 5);
        var (_, idx) = km.Assign(x);
        var loss = km.CommitmentLoss(x, idx).item<double>();
        var mu = km.Means.unsqueeze(0).expand(2, -1, -1, -1).gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, 5));   // μ_{c(t)} [B, H, T, D]
        var mse = nn.functional.mse_loss(x.permute(0, 2, 1, 3), mu).item<double>();         // F.mse_loss (lucidrains), reduce_mean (official)
        Assert.Equal(1e-4 * mse, loss, 15);
        var perToken = (x.permute(0, 2, 1, 3) - mu).pow(2).sum(-1).mean().item<double>();   // the old sum over D
        Assert.Equal(perToken / 5 * 1e-4, loss, 15);
    }

    [Fact]
    public void EmaKMeansFindsAFourComponentGaussianMixture()
    {
        using var scope = NewDisposeScope();
        var result = KMeansDemo.Run(new KMeansDemo.Config(Updates: 200, Decay: 0.9, Seed: 0));
        Assert.True(result.FinalError < 0.1, $"centroid error {result.FinalError:F3} after 200 updates");
    }

    [Fact]
    public void TokenShiftMovesTheSecondHalfOfTheFeaturesOnePositionLater()
    {
        using var scope = NewDisposeScope();
        var x = torch.arange(1, 13, dtype: ScalarType.Float64).reshape(1, 3, 4);          // t = 0: 1 2 3 4; t = 1: 5 6 7 8; t = 2: 9 10 11 12
        var y = TokenShift.Shift(x).flatten();
        AssertClose.Tensors(y, torch.tensor(new double[] { 1, 2, 0, 0, 5, 6, 3, 4, 9, 10, 7, 8 }), atol: 0, rtol: 0, what: "shift");
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
            Assert.NotNull(attn.LocalBias);
            Assert.True(attn.MaskSelf);
        }
        attn.eval();
        using (var m = attn.RoutingMask(x)) Assert.Equal(new long[] { 2, 2, 10, 10 }, m.shape);
        LeakCheck.AssertNoLeak(() => attn.call(x).Dispose(), "RoutingAttention");
        using var separate = new RoutingAttention(16, 4, clusters: 3, window: 4, sharedQk: false, localHeads: 2, localWindow: 3);
        Assert.False(separate.MaskSelf, "the self-token rule is for shared Q/K only");
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
        Assert.True(attn.parameters().All(p => p.grad is not null && p.grad.abs().sum().item<float>() > 0),
            "every projection (and the local bias) gets a gradient");
    }

    [Fact]
    public void BadShapesThrowArgumentExceptionsNamingTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, v) = (R(1, 6, 2, 3), R(1, 6, 2, 4));
        var s = R(1, 2, 6, 2);
        Assert.Equal("window", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, s, s, 7)).ParamName);
        Assert.Equal("window", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, s, s, 0)).ParamName);
        Assert.Equal("window", Assert.ThrowsAny<ArgumentException>(() => Routing.AttendNearest(q, q, v, s, s, 0)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => Routing.Attend(q.flatten(2), q, v, s, s, 2)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => Routing.Attend(q, R(1, 5, 2, 3), v, s, s, 2)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, R(1, 6, 3, 4), s, s, 2)).ParamName);
        Assert.Equal("qScores", Assert.Throws<ArgumentException>(() => Routing.Attend(q, q, v, R(1, 6, 2, 2), s, 2)).ParamName);
        Assert.Equal("kScores", Assert.Throws<ArgumentException>(() => Routing.AttendNearest(q, q, v, s, R(1, 2, 6, 3), 2)).ParamName);
        Assert.Equal("block", Assert.ThrowsAny<ArgumentException>(() => LocalBlockAttention.Attend(q, q, v, 0)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => LocalBlockAttention.Attend(q, q, R(1, 5, 2, 4), 2)).ParamName);
        Assert.Equal("relativeBias", Assert.Throws<ArgumentException>(() => LocalBlockAttention.Attend(q, q, v, 2, relativeBias: R(2, 5))).ParamName);
        using var km = new OnlineKMeans(2, 3, 3);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => km.Assign(R(1, 6, 3, 3))).ParamName);
        Assert.Equal("idx", Assert.Throws<ArgumentException>(() => km.Update(q, torch.zeros(1, 2, 5, dtype: ScalarType.Int64))).ParamName);
        Assert.Equal("localHeads", Assert.Throws<ArgumentException>(() => new RoutingAttention(8, 2, 2, 2, localHeads: 3)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => new RoutingAttention(8, 3, 2, 2)).ParamName);
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        using var scope = NewDisposeScope();
        var q = R(1, 8, 1, 3);
        var v = R(1, 8, 1, 2);
        v[0, 0, 0, 0] = torch.tensor(double.NaN);
        var s = R(1, 1, 8, 2);
        Assert.True(LocalBlockAttention.Attend(q, q, v, 2).isnan().any().item<bool>(), "local");
        Assert.True(Routing.Attend(q, q, v, s, s, 8).isnan().any().item<bool>(), "balanced");
        Assert.True(Routing.AttendNearest(q, q, v, s, s, 4).isnan().any().item<bool>(), "nearest");
    }
}
