using AttentionLab.Core;
using AttentionLab.Attention;
using AttentionLab.Models;
using AttentionLab.Papers.DeconstructingAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// The variants against their naive twins over awkward shapes, their patterns through the hooks, and the properties each
/// variant keeps or drops.
/// </summary>
public class DeconstructingAttentionTests
{
    public static TheoryData<MixerKind, int, int, int> Grid()
    {
        var data = new TheoryData<MixerKind, int, int, int>();
        foreach (var kind in Enum.GetValues<MixerKind>())
            foreach (var (t, d, h) in new[] { (1, 15, 3), (2, 8, 2), (7, 15, 3), (9, 6, 1) })   // T = 1, odd T, odd head width 5, one head
                data.Add(kind, t, d, h);
        return data;
    }

    static (DeconstructedAttention Mixer, EmbeddingTap Tap) Make(MixerKind kind, int d, int h, Generator gen, long b, long t)
    {
        var tap = new EmbeddingTap();
        torch.manual_seed(3);
        var mixer = DeconstructedAttention.Create(kind, d, h, maxLength: 12, embeddings: tap);
        mixer.to(float64);
        if (mixer is StaticMixAttention sm)
            using (torch.no_grad()) sm.StaticBias.copy_(torch.randn(h, 12, generator: gen, dtype: float64));
        tap.Set(torch.randn(b, t, d, generator: gen, dtype: float64));
        return (mixer, tap);
    }

