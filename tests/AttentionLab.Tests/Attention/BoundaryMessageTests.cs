using AttentionLab.Attention;
using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>
/// Issue 17 §4–5: each bad input the issue lists throws an ArgumentException that names the public argument (and, for
/// shapes, both shapes) before any native call — never a libtorch message, never a silent wrong number.
/// </summary>
public class BoundaryMessageTests
{
    static ArgumentException Throws(string param, Action act, params string[] mentions)
    {
        var e = Assert.ThrowsAny<ArgumentException>(act);
        Assert.Equal(param, e.ParamName);
        foreach (var m in mentions) Assert.Contains(m, e.Message);
        Assert.DoesNotContain("c10", e.Message);
        Assert.DoesNotContain("Exception raised from", e.Message);
        return e;
    }

    static (Tensor Q, Tensor K, Tensor V) Qkv(long b = 2, long t = 5, long h = 2, long d = 4)
    {
        var g = new Generator(1);
        return (torch.randn(b, t, h, d, generator: g), torch.randn(b, t, h, d, generator: g), torch.randn(b, t, h, d, generator: g));
    }

    [Fact]
    public void WrongShapeMaskNamesTheMaskAndBothShapes()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv();
        var mask = torch.ones(3, 7, dtype: ScalarType.Bool);
        Throws("mask", () => ReferenceAttention.Softmax(q, k, v, mask: mask), "[3, 7]", "[2, 5, 2, 4]", "[2, 2, 5, 5]");
        Throws("mask", () => AttentionVariants.Softmax1(q, k, v, mask: mask), "[3, 7]");
        Throws("mask", () => AttentionVariants.SinkLogit(q, k, v, torch.zeros(2), mask: mask), "[3, 7]");
        Throws("mask", () => ReferenceAttention.Softmax(q, k, v, mask: torch.ones(new long[] { 1, 1, 1, 1, 5 }, dtype: ScalarType.Bool)), "[1, 1, 1, 1, 5]");
    }

    [Fact]
    public void IntegerMasksAreRefusedNeverAdded()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv();
        var zeroOne = AttentionMasks.Causal(5, 5).to(ScalarType.Int64);
        var e = Throws("mask", () => ReferenceAttention.Softmax(q, k, v, mask: zeroOne), "Int64", "mask.ne(0)");
        Assert.Contains("boolean", e.Message);
        Throws("mask", () => AttentionVariants.Softmax1(q, k, v, mask: zeroOne.to(ScalarType.Int32)), "Int32");
        // the boolean form of the same mask is causal attention exactly; a float mask stays an additive bias
        using var asBool = ReferenceAttention.Softmax(q, k, v, mask: zeroOne.ne(0));
        using var causal = ReferenceAttention.Softmax(q, k, v, causal: true);
        Assert.True(asBool.Output.eq(causal.Output).all().item<bool>());
        var bias = torch.zeros(5, 5).masked_fill(AttentionMasks.Causal(5, 5).logical_not(), double.NegativeInfinity);
        using var additive = ReferenceAttention.Softmax(q, k, v, mask: bias);
        Assert.True(additive.Output.allclose(causal.Output, 1e-6, 1e-6));
    }

    [Fact]
    public void CachesRefuseNonFloatDtypes()
    {
        Throws("dtype", () => new KvCache(1, 2, 4, 4, ScalarType.Int64).Dispose(), "Int64");
        Throws("dtype", () => new PagedKvCache(1, 2, 4, 4, dtype: ScalarType.Int32).Dispose(), "Int32");
        using var cache = new KvCache(1, 2, 4, 4);
        using var scope = NewDisposeScope();
        Throws("k", () => cache.Append(torch.ones(1, 1, 2, 4, dtype: ScalarType.Int64), torch.ones(1, 1, 2, 4)), "Int64");
        Throws("v", () => cache.Append(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4, dtype: ScalarType.Int64)), "Int64");
        using var mixer = new SlidingWindowAttention(8, 2, windowKeys: 4);
        Throws("dtype", () => mixer.NewState(1, ScalarType.Int64, CPU).Dispose(), "Int64");
    }

    [Fact]
    public void MixerForwardNamesXWithBothShapes()
    {
        using var scope = NewDisposeScope();
        using var mixer = new SlidingWindowAttention(8, 2, windowKeys: 4);
        Throws("x", () => mixer.call(torch.randn(2, 5, 6)), "[2, 5, 6]", "d = 8");
        Throws("x", () => mixer.call(torch.randn(2, 5)), "[2, 5]");
        Throws("x", () => mixer.call(torch.ones(2, 5, 8, dtype: ScalarType.Int64)), "Int64");
        Throws("x", () => mixer.call(torch.randn(2, 5, 8, dtype: ScalarType.Float64)), "Float64", "Float32");
        using var state = mixer.NewState(2, ScalarType.Float32, CPU);
        Throws("xT", () => mixer.Step(torch.randn(2, 6), state), "[2, 6]");
    }

    [Fact]
    public void MessagesNamePublicParameters()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv();
        // the issue saw "tq" (an internal name) for more queries than keys
        var e = Throws("q", () => SlidingWindowAttention.Attend(q, k.narrow(1, 0, 3), v.narrow(1, 0, 3), 2), "[2, 5, 2, 4]", "[2, 3, 2, 4]");
        Assert.DoesNotContain("tq", e.Message);
        Throws("k", () => SdpaBaseline.Forward(q, k.narrow(2, 0, 1), v.narrow(2, 0, 1)), "[2, 5, 1, 4]");
        Throws("v", () => ReferenceAttention.Softmax(q, k, v.narrow(1, 0, 4)), "[2, 4, 2, 4]", "[2, 5, 2, 4]");
        Throws("scale", () => ReferenceAttention.Softmax(q, k, v, scale: double.NaN), "NaN");
        Throws("anyVisible", () => ReferenceAttention.Normalize(torch.zeros(2, 3, 4), torch.ones(5, dtype: ScalarType.Bool)), "[5]", "[2, 3, 4]");
        Throws("anyVisible", () => ReferenceAttention.Normalize(torch.zeros(2, 3, 4), torch.ones(3)), "Float32");
        // the issue saw "Steps" (the trainer's) for Epochs = 0
        var zero = AarenExperiment.Config.Smoke with { Epochs = 0 };
        var steps = Throws("Epochs", () => AarenExperiment.Run(zero, CPU));
        Assert.DoesNotContain("Steps must", steps.Message);
        Throws("WarmupSteps", () => AarenExperiment.Run(AarenExperiment.Config.Smoke with { WarmupSteps = 1_000_000 }, CPU), "Epochs · StepsPerEpoch");
        var lm = Throws("LmSteps", () => LightningExperiment.Run(LightningExperiment.Config.Smoke with { LmSteps = 0 }, CPU));   // fails before any work
        Assert.StartsWith("LmSteps", lm.Message);
    }
}
