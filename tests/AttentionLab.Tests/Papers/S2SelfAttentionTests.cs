using AttentionLab.Papers.S2Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class S2SelfAttentionTests
{
    [Theory]
    [InlineData(1, 1, 2, 4, 2, 2)]      // one token
    [InlineData(2, 23, 2, 4, 2, 2)]     // T not a multiple of the block
    [InlineData(1, 30, 4, 3, 1, 3)]     // diagonal block only, H > s
    public void StreamingStepsReproduceTheForwardPass(int batch, int t, int heads, int block, int local, int stride)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        using var mixer = new S2SelfAttention(8 * heads, heads, block, local, stride);
        mixer.to(ScalarType.Float64);
        var x = torch.randn(batch, t, 8 * heads, dtype: ScalarType.Float64);
        using var noGrad = torch.no_grad();
        var full = mixer.call(x);
        using var state = mixer.NewState(batch, ScalarType.Float64, x.device);
        var steps = Enumerable.Range(0, t).Select(i => mixer.Step(x.select(1, i), state)).ToArray();
        var streamed = torch.stack(steps, 1);
        double err = (streamed - full).abs().max().item<double>();
        Assert.True(err < 1e-10, $"Step vs forward max |Δ| = {err}");
        Assert.Equal(t, state.Position);
        Assert.Equal(2L * batch * t * 8 * heads * sizeof(double), state.Bytes);   // the full KV cache: S2 cannot drop keys
    }

    [Fact]
    public void ReadsAgreesWithThePatternAndIsCausal()
    {
        using var mixer = new S2SelfAttention(16, 2, block: 4, localBlocks: 2, vertStride: 2);
        var mask = mixer.Pattern(40);
        for (int h = 0; h < 2; h++)
            for (int qp = 0; qp < 40; qp++)
                for (int kp = 0; kp < 40; kp++)
                    Assert.Equal(kp <= qp && mask.Allows(h, qp / 4, kp / 4), mixer.Reads(h, qp, kp));
        // each head skips some distant blocks: the pattern is sparse, not dense
        Assert.Contains(Enumerable.Range(0, 40), kp => !mixer.Reads(0, 39, kp));
    }

    [Fact]
    public void RejectsBadShapesAndForeignState()
    {
        using var mixer = new S2SelfAttention(16, 2);
        using var x = torch.randn(2, 16);
        var e = Assert.Throws<ArgumentException>(() => mixer.call(x));
        Assert.Equal("x", e.ParamName);
        Assert.Throws<ArgumentException>(() => new S2SelfAttention(15, 2));
        using var foreign = new AttentionLab.Papers.Aaren.AarenLayer(16, 2).NewState(1, ScalarType.Float32, torch.CPU);
        Assert.Throws<ArgumentException>(() => mixer.Step(x.narrow(0, 0, 1), foreign));
    }
}
