using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>Head ablation (zero, mean) and activation patching on TinyGpt.</summary>
public class AblationPatchingTests
{
    static double Metric(Tensor logits) => logits.select(1, -1).select(1, 3).mean().item<float>();   // last position, token 3

    /// <summary>A model whose head (1, 2) writes nothing: its columns of W_O are zero.</summary>
    static TinyGpt ModelWithSilentHead()
    {
        var model = HookTests.Model(PositionKind.Learned, seed: 80);
        using var _ = torch.no_grad();
        ((CausalSelfAttention)model.Blocks[1].Mixer).Proj.weight!.narrow(1, 2 * 4, 4).zero_();
        return model;
    }

    [Fact]
    public void ZeroAndMeanAblationReplaceOneHeadsZ()
    {
        using var model = HookTests.Model(PositionKind.Alibi, seed: 81);
        using var scope = NewDisposeScope();
        var x = HookTests.Tokens();
        var (_, clean) = model.RunWithCache(x);
        using var c = clean;
        var attention = (CausalSelfAttention)model.Blocks[1].Mixer;

        using (model.Hooks(Ablation.ZeroHead(model, -1, 2)))
        {
            var (_, ablated) = model.RunWithCache(x);
            using var a = ablated;
            var z = clean["z", 1].clone(); z.select(2, 2).zero_();
            AssertClose.Tensors(ablated["z", 1], z, atol: 0, rtol: 0, what: "z with head 2 zeroed");
            AssertClose.Tensors(ablated["attn_out", 1], attention.Proj.call(z.reshape(2, 9, 16)), atol: 1e-6, rtol: 1e-6, what: "attn_out");
        }

        var means = Ablation.MeanZ(model, x);
        Assert.Equal(new long[] { 2, 4, 4 }, means.shape);
        AssertClose.Tensors(means[0], clean["z", 0].mean(new long[] { 0, 1 }), atol: 1e-7, rtol: 1e-6, what: "mean z");
        using (model.Hooks(Ablation.MeanHead(model, 0, 1, means[0])))
        {
            var (_, m) = model.RunWithCache(x);
            using var _m = m;
            AssertClose.Tensors(m["z", 0].select(2, 1), means[0][1].expand(2, 9, 4), atol: 0, rtol: 0, what: "mean-ablated head");
            AssertClose.Tensors(m["z", 0].select(2, 0), clean["z", 0].select(2, 0), atol: 0, rtol: 0, what: "other heads untouched");
        }
        Assert.Equal("head", Assert.Throws<ArgumentOutOfRangeException>(() => Ablation.ZeroHead(model, 0, 4)).ParamName);
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => Ablation.ZeroHead(model, -3, 0)).ParamName);
    }

    [Theory]
    [InlineData(AblationKind.Zero)]
    [InlineData(AblationKind.Mean)]
    public void HeadEffectsAreZeroExactlyForAHeadThatWritesNothing(AblationKind kind)
    {
        using var model = ModelWithSilentHead();
        using var scope = NewDisposeScope();
        var effects = HeadEffects(model, kind);
        Assert.Equal(new long[] { 2, 4 }, effects.shape);
        Assert.Equal(0.0, effects[1, 2].item<double>());
        Assert.True(effects.abs().max().item<double>() > 1e-6, "no head mattered");
    }

    static Tensor HeadEffects(TinyGpt model, AblationKind kind) => Ablation.HeadEffects(model, HookTests.Tokens(), Metric, kind);

    [Fact]
    public void PatchingTheResidualAtTheChangedPositionRestoresTheCleanRun()
    {
        using var model = HookTests.Model(PositionKind.Learned, seed: 82);
        using var scope = NewDisposeScope();
        var clean = HookTests.Tokens(batch: 1);
        var corrupt = clean.clone(); corrupt[0, 4] = (clean[0, 4] + 5) % 13;
        var result = Patching.ResidByPosition(model, clean, corrupt, Metric);
        Assert.Equal(new long[] { 2, 9 }, result.shape);
        for (int p = 0; p < 9; p++) Assert.Equal(p == 4 ? 1.0 : 0.0, result[0, p].item<double>());   // layer 0: only position 4 differs
        for (int p = 0; p < 4; p++) Assert.Equal(0.0, result[1, p].item<double>());                // earlier positions never saw it
        Assert.Equal("activation", Assert.Throws<ArgumentException>(() => Patching.ResidByPosition(model, clean, corrupt, Metric, "nothing")).ParamName);
        Assert.Equal("corruptTokens", Assert.Throws<ArgumentException>(
            () => Patching.ResidByPosition(model, clean, corrupt.narrow(1, 0, 5), Metric)).ParamName);
        Assert.Throws<InvalidOperationException>(() => Patching.ResidByPosition(model, clean, clean, Metric));
    }

    [Fact]
    public void PatchingHeadOutputs()
    {
        using var model = ModelWithSilentHead();
        using var scope = NewDisposeScope();
        var clean = HookTests.Tokens(seed: 83);
        var corrupt = HookTests.Tokens(seed: 84);
        var result = Patching.HeadOutputs(model, clean, corrupt, Metric);
        Assert.Equal(new long[] { 2, 4 }, result.shape);
        Assert.Equal(0.0, result[1, 2].item<double>());                                     // a head that writes nothing restores nothing

        // patching all of the last residual stream from the clean cache reproduces the clean logits
        using var _ = torch.no_grad();
        var (cleanLogits, cache) = model.RunWithCache(clean);
        using var c = cache;
        var patched = model.RunWithHooks(corrupt, (ActName.Get("resid_post", 1), (_, _) => cache["resid_post", -1]));
        AssertClose.Tensors(patched, cleanLogits, atol: 0, rtol: 0, what: "last resid_post patched");
    }
}
