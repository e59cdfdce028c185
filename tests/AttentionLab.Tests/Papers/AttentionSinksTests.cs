using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.AttentionSinks;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class AttentionSinksTests
{
    [Fact]
    public void MassiveActivationIsTheSinkNormOverTheMedianNorm()
    {
        using var cache = new ActivationCache(1);
        torch.manual_seed(4);
        var h = torch.randn(2, 5, 8, dtype: float64);
        cache.Store("blocks.0.hook_resid_post", h);
        double expected = 0;
        for (int b = 0; b < 2; b++)
        {
            var norms = Enumerable.Range(0, 5).Select(i => Math.Sqrt(Enumerable.Range(0, 8).Sum(d => Math.Pow(h[b, i, d].item<double>(), 2)))).ToArray();
            var sorted = norms.OrderBy(x => x).ToArray();
            expected += norms[0] / sorted[2] / 2;                                  // median of 5 = the 3rd smallest
        }
        Assert.Equal(expected, SinkMeasurements.MassiveActivation(cache)[0], 10);
        h.Dispose();
    }

    [Fact]
    public void ValueNormRatioSeesASmallSinkValueInOneHead()
    {
        using var cache = new ActivationCache(1);
        var v = torch.ones(1, 4, 2, 3, dtype: float64);
        v[0, 0, 0] = v[0, 0, 0] * 0.1;                                             // head 0: ‖v_0‖ is a tenth of the others
        cache.Store("blocks.0.attn.hook_v", v);
        using var ratio = SinkMeasurements.ValueNormRatio(cache);
        Assert.Equal(0.1, ratio[0, 0].item<double>(), 12);
        Assert.Equal(1.0, ratio[0, 1].item<double>(), 12);
        v.Dispose();
    }

    [Fact]
    public void OutlierDimensionsAreTheLargestMagnitudes()
    {
        using var cache = new ActivationCache(1);
        var h = torch.zeros(1, 3, 6, dtype: float64);
        h[0, 0, 4] = torch.tensor(-9.0, dtype: float64); h[0, 0, 1] = torch.tensor(5.0, dtype: float64); h[0, 1, 2] = torch.tensor(100.0, dtype: float64);
        cache.Store("blocks.0.hook_resid_post", h);
        var outliers = SinkMeasurements.OutlierDimensions(cache, 0, count: 2);
        Assert.Equal(new[] { (4L, -9.0), (1L, 5.0) }, outliers);                    // token 0 only; position 1's 100 is not the sink's
        Assert.Throws<ArgumentOutOfRangeException>(() => SinkMeasurements.OutlierDimensions(cache, 0, token: 3));
        h.Dispose();
    }

    [Fact]
    public void HeadTableOnATinyGptHasOneRowPerHeadAndAgreesWithHeadScores()
    {
        torch.manual_seed(0);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 4, VocabSize: 32,
            Positions: AttentionLab.Attention.PositionKind.Rope, MaxLength: 16));
        using var scope = NewDisposeScope();
        var tokens = torch.randint(0, 32, new long[] { 3, 12 });
        var (_, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var table = SinkMeasurements.HeadTable(cache, causal: true);
            Assert.Equal(8, table.Rows.Count);
            var scores = HeadScores.SinkScore(cache, 0, causal: true);
            Assert.Equal(scores[1, 2].item<float>(), (double)table["sink_score"][6]!, 6);
            Assert.Equal(2, SinkMeasurements.MassiveActivation(cache).Length);
        }
    }

    /// <summary>A cache of <paramref name="layers"/> layers with causal softmax patterns, values and (on layer 0) a gate; W_O per layer.</summary>
    static (ActivationCache Cache, List<Tensor> Weights) ToyCache(int layers, int b, int t, int h, int dh, int d, bool gate, int seed)
    {
        var gen = new Generator((ulong)seed);
        var cache = new ActivationCache(layers);
        var weights = new List<Tensor>();
        var visible = AttentionLab.Attention.AttentionMasks.Causal(t, t);
        for (int l = 0; l < layers; l++)
        {
            var logits = torch.randn(b, h, t, t, generator: gen, dtype: float64).masked_fill(visible.logical_not(), double.NegativeInfinity);
            cache.Store($"blocks.{l}.attn.hook_pattern", torch.softmax(logits, -1));
            cache.Store($"blocks.{l}.attn.hook_v", torch.randn(b, t, h, dh, generator: gen, dtype: float64));
            if (gate && l == 0) cache.Store($"blocks.{l}.attn.hook_gate", torch.rand(b, t, h, dh, generator: gen, dtype: float64));
            weights.Add(torch.randn(d, h * dh, generator: gen, dtype: float64));
        }
        return (cache, weights);
    }

    [Theory]
    [InlineData(1, 2, 1, 1, 1, 0, false)]           // T = 2: one query sees the sink
    [InlineData(2, 7, 3, 5, 9, 0, true)]            // odd sizes, gated layer 0
    [InlineData(3, 6, 2, 3, 4, 1, true)]            // the sink behind a register (token 1)
    [InlineData(1, 5, 4, 2, 8, 4, false)]           // the last token as the sink: only its own query
    public void SinkOutputShareEqualsItsLoopTwin(int b, int t, int h, int dh, int d, int token, bool gate)
    {
        using var scope = NewDisposeScope();
        var (cache, weights) = ToyCache(2, b, t, h, dh, d, gate, seed: 11 + t);
        using (cache)
        {
            var fast = SinkMeasurements.SinkOutputShare(cache, weights, token).data<double>().ToArray();
            var naive = SinkNaive.SinkOutputShare(cache, weights, token);
            Assert.Equal(2 * h, fast.Length);
            for (int i = 0; i < fast.Length; i++) Assert.Equal(naive[i / h, i % h], fast[i], 12);
            Assert.All(fast, x => Assert.True(x >= 0 && double.IsFinite(x), $"σ {x}"));
        }
    }

    [Fact]
    public void SinkOutputShareIsOneForAPureSinkAndZeroForAZeroSinkValue()
    {
        using var scope = NewDisposeScope();
        using var cache = new ActivationCache(1);
        var pattern = torch.zeros(1, 2, 4, 4, dtype: float64);
        for (int i = 0; i < 4; i++)
        {
            pattern[0, 0, i, 0] = torch.tensor(1.0, dtype: float64);                          // head 0: every query on the sink
            pattern[0, 1, i, i] = torch.tensor(1.0, dtype: float64);                          // head 1: every query on itself
        }
        var v = torch.randn(1, 4, 2, 3, dtype: float64);
        cache.Store("blocks.0.attn.hook_pattern", pattern);
        cache.Store("blocks.0.attn.hook_v", v);
        var w = new List<Tensor> { torch.randn(5, 6, dtype: float64) };
        var share = SinkMeasurements.SinkOutputShare(cache, w);
        Assert.Equal(1.0, share[0, 0].item<double>(), 12);
        Assert.Equal(0.0, share[0, 1].item<double>(), 12);
        v[0, 0] = torch.zeros(2, 3, dtype: float64);                                          // a drained sink value: σ = 0 for head 0
        using var drained = new ActivationCache(1);
        drained.Store("blocks.0.attn.hook_pattern", pattern);
        drained.Store("blocks.0.attn.hook_v", v);
        drained.Store("blocks.0.attn.hook_gate", torch.ones(1, 4, 2, 3, dtype: float64));
        Assert.True(double.IsNaN(SinkMeasurements.SinkOutputShare(drained, w)[0, 0].item<double>()),
            "0 / 0: a head whose output is all sink and the sink is zero");
        Assert.Equal(0.0, SinkMeasurements.SinkOutputShare(drained, w)[0, 1].item<double>(), 12);
    }

    [Fact]
    public void SinkOutputShareNamesBadInputs()
    {
        var (cache, weights) = ToyCache(2, 1, 4, 2, 3, 5, gate: false, seed: 3);
        using (cache)
        {
            Assert.Equal("outputWeights", Assert.Throws<ArgumentException>(() => SinkMeasurements.SinkOutputShare(cache, weights.Take(1).ToList())).ParamName);
            var wrongWidth = new List<Tensor> { weights[0], torch.randn(5, 7, dtype: float64) };
            Assert.Equal("outputWeights", Assert.Throws<ArgumentException>(() => SinkMeasurements.SinkOutputShare(cache, wrongWidth)).ParamName);
            Assert.Equal("token", Assert.Throws<ArgumentOutOfRangeException>(() => SinkMeasurements.SinkOutputShare(cache, weights, token: 4)).ParamName);
            Assert.Equal("token", Assert.Throws<ArgumentOutOfRangeException>(() => SinkNaive.SinkOutputShare(cache, weights, token: -1)).ParamName);
        }
    }
}
