using AttentionLab.Attention;
using AttentionLab.Papers.Based;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>
/// The chunked linear forms write their output two ways: in place into a preallocated output when autograd records nothing,
/// out of place (joined by cat/stack) when it does. Both must give the same output and state bit for bit, over several
/// segments, a short tail chunk, h0, decay and normalisation, and the in-place path must never write into the caller's inputs.
/// </summary>
public class LinearWritePathTests
{
    /// <summary>T crosses the engine's 2048-token segments and leaves a tail chunk; the cases cover Lightning, BASED and elu+1.</summary>
    [Theory]
    [InlineData("lightning-chunked", 2048 + 64 * 3 + 5)]
    [InlineData("lightning-tiled", 2048 + 64 * 3 + 5)]
    [InlineData("based-chunked", 2 * 2048 + 37)]
    [InlineData("based-fla", 64 * 5 + 1)]
    [InlineData("elu-normalised-h0", 2048 + 100)]
    [InlineData("gated-normalised", 2048 + 64 + 9)]
    [InlineData("lightning-chunked", 7)]
    public void InPlaceAndRecordedPathsAgreeBitwise(string form, int t)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(t);
        int d = form.StartsWith("based") ? 4 : 8;
        var (q, k, v) = (torch.randn(2, t, 3, d), torch.randn(2, t, 3, d), torch.randn(2, t, 3, 5));
        var (q0, k0, v0) = (q.clone(), k.clone(), v.clone());
        var logDecay = torch.tensor(new[] { -0.05f, -0.3f, -0.01f });
        var elu = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 32 };
        var h0 = new LinearState(torch.rand(2, 3, d, 5), torch.rand(2, 3, d));
        var gate = nn.functional.logsigmoid(torch.randn(2, t, 3) + 2);                    // a per-token gate ≤ 0
        LinearAttentionResult Run(Tensor qq, Tensor kk, Tensor vv) => form switch
        {
            "lightning-chunked" => LightningAttention.Forward(qq, kk, vv, logDecay),
            "lightning-tiled" => LightningAttention.Tiled(qq, kk, vv, logDecay),
            "based-chunked" => BasedAttention.Linear(LinearForm.Chunked, qq, kk, vv),
            "based-fla" => BasedAttention.TaylorChunked(qq, kk, vv),
            "elu-normalised-h0" => LinearAttention.Chunked(qq, kk, vv, null, h0, elu),
            "gated-normalised" => LinearAttention.Chunked(qq, kk, vv, gate, h0, elu),
            _ => throw new ArgumentException(form),
        };
        LinearAttentionResult inPlace;
        using (torch.no_grad()) inPlace = Run(q, k, v);
        var (qg, kg, vg) = (q.requires_grad_(true), k.requires_grad_(true), v.requires_grad_(true));
        var recorded = Run(qg, kg, vg);
        Assert.True(recorded.Output.requires_grad, "the recorded path keeps the graph");
        Assert.False(inPlace.Output.requires_grad);
        Assert.True(TensorBits.Same(inPlace.Output, recorded.Output.detach()), $"{form} T = {t}: outputs differ between the two write paths");
        Assert.True(TensorBits.Same(inPlace.FinalState.S, recorded.FinalState.S.detach()), $"{form} T = {t}: states differ");
        Assert.True(inPlace.Output.is_contiguous());
        Assert.Equal(new long[] { 2, t, 3, 5 }, inPlace.Output.shape);
        using (torch.no_grad())
            Assert.True(TensorBits.Same(q, q0) && TensorBits.Same(k, k0) && TensorBits.Same(v, v0), "inputs were written to");
        recorded.Output.sum().backward();
        Assert.True(qg.grad is not null && torch.isfinite(qg.grad).all().item<bool>(), "gradients flow through the recorded path");
    }

    /// <summary>Half inputs: the in-place path casts once into an output of the input dtype, equal to the recorded path's.</summary>
    [Fact]
    public void HalfInputsKeepTheirDtypeOnBothPaths()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        var (q, k, v) = (torch.randn(1, 200, 2, 8).to(ScalarType.BFloat16), torch.randn(1, 200, 2, 8).to(ScalarType.BFloat16),
            torch.randn(1, 200, 2, 8).to(ScalarType.BFloat16));
        Tensor inPlace;
        using (torch.no_grad()) inPlace = LightningAttention.Forward(q, k, v, block: 64).Output;
        var recorded = LightningAttention.Forward(q.requires_grad_(true), k, v, block: 64).Output;
        Assert.Equal(ScalarType.BFloat16, inPlace.dtype);
        Assert.True(TensorBits.Same(inPlace, recorded.detach()));
    }
}
