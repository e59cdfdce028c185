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
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 4, VocabSize: 32, Positions: AttentionLab.Attention.PositionKind.Rope, MaxLength: 16));
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
}
