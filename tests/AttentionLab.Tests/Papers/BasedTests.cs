using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.Based;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>BASED's forms against the naive twin (values, states, gradients), the mixers' streaming, and bad inputs.</summary>
public class BasedTests
{
    static (Tensor q, Tensor k, Tensor v) Inputs(int b, int t, int h, int d, int dv, ScalarType dtype, double spread = 1)
    {
        var q = torch.randn(b, t, h, d, dtype: dtype) * spread;
        var k = torch.randn(b, t, h, d, dtype: dtype) * spread;
        var v = torch.randn(b, t, h, dv, dtype: dtype);
        return (q, k, v);
    }

    static IEnumerable<(string Name, Func<Tensor, Tensor, Tensor, Tensor> Form)> Forms(int chunk) => new (string, Func<Tensor, Tensor, Tensor, Tensor>)[]
    {
        ("parallel/packed", (q, k, v) => BasedAttention.Linear(LinearForm.Parallel, q, k, v).Output),
        ("recurrent/packed", (q, k, v) => BasedAttention.Linear(LinearForm.Recurrent, q, k, v).Output),
        ("chunked/packed", (q, k, v) => BasedAttention.Linear(LinearForm.Chunked, q, k, v, chunkSize: chunk).Output),
        ("chunked/full", (q, k, v) => BasedAttention.Linear(LinearForm.Chunked, q, k, v, packSymmetric: false, chunkSize: chunk).Output),
        ("taylor-chunked (fla)", (q, k, v) => BasedAttention.TaylorChunked(q, k, v, chunk).Output),
    };

    [Fact]
    public void FeatureMapGivesTheTaylorKernelPackedOrNot()
    {
        torch.manual_seed(1);
        using var scope = NewDisposeScope();
        var q = torch.randn(5, 16, dtype: float64);
        var k = torch.randn(7, 16, dtype: float64);
        var s = q.matmul(k.t()) / 4.0;                                              // s = q·k/√16
        var expected = 1 + s + s * s / 2;
        foreach (bool packed in new[] { false, true })
        {
            var map = FeatureMaps.Taylor(16, packed);
            AssertClose.Tensors(map.Apply(q).matmul(map.Apply(k).t()), expected, atol: 1e-12, rtol: 1e-12, what: $"packed={packed}");
        }
        AssertClose.Tensors(BasedAttention.Kernel(q, k), expected, atol: 1e-12, rtol: 1e-12, what: "Kernel");
        Assert.Equal(1 + 16 + 136, FeatureMaps.Taylor(16, true).FeatureDim);
        Assert.True(BasedAttention.Kernel(q, k).min().item<double>() >= 0.5);      // 1 + s + s²/2 ≥ 1/2
    }

