using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>Feature maps, the bidirectional form, the streaming interface, state sizes, leaks and bad inputs of the linear-attention engine.</summary>
public class LinearAttentionApiTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(16)]
    public void TaylorKernelIsOnePlusSPlusHalfSSquaredAndPackingKeepsIt(int d)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(81);
        var x = torch.randn(6, d, dtype: float64); var y = torch.randn(6, d, dtype: float64);
        var full = FeatureMaps.Taylor(d); var packed = FeatureMaps.Taylor(d, packSymmetric: true);
        Assert.Equal(1 + d + (long)d * d, full.OutputDim(d));
        Assert.Equal(1 + d + (long)d * (d + 1) / 2, packed.OutputDim(d));
        var s = (x * y).sum(-1) / Math.Sqrt(d);                                           // s = x·y/√d
        var kernel = 1 + s + s * s / 2;                                                   // 1 + s + s²/2
        var fx = full.Apply(x); var px = packed.Apply(x);
        Assert.Equal(full.OutputDim(d), fx.shape[^1]);
        Assert.Equal(packed.OutputDim(d), px.shape[^1]);
        AssertClose.Tensors((fx * full.Apply(y)).sum(-1), kernel, 1e-12, 1e-12, "full Taylor kernel");
        AssertClose.Tensors((px * packed.Apply(y)).sum(-1), kernel, 1e-12, 1e-12, "packed Taylor kernel");
        // float32 too (the spec's 1e-6)
        AssertClose.Tensors((packed.Apply(x.to(float32)) * packed.Apply(y.to(float32))).sum(-1), kernel, 1e-5, 1e-6, "packed Taylor kernel float32");
    }

    [Fact]
    public void ElementwiseMapsAreWhatTheySay()
    {
        using var scope = NewDisposeScope();
        var x = torch.tensor(new[] { -2.0, -0.5, 0, 0.5, 3 }, float64);
        AssertClose.Tensors(FeatureMaps.Identity.Apply(x), x, 0, 0);
        AssertClose.Tensors(FeatureMaps.EluPlusOne.Apply(x), torch.tensor(new[] { Math.Exp(-2), Math.Exp(-0.5), 1, 1.5, 4 }, float64), 1e-15, 0);
        AssertClose.Tensors(FeatureMaps.Sigmoid.Apply(x), 1 / (1 + (-x).exp()), 1e-15, 0);
        foreach (var m in new[] { FeatureMaps.Identity, FeatureMaps.EluPlusOne, FeatureMaps.Sigmoid }) Assert.Equal(7, m.OutputDim(7));
        var e = Assert.Throws<ArgumentException>(() => FeatureMaps.Taylor(4).OutputDim(5));
        Assert.Contains("4", e.Message);
    }

    /// <summary>Bidirectional = the quadratic unmasked definition, with Tq ≠ Tk (cross attention), normalised or not.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BidirectionalEqualsTheUnmaskedQuadraticForm(bool normalize)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(82);
        var q = torch.randn(2, 5, 3, 4, dtype: float64); var k = torch.randn(2, 7, 3, 4, dtype: float64); var v = torch.randn(2, 7, 3, 2, dtype: float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Sigmoid, Normalize = normalize, Scale = 0.8 };
        var a = torch.einsum("bihf,bjhf->bhij", torch.sigmoid(q * 0.8), torch.sigmoid(k));
        var num = torch.einsum("bhij,bjhd->bihd", a, v);
        var expected = normalize ? num / (a.sum(-1).permute(0, 2, 1) + options.Eps).unsqueeze(-1) : num;
        AssertClose.Tensors(LinearAttention.Bidirectional(q, k, v, options), expected, 1e-12, 1e-12, "bidirectional");
    }

    /// <summary>Prefill then token steps reproduce the whole sequence's output and final state; the state size stays constant.</summary>
    [Fact]
    public void StreamReproducesTheFullForwardAndKeepsAConstantState()
    {
        using var scope = NewDisposeScope();
        const int b = 2, t = 9, h = 3, d = 4, dv = 5, prompt = 4;
        var (q, k, v) = LinearAttentionTests.Qkv(83, b, t, h, d, dv, float64);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Taylor(d, packSymmetric: true), Normalize = true, ChunkSize = 3, Scale = 0.9 };
        var ld = torch.tensor(LinearAttentionTests.LogDecays(h), float64);
        using var whole = LinearAttention.Chunked(q, k, v, ld, options: options);
        using var stream = new LinearAttentionStream(b, h, d, dv, float64, logDecay: ld, options: options);
        long bytes = stream.Bytes;
        Assert.Equal(LinearState.BytesFor(b, h, 1 + d + d * (d + 1) / 2, dv, true, float64), bytes);
        Assert.Equal(bytes, LinearAttention.StateBytes(b, h, d, dv, options, float64));
        var outputs = new List<Tensor> { stream.Prefill(q.narrow(1, 0, prompt), k.narrow(1, 0, prompt), v.narrow(1, 0, prompt)) };
        for (int i = prompt; i < t; i++)
        {
            outputs.Add(stream.Step(q.select(1, i), k.select(1, i), v.select(1, i)).unsqueeze(1));
            Assert.Equal(bytes, stream.Bytes);
        }
        Assert.Equal(t, stream.Position);
        AssertClose.Tensors(torch.cat(outputs, 1), whole.Output, 1e-10, 1e-10, "stream output");
        AssertClose.Tensors(stream.State.S, whole.FinalState.S, 1e-10, 1e-10, "stream S");
        AssertClose.Tensors(stream.State.Z!, whole.FinalState.Z!, 1e-10, 1e-10, "stream z");

        // float32 state for half inputs; bytes follow the accumulation dtype
        Assert.Equal(4L * b * h * 3 * dv, LinearState.BytesFor(b, h, 3, dv, false, ScalarType.BFloat16));
        using var half = new LinearAttentionStream(1, 1, 2, 2, ScalarType.BFloat16);
        Assert.Equal(float32, half.State.S.dtype);
        Assert.Equal(ScalarType.BFloat16, half.Step(torch.ones(1, 1, 2, dtype: ScalarType.BFloat16), torch.ones(1, 1, 2, dtype: ScalarType.BFloat16),
            torch.ones(1, 1, 2, dtype: ScalarType.BFloat16)).dtype);
    }

    [Fact]
    public void StreamStartsFromAGivenStateAndDoesNotLeak()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = LinearAttentionTests.Qkv(84, 1, 6, 2, 3, 2, float32);
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, ChunkSize = 4 };
        var ld = torch.tensor(new[] { -0.1f, -0.4f });
        using var whole = LinearAttention.Recurrent(q, k, v, ld, options: options);
        using var first = LinearAttention.Recurrent(q.narrow(1, 0, 5), k.narrow(1, 0, 5), v.narrow(1, 0, 5), ld, options: options);
        using var stream = new LinearAttentionStream(1, 2, 3, 2, logDecay: ld, options: options, h0: first.FinalState);
        var o = stream.Step(q.select(1, 5), k.select(1, 5), v.select(1, 5));
        AssertClose.Tensors(o, whole.Output.select(1, 5), 1e-6, 1e-6, "step from h0");
        LeakCheck.AssertNoLeak(() =>
        {
            using var inner = NewDisposeScope();
            stream.Step(q.select(1, 0), k.select(1, 0), v.select(1, 0));
        }, "linear-attention stream step");
        LeakCheck.AssertNoLeak(() => stream.Prefill(q, k, v).Dispose(), "linear-attention stream prefill");
    }

    /// <summary>The chunked hot path (decay, h0, normalisation, short last chunk, backward) leaves no tensor behind.</summary>
    [Fact]
    public void ChunkedHotPathDoesNotLeak()
    {
        var (q, k, v) = LinearAttentionTests.Qkv(85, 2, 23, 2, 4, 3, float32);
        var ld = torch.tensor(new[] { -0.1f, -0.4f });
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Taylor(4), Normalize = true, ChunkSize = 8 };
        using var h0 = LinearState.Zeros(2, 2, 21, 3, normalize: true);
        LeakCheck.AssertNoLeak(() =>
        {
            using var r = LinearAttention.Chunked(q, k, v, ld, h0, options);
        }, "LinearAttention.Chunked");
        var qg = q.clone().requires_grad_();
        LeakCheck.AssertNoLeak(() =>
        {
            using var step = NewDisposeScope();
            using var r = LinearAttention.Chunked(qg, k, v, ld, h0, options);
            r.Output.sum().backward();
            qg.grad!.zero_();
        }, "LinearAttention.Chunked with backward");
        LeakCheck.AssertNoLeak(() => LinearAttention.Bidirectional(q, k, v).Dispose(), "LinearAttention.Bidirectional");
        q.Dispose(); k.Dispose(); v.Dispose(); ld.Dispose(); qg.Dispose();
    }

    /// <summary>The benchmark table's shape and the forms' agreement; never the timings.</summary>
    [Fact]
    public void LinearFormsBenchmarkReturnsOneRowPerLengthAndForm()
    {
        var rows = new List<AttentionBenchRow>();
        var df = AttentionBenchmarks.LinearForms(new[] { 5, 20 }, batch: 2, heads: 2, headDim: 8, chunkSize: 8, featureMap: FeatureMaps.EluPlusOne,
            normalize: true, warmup: 0, repeats: 1, measureMemory: false, progress: new InlineProgress<AttentionBenchRow>(rows.Add));
        Assert.Equal(6, df.Rows.Count);
        Assert.Equal(new[] { "linear-parallel", "linear-recurrent", "linear-chunked-8", "linear-parallel", "linear-recurrent", "linear-chunked-8" },
            df["method"].Cast<string>());
        Assert.All(rows, r => Assert.True(r.MaxAbsVsReference < 1e-5, $"{r.Method} at T = {r.SeqLen}: {r.MaxAbsVsReference}"));
        Assert.Equal(2, AttentionBenchmarks.LinearForms(new[] { 4 }, headDim: 4, includeRecurrent: false, warmup: 0, repeats: 1,
            measureMemory: false).Rows.Count);
    }

    static void Throws(string param, Action action)
    {
        var e = Assert.ThrowsAny<ArgumentException>(action);
        Assert.Equal(param, e.ParamName);
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 5, 2, 3); var k = torch.randn(1, 5, 2, 3); var v = torch.randn(1, 5, 2, 4);
        var taylor = new LinearAttentionOptions { FeatureMap = FeatureMaps.Taylor(3), Normalize = true };
        foreach (var form in new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked })
        {
            LinearAttentionResult Run(Tensor qq, Tensor kk, Tensor vv, Tensor? ld = null, LinearState? h0 = null, LinearAttentionOptions? o = null) =>
                LinearAttention.Run(form, qq, kk, vv, ld, h0, o);
            Throws("q", () => Run(q.squeeze(0), k, v));                                             // rank
            Throws("k", () => Run(q, k.narrow(1, 0, 4), v));                                        // length (causal)
            Throws("k", () => Run(q, torch.randn(1, 5, 2, 4), v));                                  // head dim
            Throws("v", () => Run(q, k, torch.randn(2, 5, 2, 4)));                                  // batch
            Throws("k", () => Run(q, k.to(float64), v));                                            // dtype
            Throws("q", () => Run(q.to(ScalarType.Int32), k.to(ScalarType.Int32), v.to(ScalarType.Int32)));   // not floating
            Throws("q", () => Run(q.narrow(1, 0, 0), k.narrow(1, 0, 0), v.narrow(1, 0, 0)));      // T = 0
            Throws("q", () => Run(torch.randn(1, 5, 2, 4), torch.randn(1, 5, 2, 4), v, o: taylor)); // feature-map dim mismatch
            Throws("logDecay", () => Run(q, k, v, torch.tensor(new[] { -0.1f, 0.2f })));          // λ > 1
            Throws("logDecay", () => Run(q, k, v, torch.tensor(new[] { -0.1f, float.NaN })));     // NaN
            Throws("logDecay", () => Run(q, k, v, torch.tensor(new[] { -0.1f })));                // one per head
            Throws("logDecay", () => Run(q, k, v, torch.zeros(1, 2)));                             // rank
            using var wrongF = LinearState.Zeros(1, 2, 3, 4, normalize: true);                      // F = 3, Taylor needs 13
            Throws("h0", () => Run(q, k, v, h0: wrongF, o: taylor));
            using var noZ = LinearState.Zeros(1, 2, 13, 4, normalize: false);
            Throws("h0", () => Run(q, k, v, h0: noZ, o: taylor));                                   // normalised needs z
            using var withZ = LinearState.Zeros(1, 2, 3, 4, normalize: true);
            Throws("h0", () => Run(q, k, v, h0: withZ));                                            // unnormalised has no z
            using var wrongDv = LinearState.Zeros(1, 2, 3, 5, normalize: false);
            Throws("h0", () => Run(q, k, v, h0: wrongDv));
            if (torch.TryInitializeDeviceType(DeviceType.META))
                Throws("v", () => Run(q, k, torch.empty(new long[] { 1, 5, 2, 4 }, device: torch.META)));   // device
        }
        Throws("ChunkSize", () => _ = new LinearAttentionOptions { ChunkSize = 0 });
        Throws("ChunkSize", () => _ = new LinearAttentionOptions { ChunkSize = -3 });
        Throws("Eps", () => _ = new LinearAttentionOptions { Eps = -1 });
        Throws("Scale", () => _ = new LinearAttentionOptions { Scale = double.NaN });
        Throws("inputDim", () => FeatureMaps.Taylor(0));
        Throws("x", () => FeatureMaps.Taylor(3).Apply(torch.randn(2, 4)));
        Throws("k", () => LinearAttention.Bidirectional(q, torch.randn(1, 7, 2, 4), torch.randn(1, 7, 2, 4)));
        Throws("s", () => _ = new LinearState(torch.zeros(2, 3)));
        Throws("z", () => _ = new LinearState(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 4)));
        using var stream = new LinearAttentionStream(1, 2, 3, 4);
        Throws("q", () => stream.Step(torch.randn(1, 2, 4), torch.randn(1, 2, 3), torch.randn(1, 2, 4)));
        Throws("v", () => stream.Step(torch.randn(1, 2, 3), torch.randn(1, 2, 3), torch.randn(1, 2, 4, dtype: float64)));
        Throws("logDecay", () => new LinearAttentionStream(1, 2, 3, 4, logDecay: torch.ones(2)).Dispose());
        Throws("keyDim", () => new LinearAttentionStream(1, 2, 3, 4, options: new LinearAttentionOptions { FeatureMap = FeatureMaps.Taylor(4) }).Dispose());
    }
}
