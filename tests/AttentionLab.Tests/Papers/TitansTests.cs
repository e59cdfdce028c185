using AttentionLab.Core;
using AttentionLab.Papers.Titans;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P16 Titans: neural memory. STUB written by environment/tools/new-paper.sh: the stub facts below fail once the method exists —
/// replace them with the naive-twin comparisons (outputs, states, gradients over awkward shapes) and bad-input tests.
/// </summary>
public class TitansTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", TitansExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", TitansExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (TitansExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = TitansExperiment.Run(TitansExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.NotEmpty(claims);
        Assert.Empty(claims.Failures);
        Assert.Equal(TitansExperiment.Paper.Number, claims.Paper);
    }
}
