using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

public class ReferenceAttentionTests
{
    /// <summary>Direct float64 loops: o_i = Σ_j softmax_j(scale·q_i·k_j) v_j over the visible keys.</summary>
    static double[,,,] LoopAttention(Tensor q, Tensor k, Tensor v, bool causal)
    {
        long b = q.shape[0], tq = q.shape[1], h = q.shape[2], d = q.shape[3], tk = k.shape[1], hkv = k.shape[2], dv = v.shape[3];
        var qa = q.to(float64).data<double>().ToArray(); var ka = k.to(float64).data<double>().ToArray(); var va = v.to(float64).data<double>().ToArray();
        var o = new double[b, tq, h, dv];
        double scale = 1 / Math.Sqrt(d);
        for (long bi = 0; bi < b; bi++)
        for (long hi = 0; hi < h; hi++)
        for (long i = 0; i < tq; i++)
        {
            long kvh = hi / (h / hkv);
            var s = new List<(double score, long j)>();
            for (long j = 0; j < tk; j++)
            {
                if (causal && j > i + (tk - tq)) continue;
                double dot = 0;
                for (long x = 0; x < d; x++) dot += qa[((bi * tq + i) * h + hi) * d + x] * ka[((bi * tk + j) * hkv + kvh) * d + x];
                s.Add((dot * scale, j));
            }
            double m = s.Max(t => t.score), z = s.Sum(t => Math.Exp(t.score - m));
            foreach (var (score, j) in s)
                for (long x = 0; x < dv; x++)
                    o[bi, i, hi, x] += Math.Exp(score - m) / z * va[((bi * tk + j) * hkv + kvh) * dv + x];
        }
        return o;
    }

    [Theory]
    [InlineData(1, 1, 1, 1, 1, 3, false)]
    [InlineData(2, 5, 5, 4, 2, 7, true)]
    [InlineData(1, 3, 8, 2, 1, 5, true)]   // decode-style: fewer queries than keys, end-aligned
    [InlineData(2, 6, 6, 3, 3, 4, false)]
    public void MatchesFloat64Loops(int b, int tq, int tk, int hq, int hkv, int d, bool causal)
    {
        torch.manual_seed(1);
        using var scope = NewDisposeScope();
        var q = torch.randn(b, tq, hq, d, dtype: float64);
        var k = torch.randn(b, tk, hkv, d, dtype: float64);
        var v = torch.randn(b, tk, hkv, d + 1, dtype: float64);
        using var r = ReferenceAttention.Softmax(q, k, v, causal);
        var loops = LoopAttention(q, k, v, causal);
        var expected = torch.tensor(loops.Cast<double>().ToArray(), dtype: float64).reshape(r.Output.shape);
        AssertClose.Tensors(r.Output, expected, atol: 1e-12, rtol: 0, what: "output");
        AssertClose.Tensors(r.Probabilities.sum(-1), torch.ones_like(r.LogSumExp), atol: 1e-12, rtol: 0, what: "row sums");
    }

    [Fact]
    public void CausalEntriesAreZeroAndFullyMaskedRowsAreZeroNotNaN()
    {
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 4, 2, 8); var k = torch.randn(1, 4, 2, 8); var v = torch.randn(1, 4, 2, 8);
        using var r = ReferenceAttention.Softmax(q, k, v, causal: true);
        var upper = torch.ones(4, 4, dtype: ScalarType.Bool).triu(1);
        Assert.Equal(0.0, r.Probabilities.masked_select(upper.expand_as(r.Probabilities)).abs().max().item<float>());

