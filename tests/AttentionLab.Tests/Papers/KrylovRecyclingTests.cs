using AttentionLab.Core;
using AttentionLab.Papers.KrylovRecycling;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P03 SKR: Krylov subspace recycling. STUB written by environment/tools/new-paper.sh: the stub facts below fail once the method exists —
/// replace them with the naive-twin comparisons (outputs, states, gradients over awkward shapes) and bad-input tests.
/// </summary>
public class KrylovRecyclingTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", KrylovRecyclingExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", KrylovRecyclingExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (KrylovRecyclingExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = KrylovRecyclingExperiment.Run(KrylovRecyclingExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.NotEmpty(claims);
        Assert.Empty(claims.Failures);
        Assert.Equal(KrylovRecyclingExperiment.Paper.Number, claims.Paper);
    }

    [Fact]
    public void StubMethodsSayTheyAreStubs()
    {
        using var x = torch.zeros(1, 3, 2, 4);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => KrylovRecyclingOps.Forward(x, x, x)).Message);
        Assert.Contains("stub", Assert.Throws<NotImplementedException>(() => KrylovRecyclingNaive.Forward(x, x, x)).Message);
    }
}
