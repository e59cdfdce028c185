using AttentionLab.Core;
using AttentionLab.Papers.SinkLora;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once (claims and the shapes of what the notebook plots), and claims that follow their measurements.</summary>
public class SinkLoraExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var config = SinkLoraExperiment.Config.Smoke;
        var result = SinkLoraExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.BudgetFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        foreach (var s in claims.Observations) output.WriteLine(s);
        Assert.Empty(claims.Failures);
        Assert.Equal(SinkLoraExperiment.Paper.Number, claims.Paper);

        Assert.Equal(5, result.Runs.Count);
        Assert.All(result.Runs.Skip(1), r => Assert.Equal(config.FtSteps, r.Losses.Count));
        Assert.Equal(3 * config.BudgetFractions.Length, result.Budgets.Count);
        Assert.All(result.Budgets, b => Assert.True(b.MaxHeld <= b.Budget, $"{b.Policy} held {b.MaxHeld} of {b.Budget}"));
        Assert.Equal(64, result.Keep.Rows.Count);
        Assert.All(result.Keep.Rows, r => Assert.True(r.Sum() <= result.Keep.Budget));
        Assert.Equal(2, result.Footprints.Count);
    }
}
