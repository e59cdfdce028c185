using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Tests.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>Upcycling a dense FFN into experts and parameter averaging (issue 13).</summary>
public class UpcyclingTests
{
    static TinyMlp Dense(int seed, int d = 6, int hidden = 10)
    {
        torch.manual_seed(seed);
        var mlp = new TinyMlp(d, hidden);
        mlp.to(ScalarType.Float64);
        return mlp;
    }

    [Theory]
    [InlineData(4, 1, RouterMode.TopK)]
    [InlineData(4, 2, RouterMode.TopK)]
    [InlineData(4, 4, RouterMode.TopK)]
    [InlineData(3, 3, RouterMode.Soft)]
    [InlineData(1, 1, RouterMode.TopK)]
    public void UpcycledMoeEqualsTheDenseFfnForAnyRouter(int experts, int k, RouterMode mode)
    {
        using var scope = NewDisposeScope();
        using var dense = Dense(1);
        using var moe = Upcycling.FromDense(dense, experts, k, mode);
        var x = torch.randn(new long[] { 3, 7, 6 }, dtype: ScalarType.Float64, generator: new Generator(2));
        var expected = dense.call(x);
        for (int trial = 0; trial < 3; trial++)                                         // any router: scale it up, randomise it
        {
            var w = moe.Router.Weight.weight!;
            using (torch.no_grad()) w.copy_(torch.randn(w.shape, dtype: ScalarType.Float64, generator: new Generator((ulong)trial)) * (1 + 5 * trial));
            AssertClose.Tensors(moe.call(x), expected, 1e-10, 1e-10, $"upcycled ({experts} experts, k = {k}, {mode}, router trial {trial})");
        }
        Assert.All(moe.Experts, e => Assert.NotSame(dense, e));
    }

    [Fact]
    public void RawTopKGatesDoNotSumToOneSoTheyChangeTheFunction()
    {
        using var scope = NewDisposeScope();
        using var dense = Dense(2);
        using var moe = Upcycling.FromDense(dense, 4, 1, renormalise: false);
        var x = torch.randn(new long[] { 2, 5, 6 }, dtype: ScalarType.Float64, generator: new Generator(3));
        Assert.True(moe.call(x).sub(dense.call(x)).abs().max().item<double>() > 1e-3, "Switch's raw gate p < 1 scales the output");
    }

    [Fact]
    public void ZeroRouterSplitsGatesEvenlyAndExpertsAreIndependentCopies()
    {
        using var scope = NewDisposeScope();
        using var dense = Dense(3);
        using var moe = Upcycling.FromDense(dense, 4, 2, zeroRouter: true);
        var r = moe.Router.Route(torch.randn(new long[] { 5, 6 }, dtype: ScalarType.Float64));
        AssertClose.Tensors(r.Gates, torch.full(new long[] { 5, 2 }, 0.5, dtype: ScalarType.Float64), 1e-15, 0, "zero router gates");
        using (torch.no_grad()) moe.Experts[0].In.weight!.add_(1);                      // training one expert leaves the others and the source
        Assert.True(TensorAssert.Same(moe.Experts[1].In.weight!, dense.In.weight!));
    }

    [Fact]
    public void FromExpertsTakesOneFfnPerBranch()
    {
        using var scope = NewDisposeScope();
        var ffns = new[] { Dense(4), Dense(5), Dense(6) };
        using var moe = Upcycling.FromExperts(ffns, topK: 1);
        var x = torch.randn(new long[] { 4, 6 }, dtype: ScalarType.Float64, generator: new Generator(7));
        var r = moe.Router.Route(x);
        var expected = MixtureOfExpertsNaive.Forward(x, r.DenseGates(), (i, xs) => ffns[i].call(xs));
        AssertClose.Tensors(moe.call(x.unsqueeze(0)).squeeze(0), expected, 1e-10, 1e-10, "BTX-style experts");
        Assert.Equal("ffns", Assert.Throws<ArgumentException>(() => Upcycling.FromExperts([Dense(1), Dense(1, hidden: 8)], 1)).ParamName);
    }

