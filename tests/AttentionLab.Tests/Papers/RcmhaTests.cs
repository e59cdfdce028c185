using AttentionLab.Core;
using AttentionLab.Papers.Rcmha;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P24 RCMHA: relative convolutional MHA. STUB written by environment/tools/new-paper.sh: the stub facts below fail once the method exists —
/// replace them with the naive-twin comparisons (outputs, states, gradients over awkward shapes) and bad-input tests.
/// </summary>
public class RcmhaTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", RcmhaExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", RcmhaExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (RcmhaExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = RcmhaExperiment.Run(RcmhaExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.NotEmpty(claims);
        Assert.Empty(claims.Failures);
        Assert.Equal(RcmhaExperiment.Paper.Number, claims.Paper);
    }

    [Fact]
    public void StubMethodsSayTheyAreStubs()
    {
        using var x = torch.zeros(1, 3, 2, 4);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => RcmhaOps.Forward(x, x, x)).Message);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => RcmhaNaive.Forward(x, x, x)).Message);
    }
}
