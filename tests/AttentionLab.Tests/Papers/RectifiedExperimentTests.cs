using AttentionLab.Papers.RectifiedSpaAttn;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class RectifiedExperimentTests
{
    readonly ITestOutputHelper output;
    public RectifiedExperimentTests(ITestOutputHelper output) => this.output = output;

    [Fact]
    public void SmokeClaimHolds()
    {
        var c = RectifiedExperiment.Config.Smoke;
        var r = RectifiedExperiment.Run(c, CPU);
        foreach (var row in r.Rows)
            output.WriteLine($"γ {row.Locality} τ {row.Tau} density {row.Density:F3} err [{string.Join(", ", row.Error.Select(e => e.ToString("F3")))}] ben {row.FractionBeneficial:F2} bias {row.SelectedMassBias:F3}");
        Assert.Equal(c.Localities.Length * c.Taus.Length, r.ToDataFrame().Rows.Count);
        var (holds, line) = r.Claim();
        output.WriteLine(line);
        Assert.True(holds, line);
    }

    [Fact]
    public void BadConfigNamesTheField()
    {
        Assert.Equal("Taus", Assert.Throws<ArgumentException>(() => (RectifiedExperiment.Config.Smoke with { Taus = new[] { 1.0 } }).Validate()).ParamName);
        Assert.Equal("FixedTau", Assert.Throws<ArgumentException>(() => (RectifiedExperiment.Config.Smoke with { FixedTau = 0.55 }).Validate()).ParamName);
    }
}
