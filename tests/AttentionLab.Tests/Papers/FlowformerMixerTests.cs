using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Papers.Flowformer;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// The notebook's mixers (softmax, σ-linear, flow; causal and encoder) against their materialised attention
/// (<see cref="IAttentionPattern"/>: the O(T²) naive twin y = W_o (W V) + b_o), outputs and gradients; the entropy probe;
/// and the forward + backward benchmark.
/// </summary>
public class FlowformerMixerTests
{
    /// <summary>The mixer (every kind on the mixer base: fused W_QKV rows q, k, v; W_O "proj"), its value projection, its output projection's name.</summary>
    static (nn.Module<Tensor, Tensor> Mixer, Func<Tensor, Tensor> Values, string Out) Make(FlowMixerKind kind, bool causal, int d, int heads)
    {
        var mixer = FlowMixers.Factory(kind, d, heads, causal)(0);
        mixer.to(float64);
        var p = mixer.named_parameters().ToDictionary(n => n.name, n => (Tensor)n.parameter);
        Func<Tensor, Tensor> values = x => nn.functional.linear(x, p["qkv.weight"].narrow(0, 2 * d, d), p["qkv.bias"].narrow(0, 2 * d, d));
        return (mixer, values, "proj");
    }

    /// <summary>W_o concat_h(W_h V_h) + b_o from the mixer's pattern: [B, T, d].</summary>
    static Tensor ThroughPattern(nn.Module<Tensor, Tensor> mixer, Func<Tensor, Tensor> values, string outName, Tensor x, int heads)
    {
        long b = x.shape[0], t = x.shape[1], d = x.shape[2];
        var w = ((IAttentionPattern)mixer).Pattern(x);                                   // [B, H, T, T]
        var v = values(x).view(b, t, heads, d / heads).permute(0, 2, 1, 3);              // [B, H, T, Dh]
        var r = w.matmul(v).permute(0, 2, 1, 3).reshape(b, t, d);
        var p = mixer.named_parameters().ToDictionary(n => n.name, n => (Tensor)n.parameter);
        return nn.functional.linear(r, p[outName + ".weight"], p[outName + ".bias"]);
    }

    [Theory]
    [InlineData(FlowMixerKind.Softmax, false, 1)]
    [InlineData(FlowMixerKind.Softmax, true, 7)]
    [InlineData(FlowMixerKind.Linear, false, 1)]
    [InlineData(FlowMixerKind.Linear, false, 9)]
    [InlineData(FlowMixerKind.Linear, true, 70)]      // crosses the chunked form's 64-token chunk
    [InlineData(FlowMixerKind.Flow, false, 9)]
    [InlineData(FlowMixerKind.Flow, true, 70)]
    [InlineData(FlowMixerKind.Flow, false, 1)]
    public void MixersEqualTheirMaterialisedPatternInOutputAndGradient(FlowMixerKind kind, bool causal, int t)
    {
        const int d = 10, heads = 2;                                                    // head dim 5
        torch.manual_seed(t * 3 + (int)kind);
        var (mixer, values, outName) = Make(kind, causal, d, heads);
        using (mixer)
        using (var scope = NewDisposeScope())
        {
            var x0 = torch.randn(new long[] { 2, t, d }, dtype: float64);
            var g = torch.randn(new long[] { 2, t, d }, dtype: float64);
            var grads = new List<Tensor>();
            var outputs = new List<Tensor>();
            foreach (bool pattern in new[] { false, true })
            {
                var x = x0.clone().requires_grad_();
                var y = pattern ? ThroughPattern(mixer, values, outName, x, heads) : mixer.call(x);
                (y * g).sum().backward();
                outputs.Add(y.detach());
                grads.Add(x.grad!);
            }
            AssertClose.Tensors(outputs[0], outputs[1], atol: 1e-9, rtol: 1e-9, what: $"{kind} causal={causal} T={t}: forward vs W_o(WV)+b_o");
            AssertClose.Tensors(grads[0], grads[1], atol: 1e-9, rtol: 1e-9, what: $"{kind} causal={causal} T={t}: ∂/∂x");
            var w = ((IAttentionPattern)mixer).Pattern(x0);
            Assert.Equal(new long[] { 2, heads, t, t }, w.shape);
            if (causal) Assert.Equal(0.0, w.triu(1).abs().max().item<double>());
            if (kind != FlowMixerKind.Flow)                                              // softmax and normalised σ-kernels: rows sum to 1
                AssertClose.Tensors(w.sum(-1), torch.ones(2, heads, t, dtype: float64), atol: 1e-5, rtol: 0, what: "rows sum to 1");
        }
    }

