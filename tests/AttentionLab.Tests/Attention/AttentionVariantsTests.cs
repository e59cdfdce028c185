using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>P47 §6: the variants are exact operators, checked against the softmax they reduce to.</summary>
public class AttentionVariantsTests
{
    /// <summary>s = scale·q·k per query head, −∞ where the keep-mask is false: [B, Hq, Tq, Tk] (written out independently).</summary>
    static Tensor Scores(Tensor q, Tensor k, Tensor keep)
    {
        long g = q.shape[2] / k.shape[2];
        var kh = k.repeat_interleave(g, dim: 2);
        var s = torch.einsum("bqhd,bkhd->bhqk", q, kh) / Math.Sqrt(q.shape[3]);
        return s.masked_fill(keep.logical_not(), double.NegativeInfinity);
    }

    /// <summary>softmax over [s, b] along the keys, the virtual column dropped: the definition of a sink of logit b and value 0.</summary>
    static Tensor SoftmaxWithVirtualKey(Tensor s, Tensor b)
    {
        var col = b.expand(s.shape[0], s.shape[1], s.shape[2], 1);
        return torch.softmax(torch.cat(new[] { s, col }, -1), -1).narrow(-1, 0, s.shape[3]);
    }

    static Tensor Out(Tensor p, Tensor v, long g) =>
        torch.einsum("bhqk,bkhd->bqhd", p, v.repeat_interleave(g, dim: 2));

    public static TheoryData<int, int, int, int, int, bool> Shapes => new()
    {
        { 1, 1, 1, 1, 1, false }, { 2, 5, 5, 4, 2, true }, { 1, 3, 9, 2, 1, true }, { 2, 6, 6, 3, 3, false },
    };

    [Theory, MemberData(nameof(Shapes))]
    public void Softmax1IsSoftmaxOverScoresAndAZeroColumnWithItDropped(int b, int tq, int tk, int hq, int hkv, bool causal)
    {
        torch.manual_seed(31);
        using var scope = NewDisposeScope();
        foreach (var dtype in new[] { float32, float64 })
        {
            var q = torch.randn(b, tq, hq, 6, dtype: dtype) * 2; var k = torch.randn(b, tk, hkv, 6, dtype: dtype) * 2;
            var v = torch.randn(b, tk, hkv, 5, dtype: dtype);
            var keep = causal ? AttentionMasks.Causal(tq, tk) : torch.ones(tq, tk, dtype: ScalarType.Bool);
            using var r = AttentionVariants.Softmax1(q, k, v, causal);
            var p = SoftmaxWithVirtualKey(Scores(q, k, keep), torch.zeros(1, dtype: dtype));
            AssertClose.Tensors(r.Probabilities, p, atol: 1e-6, rtol: 0, what: $"softmax₁ probabilities {dtype}");
            AssertClose.Tensors(r.Output, Out(p, v, hq / hkv), atol: 1e-6, rtol: 0, what: $"softmax₁ output {dtype}");
            var rowSums = r.Probabilities.sum(-1);
            Assert.True((dtype == float64 ? rowSums < 1 : rowSums <= 1 + 1e-6).all().item<bool>(), "softmax₁ rows sum to less than 1");
        }
    }

    [Fact]
    public void Softmax1IsStableForLargeScoresAndZeroForFullyMaskedRows()
    {
        using var scope = NewDisposeScope();
        var q = torch.full(new long[] { 1, 2, 1, 4 }, 30f); var k = torch.full(new long[] { 1, 3, 1, 4 }, 30f); var v = torch.randn(1, 3, 1, 2);
        using var big = AttentionVariants.Softmax1(q, k, v);                    // s = 1800: e^s overflows float32
        Assert.False(big.Probabilities.isnan().any().item<bool>());
        AssertClose.Tensors(big.Probabilities.sum(-1), torch.ones(1, 1, 2), atol: 1e-6, rtol: 0, what: "rows with huge scores sum to ≈ 1");

        using var none = AttentionVariants.Softmax1(q, k, v, mask: torch.zeros(2, 3, dtype: ScalarType.Bool));
        Assert.Equal(0f, none.Output.abs().max().item<float>());
        Assert.Equal(0f, none.LogSumExp.abs().max().item<float>());           // log(1 + Σ ∅) = 0
    }

    [Theory, MemberData(nameof(Shapes))]
    public void SinkLogitReducesToSoftmaxAtMinusInfinityAndToSoftmax1AtZero(int b, int tq, int tk, int hq, int hkv, bool causal)
    {
        torch.manual_seed(32);
        using var scope = NewDisposeScope();
        var q = torch.randn(b, tq, hq, 6); var k = torch.randn(b, tk, hkv, 6); var v = torch.randn(b, tk, hkv, 5);
        using var plain = ReferenceAttention.Softmax(q, k, v, causal);
        using var minusInf = AttentionVariants.SinkLogit(q, k, v, torch.full(hq, double.NegativeInfinity), causal);
        AssertClose.Tensors(minusInf.Output, plain.Output, atol: 1e-6, rtol: 0, what: "b = −∞ output");
        AssertClose.Tensors(minusInf.Probabilities, plain.Probabilities, atol: 1e-6, rtol: 0, what: "b = −∞ probabilities");
        AssertClose.Tensors(minusInf.LogSumExp, plain.LogSumExp, atol: 1e-5, rtol: 0, what: "b = −∞ LSE");

        using var zero = AttentionVariants.SinkLogit(q, k, v, torch.zeros(hq), causal);
        using var one = AttentionVariants.Softmax1(q, k, v, causal);
        AssertClose.Tensors(zero.Output, one.Output, atol: 1e-6, rtol: 0, what: "b = 0 output");
        AssertClose.Tensors(zero.LogSumExp, one.LogSumExp, atol: 1e-6, rtol: 0, what: "b = 0 LSE");
    }

