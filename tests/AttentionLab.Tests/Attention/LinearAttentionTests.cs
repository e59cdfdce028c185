using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>
/// The linear-attention engine's three forms against each other and against an independent oracle: outputs, final
/// states, gradients, state carry-over, decay extremes, causality, a hand-computed case.
/// </summary>
public class LinearAttentionTests(ITestOutputHelper log)
{
    static readonly LinearForm[] Forms = { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked };

    internal static IFeatureMap Map(string name, int d) => name switch
    {
        "identity" => FeatureMaps.Identity,
        "elu+1" => FeatureMaps.EluPlusOne,
        "sigmoid" => FeatureMaps.Sigmoid,
        "taylor" => FeatureMaps.Taylor(d),
        "taylor-packed" => FeatureMaps.Taylor(d, packSymmetric: true),
        _ => throw new ArgumentException(name),
    };

    /// <summary>log λ_h spread over heads: −0.05, −0.3, −1, −0.01, …</summary>
    internal static double[] LogDecays(int heads) =>
        Enumerable.Range(0, heads).Select(h => new[] { -0.05, -0.3, -1.0, -0.01 }[h % 4]).ToArray();

    internal static (Tensor Q, Tensor K, Tensor V) Qkv(int seed, int b, int t, int h, int d, int dv, ScalarType dtype)
    {
        torch.manual_seed(seed);
        return (torch.randn(b, t, h, d, dtype: dtype), torch.randn(b, t, h, d, dtype: dtype), torch.randn(b, t, h, dv, dtype: dtype));
    }

    /// <summary>A variant on the shared grid: feature map, normalisation, per-head decay, a start state (S₀, and z₀ when normalised), q scale.</summary>
    public sealed record LinearCase(string Map, bool Normalize, bool Decay, bool H0, double Scale = 1.0)
    {
        public override string ToString() =>
            $"{Map}{(Normalize ? " norm" : "")}{(Decay ? " decay" : "")}{(H0 ? " h0" : "")}{(Scale != 1 ? $" scale{Scale}" : "")}";
    }

    public static IEnumerable<object[]> LinearCases() => Conformance.ShapesWithEach(
        new LinearCase("identity", false, true, true), new LinearCase("elu+1", true, true, true), new LinearCase("sigmoid", true, true, false),
        new LinearCase("identity", false, true, true, 0.7), new LinearCase("identity", false, false, true), new LinearCase("taylor", true, true, true),
        new LinearCase("taylor-packed", true, false, true), new LinearCase("elu+1", false, true, false, 0.5));

    /// <summary>
    /// Conformance inputs: q, k [B, T, H, D], v [B, T, H, Dv]; then log λ_h (<see cref="LogDecays"/>) with a decay; then
    /// S₀ [B, H, F, Dv] ~ N(0, 1) and, when normalised, z₀ [B, H, F] ~ U(0, 1) (a z of positive features is ≥ 0) with h0;
    /// the start state in the accumulation dtype.
    /// </summary>
    static Func<Shape, ScalarType, Generator, Tensor[]> LinearInputs(LinearCase p) => (s, dtype, g) =>
    {
        long f = Map(p.Map, s.D).OutputDim(s.D);
        var acc = LinearAttention.AccumulationDtype(dtype);
        Tensor N(params long[] size) => torch.randn(size, generator: g, dtype: float64);
        return
        [
            N(s.B, s.T, s.H, s.D).to(dtype), N(s.B, s.T, s.H, s.D).to(dtype), N(s.B, s.T, s.H, s.Dv).to(dtype),
            .. p.Decay ? new[] { torch.tensor(LogDecays(s.H), dtype) } : [],
            .. p.H0 ? new[] { N(s.B, s.H, f, s.Dv).to(acc) } : [],
            .. p.H0 && p.Normalize ? new[] { torch.rand(new long[] { s.B, s.H, f }, generator: g, dtype: float64).to(acc) } : [],
        ];
    };

    /// <summary>The inputs of <see cref="LinearInputs"/> split back: q, k, v, log λ (or null), S₀ (or null), z₀ (or null).</summary>
    static (Tensor Q, Tensor K, Tensor V, Tensor? Ld, Tensor? S0, Tensor? Z0) Split(LinearCase p, Tensor[] x)
    {
        int i = 3;
        var ld = p.Decay ? x[i++] : null;
        var s0 = p.H0 ? x[i++] : null;
        var z0 = p.H0 && p.Normalize ? x[i++] : null;
        return (x[0], x[1], x[2], ld, s0, z0);
    }

