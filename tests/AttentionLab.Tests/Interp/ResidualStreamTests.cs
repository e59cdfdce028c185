using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.Based;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>
/// The residual stream and direct logit attribution against brute force on TinyGpt with several mixers (float64): the
/// decomposition sums to the final stream, head results sum to attn_out, DLA over a full decomposition equals the logit
/// difference the model computes, and the centred form equals logit − mean logit.
/// </summary>
public class ResidualStreamTests
{
    const int D = 16, H = 4, Vocab = 11, T = 7;

    static TinyGptConfig Config(AttentionKind kind = AttentionKind.Softmax, bool mlp = true) =>
        new(Layers: 2, DModel: D, Heads: H, MlpRatio: 2, VocabSize: Vocab, MaxLength: 16, Positions: PositionKind.Learned, Attention: kind, Mlp: mlp);

    /// <summary>Name → a float64 model with random weights (the LayerNorm's w and b drawn too, so folding them matters).</summary>
    static TinyGpt Model(string name)
    {
        torch.manual_seed(11);
        TinyGpt model = name switch
        {
            "softmax" => new TinyGpt(Config()),
            "gated G1, no MLP" => new TinyGpt(Config(AttentionKind.GatedG1, mlp: false)),
            "sliding window" => new TinyGpt(Config(), _ => new SlidingWindowAttention(D, H, windowKeys: 3)),
            "BASED" => new TinyGpt(Config(), _ => new BasedLinearAttention(D, featureDim: 4, heads: H)),
            "BaseConv (no heads)" => new TinyGpt(Config(), _ => new BaseConv(D)),
            _ => throw new ArgumentException(name),
        };
        model.to(ScalarType.Float64);
        using (torch.no_grad())
        {
            model.FinalNorm.Weight.uniform_(0.5, 1.5);
            model.FinalNorm.Bias.normal_(0, 0.3);
        }
        return model;
    }

    static Tensor Tokens() => torch.randint(0, Vocab, new long[] { 3, T }, generator: new Generator(4));

    public static TheoryData<string> PerHeadModels() => new() { "softmax", "gated G1, no MLP", "sliding window", "BASED" };

    public static TheoryData<string> AllModels() => new() { "softmax", "gated G1, no MLP", "sliding window", "BASED", "BaseConv (no heads)" };

    [Theory]
    [MemberData(nameof(AllModels))]
    public void TheDecompositionSumsToTheFinalStream(string name)
    {
        using var model = Model(name);
        using var scope = NewDisposeScope();
        var (_, cache) = model.RunWithCache(Tokens());
        using (cache)
        {
            using var parts = ResidualStream.Decomposed(model, cache);
            var final = cache["resid_post", 1];
            AssertClose.Tensors(parts.Stack.sum(dim: 0), final, atol: 1e-12, rtol: 1e-12, what: $"{name}: Σ components");
            Assert.Equal("embed", parts.Labels[0]);
            Assert.Equal("pos_embed", parts.Labels[1]);
            Assert.Contains("1_attn_out", parts.Labels);
            using var accumulated = ResidualStream.Accumulated(model, cache, includeMid: true);
            AssertClose.Tensors(accumulated["final_post"], final, atol: 0, rtol: 0, what: $"{name}: final_post");
            AssertClose.Tensors(accumulated["0_pre"], parts["embed"] + parts["pos_embed"], atol: 1e-12, rtol: 1e-12, what: $"{name}: 0_pre");
            Assert.Equal(name.Contains("no MLP") ? 3 : 5, accumulated.Labels.Count);       // 0_pre (0_mid) 1_pre (1_mid) final_post
        }
    }

    [Theory]
    [MemberData(nameof(PerHeadModels))]
    public void HeadResultsSumToTheAttentionOutput(string name)
    {
        using var model = Model(name);
        using var scope = NewDisposeScope();
        var (_, cache) = model.RunWithCache(Tokens());
        using (cache)
        {
            for (int l = 0; l < 2; l++)
            {
                var results = ResidualStream.HeadResults(model, cache, l);
                Assert.Equal(new long[] { 3, T, H, D }, results.shape);
                AssertClose.Tensors(results.sum(dim: 2) + ResidualStream.AttentionBias(model, l), cache["attn_out", l], atol: 1e-12, rtol: 1e-12,
                    what: $"{name}: Σ_h result_h + b_O (layer {l})");
            }
            using var split = ResidualStream.Decomposed(model, cache, splitHeads: true);
            AssertClose.Tensors(split.Stack.sum(dim: 0), cache["resid_post", 1], atol: 1e-12, rtol: 1e-12, what: $"{name}: Σ split components");
            Assert.Contains("L1H3", split.Labels);
            using var heads = ResidualStream.HeadResultStack(model, cache);
            Assert.Equal(2 * H, heads.Labels.Count);
        }
    }

