using AttentionLab.Core;
using AttentionLab.Papers.SecondarySinks;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P25 Secondary attention sinks. STUB written by environment/tools/new-paper.sh: the stub facts below fail once the method exists —
/// replace them with the naive-twin comparisons (outputs, states, gradients over awkward shapes) and bad-input tests.
/// </summary>
public class SecondarySinksTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", SecondarySinksExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", SecondarySinksExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (SecondarySinksExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = SecondarySinksExperiment.Run(SecondarySinksExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.NotEmpty(claims);
        Assert.Empty(claims.Failures);
        Assert.Equal(SecondarySinksExperiment.Paper.Number, claims.Paper);
    }

    [Fact]
    public void StubMethodsSayTheyAreStubs()
    {
        using var x = torch.zeros(1, 3, 2, 4);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => SecondarySinksOps.Forward(x, x, x)).Message);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => SecondarySinksNaive.Forward(x, x, x)).Message);
    }
}