    static Form EngineForm(LinearForm form, LinearCase p, LinearAttentionOptions options) => new(form.ToString(), x =>
    {
        var (q, k, v, ld, s0, z0) = Split(p, x);
        using var r = LinearAttention.Run(form, q, k, v, ld, s0 is null ? null : new LinearState(s0, z0), options);   // h0 not disposed: it holds the leaves
        return new FormOutput(r.Output.alias(), [r.FinalState.S.alias(), .. r.FinalState.Z is { } z ? new[] { z.alias() } : []]);
    });

    /// <summary>
    /// Parallel, recurrent and chunked (chunk = the grid's) against the independent oracle: outputs, S_T, z_T (present exactly
    /// when normalised) and the gradients of q, k, v, S₀, z₀; float64 1e−10, float32 max |Δ| ≤ 1e−5·max|ref| against the
    /// float64 oracle. log λ is held fixed here (the oracle's powers are plain doubles): its gradient is compared between the
    /// forms in <see cref="GradientsOfTheFormsAgree"/>.
    /// </summary>
    [Theory]
    [MemberData(nameof(LinearCases))]
    public void FormsEqualTheOracleOnOutputsAndFinalStates(Shape shape, LinearCase p)
    {
        var fm = Map(p.Map, shape.D);
        var options = new LinearAttentionOptions { FeatureMap = fm, Normalize = p.Normalize, ChunkSize = shape.Chunk, Scale = p.Scale };
        var oracle = new Form("oracle", x =>
        {
            var (q, k, v, ld, s0, z0) = Split(p, x);
            var r = LinearAttentionOracle.Run(q, k, v, fm, ld?.to(float64).data<double>().ToArray(), p.Normalize, options.Eps, s0, z0, p.Scale);
            return new FormOutput(r.Output, [r.S, .. r.Z is { } z ? new[] { z } : []]);
        });
        Conformance.Check(shape, LinearInputs(p), oracle, Forms.Select(f => EngineForm(f, p, options)), atol32: 0, fixedInputs: p.Decay ? [3] : []);
    }

    [Theory]
    [InlineData(LinearForm.Parallel, 9, 4)]
    [InlineData(LinearForm.Recurrent, 9, 4)]
    [InlineData(LinearForm.Chunked, 9, 4)]
    [InlineData(LinearForm.Chunked, 1, 3)]
    [InlineData(LinearForm.Chunked, 10, 3)]
    public void RunningTwoPiecesWithTheStateEqualsRunningTheWhole(LinearForm form, int t, int chunk)
    {
        using var scope = NewDisposeScope();
        const int h = 2, d = 3;
        var (q, k, v) = Qkv(11, 2, t + 5, h, d, 4, float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Taylor(d), Normalize = true, ChunkSize = chunk };
        var logDecay = torch.tensor(LogDecays(h), float64);
        using var whole = LinearAttention.Run(form, q, k, v, logDecay, options: options);
        using var first = LinearAttention.Run(form, q.narrow(1, 0, t), k.narrow(1, 0, t), v.narrow(1, 0, t), logDecay, options: options);
        using var second = LinearAttention.Run(form, q.narrow(1, t, 5), k.narrow(1, t, 5), v.narrow(1, t, 5), logDecay, first.FinalState, options);
        AssertClose.Tensors(torch.cat(new[] { first.Output, second.Output }, 1), whole.Output, 1e-10, 1e-10, $"{form}: halves vs whole");
        AssertClose.Tensors(second.FinalState.S, whole.FinalState.S, 1e-10, 1e-10, $"{form}: S_T");
        AssertClose.Tensors(second.FinalState.Z!, whole.FinalState.Z!, 1e-10, 1e-10, $"{form}: z_T");
    }

    public static IEnumerable<object[]> GradCases() => Conformance.ShapesWith(
        new LinearCase("identity", false, true, true), new LinearCase("elu+1", true, true, true),
        new LinearCase("taylor", true, true, true), new LinearCase("sigmoid", false, true, true));

