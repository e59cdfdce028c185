using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Core;

public class FormAgreementTests
{
    static (nn.Module<Tensor, Tensor> Module, Tensor X) Linear()
    {
        torch.manual_seed(3);
        var module = nn.Linear(5, 3).to(ScalarType.Float64);
        return (module, torch.randn(4, 5, dtype: ScalarType.Float64));
    }

    [Fact]
    public void TheSameFormTwiceAgreesExactly()
    {
        var (m, x) = Linear();
        using var _ = m;
        var agreement = FormAgreement.Of(m, () => m.call(x), () => m.call(x));
        Assert.Equal(new FormAgreement(0, 0, 0, 0), agreement);
    }

    [Fact]
    public void AFormThatDiffersShowsInOutputsAndGradients()
    {
        var (m, x) = Linear();
        using var _ = m;
        var agreement = FormAgreement.Of(m, () => m.call(x), () => m.call(x) * 1.01);
        Assert.True(agreement.Output > 1e-4 && agreement.Gradients > 1e-4, $"{agreement}");
        Assert.True(agreement.ScaledOutput < agreement.Output && agreement.ScaledGradients < agreement.Gradients, $"{agreement}");
        // a constant shift moves the outputs, not ∂ℓ/∂θ: the two bounds are read separately
        var shifted = FormAgreement.Of(m, () => m.call(x), () => m.call(x) + 1);
        Assert.Equal(1, shifted.Output, 12);
        Assert.Equal(0, shifted.Gradients, 12);
    }

    [Fact]
    public void FormsOfDifferentShapesAndModulesWithoutParametersAreRefused()
    {
        var (m, x) = Linear();
        using var _ = m;
        var e = Assert.Throws<InvalidOperationException>(() => FormAgreement.Of(m, () => m.call(x), () => m.call(x).narrow(0, 0, 2)));
        Assert.Contains("shape", e.Message);
        using var relu = nn.ReLU();
        Assert.Equal("module", Assert.Throws<ArgumentException>(() => FormAgreement.Of(relu, () => relu.call(x), () => relu.call(x))).ParamName);
    }
}