    [Fact]
    public void SinkLogitIsAVirtualKeyWithZeroValueAndItsGradientFlows()
    {
        torch.manual_seed(33);
        using var scope = NewDisposeScope();
        var q = torch.randn(2, 5, 4, 8, dtype: float64); var k = torch.randn(2, 7, 2, 8, dtype: float64); var v = torch.randn(2, 7, 2, 3, dtype: float64);
        var sink = torch.tensor(new[] { -1.5, 0.0, 2.0, double.NegativeInfinity }, dtype: float64).requires_grad_();
        using var r = AttentionVariants.SinkLogit(q, k, v, sink, causal: true);
        var p = SoftmaxWithVirtualKey(Scores(q, k, AttentionMasks.Causal(5, 7)), sink.detach().view(1, 4, 1, 1));
        AssertClose.Tensors(r.Probabilities, p, atol: 1e-12, rtol: 0, what: "probabilities");
        AssertClose.Tensors(r.Output, Out(p, v, 2), atol: 1e-12, rtol: 0, what: "output");
        r.Output.sum().backward();
        Assert.True(sink.grad is not null && sink.grad.narrow(0, 0, 3).isfinite().all().item<bool>());
        Assert.True((sink.grad!.narrow(0, 0, 3) != 0).all().item<bool>(), "a finite sink logit gets a gradient");
    }

    [Fact]
    public void GateOfOneIsUngatedAndAPerHeadGateScalesTheWholeHead()
    {
        torch.manual_seed(34);
        using var scope = NewDisposeScope();
        var y = torch.randn(2, 3, 4, 5);
        var xNorm = torch.randn(2, 3, 16);
        // W_θ = 0 and bias +∞: g = X̃·0 + ∞, σ(g) = 1.
        var elementwise = xNorm.matmul(torch.zeros(16, 4 * 5)).add(double.PositiveInfinity).view(2, 3, 4, 5);
        var perHead = xNorm.matmul(torch.zeros(16, 4)).add(double.PositiveInfinity);
        Assert.True(TensorAssert.Same(AttentionVariants.GatedG1(y, elementwise), y));
        Assert.True(TensorAssert.Same(AttentionVariants.GatedG1(y, perHead), y));

        var g = torch.randn(2, 3, 4);
        var gated = AttentionVariants.GatedG1(y, g);
        var expanded = AttentionVariants.GatedG1(y, g.unsqueeze(-1).expand(2, 3, 4, 5).contiguous());
        AssertClose.Tensors(gated, expanded, atol: 1e-7, rtol: 0, what: "per-head gate vs the same gate expanded");   // vectorised σ may differ in the last bit
        var ya = y.data<float>().ToArray(); var ga = g.data<float>().ToArray(); var oa = gated.data<float>().ToArray();
        for (int i = 0; i < ya.Length; i++)                                    // Y′ = Y · σ(g_head)
            Assert.Equal(ya[i] / (1 + Math.Exp(-ga[i / 5])), oa[i], 5);
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 3, 4, 8); var k = torch.randn(1, 3, 2, 8); var v = torch.randn(1, 3, 2, 8);
        Assert.Equal("sinkLogits", Assert.ThrowsAny<ArgumentException>(() => AttentionVariants.SinkLogit(q, k, v, torch.zeros(2))).ParamName);
        Assert.Equal("sinkLogits", Assert.ThrowsAny<ArgumentException>(() => AttentionVariants.SinkLogit(q, k, v, torch.zeros(4, dtype: float64))).ParamName);
        Assert.Equal("sinkLogits", Assert.ThrowsAny<ArgumentException>(
            () => AttentionVariants.SinkLogit(q, k, v, torch.full(4, double.PositiveInfinity))).ParamName);
        Assert.Equal("k", Assert.ThrowsAny<ArgumentException>(() => AttentionVariants.Softmax1(q, torch.randn(1, 3, 3, 8), torch.randn(1, 3, 3, 8))).ParamName);
        Assert.Equal("gateLogits", Assert.ThrowsAny<ArgumentException>(() => AttentionVariants.GatedG1(q, torch.zeros(1, 3, 4, 7))).ParamName);
        Assert.Equal("gateLogits", Assert.ThrowsAny<ArgumentException>(() => AttentionVariants.GatedG1(q, torch.zeros(1, 3))).ParamName);
        Assert.Equal("headOutputs", Assert.ThrowsAny<ArgumentException>(() => AttentionVariants.GatedG1(torch.zeros(3, 4, 8), torch.zeros(3, 4))).ParamName);
    }
}