    /// <summary>
    /// d/d(q, k, v, log λ, S₀, z₀) of a random linear functional of output and final states: recurrent and chunked against
    /// the parallel form (float64 1e−10; float32 against the float64 parallel form, gradients 1e−4); log λ gets a gradient.
    /// </summary>
    [Theory]
    [MemberData(nameof(GradCases))]
    public void GradientsOfTheFormsAgree(Shape shape, LinearCase p)
    {
        using var scope = NewDisposeScope();
        var options = new LinearAttentionOptions { FeatureMap = Map(p.Map, shape.D), Normalize = p.Normalize, ChunkSize = shape.Chunk };
        Conformance.Check(shape, LinearInputs(p), EngineForm(LinearForm.Parallel, p, options),
            [EngineForm(LinearForm.Recurrent, p, options), EngineForm(LinearForm.Chunked, p, options)], atol32: 0);
        var x = LinearInputs(p)(shape, float64, new Generator(0));
        var ld = x[3].requires_grad_();
        using var r = LinearAttention.Parallel(x[0], x[1], x[2], ld, new LinearState(x[4], p.Normalize ? x[5] : null), options);
        var gen = new Generator(1);
        var loss = (r.Output * torch.randn(r.Output.shape, generator: gen, dtype: float64)).sum()
                   + (r.FinalState.S * torch.randn(r.FinalState.S.shape, generator: gen, dtype: float64)).sum();
        Assert.True(Gradients.Of([loss], [ld])[0].abs().sum().item<double>() > 0, "log λ gets a gradient");
    }

    /// <summary>
    /// The chunked form runs in segments of <see cref="LinearAttention.ChunkedSegmentTokens"/> tokens carrying (S, z):
    /// across segment boundaries (and a short last chunk) it still equals the parallel form on outputs, final states and
    /// gradients.
    /// </summary>
    [Theory]
    [InlineData(64, 69)]     // two segments, a partial last chunk
    [InlineData(100, 0)]     // a chunk that does not divide the segment length: 2000-token segments
    public void ChunkedSegmentsAreInvisible(int chunk, int extra)
    {
        using var scope = NewDisposeScope();
        int t = LinearAttention.ChunkedSegmentTokens + chunk + extra + 3;
        const int b = 1, h = 2, d = 3, dv = 2;
        var (q0, k0, v0) = Qkv(31, b, t, h, d, dv, float64);
        torch.manual_seed(32);
        var ld0 = torch.tensor(new[] { -0.002, -0.05 }, float64);
        var s00 = torch.randn(b, h, d, dv, dtype: float64); var z00 = torch.rand(b, h, d, dtype: float64);
        var wo = torch.randn(b, t, h, dv, dtype: float64); var ws = torch.randn(b, h, d, dv, dtype: float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = chunk };
        var results = new List<(Tensor O, Tensor S, Tensor Z, Tensor[] Grads)>();
        foreach (var form in new[] { LinearForm.Parallel, LinearForm.Chunked })
        {
            var leaves = new[] { q0, k0, v0, ld0, s00, z00 }.Select(x => x.clone().requires_grad_()).ToArray();
            using var h0 = new LinearState(leaves[4], leaves[5]);
            using var r = LinearAttention.Run(form, leaves[0], leaves[1], leaves[2], leaves[3], h0, options);
            ((r.Output * wo).sum() + (r.FinalState.S * ws).sum() + r.FinalState.Z!.sum()).backward();
            results.Add((r.Output.detach().clone(), r.FinalState.S.detach().clone(), r.FinalState.Z!.detach().clone(),
                leaves.Select(x => x.grad!.clone()).ToArray()));
        }
        var (p, c) = (results[0], results[1]);
        AssertClose.Tensors(c.O, p.O, 1e-9, 1e-9, $"chunked output over {t} tokens");
        AssertClose.Tensors(c.S, p.S, 1e-9, 1e-9, "chunked S_T");
        AssertClose.Tensors(c.Z, p.Z, 1e-9, 1e-9, "chunked z_T");
        string[] names = { "q", "k", "v", "log λ", "S0", "z0" };
        for (int i = 0; i < names.Length; i++) AssertClose.Tensors(c.Grads[i], p.Grads[i], 1e-8, 1e-8, $"d/d{names[i]}");
    }

