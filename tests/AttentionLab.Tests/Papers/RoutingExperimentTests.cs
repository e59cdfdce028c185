using AttentionLab.Papers.RoutingTransformer;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke experiment: it runs, its table has the spec's columns and its claim holds at seed 0.</summary>
public class RoutingExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsItsClaim()
    {
        var config = RoutingExperiment.Config.Smoke with { SpeedLengths = new[] { 64, 128 } };
        var result = RoutingExperiment.Run(config, torch.CPU, new Progress<string>(output.WriteLine));
        output.WriteLine(result.ClaimLine());
        var frame = result.ToDataFrame();
        Assert.Equal(new[] { "variant", "n", "C", "w", "accuracy", "ms" }, frame.Columns.Select(c => c.Name));
        Assert.NotNull(result.Heatmap);
        result.Check();
    }
}
