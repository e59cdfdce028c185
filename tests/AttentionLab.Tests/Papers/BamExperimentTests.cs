using AttentionLab.Core;
using AttentionLab.Papers.Bam;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>P04 BAM: the notebook's smoke run once (claims and the shape of what it plots), and claims that follow their measurements.</summary>
public class BamExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunKeepsItsExpectedClaims()
    {
        var config = BamExperiment.Config.Smoke;
        var result = BamExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.BranchFrame().ToString());
        output.WriteLine(result.RoutingFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        foreach (var s in claims.Observations) output.WriteLine(s);
        Assert.Empty(claims.Failures);
        Assert.StartsWith("checkpoint", result.Source);

        // the table and the series the notebook plots
        Assert.Equal(new[] { BamExperiment.BtxName, BamExperiment.BamName, BamExperiment.DenseName }, result.Runs.Select(r => r.Model));
        Assert.All(result.Runs, r =>
        {
            Assert.Equal(config.MixSteps, r.TrainLoss.Count);
            Assert.Equal(config.MixSteps / config.EvalEvery + 1, r.EvalSteps.Length);
            Assert.Equal(BamDomains.Count, r.DomainLoss.Length);
        });
        Assert.Equal(1 + BamDomains.Count, result.BranchLoss.Count);
        var (rows, rowLabels, columns) = result.Heatmap(BamExperiment.BamName);
        Assert.Equal(2 * config.Layers * BamDomains.Count, rows.Count);
        Assert.Equal(rows.Count, rowLabels.Length);
        Assert.Equal(BamDomains.Count, columns.Length);
        Assert.All(rows, row => Assert.Equal(1.0, row.Sum(), 6));
    }
}