    /// <summary>One directional finite difference in log λ (float64): autograd through the tril → exp → tril masks is right.</summary>
    [Fact]
    public void ChunkedLogDecayGradientMatchesAFiniteDifference()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv(31, 1, 9, 2, 3, 2, float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 4 };
        var w = torch.randn(1, 9, 2, 2, dtype: float64);
        double Loss(Tensor ld) { using var r = LinearAttention.Chunked(q, k, v, ld, options: options); return (r.Output * w).sum().item<double>(); }
        var ld = torch.tensor(new[] { -0.2, -0.7 }, float64).requires_grad_();
        using (var r = LinearAttention.Chunked(q, k, v, ld, options: options)) (r.Output * w).sum().backward();
        var dir = torch.tensor(new[] { 0.6, -0.8 }, float64);
        double eps = 1e-6;
        double fd;
        using (torch.no_grad()) fd = (Loss(ld + eps * dir) - Loss(ld - eps * dir)) / (2 * eps);
        double ad = (ld.grad! * dir).sum().item<double>();
        Assert.True(Math.Abs(fd - ad) <= 1e-7 * Math.Max(1, Math.Abs(ad)), $"finite difference {fd} vs autograd {ad}");
    }

    /// <summary>Long decay products (T = 300, products down to e^{−300}) in float32 stay within 1e-4 of the float64 oracle.</summary>
    [Fact]
    public void Float32FormsStayCloseOverLongDecayProducts()
    {
        using var scope = NewDisposeScope();
        const int t = 300, h = 4;
        var (q, k, v) = Qkv(41, 1, t, h, 8, 8, float32);
        double[] ld = { -1e-3, -0.02, -0.2, -1.0 };
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, ChunkSize = 32 };
        var oracle = LinearAttentionOracle.Run(q, k, v, options.FeatureMap, ld, false, 0);
        foreach (var form in Forms)
        {
            using var r = LinearAttention.Run(form, q, k, v, torch.tensor(ld, float32), options: options);
            var e = AssertClose.Tensors(r.Output, oracle.Output, 0, 1e-4, $"{form} float32 T{t}");
            AssertClose.Tensors(r.FinalState.S, oracle.S, 0, 1e-4, $"{form} float32 S_T");
            log.WriteLine($"{form} float32 T{t} decay: {e}");
        }
    }

    [Fact]
    public void DecayExtremes()
    {
        using var scope = NewDisposeScope();
        const int t = 10, h = 2;
        var (q, k, v) = Qkv(51, 1, t, h, 4, 3, float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 4, Eps = 0 };
        using var none = LinearAttention.Parallel(q, k, v, options: options);
        foreach (var form in Forms)
        {
            // λ = 1 exactly is no decay; λ → 1 approaches it.
            using var one = LinearAttention.Run(form, q, k, v, torch.zeros(h, dtype: float64), options: options);
            AssertClose.Tensors(one.Output, none.Output, 1e-12, 0, $"{form}: log λ = 0 is no decay");
            using var near = LinearAttention.Run(form, q, k, v, torch.full(h, -1e-9, dtype: float64), options: options);
            AssertClose.Tensors(near.Output, none.Output, 1e-7, 0, $"{form}: λ → 1");

            // λ → 0 (and λ = 0 as −∞): each token sees only itself: normalised o_t = v_t, S_T = φ(k_T) v_Tᵀ.
            var kfLast = FeatureMaps.EluPlusOne.Apply(k.select(1, t - 1));                 // [B, H, F]
            var sLast = kfLast.unsqueeze(-1) * v.select(1, t - 1).unsqueeze(-2);
            foreach (double l in new[] { -50.0, double.NegativeInfinity })
            {
                var ld = torch.full(h, l, dtype: float64).requires_grad_();
                var qg = q.clone().requires_grad_();
                using var zero = LinearAttention.Run(form, qg, k, v, ld, options: options);
                AssertClose.Tensors(zero.Output, v, 1e-9, 0, $"{form}: log λ = {l}, o_t = v_t");
                AssertClose.Tensors(zero.FinalState.S, sLast, 1e-12, 0, $"{form}: log λ = {l}, S_T = φ(k_T) v_Tᵀ");
                zero.Output.sum().backward();
                Assert.True(ld.grad!.isfinite().all().item<bool>() && qg.grad!.isfinite().all().item<bool>(), $"{form}: finite gradients at log λ = {l}");
            }
        }
        // large decay in float32: no NaN (Lightning's a = 10)
        var (q32, k32, v32) = Qkv(52, 1, 70, h, 4, 3, float32);
        foreach (var form in Forms)
        {
            using var r = LinearAttention.Run(form, q32, k32, v32, torch.full(h, -10f), options: options with { ChunkSize = 16 });
            Assert.True(r.Output.isfinite().all().item<bool>(), $"{form}: finite at log λ = −10");
        }
    }

    /// <summary>Perturbing tokens from t₀ on leaves outputs before t₀ unchanged and changes the rest.</summary>
    [Theory]
    [InlineData(LinearForm.Parallel)]
    [InlineData(LinearForm.Recurrent)]
    [InlineData(LinearForm.Chunked)]
    public void CausalityProbe(LinearForm form)
    {
        using var scope = NewDisposeScope();
        const int t = 11, t0 = 6;
        var (q, k, v) = Qkv(61, 2, t, 2, 3, 3, float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Taylor(3), Normalize = true, ChunkSize = 4 };
        var ld = torch.tensor(LogDecays(2), float64);
        var bump = torch.zeros(1, t, 1, 1, dtype: float64);
        bump.narrow(1, t0, t - t0).fill_(1.0);
        using var a = LinearAttention.Run(form, q, k, v, ld, options: options);
        using var b = LinearAttention.Run(form, q + 3 * bump, k - 2 * bump, v + 5 * bump, ld, options: options);
        var past = ErrorStats.Of(b.Output.narrow(1, 0, t0), a.Output.narrow(1, 0, t0));
        var future = ErrorStats.Of(b.Output.narrow(1, t0, t - t0), a.Output.narrow(1, t0, t - t0));
        Assert.True(past.MaxAbs <= 1e-13, $"{form}: past outputs moved by {past}");
        Assert.True(future.MaxAbs > 1e-3, $"{form}: the probe did not reach the future outputs ({future})");
    }

    /// <summary>
    /// Identity map, positive inputs, normalised, ε = 0, by hand: q = (1,2), (3,1), (½,½); k = (1,0), (1,1), (2,1); v = 1, 2, 3.
    /// No decay: o₀ = 1; o₁ = (3·1 + 4·2)/(3 + 4) = 11/7; o₂ = (½·1 + 1·2 + 1½·3)/(½ + 1 + 1½) = 7/3; S = (9, 5), z = (4, 2).
    /// λ = ½: o₁ = (½·3·1 + 4·2)/(½·3 + 4) = 19/11; o₂ = (¼·½·1 + ½·1·2 + 1½·3)/(¼·½ + ½·1 + 1½) = 45/17;
    /// S = ¼(1,0) + ½(2,2) + (6,3) = (7¼, 4), z = ¼(1,0) + ½(1,1) + (2,1) = (2¾, 1½).
    /// </summary>
    [Fact]
    public void NormalisedIdentityMapMatchesAHandComputedCase()
    {
        using var scope = NewDisposeScope();
        var q = torch.tensor(new[] { 1.0, 2, 3, 1, 0.5, 0.5 }, float64).view(1, 3, 1, 2);
        var k = torch.tensor(new[] { 1.0, 0, 1, 1, 2, 1 }, float64).view(1, 3, 1, 2);
        var v = torch.tensor(new[] { 1.0, 2, 3 }, float64).view(1, 3, 1, 1);
        var options = new LinearAttentionOptions { Normalize = true, Eps = 0, ChunkSize = 2 };
        var cases = new (Tensor? Ld, double[] O, double[] S, double[] Z)[]
        {
            (null, new[] { 1.0, 11.0 / 7, 7.0 / 3 }, new[] { 9.0, 5 }, new[] { 4.0, 2 }),
            (torch.tensor(new[] { Math.Log(0.5) }, float64), new[] { 1.0, 19.0 / 11, 45.0 / 17 }, new[] { 7.25, 4 }, new[] { 2.75, 1.5 }),
        };
        foreach (var (ld, o, s, z) in cases)
            foreach (var form in Forms)
            {
                using var r = LinearAttention.Run(form, q, k, v, ld, options: options);
                AssertClose.Tensors(r.Output.flatten(), torch.tensor(o, float64), 1e-14, 0, $"{form} output");
                AssertClose.Tensors(r.FinalState.S.flatten(), torch.tensor(s, float64), 1e-14, 0, $"{form} S");
                AssertClose.Tensors(r.FinalState.Z!.flatten(), torch.tensor(z, float64), 1e-14, 0, $"{form} z");
            }
    }

    /// <summary>Half-precision inputs accumulate in float32: float32 state, input-dtype output, close to the float32 run.</summary>
    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void HalfInputsAccumulateInFloat32(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv(71, 1, 20, 2, 4, 4, float32);
        var (qh, kh, vh) = (q.to(dtype), k.to(dtype), v.to(dtype));
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 8 };
        var ld = torch.tensor(new[] { -0.1f, -0.5f });
        var oracle = LinearAttentionOracle.Run(qh, kh, vh, options.FeatureMap, new[] { -0.1, -0.5 }, true, options.Eps);
        foreach (var form in Forms)
        {
            using var r = LinearAttention.Run(form, qh, kh, vh, ld, options: options);
            Assert.Equal(dtype, r.Output.dtype);
            Assert.Equal(float32, r.FinalState.S.dtype);
            Assert.Equal(float32, r.FinalState.Z!.dtype);
            AssertClose.Tensors(r.FinalState.S, oracle.S, 0, 1e-5, $"{form} {dtype} state (float32 accumulation)");
            AssertClose.Tensors(r.Output.to(float64), oracle.Output, 0, dtype == ScalarType.Float16 ? 2e-3 : 1e-2,
                $"{form} {dtype} output (one final rounding)");
        }
    }
}