    static TinyGpt Gpt(int seed)
    {
        torch.manual_seed(seed);
        var m = new TinyGpt(new TinyGptConfig(Layers: 1, DModel: 8, Heads: 2, VocabSize: 7, Positions: PositionKind.Rope));
        m.to(ScalarType.Float64);
        return m;
    }

    [Fact]
    public void AverageIsTheWeightedMeanOfEveryParameter()
    {
        using var scope = NewDisposeScope();
        var models = new[] { Gpt(1), Gpt(2), Gpt(3) };
        using var target = Gpt(4);
        var written = ParameterAveraging.AverageInto(target, models, [1, 2, 3]);
        Assert.Equal(target.named_parameters().Count(), written.Count);
        var tables = models.Select(m => m.named_parameters().ToDictionary(p => p.name, p => p.parameter)).ToArray();
        foreach (var (name, p) in target.named_parameters())
        {
            var expected = (tables[0][name] * 1 + tables[1][name] * 2 + tables[2][name] * 3) / 6;
            AssertClose.Tensors(p, expected, 1e-14, 1e-14, name);
        }
        var dict = ParameterAveraging.Average(models, [1, 2, 3]);
        AssertClose.Tensors(dict["embed.weight"], target.Embed.named_parameters().First().parameter, 0, 0, "Average vs AverageInto");
    }

    [Fact]
    public void AveragingIdenticalModelsOrOneWeightReturnsThatModel()
    {
        using var scope = NewDisposeScope();
        var x = torch.randint(0, 7, new long[] { 2, 5 });
        using var a = Gpt(5);
        using var b = Gpt(6);
        using var target = Gpt(7);
        ParameterAveraging.AverageInto(target, [a, a, a]);
        AssertClose.Tensors(target.call(x), a.call(x), 1e-12, 1e-12, "mean of three copies");
        ParameterAveraging.AverageInto(target, [a, b], [0, 1]);
        Assert.True(TensorAssert.Same(target.call(x), b.call(x)), "weights (0, 1) give the second model exactly");
    }

    [Fact]
    public void IncludeLeavesTheOtherParametersAlone()
    {
        using var scope = NewDisposeScope();
        using var a = Gpt(8);
        using var target = Gpt(9);
        var mlpBefore = target.Blocks[0].Mlp!.In.weight!.clone();
        var written = ParameterAveraging.AverageInto(target, [a], include: n => !n.Contains(".mlp.", StringComparison.Ordinal));
        Assert.DoesNotContain(written, n => n.Contains(".mlp.", StringComparison.Ordinal));
        Assert.True(TensorAssert.Same(target.Blocks[0].Mlp!.In.weight!, mlpBefore));
        Assert.True(TensorAssert.Same(target.Blocks[0].Norm1.Weight, a.Blocks[0].Norm1.Weight));
    }

    [Fact]
    public void BadWeightsAndShapesThrowNamingTheArgument()
    {
        using var a = Gpt(10);
        using var b = Gpt(11);
        Assert.Equal("weights", Assert.Throws<ArgumentException>(() => ParameterAveraging.Average([a, b], [1])).ParamName);
        Assert.Equal("weights", Assert.Throws<ArgumentException>(() => ParameterAveraging.Average([a, b], [1, -1])).ParamName);
        Assert.Equal("weights", Assert.Throws<ArgumentException>(() => ParameterAveraging.Average([a, b], [0, 0])).ParamName);
        Assert.Equal("weights", Assert.Throws<ArgumentException>(() => ParameterAveraging.Average([a, b], [double.NaN, 1])).ParamName);
        Assert.Equal("models", Assert.Throws<ArgumentException>(() => ParameterAveraging.Average([])).ParamName);
        torch.manual_seed(1);
        using var wide = new TinyGpt(new TinyGptConfig(Layers: 1, DModel: 12, Heads: 2, VocabSize: 7));
        Assert.Equal("models", Assert.Throws<ArgumentException>(() => ParameterAveraging.Average([a, wide])).ParamName);
    }
}
