using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>The shared causal depthwise convolution (moved from BASED's BaseConv in issue 12): definition, gradients, streaming, bad inputs.</summary>
public class CausalDepthwiseConvTests
{
    /// <summary>y_t = b + Σ_j w_j ⊙ u_{t−(k−1)+j} (u_{&lt;0} = 0), written out as a loop in float64 — with autograd for u, w, b.</summary>
    static Tensor Loop(Tensor u, Tensor w, Tensor? b)
    {
        long t = u.shape[1], k = w.shape[2];
        var rows = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var y = b is null ? torch.zeros_like(u.select(1, 0)) : b.unsqueeze(0).expand(u.shape[0], -1);
            for (long j = 0; j < k; j++)
            {
                long src = i - (k - 1) + j;
                if (src >= 0) y = y + w.select(1, 0).select(1, j) * u.select(1, src);
            }
            rows.Add(y);
        }
        return torch.stack(rows, 1);
    }

    /// <summary>Forward and the gradients of u, w and b equal the loop (float64, 1e-12) for T = 1, k > T, k = 1, with and without bias.</summary>
    [Theory]
    [InlineData(1, 3, true)]
    [InlineData(6, 3, true)]
    [InlineData(5, 7, false)]
    [InlineData(9, 1, true)]
    [InlineData(13, 4, false)]
    public void ForwardAndGradientsAreTheConvolutionWrittenOut(int t, int kernel, bool bias)
    {
        torch.manual_seed(t + 10 * kernel);
        using var scope = NewDisposeScope();
        using var conv = new CausalDepthwiseConv(5, kernel, bias);
        conv.to(float64);
        Assert.Equal(bias, conv.Bias is not null);
        var u = torch.randn(2, t, 5, dtype: float64).requires_grad_();
        var g = torch.randn(2, t, 5, dtype: float64);
        var y = conv.call(u);
        var fast = Gradients.Of([(y * g).sum()], [u, conv.Weight, .. bias ? new Tensor[] { conv.Bias! } : []]);
        var w = conv.Weight.detach().clone().requires_grad_();
        var b = conv.Bias?.detach().clone().requires_grad_();
        var u2 = u.detach().clone().requires_grad_();
        var reference = Loop(u2, w, b);
        var slow = Gradients.Of([(reference * g).sum()], [u2, w, .. b is null ? [] : new[] { b }]);
        AssertClose.Tensors(y, reference, 1e-12, 1e-12, "forward");
        string[] names = { "u", "w", "b" };
        for (int i = 0; i < fast.Length; i++) AssertClose.Tensors(fast[i], slow[i], 1e-12, 1e-12, $"d/d{names[i]}");
    }

    /// <summary>Step reproduces the forward token by token; the state is the last k − 1 inputs.</summary>
    [Theory]
    [InlineData(1, 3)]
    [InlineData(10, 4)]
    [InlineData(4, 1)]
    public void StepReproducesTheForward(int t, int kernel)
    {
        torch.manual_seed(3 * t + kernel);
        using var scope = NewDisposeScope();
        using var _ = torch.no_grad();
        using var conv = new CausalDepthwiseConv(6, kernel);
        var u = torch.randn(3, t, 6);
        var full = conv.call(u);
        using var state = conv.NewState(3, float32, CPU);
        var steps = Enumerable.Range(0, t).Select(i => conv.Step(u.select(1, i), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, 1e-6, 1e-6, "Step vs forward");
        Assert.Equal(t, state.Position);
        Assert.Equal(3L * (kernel - 1) * 6 * 4, state.Bytes);
        Assert.Equal(state.Bytes, conv.StateBytes(3));
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        using var conv = new CausalDepthwiseConv(4);
        Assert.Equal("u", Assert.Throws<ArgumentException>(() => conv.call(torch.randn(2, 4))).ParamName);
        Assert.Equal("u", Assert.Throws<ArgumentException>(() => conv.call(torch.randn(2, 3, 5))).ParamName);
        using var state = conv.NewState(1, float32, CPU);
        Assert.Equal("xT", Assert.Throws<ArgumentException>(() => conv.Step(torch.randn(1, 5), state)).ParamName);
        using var other = new SlidingWindowAttention(4, 2, 2);
        using var foreign = other.NewState(1, float32, CPU);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => conv.Step(torch.randn(1, 4), foreign)).ParamName);
        Assert.Equal("channels", Assert.Throws<ArgumentOutOfRangeException>(() => new CausalDepthwiseConv(0)).ParamName);
        Assert.Equal("kernel", Assert.Throws<ArgumentOutOfRangeException>(() => new CausalDepthwiseConv(4, 0)).ParamName);
    }
}
