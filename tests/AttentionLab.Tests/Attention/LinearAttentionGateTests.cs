using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>
/// The engine's per-token log-decay gate g [B, T, H] (issue 12): every form against a token-by-token recurrence written
/// out here (outputs, final states, every gradient including d/dg), the constant gate against the per-head forms, resets
/// (g = −∞), the kernel helper, the stream, and bad inputs.
/// </summary>
public class LinearAttentionGateTests
{
    static readonly LinearForm[] Forms = { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked };

    /// <summary>
    /// The twin: S_t = e^{g_t} S_{t−1} + φ(k_t) v_tᵀ, z_t = e^{g_t} z_{t−1} + φ(k_t), o_t = φ(q_t)ᵀ S_t (/ (φ(q_t)·z_t + ε)),
    /// one token at a time with einsum, no clamp, no segment sums — the definition the forms must reproduce.
    /// </summary>
    static (Tensor O, Tensor S, Tensor? Z) Recurrence(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? s0, Tensor? z0, IFeatureMap map, bool normalize,
        double eps, double scale)
    {
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dv = v.shape[3];
        var qf = map.Apply(q * scale);                                                   // [B, T, H, F]
        var kf = map.Apply(k);
        long f = qf.shape[^1];
        var s = s0 ?? torch.zeros(new[] { b, h, f, dv }, dtype: q.dtype);
        var z = normalize ? z0 ?? torch.zeros(new[] { b, h, f }, dtype: q.dtype) : null;
        var outputs = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var lambda = g.select(1, i).exp();                                           // λ_t [B, H]
            s = lambda.unsqueeze(-1).unsqueeze(-1) * s + torch.einsum("bhf,bhd->bhfd", kf.select(1, i), v.select(1, i));
            var o = torch.einsum("bhf,bhfd->bhd", qf.select(1, i), s);
            if (z is not null)
            {
                z = lambda.unsqueeze(-1) * z + kf.select(1, i);
                o = o / ((qf.select(1, i) * z).sum(-1, keepdim: true) + eps);
            }
            outputs.Add(o);
        }
        return (torch.stack(outputs, 1), s, z);
    }

    /// <summary>A variant on the shared grid: feature map, normalisation, a start state, resets (some g = −∞, some g = 0), q scale.</summary>
    public sealed record GateCase(string Map, bool Normalize, bool H0, bool Resets, double Scale = 1.0)
    {
        public override string ToString() =>
            $"{Map}{(Normalize ? " norm" : "")}{(H0 ? " h0" : "")}{(Resets ? " resets" : "")}{(Scale != 1 ? $" scale{Scale}" : "")}";
    }

    public static IEnumerable<object[]> GateCases() => Conformance.ShapesWithEach(
        new GateCase("identity", false, true, false), new GateCase("elu+1", true, true, true), new GateCase("taylor", true, false, false),
        new GateCase("sigmoid", false, true, true, 0.7));

    /// <summary>
    /// q, k [B, T, H, D], v [B, T, H, Dv], g [B, T, H] = logσ(1.5·N + 2) (λ mostly 0.7 … 1; with resets one in ten is −∞ and
    /// one in ten exactly 0), then S₀ (and z₀ ≥ 0 when normalised) in the accumulation dtype.
    /// </summary>
    static Func<Shape, ScalarType, Generator, Tensor[]> GateInputs(GateCase p) => (s, dtype, gen) =>
    {
        long f = LinearAttentionTests.Map(p.Map, s.D).OutputDim(s.D);
        var acc = LinearAttention.AccumulationDtype(dtype);
        Tensor N(params long[] size) => torch.randn(size, generator: gen, dtype: float64);
        var g = nn.functional.logsigmoid(1.5 * N(s.B, s.T, s.H) + 2);
        if (p.Resets)
        {
            var u = torch.rand(new long[] { s.B, s.T, s.H }, generator: gen, dtype: float64);
            g = g.masked_fill(u < 0.1, double.NegativeInfinity).masked_fill(u > 0.9, 0.0);
        }
        return
        [
            N(s.B, s.T, s.H, s.D).to(dtype), N(s.B, s.T, s.H, s.D).to(dtype), N(s.B, s.T, s.H, s.Dv).to(dtype), g.to(dtype),
            .. p.H0 ? new[] { N(s.B, s.H, f, s.Dv).to(acc) } : [],
            .. p.H0 && p.Normalize ? new[] { torch.rand(new long[] { s.B, s.H, f }, generator: gen, dtype: float64).to(acc) } : [],
        ];
    };

    static (Tensor? S0, Tensor? Z0) Start(GateCase p, Tensor[] x) => (p.H0 ? x[4] : null, p.H0 && p.Normalize ? x[5] : null);

    static FormOutput Output(LinearAttentionResult r) =>
        new(r.Output.alias(), [r.FinalState.S.alias(), .. r.FinalState.Z is { } z ? new[] { z.alias() } : []]);

    /// <summary>
    /// Parallel, recurrent and chunked (the grid's chunk) with a gate against the token recurrence: outputs, S_T, z_T and the
    /// gradients of q, k, v, g, S₀, z₀ — float64 within 1e−10, float32 within 1e−5·max|ref| (gradients 1e−4) of the float64 twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(GateCases))]
    public void GatedFormsEqualTheTokenRecurrence(Shape shape, GateCase p)
    {
        var options = new LinearAttentionOptions
        {
            FeatureMap = LinearAttentionTests.Map(p.Map, shape.D), Normalize = p.Normalize, ChunkSize = shape.Chunk, Scale = p.Scale,
        };
        var twin = new Form("token recurrence", x =>
        {
            var (s0, z0) = Start(p, x);
            var (o, s, z) = Recurrence(x[0], x[1], x[2], x[3], s0, z0, options.FeatureMap, p.Normalize, options.Eps, p.Scale);
            return new FormOutput(o, [s, .. z is null ? [] : new[] { z }]);
        });
        var forms = Forms.Select(form => new Form($"gated {form}", x =>
        {
            var (s0, z0) = Start(p, x);
            using var r = LinearAttention.Run(form, x[0], x[1], x[2], x[3], s0 is null ? null : new LinearState(s0, z0), options);
            return Output(r);
        }));
        Conformance.Check(shape, GateInputs(p), twin, forms, atol32: 0);
    }

    public static IEnumerable<object[]> ConstantCases() => Conformance.ShapesWith("identity", "elu+1 norm");

    /// <summary>
    /// g_t = log λ_h for every t (log λ [H] expanded to [B, T, H] inside the form, so d/d log λ sums d/dg over b and t): each
    /// gated form equals the per-head parallel form on outputs, states and every gradient, log λ's included.
    /// </summary>
    [Theory]
    [MemberData(nameof(ConstantCases))]
    public void AConstantGateIsThePerHeadDecay(Shape shape, string variant)
    {
        bool norm = variant.EndsWith("norm", StringComparison.Ordinal);
        var options = new LinearAttentionOptions
        {
            FeatureMap = LinearAttentionTests.Map(variant.Split(' ')[0], shape.D), Normalize = norm, ChunkSize = shape.Chunk,
        };
        Func<Shape, ScalarType, Generator, Tensor[]> inputs = (s, dtype, gen) =>
        {
            Tensor N(params long[] size) => torch.randn(size, generator: gen, dtype: float64).to(dtype);
            var acc = LinearAttention.AccumulationDtype(dtype);
            return
            [
                N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.D), N(s.B, s.T, s.H, s.Dv), torch.tensor(LinearAttentionTests.LogDecays(s.H), dtype),
                torch.randn(new long[] { s.B, s.H, s.D, s.Dv }, generator: gen, dtype: float64).to(acc),
                .. norm ? new[] { torch.rand(new long[] { s.B, s.H, s.D }, generator: gen, dtype: float64).to(acc) } : [],
            ];
        };
        LinearState H0(Tensor[] x) => new(x[4], norm ? x[5] : null);
        var perHead = new Form("per-head parallel", x =>
        {
            using var r = LinearAttention.Parallel(x[0], x[1], x[2], x[3], H0(x), options);
            return Output(r);
        });
        var gated = Forms.Select(form => new Form($"constant-gate {form}", x =>
        {
            var g = x[3].view(1, 1, -1).expand(shape.B, shape.T, shape.H);
            using var r = LinearAttention.Run(form, x[0], x[1], x[2], g, H0(x), options);
            return Output(r);
        }));
        Conformance.Check(shape, inputs, perHead, gated, atol32: 0);
    }

    /// <summary>With g_r = −∞ the outputs from r on and the final state are those of the tail run from a zero state.</summary>
    [Theory]
    [InlineData(LinearForm.Parallel)]
    [InlineData(LinearForm.Recurrent)]
    [InlineData(LinearForm.Chunked)]
    public void MinusInfinityResetsTheState(LinearForm form)
    {
        using var scope = NewDisposeScope();
        const int t = 13, r = 6;
        var (q, k, v) = LinearAttentionTests.Qkv(91, 2, t, 2, 3, 4, float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 4 };
        var g = nn.functional.logsigmoid(torch.randn(2, t, 2, dtype: float64) + 1);
        g.select(1, r).fill_(double.NegativeInfinity);
        using var h0 = LinearState.Zeros(2, 2, 3, 4, normalize: true, float64);
        h0.S.fill_(1.0); h0.Z!.fill_(1.0);
        using var whole = LinearAttention.Run(form, q, k, v, g, h0, options);
        using var tail = LinearAttention.Run(form, q.narrow(1, r, t - r), k.narrow(1, r, t - r), v.narrow(1, r, t - r),
            g.narrow(1, r, t - r), options: options);                  // g_r (−∞) multiplies a zero state there
        AssertClose.Tensors(whole.Output.narrow(1, r, t - r), tail.Output, 1e-12, 1e-12, $"{form}: outputs after the reset");
        AssertClose.Tensors(whole.FinalState.S, tail.FinalState.S, 1e-12, 1e-12, $"{form}: S_T after the reset");
        AssertClose.Tensors(whole.FinalState.Z!, tail.FinalState.Z!, 1e-12, 1e-12, $"{form}: z_T after the reset");
        Assert.True(whole.Output.isfinite().all().item<bool>(), $"{form}: finite outputs");

        var gg = g.clone().requires_grad_();
        using var again = LinearAttention.Run(form, q, k, v, gg, h0, options);
        again.Output.sum().backward();
        Assert.True(gg.grad!.isfinite().all().item<bool>(), $"{form}: finite d/dg with a reset");
        Assert.Equal(0.0, gg.grad!.select(1, r).abs().sum().item<double>());
    }

    /// <summary>The chunked form's segments (2048 tokens) carry the gate's state like the per-head one: chunked = parallel, gradients included.</summary>
    [Fact]
    public void ChunkedSegmentsAreInvisibleWithAGate()
    {
        using var scope = NewDisposeScope();
        int t = LinearAttention.ChunkedSegmentTokens + 64 + 69 + 3;
        var (q0, k0, v0) = LinearAttentionTests.Qkv(92, 1, t, 2, 3, 2, float64);
        var g0 = nn.functional.logsigmoid(torch.randn(1, t, 2, dtype: float64) + 5);
        var wo = torch.randn(1, t, 2, 2, dtype: float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 64 };
        var results = new List<(Tensor O, Tensor S, Tensor[] Grads)>();
        foreach (var form in new[] { LinearForm.Parallel, LinearForm.Chunked })
        {
            var leaves = new[] { q0, k0, v0, g0 }.Select(x => x.clone().requires_grad_()).ToArray();
            using var r = LinearAttention.Run(form, leaves[0], leaves[1], leaves[2], leaves[3], options: options);
            ((r.Output * wo).sum() + r.FinalState.S.sum()).backward();
            results.Add((r.Output.detach().clone(), r.FinalState.S.detach().clone(), leaves.Select(x => x.grad!.clone()).ToArray()));
        }
        AssertClose.Tensors(results[1].O, results[0].O, 1e-9, 1e-9, $"chunked output over {t} tokens");
        AssertClose.Tensors(results[1].S, results[0].S, 1e-9, 1e-9, "chunked S_T");
        string[] names = { "q", "k", "v", "g" };
        for (int i = 0; i < names.Length; i++) AssertClose.Tensors(results[1].Grads[i], results[0].Grads[i], 1e-8, 1e-8, $"d/d{names[i]}");
    }

    /// <summary>
    /// The kernel helper with a gate: W·V equals the forms' output (normalised or not), and one decode row
    /// (qPos = [t], kPos = 0 … t) is that row of the full kernel.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void KernelWithAGateReproducesTheForms(bool normalize)
    {
        using var scope = NewDisposeScope();
        const int t = 9;
        var (q, k, v) = LinearAttentionTests.Qkv(93, 2, t, 3, 4, 2, float64);
        var g = nn.functional.logsigmoid(torch.randn(2, t, 3, dtype: float64));
        g.select(1, 4).select(1, 1).fill_(double.NegativeInfinity);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Sigmoid, Normalize = normalize, Scale = 0.8, ChunkSize = 4 };
        var pos = torch.arange(t);
        var w = LinearAttention.NormaliseKernel(LinearAttention.Kernel(q, k, pos, pos, options, g), options);   // [B, H, T, T]
        var o = w.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);
        using var r = LinearAttention.Chunked(q, k, v, g, options: options);
        AssertClose.Tensors(o, r.Output, 1e-12, 1e-12, "W·V vs the chunked form");
        var row = LinearAttention.Kernel(q.narrow(1, 6, 1), k.narrow(1, 0, 7), torch.tensor(new long[] { 6 }), torch.arange(7), options, g);
        AssertClose.Tensors(row, LinearAttention.Kernel(q, k, pos, pos, options, g).narrow(2, 6, 1).narrow(3, 0, 7), 1e-14, 0, "decode row");
    }

    /// <summary>Prefill with gates, then steps with g_t, reproduce the chunked run — alone and on top of a per-head decay (log-decays add).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void StreamWithGatesReproducesTheFullForward(bool perHead)
    {
        using var scope = NewDisposeScope();
        const int b = 2, t = 9, h = 3, d = 4, dv = 5, prompt = 4;
        var (q, k, v) = LinearAttentionTests.Qkv(94, b, t, h, d, dv, float64);
        var g = nn.functional.logsigmoid(torch.randn(b, t, h, dtype: float64) + 1);
        g[1, 6, 2].fill_(double.NegativeInfinity);
        var ld = perHead ? torch.tensor(LinearAttentionTests.LogDecays(h), float64) : null;
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 3 };
        using var whole = LinearAttention.Chunked(q, k, v, ld is null ? g : g + ld.view(1, 1, -1), options: options);
        using var stream = new LinearAttentionStream(b, h, d, dv, float64, logDecay: ld, options: options);
        var outputs = new List<Tensor> { stream.Prefill(q.narrow(1, 0, prompt), k.narrow(1, 0, prompt), v.narrow(1, 0, prompt), g.narrow(1, 0, prompt)) };
        for (int i = prompt; i < t; i++) outputs.Add(stream.Step(q.select(1, i), k.select(1, i), v.select(1, i), g.select(1, i)).unsqueeze(1));
        AssertClose.Tensors(torch.cat(outputs, 1), whole.Output, 1e-10, 1e-10, "stream output");
        AssertClose.Tensors(stream.State.S, whole.FinalState.S, 1e-10, 1e-10, "stream S");
        AssertClose.Tensors(stream.State.Z!, whole.FinalState.Z!, 1e-10, 1e-10, "stream z");
    }

    /// <summary>Half inputs with a gate accumulate in float32 like the per-head path: float32 state, input-dtype output.</summary>
    [Fact]
    public void HalfInputsWithAGateAccumulateInFloat32()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = LinearAttentionTests.Qkv(95, 1, 20, 2, 4, 4, float32);
        var g = nn.functional.logsigmoid(torch.randn(1, 20, 2) + 2);
        var (qh, kh, vh, gh) = (q.to(ScalarType.BFloat16), k.to(ScalarType.BFloat16), v.to(ScalarType.BFloat16), g.to(ScalarType.BFloat16));
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 8 };
        var (o64, s64, _) = Recurrence(qh.to(float64), kh.to(float64), vh.to(float64), gh.to(float64), null, null, options.FeatureMap, true, options.Eps, 1);
        foreach (var form in Forms)
        {
            using var r = LinearAttention.Run(form, qh, kh, vh, gh, options: options);
            Assert.Equal(ScalarType.BFloat16, r.Output.dtype);
            Assert.Equal(float32, r.FinalState.S.dtype);
            AssertClose.Tensors(r.FinalState.S, s64, 0, 1e-5, $"{form} bfloat16 state (float32 accumulation)");
            AssertClose.Tensors(r.Output.to(float64), o64, 0, 1e-2, $"{form} bfloat16 output (one final rounding)");
        }
    }

    /// <summary>The gated chunked path (reset, h0, normalisation, short last chunk, backward) leaves no tensor behind.</summary>
    [Fact]
    public void GatedChunkedPathDoesNotLeak()
    {
        var (q, k, v) = LinearAttentionTests.Qkv(96, 2, 23, 2, 4, 3, float32);
        var g = nn.functional.logsigmoid(torch.randn(2, 23, 2));
        g[0, 5, 0].fill_(double.NegativeInfinity);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 8 };
        using var h0 = LinearState.Zeros(2, 2, 4, 3, normalize: true);
        var gg = g.clone().requires_grad_();
        LeakCheck.AssertNoLeak(() =>
        {
            using var step = NewDisposeScope();
            using var r = LinearAttention.Chunked(q, k, v, gg, h0, options);
            r.Output.sum().backward();
            gg.grad!.zero_();
        }, "gated LinearAttention.Chunked with backward");
        using var stream = new LinearAttentionStream(2, 2, 4, 3, options: options);
        LeakCheck.AssertNoLeak(() =>
        {
            using var inner = NewDisposeScope();
            stream.Step(q.select(1, 0), k.select(1, 0), v.select(1, 0), g.select(1, 0));
        }, "gated stream step");
        q.Dispose(); k.Dispose(); v.Dispose(); g.Dispose(); gg.Dispose();
    }

    static void Throws(string param, Action action)
    {
        var e = Assert.ThrowsAny<ArgumentException>(action);
        Assert.Equal(param, e.ParamName);
    }

    [Fact]
    public void BadGatesNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var q = torch.randn(2, 5, 3, 4); var k = torch.randn(2, 5, 3, 4); var v = torch.randn(2, 5, 3, 2);
        var ok = nn.functional.logsigmoid(torch.randn(2, 5, 3));
        foreach (var form in Forms)
        {
            void Run(Tensor g) => LinearAttention.Run(form, q, k, v, g).Dispose();
            Run(ok);                                                                         // the good one runs
            Throws("logDecay", () => Run(ok.narrow(0, 0, 1)));                               // batch
            Throws("logDecay", () => Run(ok.narrow(1, 0, 4)));                               // length
            Throws("logDecay", () => Run(ok.narrow(2, 0, 2)));                               // heads
            Throws("logDecay", () => Run(ok.unsqueeze(-1)));                                 // rank 4
            Throws("logDecay", () => Run(ok.select(0, 0)));                                  // rank 2
            Throws("logDecay", () => Run(torch.zeros(new long[] { 2, 5, 3 }, dtype: ScalarType.Int32)));   // dtype
            var positive = ok.clone(); positive[1, 3, 2].fill_(0.01);
            Throws("logDecay", () => Run(positive));                                         // λ_t > 1
            var nan = ok.clone(); nan[0, 0, 0].fill_(double.NaN);
            Throws("logDecay", () => Run(nan));                                              // NaN is refused
            if (torch.TryInitializeDeviceType(DeviceType.META))
                Throws("logDecay", () => Run(torch.empty(new long[] { 2, 5, 3 }, device: torch.META)));   // device
        }
        var pos = torch.arange(5);
        Throws("logDecay", () => LinearAttention.Kernel(q, k, pos, pos, logDecay: ok, causal: false));              // a gate is causal
        Throws("logDecay", () => LinearAttention.Kernel(q, k, pos + 1, pos, logDecay: ok));                          // position 5 of 5
        Throws("logDecay", () => LinearAttention.Kernel(q, k, pos, pos, logDecay: ok.narrow(2, 0, 1)));              // heads
        Throws("logDecay", () => LinearAttention.Kernel(q, k, pos, pos, logDecay: ok.clamp_min(-0.5) + 0.6));        // positive
        using var stream = new LinearAttentionStream(2, 3, 4, 2);
        Throws("gate", () => stream.Step(q.select(1, 0), k.select(1, 0), v.select(1, 0), ok.select(1, 0).narrow(1, 0, 2)));   // [B, H]
        Throws("gate", () => stream.Step(q.select(1, 0), k.select(1, 0), v.select(1, 0), ok));                                  // rank
        Throws("gate", () => stream.Step(q.select(1, 0), k.select(1, 0), v.select(1, 0), -ok.select(1, 0)));                    // positive
        Throws("gate", () => stream.Prefill(q, k, v, ok.select(2, 0)));                                                          // rank
    }
}