    [Fact]
    public void EncoderMixersSeeTheFutureAndCausalOnesDoNot()
    {
        torch.manual_seed(4);
        foreach (var kind in FlowExperiment.Mechanisms)
            foreach (bool causal in new[] { false, true })
            {
                using var mixer = FlowMixers.Factory(kind, 8, 2, causal)(0);
                using var scope = NewDisposeScope();
                var x = torch.randn(1, 9, 8);
                var x2 = x.clone();
                x2.narrow(1, 6, 3).add_(torch.randn(1, 3, 8) * 2);
                double prefix = (mixer.call(x2).narrow(1, 0, 6) - mixer.call(x).narrow(1, 0, 6)).abs().max().item<float>();
                if (causal) Assert.True(prefix < 1e-6, $"{kind} causal: prefix moved by {prefix}");
                else Assert.True(prefix > 1e-4, $"{kind} encoder: the prefix should see the changed suffix ({prefix})");
            }
    }

    [Fact]
    public void RowEntropyIsLnMForUniformRowsZeroForOneHotAndFollowsTheMask()
    {
        using var scope = NewDisposeScope();
        var uniform = torch.ones(2, 3, 5, 8, dtype: float64);
        Assert.Equal(Math.Log(8), FlowExperiment.MeanRowEntropy(uniform), 12);
        var oneHot = torch.eye(8, dtype: float64).unsqueeze(0);
        Assert.Equal(0.0, FlowExperiment.MeanRowEntropy(oneHot), 12);
        // rows 0–3 uniform, 4–7 one-hot
        var mixed = torch.cat(new[] { torch.ones(1, 4, 8, dtype: float64), torch.eye(8, dtype: float64).narrow(0, 0, 4).unsqueeze(0) }, 1);
        Assert.Equal(Math.Log(8) / 2, FlowExperiment.MeanRowEntropy(mixed), 12);
        var firstHalf = torch.arange(8).lt(4).unsqueeze(0);
        Assert.Equal(Math.Log(8), FlowExperiment.MeanRowEntropy(mixed, firstHalf), 12);
        Assert.Equal(0.0, FlowExperiment.MeanRowEntropy(mixed, firstHalf.logical_not()), 12);
        Assert.True(double.IsNaN(FlowExperiment.MeanRowEntropy(torch.full(1, 2, 2, double.NaN, dtype: float64))), "NaN in, NaN out");
    }

