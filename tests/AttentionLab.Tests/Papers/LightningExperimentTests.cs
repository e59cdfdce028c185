using AttentionLab.Core;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: the claim at seed 0 and the shape of everything the notebook plots.</summary>
public class LightningExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaimAtSeed0()
    {
        var config = LightningExperiment.Config.Smoke;
        var result = LightningExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.SummaryFrame().ToString());
        output.WriteLine(result.LmFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        output.WriteLine(result.CheckClaim());

        // every method at every length it may run; the quadratic ones stop at MaxQuadraticLength
        foreach (var m in LightningBenchmarks.Methods)
        {
            int expected = m is LightningBenchmarks.Reference or LightningBenchmarks.NaiveLinear
                ? config.Lengths.Count(n => n <= config.MaxQuadraticLength) : config.Lengths.Length;
            Assert.Equal(expected, result.Of(m).Count);
        }
        Assert.All(result.Speed, r => Assert.Equal(config.TokensPerBatch, r.Batch * r.SeqLen));
        Assert.Equal(new[] { "n", "batch", "method", "ms", "median_ms", "tokens_per_s", "ms_per_seq", "bytes" }, result.ToDataFrame().Columns.Select(c => c.Name));
        // the LMs trained on the same batches; TNL decodes with a constant state, the softmax KV cache grows
        Assert.Equal(2, result.Lms.Count);
        Assert.All(result.Lms, l => Assert.Equal(config.LmSteps, l.TrainLoss.Count));
        var tnl = result.Decode.Where(d => d.Model == LightningExperiment.TnlName).ToList();
        var soft = result.Decode.Where(d => d.Model == LightningExperiment.SoftmaxName).ToList();
        Assert.Equal(config.StreamLength, tnl.Count);
        Assert.Single(tnl.Select(d => d.StateBytes).Distinct());
        Assert.True(soft[^1].StateBytes > soft[0].StateBytes);
        Assert.True(result.StepVsForwardMaxAbs < 1e-3, $"Step vs forward {result.StepVsForwardMaxAbs}");
    }
}