    [Theory]
    [MemberData(nameof(AllModels))]
    public void DirectAttributionExplainsTheLogitDifference(string name)
    {
        using var model = Model(name);
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var answer = torch.tensor(new long[] { 1, 5, 9 });
            var against = torch.tensor(new long[] { 2, 2, 0 });
            var parts = ResidualStream.Decomposed(model, cache, splitHeads: !name.StartsWith("BaseConv"));
            foreach (int position in new[] { -1, 2 })
            {
                int p = position < 0 ? T + position : position;
                var at = logits.select(1, p);                                                  // [B, V]
                var diff = at.gather(1, answer.unsqueeze(1)).squeeze(1) - at.gather(1, against.unsqueeze(1)).squeeze(1);
                using var dla = LogitAttribution.Direct(model, cache, parts, position, answer, against);
                Assert.Equal(new long[] { parts.Labels.Count, 3 }, dla.PerComponent.shape);
                AssertClose.Tensors(dla.Total, diff, atol: 1e-10, rtol: 1e-10, what: $"{name}: Σ DLA + constant at {position}");
                using var centred = LogitAttribution.Direct(model, cache, parts, position, answer);
                AssertClose.Tensors(centred.Total, at.gather(1, answer.unsqueeze(1)).squeeze(1) - at.mean(new long[] { 1 }), atol: 1e-10, rtol: 1e-10,
                    what: $"{name}: centred DLA at {position}");
            }
            // one component alone: its attribution is its LN-applied vector through w ⊙ u (a second, independent route)
            var normed = LogitAttribution.ApplyFinalLayerNorm(model, cache, parts.Stack);
            var (wU, _) = model.Unembedding!.Value;
            var u = wU.index_select(1, answer).t() - wU.index_select(1, against).t();
            using var last = LogitAttribution.Direct(model, cache, parts, -1, answer, against);
            var expected = (normed[parts.Labels.Count - 1].select(1, T - 1) * model.FinalNorm.Weight * u).sum(-1);
            AssertClose.Tensors(last.PerComponent[parts.Labels.Count - 1], expected, atol: 1e-12, rtol: 1e-12, what: $"{name}: last component");
        }
    }

    [Fact]
    public void WhatCannotBeAttributedIsNamed()
    {
        using var based = Model("BaseConv (no heads)");
        using var scope = NewDisposeScope();
        var (_, cache) = based.RunWithCache(Tokens());
        using (cache)
        {
            Assert.Equal("layer", Assert.Throws<ArgumentException>(() => ResidualStream.HeadResults(based, cache, 0)).ParamName);
            Assert.Equal("layer", Assert.ThrowsAny<ArgumentException>(() => ResidualStream.HeadResults(based, cache, 2)).ParamName);
            var parts = ResidualStream.Decomposed(based, cache);
            Assert.Equal("answer", Assert.Throws<ArgumentException>(
                () => LogitAttribution.Direct(based, cache, parts, 0, torch.tensor(new long[] { 1, 2, Vocab }))).ParamName);
            Assert.Equal("against", Assert.Throws<ArgumentException>(
                () => LogitAttribution.Direct(based, cache, parts, 0, torch.tensor(new long[] { 1, 2, 3 }), torch.tensor(new long[] { 1 }))).ParamName);
            Assert.Equal("position", Assert.ThrowsAny<ArgumentException>(
                () => LogitAttribution.Direct(based, cache, parts, T, torch.tensor(new long[] { 1, 2, 3 }))).ParamName);
            Assert.Equal("label", Assert.Throws<ArgumentException>(() => parts["nope"]).ParamName);
        }
        using var moh = new TinyGpt(Config(), _ => new AttentionLab.Papers.Moh.MixtureOfHeadAttention(D, H, shared: 1, topK: 2));
        var (_, mohCache) = moh.RunWithCache(Tokens());
        using (mohCache)
            Assert.Contains("reweights its heads", Assert.Throws<ArgumentException>(() => ResidualStream.HeadResults(moh, mohCache, 1)).Message);
        using var register = new TinyGpt(Config(AttentionKind.Register));
        var (_, registerCache) = register.RunWithCache(Tokens());
        using (registerCache)
            Assert.Equal("model", Assert.Throws<ArgumentException>(() => ResidualStream.Accumulated(register, registerCache)).ParamName);
    }
}