    /// <summary>q, k [B, T, H, D] × 1.5 (so the s²/2 term matters), v [B, T, H, Dv].</summary>
    static Tensor[] ConformanceInputs(Shape s, ScalarType dtype, Generator g) =>
    [
        (torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64) * 1.5).to(dtype),
        (torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64) * 1.5).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
    ];

    /// <summary>
    /// The engine's forms (packed and full Taylor map) and the fla-style decomposition against BasedNaive, on outputs and
    /// the gradients of q, k, v (float64 1e−10; float32 RMS-relative 1e−5, the spec's); the naive twin run in float32 too.
    /// </summary>
    [Theory]
    [MemberData(nameof(Conformance.Shapes), MemberType = typeof(Conformance))]
    public void FormsConformToTheNaiveTwin(Shape shape) =>
        Conformance.Check(shape, ConformanceInputs, new Form("naive", x => new FormOutput(BasedNaive.Attention(x[0], x[1], x[2]))),
            Forms(shape.Chunk).Append(("naive float32", (q, k, v) => BasedNaive.Attention(q, k, v)))
                .Select(f => new Form(f.Name, x => new FormOutput(f.Form(x[0], x[1], x[2])))), tol32: 1e-5, rms32: true);

    [Fact]
    public void FinalStatesAgreeAndCarryOver()
    {
        torch.manual_seed(3);
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 23, 2, 5, 3, float64);
        var whole = BasedNaive.Attention(q, k, v);
        var engine = BasedAttention.Linear(LinearForm.Chunked, q, k, v, packSymmetric: false, chunkSize: 4);
        var fla = BasedAttention.TaylorChunked(q, k, v, chunkSize: 6);
        AssertClose.Tensors(fla.FinalState.S, engine.FinalState.S, atol: 1e-10, rtol: 1e-10, what: "S");
        AssertClose.Tensors(fla.FinalState.Z!, engine.FinalState.Z!, atol: 1e-10, rtol: 1e-10, what: "z");

        // split at 10: the first half's state (from either implementation) continues the second half in the other
        Tensor Half(Tensor x, bool first) => first ? x.narrow(1, 0, 10) : x.narrow(1, 10, 13);
        var a = BasedAttention.TaylorChunked(Half(q, true), Half(k, true), Half(v, true), chunkSize: 4);
        var bEngine = BasedAttention.Linear(LinearForm.Recurrent, Half(q, false), Half(k, false), Half(v, false), a.FinalState, packSymmetric: false);
        AssertClose.Tensors(torch.cat(new[] { a.Output, bEngine.Output }, 1), whole, atol: 1e-10, rtol: 1e-10, what: "fla → engine");
        var c = BasedAttention.Linear(LinearForm.Parallel, Half(q, true), Half(k, true), Half(v, true), packSymmetric: false);
        var dFla = BasedAttention.TaylorChunked(Half(q, false), Half(k, false), Half(v, false), chunkSize: 5, h0: c.FinalState);
        AssertClose.Tensors(torch.cat(new[] { c.Output, dFla.Output }, 1), whole, atol: 1e-10, rtol: 1e-10, what: "engine → fla");
        AssertClose.Tensors(dFla.FinalState.S, engine.FinalState.S, atol: 1e-10, rtol: 1e-10, what: "S after the split run");
    }

    [Fact]
    public void OutputsAreCausalAndWeightsAreRowNormalised()
    {
        torch.manual_seed(4);
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(1, 12, 2, 4, 3, float64);
        var (q2, k2, v2) = (q.clone(), k.clone(), v.clone());
        q2[0, 8] = torch.randn(2, 4, dtype: float64); k2[0, 9] = torch.randn(2, 4, dtype: float64); v2[0, 11] = torch.randn(2, 3, dtype: float64);
        foreach (var (name, form) in Forms(5))
            AssertClose.Tensors(form(q2, k2, v2).narrow(1, 0, 8), form(q, k, v).narrow(1, 0, 8), atol: 1e-12, rtol: 1e-12, what: $"{name}: prefix");
        var w = BasedAttention.Weights(q, k);
        AssertClose.Tensors(w.sum(-1), torch.ones(1, 2, 12, dtype: float64), atol: 1e-10, rtol: 0, what: "row sums");
        Assert.Equal(0.0, w.triu(1).abs().max().item<double>());
        Assert.True(w.tril().masked_select(AttentionMasks.Causal(12, 12)).min().item<double>() > 0);   // K ≥ 1/2 on every visible pair
    }

    static TinyGptConfig SmallConfig => new(Layers: 5, DModel: 12, Heads: 2, MlpRatio: 2, VocabSize: 23, Positions: PositionKind.Learned, MaxLength: 32);

    [Fact]
    public void PaperStackStepReproducesForward()
    {
        torch.manual_seed(5);
        using var scope = NewDisposeScope();
        using var model = BasedStack.Create(SmallConfig, BasedStack.Paper360M, new BasedMixerConfig(FeatureDim: 5, WindowKeys: 4, ConvKernel: 3));
        var x = torch.randint(0, 23, new long[] { 2, 15 });
        using var _ = torch.no_grad();
        var full = model.call(x);
        using var state = model.NewState(batch: 2);
        var steps = Enumerable.Range(0, 15).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 2e-5, rtol: 2e-5, what: "Step vs Forward");
        Assert.Equal(15, state.Position);
        Assert.IsType<BaseConv>(model.Blocks[0].Mixer);
        Assert.IsType<BasedLinearAttention>(model.Blocks[1].Mixer);
        Assert.IsType<SlidingWindowAttention>(model.Blocks[2].Mixer);
    }

    [Fact]
    public void MixerStepsMatchForwardAndStateSizesAreBounded()
    {
        torch.manual_seed(6);
        using var scope = NewDisposeScope();
        using var _ = torch.no_grad();
        var x = torch.randn(2, 19, 12);
        var mixers = new (nn.Module<Tensor, Tensor> Mixer, long FinalBytes)[]
        {
            (new BasedLinearAttention(12, featureDim: 3, heads: 3) { Form = LinearForm.Chunked }, 2L * 3 * (1 + 3 + 6) * (4 + 1) * 4),
            (new SlidingWindowAttention(12, 2, windowKeys: 5), 2L * 2 * 5 * 12 * 4),
            (new BaseConv(12, kernel: 4), 2L * 3 * 12 * 4),
        };
        foreach (var (mixer, finalBytes) in mixers)
        {
            var streaming = (IStreamingMixer)mixer;
            var full = mixer.call(x);
            using var state = streaming.NewState(2, float32, CPU);
            var steps = Enumerable.Range(0, 19).Select(t => streaming.Step(x.select(1, t), state)).ToArray();
            AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-5, rtol: 1e-5, what: mixer.GetType().Name);
            Assert.Equal(finalBytes, state.Bytes);
            Assert.Equal(19, state.Position);
        }
        Assert.Equal(2L * 3 * (1 + 3 + 6) * (4 + 1) * 4, ((BasedLinearAttention)mixers[0].Mixer).StateBytes(2));
        Assert.Equal(2L * 2 * 5 * 12 * 4, ((SlidingWindowAttention)mixers[1].Mixer).StateBytes(2));
        Assert.Equal(2L * 3 * 12 * 4, ((BaseConv)mixers[2].Mixer).StateBytes(2));
    }

    /// <summary>
    /// BaseConv = the shared <see cref="CausalDepthwiseConv"/> ⊙ Linear(u) + u, with its parameters drawn in the order they were
    /// drawn before the convolution moved to Models (w, b, then the projection), so seeded runs keep their numbers.
    /// </summary>
    [Fact]
    public void BaseConvIsTheSharedConvolutionGatedByALinearMap()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        using var conv = new BaseConv(4, kernel: 3);
        torch.manual_seed(7);
        var w = (torch.rand(4, 1, 3) * 2 - 1) * (1 / Math.Sqrt(3));                    // zoology / PyTorch Conv1d init, weight first
        var b = (torch.rand(4) * 2 - 1) * (1 / Math.Sqrt(3));
        using var linear = nn.Linear(4, 4);
        AssertClose.Tensors(conv.Conv.Weight, w, 0, 0, "w");
        AssertClose.Tensors(conv.Conv.Bias!, b, 0, 0, "b");
        var p = conv.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        AssertClose.Tensors(p["projection.weight"], linear.weight!, 0, 0, "W");
        var u = torch.randn(2, 6, 4);
        using var _ = torch.no_grad();
        AssertClose.Tensors(conv.Convolve(u), conv.Conv.call(u), 0, 0, "Convolve is the shared conv");
        AssertClose.Tensors(conv.call(u), conv.Conv.call(u) * linear.call(u) + u, 1e-6, 1e-6, "conv(u) ⊙ Lin(u) + u");
    }

    [Theory]
    [InlineData(64, 33)]
    [InlineData(128, 65)]
    [InlineData(7, 4)]
    [InlineData(2, 2)]
    [InlineData(1, 1)]
    public void BasedWindowSizeFollowsTheReferenceConvention(int windowSize, int keys)
    {
        // Based's SlidingAttention(window_size=W) passes flash-attn window (W // 2, 0): query i attends keys i − W//2 … i
        Assert.Equal(keys, BasedWindow.KeysOfWindowSize(windowSize));
        using var layer = BasedWindow.FromWindowSize(12, 2, windowSize);
        Assert.Equal(keys, layer.WindowKeys);
        Assert.Equal(keys, new BasedMixerConfig(WindowSize: windowSize).AttendedKeys);
        torch.manual_seed(windowSize);
        using var scope = NewDisposeScope();
        int t = 80;
        var (q, k, v) = Inputs(1, t, 2, 4, 3, float64);
        var ours = SlidingWindowAttention.Attend(q, k, v, BasedWindow.KeysOfWindowSize(windowSize));
        for (int i = 0; i < t; i++)                                                 // flash-attn's definition, row by row
        {
            int left = windowSize / 2, from = Math.Max(0, i - left);
            var scores = q[0, i].unsqueeze(1).matmul(k[0].narrow(0, from, i - from + 1).permute(1, 2, 0)).squeeze(1) / Math.Sqrt(4);   // [H, n]
            var expected = scores.softmax(-1).unsqueeze(1).matmul(v[0].narrow(0, from, i - from + 1).permute(1, 0, 2)).squeeze(1);    // [H, Dv]
            AssertClose.Tensors(ours[0, i], expected, atol: 1e-12, rtol: 1e-12, what: $"W = {windowSize}, row {i}");
        }
    }

    [Fact]
    public void WindowDefaultsAreBasedsAndTheKeyCountIsExplicit()
    {
        // the config is named after Based's (window_size, default 128 → 65 keys); the constructor counts keys (unchanged call sites)
        var config = new BasedMixerConfig();
        Assert.Equal(BasedWindow.DefaultWindowSize, config.WindowSize);
        Assert.Equal(128, config.WindowSize);
        Assert.Equal(65, config.AttendedKeys);
        Assert.Equal(9, (config with { WindowKeys = 9 }).AttendedKeys);
        using var positional = new SlidingWindowAttention(12, 2, 5);
        Assert.Equal(5, positional.WindowKeys);
        using (var model = BasedStack.Create(SmallConfig, BasedStack.Paper360M, new BasedMixerConfig(FeatureDim: 4, WindowSize: 10)))
            Assert.Equal(6, ((SlidingWindowAttention)model.Blocks[2].Mixer).WindowKeys);
        using (var model = BasedStack.Create(SmallConfig, BasedStack.Paper360M))
            Assert.Equal(65, ((SlidingWindowAttention)model.Blocks[2].Mixer).WindowKeys);
        Assert.Equal("windowSize", Assert.Throws<ArgumentOutOfRangeException>(() => BasedWindow.KeysOfWindowSize(0)).ParamName);
    }

    [Fact]
    public void PlainLinearBaselineIsNormalisedEluPlusOneWithItsOwnState()
    {
        // the pure linear-attention baseline: BASED's layer with φ = elu + 1, state H·d′·(d/H + 1) floats; forms and Step agree
        torch.manual_seed(9);
        using var scope = NewDisposeScope();
        using var _ = torch.no_grad();
        using var layer = new BasedLinearAttention(12, featureDim: 5, heads: 3, featureMap: FeatureMaps.EluPlusOne);
        Assert.Same(FeatureMaps.EluPlusOne, layer.Options.FeatureMap);
        Assert.True(layer.Options.Normalize);
        Assert.Equal(2L * 3 * 5 * (4 + 1) * 4, layer.StateBytes(2));
        var x = torch.randn(2, 23, 12);
        var outputs = new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked }.Select(f => { layer.Form = f; return layer.call(x); }).ToArray();
        AssertClose.Tensors(outputs[1], outputs[0], atol: 1e-5, rtol: 1e-5, what: "recurrent vs parallel");
        AssertClose.Tensors(outputs[2], outputs[0], atol: 1e-5, rtol: 1e-5, what: "chunked vs parallel");
        using var state = layer.NewState(2, float32, CPU);
        var steps = Enumerable.Range(0, 23).Select(t => layer.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), outputs[0], atol: 1e-5, rtol: 1e-5, what: "Step vs forward");
        Assert.Equal(layer.StateBytes(2), state.Bytes);
        using var model = BasedStack.Create(SmallConfig, BasedStack.Mqar(BasedLayerKind.PlainLinearAttention), new BasedMixerConfig(FeatureDim: 5));
        Assert.Same(FeatureMaps.EluPlusOne, ((BasedLinearAttention)model.Blocks[1].Mixer).Options.FeatureMap);
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 5, 2, 4, 3, float32);
        var e = Assert.Throws<ArgumentException>(() => BasedNaive.Attention(q, k.flatten(0, 1), v));
        Assert.Equal("k", e.ParamName);
        Assert.Contains("[10, 2, 4]", e.Message);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => BasedAttention.TaylorChunked(q, k, torch.randn(2, 6, 2, 3))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => BasedAttention.Linear(LinearForm.Chunked, q, k.to(float64), v)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => BasedAttention.Linear(LinearForm.Parallel, q.flatten(2, 3), k, v)).ParamName);
        Assert.Equal("chunkSize", Assert.Throws<ArgumentException>(() => BasedAttention.TaylorChunked(q, k, v, chunkSize: 0)).ParamName);
        Assert.Equal("h0", Assert.Throws<ArgumentException>(() => BasedAttention.TaylorChunked(q, k, v, h0: LinearState.Zeros(2, 2, 5, 3, true))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => BasedAttention.Kernel(torch.randn(3, 4), torch.randn(3, 5))).ParamName);

        using var layer = new BasedLinearAttention(8, featureDim: 4, heads: 2);
        var e2 = Assert.Throws<ArgumentException>(() => layer.call(torch.randn(1, 4, 6)));
        Assert.Equal("x", e2.ParamName);
        Assert.Contains("[1, 4, 6]", e2.Message);
        using var swa = new SlidingWindowAttention(8, 2, 4);
        using var foreign = swa.NewState(1, float32, CPU);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => layer.Step(torch.randn(1, 8), foreign)).ParamName);
        Assert.Equal("xT", Assert.Throws<ArgumentException>(() => swa.Step(torch.randn(1, 7), foreign)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => new BasedLinearAttention(8, 4, heads: 3)).ParamName);
        Assert.Equal("u", Assert.Throws<ArgumentException>(() => new BaseConv(8).call(torch.randn(2, 8))).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SlidingWindowAttention(8, 2, windowKeys: 0));
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => BasedStack.Mixers(SmallConfig, Array.Empty<BasedLayerKind>())).ParamName);
    }

    [Fact]
    public void NoTensorsLeakAcrossForwardBackwardAndStep()
    {
        torch.manual_seed(8);
        using var model = BasedStack.Create(SmallConfig, BasedStack.Paper360M, new BasedMixerConfig(FeatureDim: 4, WindowKeys: 3));
        using var x = torch.randint(0, 23, new long[] { 2, 9 });
        LeakCheck.AssertNoLeak(() =>
        {
            using (var scope = NewDisposeScope())
            {
                model.zero_grad();
                model.call(x).square().mean().backward();
            }
            using (var scope = NewDisposeScope())
            using (torch.no_grad())
            using (var state = model.NewState(2))
                for (int t = 0; t < 9; t++) model.Step(x.select(1, t), state);
            using (var scope = NewDisposeScope())
            {
                var (q, k, v) = Inputs(1, 7, 2, 3, 2, float32);
                q.requires_grad_();
                (BasedAttention.TaylorChunked(q, k, v, 3).Output.sum() + BasedNaive.Attention(q, k, v).sum()).backward();
            }
        }, "BASED forward/backward/step");
    }
}
