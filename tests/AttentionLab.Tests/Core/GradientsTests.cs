using AttentionLab.Core;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Core;

/// <summary>The checked gradient: libtorch's rejections become managed exceptions instead of terminating the process.</summary>
public class GradientsTests
{
    [Fact]
    public void EqualsAutogradWhereEveryInputIsUsed()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(3, 4, dtype: float64, generator: new Generator(1)).requires_grad_();
        var w = torch.randn(4, 2, dtype: float64, generator: new Generator(2)).requires_grad_();
        var g = Gradients.Of([x.matmul(w).pow(2).sum()], [x, w]);
        var y = x.matmul(w);                                                   // ∂Σ(xw)²/∂x = 2(xw)wᵀ, ∂/∂w = 2xᵀ(xw)
        AssertClose.Tensors(g[0], (2 * y).matmul(w.t()).detach(), 1e-12, 1e-12, "dx");
        AssertClose.Tensors(g[1], x.t().matmul(2 * y).detach(), 1e-12, 1e-12, "dw");
    }

    [Fact]
    public void AnUnusedInputThrowsInsteadOfEndingTheProcess()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(3, dtype: float64).requires_grad_();
        var unused = torch.randn(2, dtype: float64).requires_grad_();
        var error = Assert.Throws<InvalidOperationException>(() => Gradients.Of([x.sum()], [x, unused]));
        Assert.Contains("input 1", error.Message);
        var allowed = Gradients.Of([x.sum()], [x, unused], allowUnused: true);
        Assert.Equal(0.0, allowed[1].abs().sum().item<double>());
        Assert.Equal(3.0, allowed[0].sum().item<double>());
    }

    [Fact]
    public void AnOutputWithoutAGraphThrowsAndNamesTheGradMode()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(3, dtype: float64).requires_grad_();
        Tensor y;
        using (torch.no_grad()) y = (x * 2).sum();
        var error = Assert.Throws<InvalidOperationException>(() => Gradients.Of([y], [x]));
        Assert.Contains("output 0", error.Message);
        Assert.Throws<InvalidOperationException>(() => Gradients.Of([x.sum()], [torch.ones(2)]));
        Assert.Throws<ArgumentException>(() => Gradients.Of([], [x]));
    }
}
