using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

public class SoftmaxMonoidTests
{
    static SoftmaxState RandomPartial(long n, ScalarType dtype, double spread = 3)
    {
        // the partial softmax of n random keys (a realistic element, not only a leaf)
        var s = torch.randn(4, n, 2, dtype: dtype) * spread;
        var v = torch.randn(4, n, 2, 5, dtype: dtype);
        var m = s.amax(new long[] { 1 }, keepdim: true);
        var e = (s - m).exp();
        return new SoftmaxState(m.squeeze(1), e.sum(1), (e.unsqueeze(-1) * v).sum(1));
    }

    [Fact]
    public void CombineIsAssociativeOnRandomTriples()
    {
        torch.manual_seed(4);
        for (int trial = 0; trial < 20; trial++)
        {
            using var scope = NewDisposeScope();
            var (a, b, c) = (RandomPartial(1 + trial % 3, float32), RandomPartial(2, float32, 10), RandomPartial(3, float32));
            var left = SoftmaxMonoid.Combine(SoftmaxMonoid.Combine(a, b), c);
            var right = SoftmaxMonoid.Combine(a, SoftmaxMonoid.Combine(b, c));
            AssertClose.Tensors(left.M, right.M, atol: 0, rtol: 0, what: "m");
            AssertClose.Tensors(left.U, right.U, atol: 0, rtol: 1e-6, what: "u");
            AssertClose.Tensors(left.W, right.W, atol: 0, rtol: 1e-6, what: "w");
        }
    }

    [Fact]
    public void IdentityIsNeutralAndNeverNaNEvenInGradients()
    {
        using var scope = NewDisposeScope();
        var e = SoftmaxMonoid.Identity(new long[] { 4, 2 }, 5, float64);
        var s = torch.randn(4, 2, dtype: float64, requires_grad: true);
        var v = torch.randn(4, 2, 5, dtype: float64, requires_grad: true);
        var x = SoftmaxMonoid.Leaf(s, v);
        foreach (var y in new[] { SoftmaxMonoid.Combine(e, x), SoftmaxMonoid.Combine(x, e) })
        {
            AssertClose.Tensors(y.M, x.M, atol: 0, rtol: 0, what: "m");
            AssertClose.Tensors(y.U, x.U, atol: 0, rtol: 0, what: "u");
            AssertClose.Tensors(y.W, x.W, atol: 0, rtol: 0, what: "w");
        }
        var ee = SoftmaxMonoid.Combine(e, e);
        Assert.True(ee.M.isneginf().all().item<bool>());
        Assert.Equal(0.0, ee.U.abs().max().item<double>());
        Assert.Equal(0.0, SoftmaxMonoid.Output(ee).abs().max().item<double>());

        // e ⊕ e inside a differentiable expression: gradients stay finite
        var z = SoftmaxMonoid.Combine(SoftmaxMonoid.Combine(e, e), x);
        SoftmaxMonoid.Output(z).sum().backward();
        Assert.True(s.grad!.isfinite().all().item<bool>());
        Assert.True(v.grad!.isfinite().all().item<bool>());
    }

    [Fact]
    public void HugeScoresGiveNoNaNAndMatchFloat64()
    {
        torch.manual_seed(5);
        using var scope = NewDisposeScope();
        var s32 = (torch.rand(2, 37, 3) * 2 - 1) * 1000;           // scores in ±1e3: exp overflows without a running max
        var v32 = torch.randn(2, 37, 3, 4);
        var reference = Softmax64(s32.to(float64), v32.to(float64));
        foreach (var algo in Enum.GetValues<ScanAlgo>())
        {
            var o = SoftmaxMonoid.Output(PrefixScan.Inclusive(SoftmaxMonoid.Leaf(s32, v32), SoftmaxMonoid.Combine, 1, algo));
            Assert.False(o.isnan().any().item<bool>());
            AssertClose.Tensors(o, reference, atol: 1e-5, rtol: 1e-5, what: algo.ToString());
        }
        Assert.True((s32.exp().sum(1)).isinf().any().item<bool>());  // the unguarded form would overflow
    }

    /// <summary>o_k = Σ_{i≤k} softmax(s_1..s_k)_i v_i by explicit masking, in float64.</summary>
    static Tensor Softmax64(Tensor s, Tensor v)
    {
        long t = s.shape[1];
        var keep = torch.ones(t, t, dtype: ScalarType.Bool).tril();              // [k, i]: i ≤ k
        var logits = s.permute(0, 2, 1).unsqueeze(2).expand(-1, -1, t, -1)     // [B, H, k, i]
            .masked_fill(keep.logical_not(), double.NegativeInfinity);
        var p = logits.softmax(-1);
        return p.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);             // [B, T, H, Dv]
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var e1 = Assert.Throws<ArgumentException>(() => SoftmaxMonoid.Leaf(torch.zeros(2, 3), torch.zeros(2, 4, 5)));
        Assert.Equal("v", e1.ParamName);
        Assert.Contains("[2, 4, 5]", e1.Message);
        Assert.Equal("s", Assert.Throws<ArgumentException>(() =>
            SoftmaxMonoid.Leaf(torch.zeros(2, 3, dtype: int64), torch.zeros(2, 3, 5, dtype: int64))).ParamName);
        var a = SoftmaxMonoid.Identity(new long[] { 2 }, 3);
        var b = SoftmaxMonoid.Identity(new long[] { 2 }, 4);
        Assert.Equal("b", Assert.Throws<ArgumentException>(() => SoftmaxMonoid.Combine(a, b)).ParamName);
    }
}
