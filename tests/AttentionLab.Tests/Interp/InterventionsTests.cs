using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>Pattern override, uniform attention and injection against what they must do to the cached activations.</summary>
public class InterventionsTests
{
    const int D = 16, H = 4, Vocab = 11, T = 6;

    static TinyGpt Model()
    {
        torch.manual_seed(31);
        var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: D, Heads: H, MlpRatio: 2, VocabSize: Vocab, MaxLength: 16,
            Positions: PositionKind.Learned));
        model.to(ScalarType.Float64);
        return model;
    }

    static Tensor Tokens() => torch.randint(0, Vocab, new long[] { 2, T }, generator: new Generator(9));

    [Fact]
    public void UniformAttentionGivesTheHeadTheCausalMeanOfV()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var plain = model.call(tokens);
        var uniform = Interventions.UniformAttention(model, 1, 2);
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        using (model.Hooks(uniform))
        {
            var (edited, editedCache) = model.RunWithCache(tokens);
            using (editedCache)
            {
                var v = editedCache["v", 1].select(2, 2);                                            // [B, T, Dv]
                var mean = v.cumsum(1) / torch.arange(1, T + 1, dtype: ScalarType.Float64).view(1, T, 1);
                AssertClose.Tensors(editedCache["z", 1].select(2, 2), mean, atol: 1e-12, rtol: 1e-12, what: "z of the uniform head = causal mean of v");
                AssertClose.Tensors(editedCache["z", 1].select(2, 1), cache["z", 1].select(2, 1), atol: 0, rtol: 0, what: "another head unchanged");
                Assert.True((edited - plain).abs().max().item<double>() > 1e-6, "the output did not change");
            }
        }
        AssertClose.Tensors(model.call(tokens), plain, atol: 0, rtol: 0, what: "the hook is gone after its scope");
        Assert.Throws<ArgumentOutOfRangeException>(() => Interventions.UniformAttention(model, 2, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Interventions.UniformAttention(model, 0, H));
    }

    [Fact]
    public void AnOverrideOfTheWrongShapeIsNamed()
    {
        using var model = Model();
        var hook = Interventions.OverridePattern(model, 0, 1, p => p.narrow(2, 0, 2));
        Assert.Equal("replace", Assert.Throws<ArgumentException>(() => model.RunWithHooks(Tokens(), hook)).ParamName);
    }

    [Fact]
    public void InjectionAddsTheVectorAtOnePosition()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var vector = torch.randn(D, dtype: ScalarType.Float64, generator: new Generator(2));
        var (_, cache) = model.RunWithCache(tokens);
        using (cache)
        using (model.Hooks(Interventions.Inject(model, "resid_pre", 1, position: -2, vector, scale: 3)))
        {
            var (_, injected) = model.RunWithCache(tokens);
            using (injected)
            {
                var expected = cache["resid_pre", 1].clone();
                expected.select(1, T - 2).add_(vector * 3);
                AssertClose.Tensors(injected["resid_pre", 1], expected, atol: 1e-12, rtol: 0, what: "resid_pre after injection");
                AssertClose.Tensors(injected["resid_pre", 0], cache["resid_pre", 0], atol: 0, rtol: 0, what: "an earlier layer unchanged");
            }
        }
        Assert.Equal("hookName", Assert.Throws<ArgumentException>(() => Interventions.Inject(model, "nope", 0, 0, vector)).ParamName);
        Assert.Equal("scale", Assert.Throws<ArgumentException>(() => Interventions.Inject(model, "resid_pre", 0, 0, vector, double.NaN)).ParamName);
        var far = Interventions.Inject(model, "resid_pre", 0, T, vector);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.RunWithHooks(tokens, far));
    }
}