        var none = torch.zeros(1, 1, 4, 4, dtype: ScalarType.Bool);
        using var masked = ReferenceAttention.Softmax(q, k, v, mask: none);
        Assert.False(masked.Output.isnan().any().item<bool>());
        Assert.Equal(0f, masked.Output.abs().max().item<float>());
        Assert.True(masked.LogSumExp.isneginf().all().item<bool>());
    }

    [Fact]
    public void MatchesSdpaInFloat32()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        var q = torch.randn(2, 33, 4, 16); var k = torch.randn(2, 33, 4, 16); var v = torch.randn(2, 33, 4, 16);
        foreach (bool causal in new[] { false, true })
        {
            using var r = ReferenceAttention.Softmax(q, k, v, causal);
            AssertClose.Tensors(r.Output, SdpaBaseline.Forward(q, k, v, causal), atol: 1e-5, rtol: 1e-5, what: $"causal={causal}");
        }
    }

    [Fact]
    public void RunsInBfloat16AndStaysCloseToFloat32()
    {
        // The GPU check benchmarks reference attention and SDPA in bf16 too (flash kernels need a 16-bit dtype).
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        var q = torch.randn(2, 40, 4, 16); var k = torch.randn(2, 40, 2, 16); var v = torch.randn(2, 40, 2, 16);
        using var full = ReferenceAttention.Softmax(q, k, v, causal: true);
        using var half = ReferenceAttention.Softmax(q.to(bfloat16), k.to(bfloat16), v.to(bfloat16), causal: true);
        Assert.Equal(bfloat16, half.Output.dtype);
        Assert.Equal(0, half.Probabilities.triu(1).count_nonzero().item<long>());              // causal entries stay exactly 0
        AssertClose.Tensors(half.Output.to(float32), full.Output, atol: 3e-2, rtol: 3e-2, what: "bf16 output");
        AssertClose.Tensors(half.LogSumExp.to(float32), full.LogSumExp, atol: 5e-2, rtol: 2e-2, what: "bf16 log-sum-exp");
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 4, 2, 8);
        var e1 = Assert.Throws<ArgumentException>(() => ReferenceAttention.Softmax(q, torch.randn(4, 2, 8), torch.randn(1, 4, 2, 8)));
        Assert.Equal("k", e1.ParamName);
        Assert.Contains("[4, 2, 8]", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => ReferenceAttention.Softmax(q, torch.randn(1, 4, 3, 8), torch.randn(1, 4, 3, 8)));
        Assert.Contains("multiple", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => ReferenceAttention.Softmax(q, torch.randn(1, 4, 2, 8, dtype: float64), torch.randn(1, 4, 2, 8)));
        Assert.Equal("k", e3.ParamName);
        var e4 = Assert.Throws<ArgumentException>(() => ReferenceAttention.Softmax(q.to(int64), q.to(int64), q.to(int64)));
        Assert.Equal("q", e4.ParamName);
        var e5 = Assert.Throws<ArgumentException>(() => ReferenceAttention.Softmax(q, torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8), causal: true));
        Assert.Equal("q", e5.ParamName);   // more queries than keys has no end-aligned causal meaning
    }

    /// <summary>
    /// The fused normaliser (softmax, LSE = max s − log max p) against the textbook twin p = exp(s − logsumexp s) in float64:
    /// probabilities, LSE and the gradients of Σ o + Σ LSE w.r.t. q, k and v, causal and with a keep-mask that hides one
    /// query's every key (that call takes the shifted form: its gradients must stay finite and equal the twin's).
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void FusedNormaliserMatchesLogsumexpTwinWithGradients(bool causal, bool hideOneRow)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        Tensor Draw(long t, long h, long d) => (torch.randn([2, t, h, d], dtype: float64, generator: g) * 2).requires_grad_(true);
        var (q, k, v) = (Draw(5, 4, 3), Draw(7, 2, 3), Draw(7, 2, 2));
        Tensor? mask = null;
        if (hideOneRow) mask = torch.arange(5).ne(2).unsqueeze(1);                  // [Tq, 1]: query 2 sees no key

        var fast = ReferenceAttention.Softmax(q, k, v, causal, mask: mask);
        var (gq, gk, gv) = Gradients(fast.Output.sum() + fast.LogSumExp.masked_fill(fast.LogSumExp.isneginf(), 0).sum(), q, k, v);

        // twin: scores by einsum, hidden keys −∞, LSE by logsumexp, p = exp(s − LSE) with 0 on rows that see nothing
        var kr = k.repeat_interleave(2, dim: 2);
        var vr = v.repeat_interleave(2, dim: 2);
        var s = torch.einsum("bihd,bjhd->bhij", q, kr) / Math.Sqrt(3);
        var keep = torch.ones([5, 7], dtype: ScalarType.Bool);
        if (causal) keep = keep & AttentionMasks.Causal(5, 7);
        if (mask is not null) keep = keep & mask;
        s = s.masked_fill(keep.logical_not(), double.NegativeInfinity);
        var lse = torch.logsumexp(s, -1);
        var seen = keep.any(-1);
        var p = (s - lse.masked_fill(seen.logical_not(), 0).unsqueeze(-1)).exp();
        var o = torch.einsum("bhij,bjhd->bihd", p, vr);
        var (tq, tk, tv) = Gradients(o.sum() + lse.masked_fill(lse.isneginf(), 0).sum(), q, k, v);

        Assert.True(fast.Probabilities.allclose(p, 1e-12, 1e-12), "probabilities");
        Assert.True(fast.LogSumExp.masked_fill(seen.logical_not(), 0).allclose(lse.masked_fill(seen.logical_not(), 0), 1e-12, 1e-12), "LSE");
        Assert.Equal(hideOneRow, fast.LogSumExp.isneginf().any().item<bool>());
        foreach (var (a, b, name) in new[] { (gq, tq, "dq"), (gk, tk, "dk"), (gv, tv, "dv") })
        {
            Assert.True(a.isfinite().all().item<bool>(), $"{name} finite");
            Assert.True(a.allclose(b, 1e-10, 1e-10), $"{name}: max |Δ| {(a - b).abs().max().item<double>():E2}");
        }
    }

    static (Tensor, Tensor, Tensor) Gradients(Tensor loss, Tensor q, Tensor k, Tensor v)
    {
        var grads = torch.autograd.grad([loss], [q, k, v]);
        return (grads[0], grads[1], grads[2]);
    }

    /// <summary>The cached causal complement equals ¬Causal, survives the dispose scope it was first asked in, and is one tensor per shape.</summary>
    [Fact]
    public void CachedCausalMaskIsTheComplementAndOutlivesScopes()
    {
        Tensor first;
        using (var inner = NewDisposeScope()) first = AttentionMasks.CausalHidden(3, 6);
        using var scope = NewDisposeScope();
        var again = AttentionMasks.CausalHidden(3, 6);
        Assert.Same(first, again);
        Assert.True(again.eq(AttentionMasks.Causal(3, 6).logical_not()).all().item<bool>(), "j > i + (Tk − Tq)");
        Assert.Throws<ArgumentException>(() => AttentionMasks.CausalHidden(0, 6));
    }
}

public class AttentionStatsTests
{
    [Fact]
    public void EntropyIsZeroForOneHotAndLogNForUniform()
    {
        using var scope = NewDisposeScope();
        var p = torch.tensor(new double[] { 1, 0, 0, 0, 0.25, 0.25, 0.25, 0.25 }, dtype: float64).reshape(2, 4);
        var h = AttentionStats.RowEntropy(p).data<double>().ToArray();
        Assert.Equal(0.0, h[0], 12);
        Assert.Equal(Math.Log(4), h[1], 12);
        Assert.Throws<ArgumentException>(() => AttentionStats.RowEntropy(torch.ones(3)));
    }

    [Fact]
    public void MeanDistanceOfCausalUniformRowIsHalfThePosition()
    {
        using var scope = NewDisposeScope();
        // Row i uniform over keys 0..i → mean |i − j| = i/2.
        var keep = ReferenceAttention.CausalKeepMask(5, 5).to(float64);
        var p = keep / keep.sum(-1, keepdim: true);
        var d = AttentionStats.MeanDistance(p).data<double>().ToArray();
        for (int i = 0; i < 5; i++) Assert.Equal(i / 2.0, d[i], 12);
    }
}
