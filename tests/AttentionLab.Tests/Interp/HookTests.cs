using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>Hook points, RunWithCache/RunWithHooks, hook scopes and the activation cache on TinyGpt.</summary>
public class HookTests
{
    internal static TinyGpt Model(PositionKind positions = PositionKind.Learned, bool mlp = true, bool parallel = false, int seed = 60)
    {
        torch.manual_seed(seed);
        return new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 4, MlpRatio: 2, Positions: positions, VocabSize: 13,
            MaxLength: 32, Mlp: mlp, ParallelBlock: parallel));
    }

    internal static Tensor Tokens(int seed = 61, long batch = 2, long length = 9)
    {
        var g = new Generator((ulong)seed);
        return torch.randint(0, 13, new[] { batch, length }, generator: g);
    }

    static int HookCount(IHookedModel m) => m.HookPoints.Values.Sum(h => h.HookCount);

    [Theory]
    [InlineData(PositionKind.Learned, true, false)]
    [InlineData(PositionKind.Rope, true, true)]
    [InlineData(PositionKind.Alibi, false, false)]
    public void IdentityHooksChangeNoOutputBitwise(PositionKind positions, bool mlp, bool parallel)
    {
        using var model = Model(positions, mlp, parallel);
        using var scope = NewDisposeScope();
        var x = Tokens();
        var plain = model.call(x);
        int calls = 0;
        var keep = model.RunWithHooks(x, model.HookPoints.Keys.Select(
            n => (n, (Func<Tensor, HookPoint, Tensor?>)((_, _) => { calls++; return null; }))).ToArray());
        var copy = model.RunWithHooks(x, model.HookPoints.Keys.Select(n => (n, (Func<Tensor, HookPoint, Tensor?>)((t, _) => t.clone()))).ToArray());
        Assert.Equal(model.HookPoints.Count, calls);                               // every point fired once
        Assert.True(TensorBits.Same(plain, keep), "null-returning hooks changed the logits");
        Assert.True(TensorBits.Same(plain, copy), "hooks returning a copy changed the logits");
        var (cached, cache) = model.RunWithCache(x);
        using (cache) Assert.True(TensorBits.Same(plain, cached), "RunWithCache changed the logits");
        Assert.Equal(0, HookCount(model));
    }

    [Fact]
    public void RunWithCacheCapturesEveryNamedPointWithTheRightShape()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        long b = 2, t = 9, d = 16, h = 4, dh = 4;
        var (_, cache) = model.RunWithCache(Tokens());
        using var _ = cache;
        Assert.Equal(model.HookPoints.Keys.OrderBy(n => n), cache.Names.OrderBy(n => n));
        var expected = new Dictionary<string, long[]>
        {
            ["hook_embed"] = new[] { b, t, d }, ["hook_pos_embed"] = new[] { b, t, d }, ["ln_final.hook_normalized"] = new[] { b, t, d },
        };
        for (int l = 0; l < 2; l++)
        {
            foreach (var n in new[] { "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out" })
                expected[$"blocks.{l}.{n}"] = new[] { b, t, d };
            foreach (var n in new[] { "hook_q", "hook_k", "hook_v", "hook_z" }) expected[$"blocks.{l}.attn.{n}"] = new[] { b, t, h, dh };
            foreach (var n in new[] { "hook_attn_scores", "hook_pattern" }) expected[$"blocks.{l}.attn.{n}"] = new[] { b, h, t, t };
            foreach (var n in new[] { "hook_pre", "hook_post" }) expected[$"blocks.{l}.mlp.{n}"] = new[] { b, t, 32L };
            foreach (var n in new[] { "ln1", "ln2" }) expected[$"blocks.{l}.{n}.hook_normalized"] = new[] { b, t, d };
        }
        Assert.Equal(expected.Keys.OrderBy(n => n), cache.Names.OrderBy(n => n));
        foreach (var (name, shape) in expected) Assert.True(shape.SequenceEqual(cache[name].shape), $"{name}: {Guard.ShapeText(cache[name])}");
        Assert.Same(cache["blocks.1.attn.hook_pattern"], cache["pattern", -1]);
        Assert.Same(cache["blocks.0.hook_resid_pre"], cache["resid_pre", 0]);
        Assert.Same(cache["blocks.1.mlp.hook_post"], cache["post", 1]);
        Assert.Same(cache["blocks.0.ln2.hook_normalized"], cache["normalized", 0, "ln2"]);
        Assert.Same(cache["ln_final.hook_normalized"], cache["normalized"]);
        Assert.Same(cache["hook_embed"], cache["embed"]);
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void ResidualStreamAddsUp(bool mlp, bool parallel)
    {
        using var model = Model(PositionKind.Rope, mlp, parallel);
        using var scope = NewDisposeScope();
        var (logits, cache) = model.RunWithCache(Tokens());
        using var _ = cache;
        for (int l = 0; l < 2; l++)
        {
            var sum = cache["resid_pre", l] + cache["attn_out", l];
            if (mlp) sum = sum + cache["mlp_out", l];
            AssertClose.Tensors(cache["resid_post", l], sum, atol: 1e-6, rtol: 1e-6, what: $"resid_post {l}");
            if (mlp && !parallel)
                AssertClose.Tensors(cache["resid_mid", l], cache["resid_pre", l] + cache["attn_out", l], atol: 0, rtol: 0, what: "resid_mid");
        }
        AssertClose.Tensors(cache["resid_pre", 1], cache["resid_post", 0], atol: 0, rtol: 0, what: "blocks chain");
        AssertClose.Tensors(cache["resid_pre", 0], cache["embed"], atol: 0, rtol: 0, what: "RoPE adds nothing to the embedding");
        AssertClose.Tensors(logits, model.Unembed!.call(cache["normalized"]), atol: 0, rtol: 0, what: "logits = W_U ln_final");
    }

    [Fact]
    public void PatternRowsSumToOneAndAreCausal()
    {
        using var model = Model(PositionKind.Alibi);
        using var scope = NewDisposeScope();
        var (_, cache) = model.RunWithCache(Tokens(), new[] { ActName.Get("pattern", 0), ActName.Get("pattern", 1), ActName.Get("attn_scores", 0) });
        using var _ = cache;
        var future = ReferenceAttention.CausalKeepMask(9, 9).logical_not();
        for (int l = 0; l < 2; l++)
        {
            var a = cache["pattern", l];
            AssertClose.Tensors(a.sum(-1), torch.ones(2, 4, 9), atol: 1e-6, rtol: 0, what: "rows sum to 1");
            Assert.Equal(0f, a.masked_select(future.expand_as(a)).abs().max().item<float>());
        }
        Assert.True(cache["attn_scores", 0].masked_select(future.expand(2, 4, 9, 9)).isneginf().all().item<bool>(), "scores are −∞ above the diagonal");
    }

    [Fact]
    public void EditingThePatternFlowsIntoPatternTimesV()
    {
        using var model = Model(PositionKind.Learned);
        using var scope = NewDisposeScope();
        var x = Tokens();
        // P: every query attends uniformly to the keys it may see (a hand-built causal pattern, not the model's)
        var visible = ReferenceAttention.CausalKeepMask(9, 9).to(float32);
        var uniform = (visible / visible.sum(-1, keepdim: true)).expand(2, 4, 9, 9);
        var clean = model.call(x);
        using var edit = model.Hooks(("blocks.0.attn.hook_pattern", (_, _) => uniform));
        var (edited, cache) = model.RunWithCache(x);
        using var _ = cache;
        Assert.True(TensorBits.Same(cache["pattern", 0], uniform), "the cache sees the edited pattern");
        var v = cache["v", 0];                                                            // [B, T, H, Dh], unaffected by the edit
        var z = torch.einsum("bhij,bjhd->bihd", uniform, v);                              // z_i = Σ_j P_ij v_j
        AssertClose.Tensors(cache["z", 0], z, atol: 1e-6, rtol: 1e-6, what: "z = P·V");
        var attention = (CausalSelfAttention)model.Blocks[0].Mixer;
        AssertClose.Tensors(cache["attn_out", 0], attention.Proj.call(z.reshape(2, 9, 16)), atol: 1e-5, rtol: 1e-5, what: "attn_out = W_O (P·V)");
        Assert.False(edited.allclose(clean, rtol: 1e-4, atol: 1e-4), "the edit did not change the logits");
    }

    [Fact]
    public void HooksAreRemovedAfterTheScopeEvenWhenTheBodyThrows()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        var x = Tokens();
        Assert.Throws<InvalidOperationException>((Action)(() =>
        {
            using var h = model.Hooks(("blocks.0.hook_resid_pre", (t, _) => t * 0), ("hook_embed", (_, _) => null));
            Assert.Equal(2, HookCount(model));
            throw new InvalidOperationException("body failed");
        }));
        Assert.Equal(0, HookCount(model));
        Assert.Throws<InvalidOperationException>(() => model.RunWithHooks(x,
            ("blocks.1.attn.hook_z", (_, _) => throw new InvalidOperationException("hook failed"))));
        Assert.Equal(0, HookCount(model));
        Assert.Throws<InvalidOperationException>(() => model.RunWithCache(x,
            n => { if (n.Contains("hook_z")) throw new InvalidOperationException(); return true; }));
        Assert.Equal(0, HookCount(model));
        var e = Assert.Throws<ArgumentException>(() => model.Hooks(("hook_embed", (_, _) => null), ("blocks.9.hook_nothing", (_, _) => null)));
        Assert.Equal("hooks", e.ParamName);
        Assert.Equal(0, HookCount(model));
        Assert.True(TensorBits.Same(model.call(x), model.call(x)));
    }

    [Fact]
    public void HooksFireOnlyThroughCall()
    {
        using var scope = NewDisposeScope();
        using var point = new HookPoint();
        int fired = 0;
        using (point.AddHook((t, _) => { fired++; return t + 1; }))
        {
            var x = torch.zeros(2);
            Assert.Same(x, point.forward(x));
            Assert.Equal(0, fired);
            Assert.Equal(1f, point.call(x)[0].item<float>());
            Assert.Equal(1, fired);
        }
        Assert.Equal(0, point.HookCount);
    }

    [Fact]
    public void TheCacheOwnsItsTensors()
    {
        using var model = Model();
        var x = Tokens();
        void RunOnce()
        {
            var (logits, cache) = model.RunWithCache(x);
            logits.Dispose();
            cache.Dispose();
        }
        RunOnce();                                                                      // warm-up
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var (logits, cache) = model.RunWithCache(x);
        Assert.Equal(before + cache.Count + 1, DisposeScopeManager.Statistics.ThreadTotalLiveCount);   // the clones and the logits, nothing else
        using (var scope = NewDisposeScope()) Assert.True(cache["pattern", 0].sum().item<float>() > 0);
        logits.Dispose();
        cache.Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        for (int i = 0; i < 3; i++) RunOnce();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.Throws<ObjectDisposedException>(() => cache["embed"]);
        x.Dispose();
    }

    [Fact]
    public void StepDecodingFiresTheHooksWithOneQuery()
    {
        using var model = Model(PositionKind.Rope);
        using var scope = NewDisposeScope();
        var shapes = new List<long[]>();
        using var h = model.Hooks(("blocks.1.attn.hook_pattern", (t, _) => { shapes.Add(t.shape); return null; }),
            ("blocks.1.hook_resid_post", (t, _) => { shapes.Add(t.shape); return null; }));
        using var state = model.NewState(2);
        using var _ = torch.no_grad();
        var x = Tokens();
        model.Step(x.select(1, 0), state);
        model.Step(x.select(1, 1), state);
        Assert.Equal(new long[] { 2, 4, 1, 2 }, shapes[2]);                               // [B, H, 1, Tk]
        Assert.Equal(new long[] { 2, 1, 16 }, shapes[3]);                                 // [B, 1, d]
    }

    [Fact]
    public void ActNameFollowsTransformerLens()
    {
        Assert.Equal("blocks.3.attn.hook_pattern", ActName.Get("pattern", 3));
        Assert.Equal("blocks.3.attn.hook_pattern", ActName.Get("attn", 3));
        Assert.Equal("blocks.0.hook_resid_pre", ActName.Get("resid_pre", 0));
        Assert.Equal("blocks.1.mlp.hook_post", ActName.Get("post", 1));
        Assert.Equal("blocks.1.ln1.hook_scale", ActName.Get("scale", 1, "ln1"));
        Assert.Equal("blocks.2.attn.hook_attn_scores", ActName.Get("attn_logits", 2));
        Assert.Equal("hook_embed", ActName.Get("embed"));
        Assert.Equal("ln_final.hook_normalized", ActName.Get("normalized"));
        Assert.Equal("blocks.0.attn.hook_q", ActName.Get("blocks.0.attn.hook_q"));
        using var model = Model();
        var (logits, cache) = model.RunWithCache(Tokens(), new[] { "embed" });
        using (cache)
        {
            logits.Dispose();
            Assert.Equal(1, cache.Count);
            Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => cache["pattern", 2]).ParamName);
            Assert.Equal("name", Assert.Throws<ArgumentException>(() => cache["pattern", -2]).ParamName);
        }
        Assert.Equal("names", Assert.Throws<ArgumentException>(() => model.RunWithCache(Tokens(), new[] { "nope" })).ParamName);
    }
}
