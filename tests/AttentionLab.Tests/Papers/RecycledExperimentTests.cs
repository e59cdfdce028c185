using AttentionLab.Papers.RecycledAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

public class RecycledExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaimAtKEqualsNOverEight()
    {
        var config = RecycledExperiment.Config.Smoke;
        var result = RecycledExperiment.Run(config, torch.CPU);
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine($"probe recycled: {string.Join(", ", result.Probe.Recycled.Select(x => x.ToString("F3")))}");
        output.WriteLine($"probe window:   {string.Join(", ", result.Probe.SinkWindow.Select(x => x.ToString("F3")))}");
        output.WriteLine($"elapsed {result.Elapsed.TotalSeconds:F1} s");
        var full = result.Row("full", 0);
        Assert.True(full.TokenAccuracy > 0.9, $"the checkpoint copies: full accuracy {full.TokenAccuracy:P0}");
        int k = config.ClaimK;
        var recycled = result.Row("recycled", k, 4);
        var streaming = result.Row("streamingllm", k);
        Assert.True(recycled.TokenAccuracy >= 2 * streaming.TokenAccuracy,
            $"recycled(K={k}, S=4) {recycled.TokenAccuracy:P0} vs StreamingLLM(K={k}) {streaming.TokenAccuracy:P0}");
        Assert.True(recycled.AttendedMean < full.AttendedMean / 2, "recycled steps attend a small subset on average");
        output.WriteLine(result.CheckClaim());
        Assert.True(result.Probe.Recycled[0] >= result.Probe.SinkWindow[0] - 1e-12, "at t₀ the top-K holds at least the mass of a sink window");
    }

    [Fact]
    public void LayerFormMatchesNaiveAndMarksTheAttendedSets()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(1);
        var (q, k, v) = (torch.randn(1, 9, 2, 3, dtype: torch.float64), torch.randn(1, 9, 2, 3, dtype: torch.float64), torch.randn(1, 9, 2, 3, dtype: torch.float64));
        var (outputs, attended, trace) = RecycledDecode.Layer(q, k, v, topK: 2, stride: 3);
        Assert.True(outputs.allclose(RecycledAttentionNaive.Decode(q, k, v, 2, 3), rtol: 1e-10, atol: 1e-12));
        for (int t = 0; t < 9; t++) Assert.Equal(trace[t].AttendedTokens[0], (long)attended[0, 0, t].sum().item<double>());
        Assert.Equal(0.0, attended.triu(1).abs().sum().item<double>());            // causal
        Assert.Throws<ArgumentException>("q", () => RecycledDecode.Layer(q.narrow(1, 0, 3), k, v, 2, 3));
        Assert.Throws<ArgumentException>("TopKs", () => (RecycledExperiment.Config.Smoke with { TopKs = new[] { 1 } }).Validate());
    }
}
