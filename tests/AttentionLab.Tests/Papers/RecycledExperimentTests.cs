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
        Assert.True(result.Probe.Recycled[0] >= result.Probe.SinkWindow[0] - 1e-12, "at t₀ the top-K holds at least the mass of a sink window");
    }
}
