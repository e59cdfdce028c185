using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.AffineScaled;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P31 Affine-Scaled Attention: both forms and the layer against the naive twin over the awkward-shape grid, the spec's identities,
/// buffers, bad input.
/// </summary>
public class AffineScaledTests
{
    static Tensor[] Inputs(Shape s, ScalarType dtype, Generator gen) =>
    [
        torch.randn(new long[] { s.B, s.T, s.H, s.D }, generator: gen, dtype: float64).to(dtype),
        torch.randn(new long[] { s.B, s.T, s.H, s.D }, generator: gen, dtype: float64).to(dtype),
        torch.randn(new long[] { s.B, s.T, s.H, s.Dv }, generator: gen, dtype: float64).to(dtype),
        torch.rand(new long[] { s.B, s.T, s.H }, generator: gen, dtype: float64).to(dtype),
        torch.rand(new long[] { s.H }, generator: gen, dtype: float64).to(dtype),
    ];

    public static IEnumerable<object[]> GridNorms() => Conformance.ShapesWith(BiasNorm.VisibleKeys, BiasNorm.FullLength);

    [Theory]
    [MemberData(nameof(GridNorms))]
    public void ExplicitAndDecomposedFormsEqualTheNaiveTwin(Shape shape, BiasNorm norm) =>
        Conformance.Check(shape, Inputs,
            new Form("naive", x => new FormOutput(AffineScaledNaive.Attention(x[0], x[1], x[2], x[3], x[4], norm))),
            [
                new Form("explicit", x => new FormOutput(AffineScaledOps.Explicit(x[0], x[1], x[2], x[3], x[4], norm))),
                new Form("decomposed", x => new FormOutput(AffineScaledOps.Decomposed(x[0], x[1], x[2], x[3], x[4], norm))),
            ], fixedInputs: [4]);

    [Theory]
    [MemberData(nameof(GridNorms))]
    public void TheLayerEqualsItsNaiveTwinWithEveryGradient(Shape shape, BiasNorm norm)
    {
        using var scope = NewDisposeScope();
        int d = shape.D + shape.Dv + 1;
        torch.manual_seed(shape.T * 31 + shape.H);
        using var mixer = new AffineScaledAttention(d, shape.H, norm: norm, keyDim: shape.D, valueDim: shape.Dv);
        mixer.to(float64);
        var gen = new Generator(11);
        using (torch.no_grad())
        {
            mixer.AlphaMa.copy_(torch.rand(shape.H, generator: gen, dtype: float64));
            mixer.AlphaProj.weight!.mul_(20);                                          // α spreads over [0, 1] and the clip's flat parts
        }
        mixer.eval();
        var x = torch.randn(new long[] { shape.B, shape.T, d }, generator: gen, dtype: float64).requires_grad_();
        var leaves = new List<Tensor> { x };
        leaves.AddRange(mixer.parameters());
        var g = torch.randn(x.shape, generator: gen, dtype: float64);
        var fast = mixer.call(x);
        var naive = AffineScaledNaive.Layer(mixer, x);
        AssertClose.Tensors(fast, naive, 1e-10, 1e-10, $"{shape} {norm}: output");
        var gf = Gradients.Of([(fast * g).sum()], leaves, allowUnused: true);
        var gn = Gradients.Of([(naive * g).sum()], leaves, allowUnused: true);
        for (int i = 0; i < gf.Length; i++) AssertClose.Tensors(gf[i], gn[i], 1e-10, 1e-10, $"{shape} {norm}: gradient {i}");
    }

    [Fact]
    public void RowMassIsAlphaMa() => Assert.True(AffineScaledChecks.RowMassGap(torch.CPU) <= 1e-12);

    [Fact]
    public void UnitAlphaIsSoftmaxAttention() => Assert.True(AffineScaledChecks.UnitAlphaIsSoftmax(torch.CPU) <= 1e-12);

    [Fact]
    public void VisibleKeysIsCausalAndFullLengthLeaks()
    {
        Assert.Equal(0, AffineScaledChecks.CausalityLeak(BiasNorm.VisibleKeys, torch.CPU));
        Assert.True(AffineScaledChecks.CausalityLeak(BiasNorm.FullLength, torch.CPU) > 1e-3);
    }

    [Fact]
    public void TheEmaMovesInTrainingOnlyAndMatchesItsClosedForm()
    {
        var (gap, evalChange) = AffineScaledChecks.Ema(torch.CPU, steps: 7);
        Assert.True(gap <= 1e-12, $"gap {gap}");
        Assert.Equal(0, evalChange);
    }

