using AttentionLab.Core;
using AttentionLab.Papers.VAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: the claim and the shape of everything the notebook shows.</summary>
public class VAttentionExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaim()
    {
        var config = VAttentionExperiment.Config.Smoke;
        var result = VAttentionExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.BenchFrame().ToString());
        output.WriteLine(result.CheckClaim());
        Assert.Equal(config.Policies.Length, result.ToDataFrame().Rows.Count);
        Assert.Equal(config.DecodeSteps, result.DecodeFrame().Rows.Count);
        Assert.Equal((config.BenchLengths.Length + 1) * (1 + 2 * config.BlockSizes.Length), result.Bench.Count);
        Assert.All(result.Runs, r => Assert.Equal(config.Requests, r.Completed));
        Assert.NotNull(result.OccupancyHeatmap());
        Assert.NotNull(result.MemoryOverTime());
        Assert.NotNull(result.DecodeLatency());
        Assert.NotNull(result.DecodeBytes());
        Assert.NotNull(result.MaxBatchBars());
        Assert.Equal(1024L, VAttentionExperiment.PageSizes(KvGeometry.Llama3_8B)["tokens_per_page"][3]);
    }
}
