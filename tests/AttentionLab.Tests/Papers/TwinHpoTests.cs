using AttentionLab.Core;
using AttentionLab.Papers.TwinHpo;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P02 Circular-economy topic models + twin HPO. STUB written by environment/tools/new-paper.sh: the stub facts below fail once the method exists —
/// replace them with the naive-twin comparisons (outputs, states, gradients over awkward shapes) and bad-input tests.
/// </summary>
public class TwinHpoTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", TwinHpoExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", TwinHpoExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (TwinHpoExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = TwinHpoExperiment.Run(TwinHpoExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.NotEmpty(claims);
        Assert.Empty(claims.Failures);
        Assert.Equal(TwinHpoExperiment.Paper.Number, claims.Paper);
    }

    [Fact]
    public void StubMethodsSayTheyAreStubs()
    {
        using var x = torch.zeros(1, 3, 2, 4);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => TwinHpoOps.Forward(x, x, x)).Message);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => TwinHpoNaive.Forward(x, x, x)).Message);
    }
}