    [Theory]
    [MemberData(nameof(Grid))]
    public void EveryVariantEqualsItsNaiveTwin(MixerKind kind, int t, int d, int h)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(11);
        var (mixer, tap) = Make(kind, d, h, gen, 2, t);
        using var _ = mixer;
        using var __ = tap;
        var x = torch.randn(2, t, d, generator: gen, dtype: float64).requires_grad_();
        var g = torch.randn(2, t, d, generator: gen, dtype: float64);
        var leaves = new List<Tensor> { x };
        leaves.AddRange(mixer.parameters());
        var fast = mixer.call(x);
        var naive = DeconstructedNaive.Output(mixer, x);
        Assert.True((fast - naive).abs().max().item<double>() <= 1e-10, $"{kind} output");
        var gf = Gradients.Of(new[] { (fast * g).sum() }, leaves);
        var gn = Gradients.Of(new[] { (naive * g).sum() }, leaves);
        for (int i = 0; i < leaves.Count; i++)
            Assert.True((gf[i] - gn[i]).abs().max().item<double>() <= 1e-10, $"{kind} gradient of leaf {i}");
        var (q, k, _) = mixer.Project(x.detach());
        var expected = DeconstructedNaive.Pattern(kind, q, k, (mixer as StaticMixAttention)?.StaticBias.detach());
        Assert.True((mixer.Pattern(x.detach()) - expected).abs().max().item<double>() <= 1e-10, $"{kind} pattern");
    }

    [Theory]
    [InlineData(MixerKind.Standard)]
    [InlineData(MixerKind.NoMix)]
    [InlineData(MixerKind.FixedMix)]
    [InlineData(MixerKind.StaticMix)]
    [InlineData(MixerKind.ReluNorm)]
    [InlineData(MixerKind.DistanceKernel)]
    [InlineData(MixerKind.DecoupledQK)]
    public void TheModelsPatternHookCarriesACausalStochasticMatrixAndStepEqualsForward(MixerKind kind)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(0);
        var config = new TinyGptConfig(Layers: 2, DModel: 12, Heads: 3, Positions: PositionKind.Learned, VocabSize: 11, MaxLength: 16);
        var (model, tap) = LayerSchedule.Build(config, LayerSchedule.Parse("VS", kind));
        using var _ = model;
        using var __ = tap;
        model.eval();
        var ids = torch.randint(0, 11, new long[] { 2, 9 }, dtype: ScalarType.Int64);
        Tensor? a = null;
        Tensor y;
        using (torch.no_grad())
        using (model.HookPoints["blocks.0.attn.hook_pattern"].AddHook((p, _) => { a = p.detach().clone().DetachFromDisposeScope(); return null; }))
            y = model.call(ids);
        Assert.NotNull(a);
        using var held = a;                                                             // the hook kept it out of the forward's scopes
        Assert.Equal(new long[] { 2, 3, 9, 9 }, a!.shape);
        Assert.Equal(0.0, a.triu(1).abs().max().item<float>());
        Assert.True((a.sum(-1) - 1).abs().max().item<float>() < 1e-6);
        if (kind == MixerKind.NoMix) Assert.Equal(0.0, (a - torch.eye(9)).abs().max().item<float>());
        if (kind == MixerKind.FixedMix)
            Assert.True((a[0, 0, 4] - torch.tensor(new[] { .2f, .2f, .2f, .2f, .2f, 0, 0, 0, 0 })).abs().max().item<float>() < 1e-7);

        // the hooked pass and the fast pass agree; decoding token by token reproduces the forward
        using (torch.no_grad())
        {
            Assert.True((model.call(ids) - y).abs().max().item<float>() < 1e-5);
            using var state = model.NewState(2);
            var steps = Enumerable.Range(0, 9).Select(i => model.Step(ids.select(1, i), state)).ToArray();
            Assert.True((torch.stack(steps, 1) - y).abs().max().item<float>() < 1e-4, $"{kind} Step vs forward");
        }
    }

    [Fact]
    public void NoMixOutputIgnoresEveryOtherTokenAndStandardMixesThem()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(5);
        foreach (var kind in new[] { MixerKind.NoMix, MixerKind.Standard })
        {
            var (mixer, tap) = Make(kind, 8, 2, gen, 1, 6);
            using var _ = mixer;
            using var __ = tap;
            var x = torch.randn(1, 6, 8, generator: gen, dtype: float64);
            var x2 = x.clone();
            x2[0, 1] = torch.randn(8, generator: gen, dtype: float64);                 // a token before t = 4
            double change = (mixer.call(x2)[0, 4] - mixer.call(x)[0, 4]).abs().max().item<double>();
            if (kind == MixerKind.NoMix) Assert.Equal(0.0, change);
            else Assert.True(change > 1e-6, "standard attention must see token 1 from position 4");
        }
    }

    [Fact]
    public void StaticMixIgnoresTheInputAndDecoupledQkReadsOnlyTheEmbeddings()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        var (stat, tap1) = Make(MixerKind.StaticMix, 8, 2, gen, 1, 6);
        using (stat) using (tap1)
        {
            var p1 = stat.Pattern(torch.randn(1, 6, 8, generator: gen, dtype: float64));
            var p2 = stat.Pattern(torch.randn(1, 6, 8, generator: gen, dtype: float64) * 5);
            Assert.Equal(0.0, (p1 - p2).abs().max().item<double>());
            Assert.True((p1[0, 0] - p1[0, 1]).abs().max().item<double>() > 1e-3, "heads have their own bias");
        }
        var (dec, tap2) = Make(MixerKind.DecoupledQK, 8, 2, gen, 1, 6);
        using (dec) using (tap2)
        {
            var x = torch.randn(1, 6, 8, generator: gen, dtype: float64);
            var p1 = dec.Pattern(x);
            Assert.Equal(0.0, (dec.Pattern(x * 3 + 1) - p1).abs().max().item<double>());      // x moves v only
            tap2.Set(torch.randn(1, 6, 8, generator: gen, dtype: float64));
            Assert.True((dec.Pattern(x) - p1).abs().max().item<double>() > 1e-3, "new embeddings, new pattern");
        }
    }

    [Fact]
    public void QueryKeyFreeVariantsDropWqAndWk()
    {
        long Count(MixerKind kind)
        {
            using var tap = new EmbeddingTap();
            using var m = DeconstructedAttention.Create(kind, 16, 4, 8, tap);
            return m.ParameterCount;
        }
        long standard = Count(MixerKind.Standard);
        Assert.Equal(standard, Count(MixerKind.DecoupledQK));
        long vestige = 4 * (16 + 1);                                                    // one key column per head (weight + bias)
        Assert.Equal(standard - 2 * (16 * 16 + 16) + vestige, Count(MixerKind.NoMix));
        Assert.Equal(Count(MixerKind.NoMix), Count(MixerKind.FixedMix));
        Assert.Equal(Count(MixerKind.NoMix) + 4 * 8, Count(MixerKind.StaticMix));
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        Assert.Equal("schedule", Assert.Throws<ArgumentException>(() => LayerSchedule.Parse("SXV", MixerKind.NoMix)).ParamName);
        Assert.Equal("embeddings", Assert.Throws<ArgumentException>(() => DeconstructedAttention.Create(MixerKind.DecoupledQK, 8, 2)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => DeconstructedAttention.Create(MixerKind.NoMix, 10, 3)).ParamName);
        using var tap = new EmbeddingTap();
        using var stat = DeconstructedAttention.Create(MixerKind.StaticMix, 8, 2, maxLength: 4, embeddings: tap);
        Assert.Throws<ArgumentException>(() => stat.call(torch.randn(1, 6, 8)));
        using var dec = DeconstructedAttention.Create(MixerKind.DecoupledQK, 8, 2, embeddings: tap);
        Assert.Throws<InvalidOperationException>(() => dec.call(torch.randn(1, 6, 8)));   // the tap has seen no pass
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(2);
        foreach (var kind in Enum.GetValues<MixerKind>())
        {
            var (mixer, tap) = Make(kind, 8, 2, gen, 1, 5);
            using var _ = mixer;
            using var __ = tap;
            var x = torch.randn(1, 5, 8, generator: gen, dtype: float64);
            x[0, 2, 3] = torch.tensor(double.NaN, dtype: float64);
            Assert.True(mixer.call(x)[0, 2].isnan().any().item<bool>(), $"{kind}: NaN at token 2 must reach output 2");
        }
    }
}
