using AttentionLab.Core;
using AttentionLab.Papers.Flowformer;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: the claim at seed 0 and the shape of everything the notebook plots.</summary>
public class FlowformerExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaimAtSeed0()
    {
        var config = FlowExperiment.Config.Smoke;
        var result = FlowExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        output.WriteLine(result.CheckClaim());

        Assert.Equal(3, result.Maps.Count);
        Assert.All(result.Maps, m => Assert.Equal(config.MapLength, m.Weights.Length));
        Assert.Equal(config.MapLength, result.Competition.Length);
        Assert.Equal(3 * config.Seeds.Length, result.ListOps.Count);
        Assert.All(result.ListOps, r => Assert.Equal(config.Steps, r.Losses.Count));
        Assert.Equal(5 * config.SpeedLengths.Length, result.Speed.Count);
        Assert.Equal(new[] { "source", "mechanism", "n", "seed", "accuracy", "ms_per_iter", "peak_bytes" }, result.ToDataFrame().Columns.Select(c => c.Name));
    }
}