    [Fact]
    public void LayerEntropiesProbeEveryLayerOfAnEncoder()
    {
        using var scope = NewDisposeScope();
        var task = new ListOpsLite(MaxLength: 24, MaxDepth: 2);
        using var batch = task.Generate(4, seed: 1);
        var rows = batch.Tokens.ne(ListOpsLite.Pad);
        foreach (var kind in FlowExperiment.Mechanisms)
        {
            torch.manual_seed(0);
            using var net = new TinyGpt(
                new TinyGptConfig(Layers: 3, DModel: 16, Heads: 2, VocabSize: task.VocabSize, Positions: PositionKind.Learned, MaxLength: 24),
                FlowMixers.Factory(kind, 16, 2, causal: false));
            var h = FlowExperiment.LayerEntropies(net, batch.Tokens, rows);
            Assert.Equal(3, h.Length);
            Assert.All(h, x => Assert.InRange(x, 0.5, Math.Log(24) + 1e-9));
            // layer 0 by hand: the first mixer's pattern on LN₁ of the embeddings, masked rows
            using (torch.no_grad())
            {
                var first = ((IAttentionPattern)net.Blocks[0].Mixer).Pattern(net.Blocks[0].Norm1.call(net.Embedded(batch.Tokens, 0)));
                Assert.Equal(FlowExperiment.MeanRowEntropy(first, rows.unsqueeze(1)), h[0], 12);
            }
            var oneByOne = FlowExperiment.LayerEntropies(net, batch.Tokens, rows, chunk: 1);   // chunks weigh by their counted rows
            for (int l = 0; l < 3; l++) Assert.Equal(h[l], oneByOne[l], 6);                  // float32 model: batch size changes the last bits
        }
        using var decoder = new TinyGpt(new TinyGptConfig(Layers: 1, DModel: 16, Heads: 2, VocabSize: task.VocabSize, Positions: PositionKind.Learned,
            MaxLength: 24));
        // no IAttentionPattern
        Assert.Equal("net", Assert.Throws<ArgumentException>(() => FlowExperiment.LayerEntropies(decoder, batch.Tokens, rows)).ParamName);
    }

    [Fact]
    public void BenchmarkTimesForwardAndForwardPlusBackwardAndKeepsThePassesApart()
    {
        var fwd = FlowBenchmark.Speed(new[] { 8, 16 }, heads: 1, headDim: 4, chunkSize: 4, warmup: 0, repeats: 1, maxReferenceLength: 16);
        var both = FlowBenchmark.Speed(new[] { 8, 16 }, heads: 1, headDim: 4, chunkSize: 4, warmup: 0, repeats: 1, maxReferenceLength: 8, backward: true);
        Assert.Equal(10, fwd.Count);
        Assert.All(fwd, p => Assert.Equal(FlowBenchmark.Forward, p.Pass));
        Assert.Equal(9, both.Count);                                                    // the reference only at T = 8
        Assert.All(both, p => Assert.Equal(FlowBenchmark.ForwardBackward, p.Pass));
        Assert.All(both, p => Assert.True(p.MedianMs > 0));
        var all = fwd.Concat(both).ToList();
        Assert.Throws<ArgumentException>(() => Sweep.Slopes(all));              // mixed passes must be named
        Assert.Equal(5, Sweep.Slopes(all, FlowBenchmark.Forward).Count);
        Assert.Equal(4, Sweep.Slopes(all, FlowBenchmark.ForwardBackward).Count);  // the reference has one length only
        Assert.Null(Sweep.Speedup(all, FlowBenchmark.FlowCausal, FlowBenchmark.Reference, 16, FlowBenchmark.ForwardBackward));
        Assert.NotNull(Sweep.Speedup(all, FlowBenchmark.FlowCausal, FlowBenchmark.Reference, 16, FlowBenchmark.Forward));
        Assert.Equal(new[] { "pass", "method", "seq_len", "median_ms", "peak_mib", "speedup_vs_sdpa", "speedup_vs_reference" },
            FlowBenchmark.ToDataFrame(all).Columns.Select(c => c.Name));
    }

    [Fact]
    public void EncoderMixersCannotStreamAndBadInputsAreNamed()
    {
        using var linear = new SigmoidLinearAttention(8, 2, causal: false);
        Assert.Throws<InvalidOperationException>(() => linear.NewState(1, ScalarType.Float32, torch.CPU));
        using var softmax = new SoftmaxSelfAttention(8, 2);
        using var scope = NewDisposeScope();
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => softmax.call(torch.randn(1, 5, 7))).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => linear.call(torch.randn(5, 8))).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => new SoftmaxSelfAttention(10, 3)).ParamName);
    }
}
