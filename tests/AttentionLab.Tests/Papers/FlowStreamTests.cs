using AttentionLab.Core;
using AttentionLab.Papers.Flowformer;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class FlowStreamTests
{
    static double StreamVsForward(TorchSharp.torch.nn.Module<Tensor, Tensor> mixer, AttentionLab.Models.IStreamingMixer streaming, int batch, int t, int d)
    {
        using var scope = NewDisposeScope();
        mixer.to(ScalarType.Float64).eval();
        torch.manual_seed(11);
        var x = torch.randn(batch, t, d, dtype: ScalarType.Float64);
        using var noGrad = torch.no_grad();
        var full = mixer.call(x);
        using var state = streaming.NewState(batch, ScalarType.Float64, x.device);
        var streamed = torch.stack(Enumerable.Range(0, t).Select(i => streaming.Step(x.select(1, i), state)).ToArray(), 1);
        Assert.Equal(t, state.Position);
        return (streamed - full).abs().max().item<double>();
    }

    [Theory]
    [InlineData(1, 1, 8, 2)]
    [InlineData(2, 70, 12, 3)]     // crosses the chunked form's 64-token chunk, odd head dim (4)
    [InlineData(1, 33, 10, 2)]     // head dim 5
    [InlineData(1, 150, 6, 2)]     // long enough for the blocked prefix sums (2 blocks of 64 + 22)
    public void CausalFlowAttentionStepsReproduceTheForwardPass(int batch, int t, int d, int heads)
    {
        torch.manual_seed(1);
        using var mixer = new FlowSelfAttention(d, heads, causal: true);
        double err = StreamVsForward(mixer, mixer, batch, t, d);
        Assert.True(err < 1e-10, $"Flow Step vs forward max |Δ| = {err}");
    }

    [Theory]
    [InlineData(1, 1, 8, 2)]
    [InlineData(2, 70, 12, 3)]
    public void SigmoidLinearStepsReproduceTheForwardPass(int batch, int t, int d, int heads)
    {
        torch.manual_seed(2);
        using var mixer = new SigmoidLinearAttention(d, heads);
        double err = StreamVsForward(mixer, mixer, batch, t, d);
        Assert.True(err < 1e-10, $"σ-linear Step vs forward max |Δ| = {err}");
    }

    [Theory]
    [InlineData(63)]
    [InlineData(128)]
    [InlineData(64 * 3 + 17)]
    public void BlockedPrefixSumEqualsCumsum(int t)
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(2, 3, t, 5, dtype: ScalarType.Float64);
        double err = (FlowWeights.PrefixSum(x) - x.cumsum(2)).abs().max().item<double>();
        Assert.True(err < 1e-12, $"T = {t}: max |Δ| = {err}");
    }

    [Fact]
    public void FlowStateIsConstantInTheNumberOfTokens()
    {
        using var scope = NewDisposeScope();
        using var mixer = new FlowSelfAttention(8, 2, causal: true);
        using var state = mixer.NewState(1, ScalarType.Float32, torch.CPU);
        using var noGrad = torch.no_grad();
        var x = torch.randn(1, 8);
        mixer.Step(x, state);
        long after1 = state.Bytes;
        for (int i = 0; i < 20; i++) mixer.Step(x, state);
        Assert.Equal(after1, state.Bytes);
        Assert.Equal(1 * 2 * (4 * 4 + 4 * 4 + 1) * sizeof(float), after1);   // four [H, D] sums, S [H, D, D], Σe [H]
        LeakCheck.AssertNoLeak(() => mixer.Step(x, state).Dispose(), "FlowSelfAttention.Step");
    }

    [Fact]
    public void NormalFlowCannotStreamAndBadInputsAreNamed()
    {
        using var normal = new FlowSelfAttention(8, 2, causal: false);
        Assert.Throws<InvalidOperationException>(() => normal.NewState(1, ScalarType.Float32, torch.CPU));
        using var causal = new FlowSelfAttention(8, 2, causal: true);
        using var state = causal.NewState(1, ScalarType.Float32, torch.CPU);
        using var x3 = torch.randn(1, 1, 8);
        Assert.Equal("xT", Assert.Throws<ArgumentException>(() => causal.Step(x3, state)).ParamName);
        using var other = new SigmoidLinearAttention(8, 2);
        using var foreign = other.NewState(1, ScalarType.Float32, torch.CPU);
        using var x = torch.randn(1, 8);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => causal.Step(x, foreign)).ParamName);
        using var wrong = torch.randn(2, 2, 4);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => ((FlowStreamState)state).Step(wrong, wrong, wrong)).ParamName);
    }
}
