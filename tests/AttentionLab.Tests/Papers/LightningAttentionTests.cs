using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class LightningAttentionTests
{
    static (Tensor q, Tensor k, Tensor v, Tensor ld, LinearState h0) Inputs(int b, int t, int h, int d, int dv, ScalarType dtype, bool grad = false)
    {
        var q = (torch.randn(b, t, h, d, dtype: dtype) / Math.Sqrt(d)).requires_grad_(grad);
        var k = torch.randn(b, t, h, d, dtype: dtype).requires_grad_(grad);
        var v = torch.randn(b, t, h, dv, dtype: dtype).requires_grad_(grad);
        var ld = (-torch.linspace(0.02, 0.7, h, dtype: float64)).to(dtype);                      // λ from 0.98 to 0.50
        var s0 = (torch.randn(b, h, d, dv, dtype: LinearAttention.AccumulationDtype(dtype)) * 0.5).requires_grad_(grad);
        return (q, k, v, ld, new LinearState(s0));
    }

    static IEnumerable<(string Name, Func<Tensor, Tensor, Tensor, Tensor?, LinearState?, LinearAttentionResult> Form)> FastForms(int block) =>
        new (string, Func<Tensor, Tensor, Tensor, Tensor?, LinearState?, LinearAttentionResult>)[]
    {
        ("tiled", (q, k, v, ld, h0) => LightningAttention.Tiled(q, k, v, ld, block, h0)),
        ("forward (engine chunked)", (q, k, v, ld, h0) => LightningAttention.Forward(q, k, v, ld, block, h0)),
        ("recurrent", (q, k, v, ld, h0) => LightningAttention.Recurrent(q, k, v, ld, h0)),
        ("cumsum", (q, k, v, ld, h0) => LightningAttention.Cumsum(q, k, v, ld, h0)),
    };

    /// <summary>
    /// Conformance inputs: q [B, T, H, D] / √D, k, v [B, T, H, Dv], log λ_h from −0.02 to −0.7 (λ 0.98 … 0.50), and with
    /// <paramref name="withH0"/> a start state S₀ [B, H, D, Dv] × ½ in the accumulation dtype.
    /// </summary>
    static Func<Shape, ScalarType, Generator, Tensor[]> ConformanceInputs(bool withH0) => (s, dtype, g) =>
    [
        (torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64) / Math.Sqrt(s.D)).to(dtype),
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
        (-torch.linspace(0.02, 0.7, s.H, dtype: float64)).to(dtype),
        .. withH0 ? new[] { (torch.randn(s.B, s.H, s.D, s.Dv, generator: g, dtype: float64) * 0.5).to(LinearAttention.AccumulationDtype(dtype)) } : [],
    ];

    static Func<Tensor[], FormOutput> Run(Func<Tensor, Tensor, Tensor, Tensor?, LinearState?, LinearAttentionResult> form) => x =>
    {
        using var r = form(x[0], x[1], x[2], x[3], x.Length > 4 ? new LinearState(x[4]) : null);
        return new FormOutput(r.Output.alias(), r.FinalState.S.alias());
    };

    /// <summary>
    /// tiled, engine-chunked, recurrent and cumsum forms against LightningNaive, with and without h0: outputs, h_T and the
    /// gradients of q, k, v, log λ and h0 (float64 1e−10; float32 RMS-relative 1e−4, the spec's, against the float64 twin).
    /// </summary>
    [Theory]
    [MemberData(nameof(Conformance.ShapesWith), false, true, MemberType = typeof(Conformance))]
    public void FormsConformToTheNaiveTwin(Shape shape, bool withH0) =>
        Conformance.Check(shape, ConformanceInputs(withH0), new Form("naive", Run((q, k, v, ld, h0) => LightningNaive.Attention(q, k, v, ld, h0))),
            FastForms(shape.Chunk).Select(f => new Form(f.Name, Run(f.Form))), tol32: 1e-4, rms32: true);

    [Fact]
    public void NaiveMatchesTheDefinitionWrittenOutTokenByToken()
    {
        // o_t = Σ_{s≤t} λ^{t−s} (q_t·k_s) v_s + λ^{t+1} q_t S_{−1}, each term in doubles
        torch.manual_seed(7);
        using var scope = NewDisposeScope();
        int t = 6, d = 3, dv = 2;
        var (q, k, v, _, h0) = Inputs(1, t, 1, d, dv, float64);
        double lambda = 0.8;
        var ld = torch.tensor(new[] { Math.Log(lambda) }, dtype: float64);
        using var naive = LightningNaive.Attention(q, k, v, ld, h0);
        double[] Vec(Tensor x) => x.data<double>().ToArray();
        for (int i = 0; i < t; i++)
        {
            var expected = new double[dv];
            for (int s = 0; s <= i; s++)
            {
                double score = Vec(q[0, i, 0]).Zip(Vec(k[0, s, 0])).Sum(p => p.First * p.Second) * Math.Pow(lambda, i - s);
                for (int c = 0; c < dv; c++) expected[c] += score * Vec(v[0, s, 0])[c];
            }
            var fromH0 = Vec(q[0, i, 0].unsqueeze(0).matmul(h0.S[0, 0]).squeeze(0));
            for (int c = 0; c < dv; c++) expected[c] += Math.Pow(lambda, i + 1) * fromH0[c];
            AssertClose.Tensors(naive.Output[0, i, 0], torch.tensor(expected, dtype: float64), atol: 1e-12, rtol: 1e-12, what: $"o_{i}");
        }
    }

    [Fact]
    public void TwoHalvesWithTheCarriedStateEqualTheWhole()
    {
        torch.manual_seed(8);
        using var scope = NewDisposeScope();
        var (q, k, v, ld, _) = Inputs(2, 90, 2, 4, 4, float64);
        using var whole = LightningAttention.Tiled(q, k, v, ld, block: 16);
        using var first = LightningAttention.Tiled(q.narrow(1, 0, 41), k.narrow(1, 0, 41), v.narrow(1, 0, 41), ld, block: 16);
        using var second = LightningAttention.Tiled(q.narrow(1, 41, 49), k.narrow(1, 41, 49), v.narrow(1, 41, 49), ld, block: 16, h0: first.FinalState);
        AssertClose.Tensors(torch.cat(new[] { first.Output, second.Output }, 1), whole.Output, atol: 1e-11, rtol: 1e-11, what: "output");
        AssertClose.Tensors(second.FinalState.S, whole.FinalState.S, atol: 1e-11, rtol: 1e-11, what: "hT");
    }

    [Fact]
    public void ZeroDecayIsPlainCausalLinearAttention()
    {
        torch.manual_seed(9);
        using var scope = NewDisposeScope();
        var (q, k, v, _, _) = Inputs(2, 21, 2, 3, 3, float64);
        var tril = torch.ones(21, 21, dtype: float64).tril();
        var plain = ((q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * tril).matmul(v.permute(0, 2, 1, 3))).permute(0, 2, 1, 3);   // [(QKᵀ) ⊙ tril] V
        foreach (var ld in new[] { null, torch.zeros(2, dtype: float64) })
        {
            using var tiled = LightningAttention.Tiled(q, k, v, ld, block: 8);
            using var naive = LightningNaive.Attention(q, k, v, ld);
            AssertClose.Tensors(tiled.Output, plain, atol: 1e-12, rtol: 1e-12, what: "tiled, a = 0");
            AssertClose.Tensors(naive.Output, plain, atol: 1e-12, rtol: 1e-12, what: "naive, a = 0");
        }
    }

    [Fact]
    public void StrongDecayNeverMakesNaN()
    {
        // a = 10 (λ = 4.5e−5: λ^{B} underflows to 0) and λ = 0 (a = ∞): values and gradients stay finite, float32 and float64
        torch.manual_seed(10);
        using var scope = NewDisposeScope();
        foreach (var dtype in new[] { float32, float64 })
        {
            var (q, k, v, _, h0) = Inputs(1, 150, 2, 4, 4, dtype, grad: true);
            var ld = torch.tensor(new[] { -10.0, double.NegativeInfinity }, dtype: dtype);
            foreach (var form in FastForms(64).Select(f => f.Form).Append((q_, k_, v_, l_, s_) => LightningNaive.Attention(q_, k_, v_, l_, s_)))
            {
                using var r = form(q, k, v, ld, h0);
                (r.Output.sum() + r.FinalState.S.sum()).backward();
                Assert.False(r.Output.isnan().any().item<bool>() || r.FinalState.S.isnan().any().item<bool>(), $"NaN in values ({dtype})");
                foreach (var x in new[] { q, k, v, h0.S })
                    Assert.False(x.grad!.isnan().any().item<bool>() || x.grad!.isinf().any().item<bool>(), $"NaN in gradients ({dtype})");
                // λ = 0: each output is q_t·k_t v_t only
                var own = (q.select(2, 1) * k.select(2, 1)).sum(-1, keepdim: true) * v.select(2, 1);
                AssertClose.Tensors(r.Output.select(2, 1), own, atol: 1e-5, rtol: 1e-5, what: "λ = 0");
            }
        }
    }

    /// <summary>
    /// lightning-attention's <c>_build_slope_tensor(n)</c> written out as its recursion: for n a power of two, start · ratio^i
    /// with start = ratio = 2^(−2^(−(log₂ n − 3))); otherwise the slopes of the closest smaller power of two c followed by
    /// every other slope of 2c, the first n − c of them.
    /// </summary>
    static List<double> ReferenceSlopes(int n)
    {
        if (Math.Log2(n) % 1 == 0)
        {
            double start = Math.Pow(2, -Math.Pow(2, -(Math.Log2(n) - 3)));
            return Enumerable.Range(0, n).Select(i => start * Math.Pow(start, i)).ToList();
        }
        int c = (int)Math.Pow(2, Math.Floor(Math.Log2(n)));
        return ReferenceSlopes(c).Concat(ReferenceSlopes(2 * c).Where((_, i) => i % 2 == 0).Take(n - c)).ToList();
    }

    [Fact]
    public void DefaultSlopesAreTheReferencesBareAlibiSlopes()
    {
        // H = 8: exactly 2^{−1} … 2^{−8}, as doubles and in the float32 log-decay tensor; no layer factor by default
        var expected = Enumerable.Range(1, 8).Select(h => Math.Pow(2, -h)).ToArray();
        Assert.Equal(expected, DecaySchedules.AlibiSlopes(8));
        using (var ld = DecaySchedules.Alibi(8))
        {
            Assert.Equal(float32, ld.dtype);
            Assert.Equal(expected.Select(a => (float)-a), ld.data<float>().ToArray());
        }
        // every H from 1 to 40: the reference's recursion (its tensor is float32), equal after rounding to float32 (the
        // reference's start·ratio^i and our 2^{−8(h+1)/H} may differ in the last bit of a double)
        for (int h = 1; h <= 40; h++)
        {
            var reference = ReferenceSlopes(h);
            var ours = DecaySchedules.AlibiSlopes(h);
            Assert.Equal(reference.Count, ours.Length);
            for (int i = 0; i < h; i++)
            {
                Assert.Equal((float)reference[i], (float)ours[i]);
                Assert.True(Math.Abs(reference[i] - ours[i]) <= 1e-14 * reference[i], $"H = {h}, head {i}: {ours[i]} vs {reference[i]}");
            }
        }
        // a single layer (the default of Slopes and TnlAttention) keeps the bare slopes
        Assert.Equal(expected, DecaySchedules.Slopes(DecaySchedule.Alibi, 8));
        Assert.Equal(1.0, DecaySchedules.AlibiLayerFactor(0, 1));
        using var layer = new TnlAttention(16, 8);
        Assert.Equal(expected, layer.Slopes);
    }

    [Fact]
    public void LayerFactorIsNamedAndFollowsTheTnlExample()
    {
        // tnl_attn.py: slope_rate = _build_slope_tensor(H) · (1 − l/(L−1) + 1e−5)
        foreach (var (l, L) in new[] { (0, 2), (0, 4), (2, 4), (3, 4), (5, 12) })
        {
            double factor = 1 - (double)l / (L - 1) + 1e-5;
            Assert.Equal(factor, DecaySchedules.AlibiLayerFactor(l, L), 15);
            var slopes = DecaySchedules.AlibiLayerSlopes(8, l, L);
            for (int h = 0; h < 8; h++) Assert.Equal(Math.Pow(2, -(h + 1)) * factor, slopes[h], 15);
            Assert.Equal(slopes, DecaySchedules.Slopes(DecaySchedule.Alibi, 8, l, L));
            using var layer = new TnlAttention(16, 8, l, L);
            Assert.Equal(slopes, layer.Slopes);
        }
        Assert.Equal(1e-5, DecaySchedules.AlibiLayerFactor(3, 4), 15);                                  // the last layer barely decays
        using var ld = DecaySchedules.AlibiLayer(4, 1, 3, float64);
        Assert.Equal(DecaySchedules.AlibiLayerSlopes(4, 1, 3).Select(a => -a), ld.data<double>().ToArray());
        Assert.Equal(ld.data<double>().ToArray(), DecaySchedules.For(DecaySchedule.Alibi, 4, 1, 3, float64).data<double>().ToArray());
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedules.AlibiLayerFactor(4, 4)).ParamName);
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedules.AlibiLayerSlopes(4, -1, 4)).ParamName);
    }

    [Fact]
    public void TnlScheduleFollowsFla()
    {
        // (b) −(8/H)(1 − l/L)·h: H = 4, layer 1 of 2 → slopes {0, 1, 2, 3}; head 0 never decays
        Assert.Equal(new[] { 0.0, 1, 2, 3 }, DecaySchedules.TnlSlopes(4, 1, 2));
        Assert.Equal(new[] { 0.0, 2, 4, 6 }, DecaySchedules.TnlSlopes(4, 0, 2));
        Assert.Equal(float32, DecaySchedules.Tnl(4).dtype);
        // H not a power of two: ALiBi's interleaving, all slopes in (0, 1)
        Assert.All(DecaySchedules.AlibiSlopes(6), a => Assert.InRange(a, 1e-6, 1.0));
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedules.TnlSlopes(0)).ParamName);
    }

    [Theory]
    [InlineData(ScalarType.Float64, 2.0, 200)]     // a·T = 400 > 300: segments of 150 and 50 in float64
    [InlineData(ScalarType.Float64, 10.0, 77)]     // three segments (30, 30, 17)
    [InlineData(ScalarType.Float32, 0.7, 150)]     // three segments (57, 57, 36) in float32
    public void CumsumSegmentsAreInvisible(ScalarType dtype, double a, int t)
    {
        // the rescaled cumulative sum runs in segments whose decay range fits the float range; outputs, hT and gradients
        // still equal the masked form (float64 1e−10; float32 RMS-relative 1e−4 against the float64 twin)
        torch.manual_seed(400 + t);
        using var scope = NewDisposeScope();
        var (q, k, v, _, h0) = Inputs(2, t, 2, 3, 4, float64, grad: true);
        var ld = torch.tensor(new[] { -a, -a / 4 }, dtype: float64);
        using var naive = LightningNaive.Attention(q, k, v, ld, h0);
        if (dtype == ScalarType.Float64)
        {
            using var r = LightningAttention.Cumsum(q, k, v, ld, h0);
            AssertClose.Tensors(r.Output, naive.Output, atol: 1e-10, rtol: 1e-10, what: "output");
            AssertClose.Tensors(r.FinalState.S, naive.FinalState.S, atol: 1e-10, rtol: 1e-10, what: "hT");
            var wo = torch.randn(r.Output.shape, dtype: float64);
            var gradsOf = (LinearAttentionResult x) => Gradients.Of(new[] { (x.Output * wo).sum() + x.FinalState.S.sum() }, new[] { q, k, v, h0.S });
            var mine = gradsOf(r);
            var reference = gradsOf(naive);
            for (int i = 0; i < 4; i++) AssertClose.Tensors(mine[i], reference[i], atol: 1e-10, rtol: 1e-10, what: $"grad {i}");
        }
        else
        {
            using var r = LightningAttention.Cumsum(q.to(float32), k.to(float32), v.to(float32), ld.to(float32), new LinearState(h0.S.to(float32)));
            Assert.True(ErrorStats.Of(r.Output.to(float64), naive.Output).RmsRelative < 1e-4);
            Assert.True(ErrorStats.Of(r.FinalState.S.to(float64), naive.FinalState.S).RmsRelative < 1e-4);
        }
    }

    [Fact]
    public void CumsumMaterialisesEveryPrefixState()
    {
        // without decay the cumsum form is one cumulative sum: P_t = Σ_{s≤t} k_sᵀ v_s; o_t = q_t P_t
        torch.manual_seed(14);
        using var scope = NewDisposeScope();
        var (q, k, v, _, _) = Inputs(1, 9, 1, 2, 3, float64);
        using var r = LightningAttention.Cumsum(q, k, v);
        for (int t = 0; t < 9; t++)
        {
            var p = torch.zeros(2, 3, dtype: float64);
            for (int s = 0; s <= t; s++) p = p + k[0, s, 0].unsqueeze(1).matmul(v[0, s, 0].unsqueeze(0));
            AssertClose.Tensors(r.Output[0, t, 0], q[0, t, 0].unsqueeze(0).matmul(p).squeeze(0), atol: 1e-12, rtol: 1e-12, what: $"o_{t}");
            if (t == 8) AssertClose.Tensors(r.FinalState.S[0, 0], p, atol: 1e-12, rtol: 1e-12, what: "hT");
        }
    }

    [Fact]
    public void BlockFactorsComposeToTheRelativeDecay()
    {
        // λ^{j} · λ^{B−j} = λ^{B}; D_{jl} = λ^{j−l} below the diagonal, 0 above; DecayMask is the same at any length
        using var scope = NewDisposeScope();
        var ld = DecaySchedules.Alibi(4, dtype: float64);
        using var f = LightningAttention.BlockFactors(ld, 8);
        Assert.Equal(new long[] { 4 }, f.BlockDecay.shape);
        Assert.Equal(new long[] { 4, 8 }, f.QDecay.shape);
        Assert.Equal(new long[] { 4, 8, 8 }, f.Diag.shape);
        AssertClose.Tensors(f.QDecay * f.KDecay, f.BlockDecay.unsqueeze(-1).expand(4, 8), atol: 1e-14, rtol: 1e-14, what: "λ^j λ^{B−j}");
        AssertClose.Tensors(f.QDecay.select(1, 3), (ld * 3).exp(), atol: 1e-14, rtol: 1e-14, what: "λ^3");
        AssertClose.Tensors(f.Diag.select(1, 5).select(1, 2), (ld * 3).exp(), atol: 1e-14, rtol: 1e-14, what: "D_{5,2}");
        Assert.Equal(0.0, f.Diag.triu(1).abs().sum().item<double>());
        AssertClose.Tensors(LightningAttention.DecayMask(ld, 8), f.Diag, atol: 0, rtol: 0, what: "DecayMask");
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, ld, h0) = Inputs(2, 9, 2, 3, 4, float32);
        var e = Assert.Throws<ArgumentException>(() => LightningAttention.Tiled(q, k.narrow(1, 0, 8), v, ld));
        Assert.Equal("k", e.ParamName);
        Assert.Contains("[2, 8, 2, 3]", e.Message);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => LightningNaive.Attention(q.flatten(0, 1), k, v, ld)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => LightningAttention.Forward(q, k, v.narrow(2, 0, 1), ld)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => LightningAttention.Cumsum(q, k.narrow(1, 0, 8), v, ld)).ParamName);
        Assert.Equal("logDecay", Assert.Throws<ArgumentException>(() => LightningAttention.Cumsum(q, k, v, torch.ones(2))).ParamName);
        Assert.Equal("logDecay", Assert.Throws<ArgumentException>(() => LightningAttention.Tiled(q, k, v, torch.zeros(3))).ParamName);
        Assert.Equal("logDecay", Assert.Throws<ArgumentException>(() => LightningNaive.Attention(q, k, v, torch.ones(2))).ParamName);
        Assert.Equal("block", Assert.Throws<ArgumentOutOfRangeException>(() => LightningAttention.Tiled(q, k, v, ld, block: 0)).ParamName);
        Assert.Equal("block", Assert.Throws<ArgumentOutOfRangeException>(() => LightningAttention.Forward(q, k, v, ld, block: -1)).ParamName);
        var wrong = new LinearState(torch.zeros(2, 2, 4, 4));
        Assert.Equal("h0", Assert.Throws<ArgumentException>(() => LightningAttention.Tiled(q, k, v, ld, h0: wrong)).ParamName);
        Assert.Equal("logDecay", Assert.Throws<ArgumentException>(() => LightningAttention.DecayMask(torch.zeros(2, 2), 4)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => new TnlAttention(10, 4)).ParamName);
        using var layer = new TnlAttention(8, 2);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => layer.call(torch.randn(1, 4, 6))).ParamName);
        Assert.Equal("xT", Assert.Throws<ArgumentException>(() => layer.Step(torch.randn(1, 6), layer.NewState(1, float32, CPU))).ParamName);
        using var attention = new CausalSelfAttention(8, 2);
        using var foreign = attention.NewState(1, float32, CPU);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => layer.Step(torch.randn(1, 8), foreign)).ParamName);
    }

    static readonly TinyGptConfig SmallConfig = new(Layers: 2, DModel: 16, Heads: 4, MlpRatio: 2, InputFeatures: 2, OutputFeatures: 3);

    [Theory]
    [InlineData(DecaySchedule.Alibi)]
    [InlineData(DecaySchedule.Tnl)]
    public void StreamingStepReproducesTheForwardPassAtConstantStateBytes(DecaySchedule schedule)
    {
        torch.manual_seed(12);
        using var scope = NewDisposeScope();
        using var model = LightningStack.Create(SmallConfig, schedule, block: 4);
        using var noGrad = torch.no_grad();
        var x = torch.randn(3, 11, 2);
        var full = model.call(x);
        using var state = model.NewState(batch: 3);
        long bytes = SmallConfig.Layers * 3L * SmallConfig.Heads * SmallConfig.HeadDim * SmallConfig.HeadDim * sizeof(float);   // S [B, H, d_h, d_h] per layer
        Assert.Equal(bytes, state.Bytes);
        for (int t = 0; t < 11; t++)
        {
            var y = model.Step(x.select(1, t), state);
            AssertClose.Tensors(y, full.select(1, t), atol: 1e-5, rtol: 1e-5, what: $"step {t}");
            Assert.Equal(bytes, state.Bytes);
        }
        Assert.Equal(11, state.Position);
        // the layers decay with their own schedule: layer 0 faster than layer 1 (ALiBi × layer factor), TNL's head 0 never
        var layers = model.Blocks.Select(bl => (TnlAttention)bl.Mixer).ToList();
        Assert.True(layers[0].Slopes.Zip(layers[1].Slopes).All(p => p.First >= p.Second));
        if (schedule == DecaySchedule.Tnl) Assert.Equal(0.0, layers[0].Slopes[0]);
    }

    [Fact]
    public void NoTensorsLeakAcrossForwardBackwardAndStep()
    {
        torch.manual_seed(13);
        using var model = LightningStack.Create(SmallConfig, block: 4);
        using var x = torch.randn(2, 9, 2);
        void Round()
        {
            using (var scope = NewDisposeScope())
            {
                model.zero_grad();
                model.call(x).square().mean().backward();
                foreach (var p in model.parameters()) Assert.NotNull(p.grad);
            }
            using (var scope = NewDisposeScope())
            using (torch.no_grad())
            using (var state = model.NewState(2))
                for (int t = 0; t < 9; t++) model.Step(x.select(1, t), state);
            using (var scope = NewDisposeScope())
            {
                var (q, k, v, ld, h0) = Inputs(2, 13, 2, 3, 3, float32, grad: true);
                using var a = LightningAttention.Tiled(q, k, v, ld, 4, h0);
                using var b = LightningNaive.Attention(q, k, v, ld, h0);
                using var c = LightningAttention.Forward(q, k, v, ld, 4, h0);
                using var d = LightningAttention.Cumsum(q, k, v, ld, h0);
                (a.Output + b.Output + c.Output + d.Output).sum().backward();
                using var f = LightningAttention.BlockFactors(ld, 4);
            }
        }
        Round();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) Round();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
