using AttentionLab.Attention;
using AttentionLab.Models;
using AttentionLab.Papers.Delta;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class DeltaTests
{
    static TinyGpt Model(int layers = 4, PositionKind positions = PositionKind.Rope)
    {
        torch.manual_seed(0);
        var m = new TinyGpt(new TinyGptConfig(Layers: layers, DModel: 16, Heads: 4, VocabSize: 24, Positions: positions, MaxLength: 64));
        m.eval();
        return m;
    }

    static Tensor Ids(long b, long t, int seed) { torch.manual_seed(seed); return torch.randint(0, 24, new[] { b, t }); }

    /// <summary>Logits [B, T, V] of decoding ids [B, T]: prefill of the first <paramref name="prompt"/>, then DELTA steps.</summary>
    static Tensor Decode(TinyGpt model, DeltaPolicy policy, Tensor ids, int prompt, bool masked = false, bool perLayer = false)
    {
        using var dec = new DeltaDecoder(model, policy, ids.shape[0], masked, perLayer);
        return Decode(dec, ids, prompt);
    }

    static Tensor Decode(DeltaDecoder dec, Tensor ids, int prompt)
    {
        var outs = new List<Tensor>();
        for (int t = 0; t < prompt; t++) outs.Add(dec.Prefill(ids.narrow(1, t, 1)));
        for (long t = prompt; t < ids.shape[1]; t++) outs.Add(dec.Step(ids.select(1, t)));
        return torch.stack(outs, 1);
    }

    [Fact]
    public void PageScoreIsTheMaxOverHeadsSummedOverThePage()
    {
        torch.manual_seed(1);
        using var scope = NewDisposeScope();
        var probs = torch.rand(2, 3, 2, 11, dtype: float64).softmax(-1);                  // Tk = 11: a partial last page
        var fast = PageScores.MaxOverHeads(probs, 4);
        Assert.Equal(new long[] { 2, 3 }, fast.shape);
        Assert.True(fast.allclose(DeltaNaive.PageScores(probs, 4), rtol: 0, atol: 1e-12));
        var sumThenMax = probs.sum(2).view(2, 3, 11).amax(1);                               // the pitfall: max after the sum differs
        Assert.False(fast.sum(1).allclose(sumThenMax.sum(1), rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void SelectionHoldsTheRecentPagesAndTheTopScoresInOrder()
    {
        using var scope = NewDisposeScope();
        var policy = new DeltaPolicy(new[] { 0 }, new[] { 1 }, pageSize: 4, budgetPages: 4, recentPages: 2);
        var s = torch.tensor(new[] { 0.9, 0.1, 0.8, 0.05, 0.7, 0.0, 0.0, 0.0, 0.0, 0.01 }, dtype: float64).view(1, 10);
        var pages = policy.SelectPages(s).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 2, 8, 9 }, pages);                                    // top-2 scores + the last 2 pages, sorted
        var tie = policy.SelectPages(torch.zeros(1, 10, dtype: float64)).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1, 8, 9 }, tie);                                      // −1e-7·p: earlier pages win ties
        torch.manual_seed(3);
        var many = policy.SelectPages(torch.rand(5, 7, dtype: float64));
        foreach (var row in many.unbind(0).Select(r => r.data<long>().ToArray()))
        {
            Assert.Equal(4, row.Distinct().Count());
            Assert.Equal(row.OrderBy(p => p), row);
            Assert.Contains(5L, row); Assert.Contains(6L, row);
        }
        Assert.Equal(3, policy.SelectPages(torch.rand(2, 3, dtype: float64)).shape[1]);     // min(K, N)
    }

    [Fact]
    public void FullCacheLayersGiveTheRepoRoles()
    {
        var p = DeltaPolicy.FromFullCacheLayers(28, new[] { 0, 1, 2, 14, 22 });
        Assert.Equal(new[] { 0, 1 }, p.FullLayers);
        Assert.Equal(new[] { 2, 14, 22 }, p.DeltaLayers);
        Assert.Equal(LayerRole.Sparse, p.Role(3));
        Assert.Equal(LayerRole.Delta, p.Role(14));
    }

    [Theory]
    [InlineData(PositionKind.Rope)]
    [InlineData(PositionKind.Learned)]
    public void BudgetCoveringAllPagesOrAllFullLayersEqualsTheForwardPass(PositionKind positions)
    {
        using var model = Model(positions: positions);
        using var scope = NewDisposeScope();
        var ids = Ids(2, 13, 5);
        using var noGrad = torch.no_grad();
        var reference = model.call(ids);
        var big = new DeltaPolicy(new[] { 0 }, new[] { 1 }, pageSize: 4, budgetPages: 4, recentPages: 1);   // 13 tokens = 4 pages
        Assert.True(Decode(model, big, ids, 3).allclose(reference, rtol: 0, atol: 1e-5));
        Assert.True(Decode(model, big, ids, 3, perLayer: true).allclose(reference, rtol: 0, atol: 1e-5));
        Assert.True(Decode(model, DeltaPolicy.AllFull(4, pageSize: 2, budgetPages: 1, recentPages: 1), ids, 1).allclose(reference, rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void SmallBudgetChangesLogitsAndGatherEqualsTheMaskedTwin()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        var ids = Ids(2, 17, 6);
        using var noGrad = torch.no_grad();
        var policy = new DeltaPolicy(new[] { 0 }, new[] { 1 }, pageSize: 2, budgetPages: 3, recentPages: 1);
        var gathered = Decode(model, policy, ids, 2);
        var masked = Decode(model, policy, ids, 2, masked: true);
        Assert.True(gathered.allclose(masked, rtol: 0, atol: 1e-5));
        Assert.True(Decode(model, policy, ids, 2, perLayer: true).allclose(Decode(model, policy, ids, 2, masked: true, perLayer: true), rtol: 0, atol: 1e-5));
        Assert.False(gathered.allclose(model.call(ids), rtol: 0, atol: 1e-3));
    }

    [Fact]
    public void StatsShowSparseLayersReadOnlyTheBudgetAndTheCacheNeverShrinks()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        var ids = Ids(1, 20, 7);
        var policy = new DeltaPolicy(new[] { 0 }, new[] { 1 }, pageSize: 2, budgetPages: 3, recentPages: 2);
        using var dec = new DeltaDecoder(model, policy) { Capture = true };
        Decode(dec, ids, 4);
        Assert.Equal(16 * 4, dec.Trace.Count);                                              // 16 decode steps × 4 layers
        foreach (var s in dec.Trace)
        {
            long n = s.Step + 1;
            long expected = s.Layer >= 2 ? Math.Min(n, 3 * 2 - (n % 2)) : n;                // K·P minus the partial last page's gap
            Assert.All(s.AttendedTokens, a => Assert.Equal(expected, a));
            Assert.Equal(s.KvBytesHeld / n * expected, s.KvBytesRead);
        }
        Assert.Equal(20L * 4 * (4 * 4 * 2) * 4, dec.KvBytes);                              // 20 tokens × 4 layers × H·Dh·(k, v) × 4 B: nothing evicted
        Assert.Equal(16, dec.Selections.Count);
        Assert.All(dec.Selections, sel => Assert.Contains(policy.Pages(sel.Step + 1) - 1, sel.Pages));
        Assert.All(dec.Captures, c => Assert.All(c.SparseRecall.Values, r => Assert.InRange(r, 0, 1 + 1e-6)));
    }

    [Fact]
    public void DecodeStepsAndPageScoresDoNotLeakTensors()
    {
        using var model = Model();
        var policy = new DeltaPolicy(new[] { 0 }, new[] { 1 }, pageSize: 2, budgetPages: 2, recentPages: 1);
        using var dec = new DeltaDecoder(model, policy);
        using var prompt = Ids(1, 6, 8);
        using var next = torch.tensor(new long[] { 3 });
        dec.Prefill(prompt).Dispose();
        AttentionLab.Core.LeakCheck.AssertNoLeak(() => dec.Step(next).Dispose(), "DeltaDecoder.Step");
        using var probs = torch.rand(1, 2, 1, 9);
        AttentionLab.Core.LeakCheck.AssertNoLeak(() => PageScores.MaxOverHeads(probs, 4).Dispose(), "MaxOverHeads");
        using var s = torch.rand(1, 5);
        AttentionLab.Core.LeakCheck.AssertNoLeak(() => policy.SelectPages(s).Dispose(), "SelectPages");
    }

    [Fact]
    public void LayerOverlapIsJaccardOfTopKSets()
    {
        using var scope = NewDisposeScope();
        var s = torch.tensor(new[] { 3.0, 2, 1, 0, 3, 0, 2, 1, 0, 1, 2, 3 }, dtype: float64).view(3, 4);
        var j = PageScores.LayerTopKOverlap(s, 2);
        Assert.Equal(1.0, j[0, 0].item<double>(), 12);
        Assert.Equal(1.0 / 3, j[0, 1].item<double>(), 12);                                  // {0,1} vs {0,2}
        Assert.Equal(0.0, j[0, 2].item<double>(), 12);                                      // {0,1} vs {2,3}
    }

    [Fact]
    public void BadInputIsRejectedNamingTheArgument()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        Assert.Equal("recentPages", Assert.ThrowsAny<ArgumentException>(
            () => new DeltaPolicy(new[] { 0 }, new[] { 1 }, budgetPages: 2, recentPages: 3)).ParamName);
        Assert.Equal("recentPages", Assert.ThrowsAny<ArgumentException>(() => new DeltaPolicy(new[] { 0 }, new[] { 1 }, recentPages: 0)).ParamName);
        Assert.Equal("pageSize", Assert.ThrowsAny<ArgumentException>(() => new DeltaPolicy(new[] { 0 }, new[] { 1 }, pageSize: 0)).ParamName);
        Assert.Equal("deltaLayers", Assert.ThrowsAny<ArgumentException>(() => new DeltaPolicy(new[] { 0 }, new[] { -1 })).ParamName);
        // layer 1 sparse, no Δ before
        Assert.Equal("policy", Assert.ThrowsAny<ArgumentException>(() => new DeltaDecoder(model, new DeltaPolicy(new[] { 0 }, new[] { 2 }))).ParamName);
        Assert.Equal("policy", Assert.ThrowsAny<ArgumentException>(() => new DeltaDecoder(model, new DeltaPolicy(new[] { 0 }, new[] { 7 }))).ParamName);
        Assert.Equal("probs", Assert.ThrowsAny<ArgumentException>(() => PageScores.MaxOverHeads(torch.rand(2, 3), 4)).ParamName);
        Assert.Equal("pageSize", Assert.ThrowsAny<ArgumentException>(() => PageScores.MaxOverHeads(torch.rand(1, 2, 1, 3), 0)).ParamName);
        Assert.Equal("k", Assert.ThrowsAny<ArgumentException>(() => PageScores.LayerTopKOverlap(torch.rand(2, 3), 4)).ParamName);
        Assert.Equal("pageScores", Assert.ThrowsAny<ArgumentException>(() => new DeltaPolicy(new[] { 0 }, new[] { 1 }).SelectPages(torch.rand(3))).ParamName);
        using var dec = new DeltaDecoder(model, new DeltaPolicy(new[] { 0 }, new[] { 1 }), batch: 2);
        Assert.Equal("ids", Assert.ThrowsAny<ArgumentException>(() => dec.Step(torch.zeros(3, dtype: int64))).ParamName);
        Assert.Equal("ids", Assert.ThrowsAny<ArgumentException>(() => dec.Step(torch.zeros(2, dtype: float32))).ParamName);
        Assert.Equal("ids", Assert.ThrowsAny<ArgumentException>(() => dec.Prefill(torch.full(new long[] { 2, 1 }, 99L))).ParamName);
    }
}