    [Fact]
    public void AlphaMaIsABufferStartingAtZeroAndTravelsWithTheStateDict()
    {
        using var mixer = new AffineScaledAttention(8, 2);
        Assert.Contains(mixer.named_buffers(), b => b.name == "alpha_ma");
        Assert.DoesNotContain(mixer.named_parameters(), p => p.name.Contains("alpha_ma", StringComparison.Ordinal));
        Assert.Equal(0, mixer.AlphaMa.abs().sum().item<float>());
        using (torch.no_grad()) mixer.AlphaMa.fill_(0.25f);
        string path = Path.GetTempFileName();
        try
        {
            mixer.save(path);
            using var other = new AffineScaledAttention(8, 2);
            other.load(path);
            Assert.Equal(0.25f, other.AlphaMa[1].item<float>());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void AtInitTheOutputIsCentredAndMassZero()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        using var mixer = new AffineScaledAttention(12, 3);
        mixer.eval();
        Tensor? pattern = null;
        var hook = (HookPoint)mixer.named_modules().First(m => m.name == "hook_pattern").module;
        using var _ = hook.AddHook((p, _) => { pattern = p.detach().clone().DetachFromDisposeScope(); return null; });
        using var y = mixer.call(torch.randn(2, 6, 12));
        Assert.NotNull(pattern);
        Assert.True(pattern!.sum(-1).abs().max().item<float>() < 1e-6f, "α_ma = 0 at init: every row sums to 0");
        pattern.Dispose();
    }

    [Fact]
    public void StepReproducesForward() => Assert.True(AffineScaledChecks.StepVsForward(torch.CPU) <= 1e-10);

    [Fact]
    public void LinearClippingHitsTheSpecValues() => Assert.Equal(new[] { 0.0, 0.5, 1.0 }, AffineScaledChecks.ClippingAt());

    [Fact]
    public void NanInGivesNanOut()
    {
        using var scope = NewDisposeScope();
        var x = AffineScaledChecks.ToyInputs(new Generator(1), torch.CPU);
        x[0][0, 3, 1, 2] = double.NaN;                                                   // one query entry
        foreach (var norm in Enum.GetValues<BiasNorm>())
        {
            Assert.True(AffineScaledOps.Explicit(x[0], x[1], x[2], x[3], x[4], norm)[0, 3, 1].isnan().all().item<bool>());
            Assert.True(AffineScaledOps.Decomposed(x[0], x[1], x[2], x[3], x[4], norm)[0, 3, 1].isnan().all().item<bool>());
        }
        var alpha = x[3].clone();
        alpha[1, 2, 0] = double.NaN;
        Assert.True(AffineScaledOps.Explicit(x[0], x[1], x[2], alpha, x[4])[1, 2, 0].isnan().all().item<bool>());
        using var mixer = new AffineScaledAttention(6, 2);
        var input = torch.randn(1, 4, 6);
        input[0, 1, 0] = float.NaN;
        Assert.True(mixer.call(input)[0, 1].isnan().all().item<bool>());
    }

    [Fact]
    public void AFullyHiddenRowGivesZerosAsTheBaseDoes()
    {
        using var scope = NewDisposeScope();
        var scores = torch.randn(1, 2, 3, 4, dtype: float64);
        scores[0, 1, 2] = double.NegativeInfinity;                                      // a row that sees nothing
        scores[0, 0, 1, 3] = double.NegativeInfinity;                                   // a row that sees 3 of 4 keys
        var alpha = torch.rand(1, 2, 3, dtype: float64);
        var m = torch.rand(1, 2, 1, dtype: float64);
        foreach (var norm in Enum.GetValues<BiasNorm>())
        {
            var a = AffineScaledOps.Weights(scores, alpha, m, norm);
            Assert.Equal(0, a[0, 1, 2].abs().sum().item<double>());
            Assert.False(a.isnan().any().item<bool>());
        }
        var visible = AffineScaledOps.Weights(scores, alpha, m);
        Assert.Equal(0, visible[0, 0, 1, 3].item<double>());                             // β reaches visible keys only
        Assert.True(Math.Abs(visible[0, 0, 1].sum().item<double>() - m[0, 0, 0].item<double>()) < 1e-12);
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        var x = AffineScaledChecks.ToyInputs(new Generator(1), torch.CPU);
        Assert.Equal("alpha", Assert.Throws<ArgumentException>(() => AffineScaledOps.Explicit(x[0], x[1], x[2], x[3].unsqueeze(-1), x[4])).ParamName);
        Assert.Equal("alphaMa",
            Assert.Throws<ArgumentException>(() => AffineScaledOps.Explicit(x[0], x[1], x[2], x[3], torch.rand(5, dtype: float64))).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => AffineScaledOps.Decomposed(x[0], x[1], x[2].narrow(1, 0, 3), x[3], x[4])).ParamName);
        Assert.Equal("rho", Assert.Throws<ArgumentException>(() => new AffineScaledAttention(8, 2, rho: 1)).ParamName);
        using var full = new AffineScaledAttention(8, 2, norm: BiasNorm.FullLength);
        Assert.False(full.CanStream);
        Assert.Throws<InvalidOperationException>(() => full.NewState(1, float32, torch.CPU));
    }

    [Fact]
    public void InATinyGptTheHooksSeeAlphaAndTheAffinePattern()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(4);
        var cfg = new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, VocabSize: 10, MaxLength: 8, Positions: PositionKind.Learned);
        using var model = new TinyGpt(cfg, _ => new AffineScaledAttention(16, 2));
        foreach (var block in model.Blocks) using (torch.no_grad()) ((AffineScaledAttention)block.Mixer).AlphaMa.fill_(0.7f);
        model.eval();
        var (logits, cache) = model.RunWithCache(torch.randint(0, 10, new long[] { 3, 8 }));
        using var _ = cache;
        Assert.Equal(new long[] { 3, 8, 10 }, logits.shape);
        var alpha = cache["blocks.1.attn.hook_alpha"];
        Assert.Equal(new long[] { 3, 8, 2 }, alpha.shape);
        Assert.True(alpha.ge(0).all().item<bool>() && alpha.le(1).all().item<bool>());
        var mass = cache["pattern", 0].sum(-1);
        Assert.True((mass - 0.7f).abs().max().item<float>() < 1e-5f);
    }
}
