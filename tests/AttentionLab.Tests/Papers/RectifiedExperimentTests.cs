using AttentionLab.Core;
using AttentionLab.Papers.RectifiedSpaAttn;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class RectifiedExperimentTests
{
    readonly ITestOutputHelper output;
    public RectifiedExperimentTests(ITestOutputHelper output) => this.output = output;

    [Fact]
    public void SmokeRunMeetsItsClaims()
    {
        var c = RectifiedExperiment.Config.Smoke with { TimingRepeats = 2 };
        var r = RectifiedExperiment.Run(c, CPU);
        foreach (var row in r.Rows)
            output.WriteLine(
                $"γ {row.Locality} τ {row.Tau} density {row.Density:F3} err [{string.Join(", ", row.Error.Select(e => e.ToString("F3")))}] ben " +
                $"{row.FractionBeneficial:F2} bias {row.SelectedMassBias:F3}");
        Assert.Equal(c.Localities.Length * c.Taus.Length, r.ToDataFrame().Rows.Count);
        Assert.Equal(6, r.Exactness.ToDataFrame().Rows.Count);
        Assert.Equal(4, r.Timings.Count);
        Assert.All(r.Timings, t => Assert.Equal(2, t.Repeats));
        Assert.Equal(4, r.TimingFrame().Rows.Count);
        var claims = r.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        output.WriteLine(claims.Findings().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal(ClaimStatus.Holds, claims["moderate-rectification-helps"].Status);
        Assert.True(claims["moderate-rectification-helps"].Asserted);
        Assert.Equal(ClaimStatus.Holds, claims["peaked-ungated-hurts"].Status);
        Assert.Equal("smoke", claims.Size);
    }

    /// <summary>A result built by hand: rows with chosen errors, a clean exactness phase and timings.</summary>
    static RectifiedResult ByHand(double[] moderate, double[] peaked)
    {
        var c = RectifiedExperiment.Config.Smoke;
        var rows = new[] { new RectifiedRow(c.ModerateLocality, c.FixedTau, 0.5, 0.4, moderate, new double[4], 0.5, 0.01),
                           new RectifiedRow(c.PeakedLocality, c.FixedTau, 0.3, 0.2, peaked, new double[4], 0.3, -0.05) };
        var ok = new ErrorStats(1e-14, 1e-14, 10);
        var exact = new RectifiedExactness(ok, 1e-15, ok, new ErrorStats(0.3, 0.3, 10), true, 0.4, ok, 0);
        var timings = new[]
        {
            new RectifiedTiming(RectifiedExperiment.FullName, 528, 1, 2.0, 1.9, 5),
            new RectifiedTiming(RectifiedExperiment.RectifiedName, 528, 0.5, 3.0, 2.9, 5),
            new RectifiedTiming(RectifiedExperiment.KernelName, 528, 0.5, 1.5, 1.4, 5),
            new RectifiedTiming(RectifiedExperiment.EstimateName, 528, 0.5, 0.5, 0.4, 5),
        };
        return new RectifiedResult(c, rows, null!, TimeSpan.Zero) { Exactness = exact, Timings = timings };
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        // the spec prototype's pattern: moderate comp < GAPR < plain, scaling helps; peaked ungated worse than plain, GAPR best
        var good = ByHand(new[] { 0.26, 0.19, 0.14, 0.21 }, new[] { 0.08, 0.13, 0.14, 0.07 });
        var claims = good.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Equal(new[] { "fast-equals-naive", "weights-sum-to-one", "exact-when-pooling-exact", "tau-one-is-full", "moderate-rectification-helps",
            "moderate-scaling-helps", "moderate-gapr-conservative", "peaked-ungated-hurts", "peaked-gapr-best", "forward-speed" }, claims.Select(x => x.Id));
        Assert.Empty(claims.Failures);
        Assert.All(claims.Where(x => x.Kind == ClaimKind.Claim), x => Assert.Equal(ClaimStatus.Holds, x.Status));
        Assert.Equal(ClaimStatus.DoesNotHold, claims["forward-speed"].Status);                       // 3.0 ms rectified vs 2.0 ms full

        // compensation no better than plain: the asserted moderate claim fails and Check names it
        var worse = ByHand(new[] { 0.26, 0.19, 0.27, 0.21 }, new[] { 0.08, 0.13, 0.14, 0.07 });
        Assert.Equal(ClaimStatus.DoesNotHold, worse.Claims()["moderate-rectification-helps"].Status);
        Assert.Contains("moderate-rectification-helps", Assert.Throws<ClaimCheckException>(() => worse.Claims().Check()).Message);
        // GAPR above plain at the peaked γ (our smoke run's pattern): does not hold, not asserted, no failure
        var ours = ByHand(new[] { 0.21, 0.20, 0.14, 0.19 }, new[] { 0.136, 0.189, 0.178, 0.138 });
        Assert.Equal(ClaimStatus.DoesNotHold, ours.Claims()["peaked-gapr-best"].Status);
        Assert.Equal(ClaimStatus.Holds, ours.Claims()["peaked-ungated-hurts"].Status);
        Assert.Empty(ours.Claims().Failures);
        // ungated rectification that helps at the peaked γ: the asserted claim does not hold
        var noBias = ByHand(new[] { 0.26, 0.19, 0.14, 0.21 }, new[] { 0.08, 0.07, 0.06, 0.07 });
        Assert.Equal(ClaimStatus.DoesNotHold, noBias.Claims()["peaked-ungated-hurts"].Status);
        Assert.Contains(noBias.Claims().Failures, f => f.Id == "peaked-ungated-hurts");
        // GAPR worse than compensating every block at moderate γ is not "conservative" in the spec's sense
        Assert.Equal(ClaimStatus.DoesNotHold, ByHand(new[] { 0.26, 0.19, 0.14, 0.13 },
            new[] { 0.08, 0.13, 0.14, 0.07 }).Claims()["moderate-gapr-conservative"].Status);

        // exactness: a twin off by 1e-8, weights off by 1e-5, a plain sparse that happens to be exact, NaN at τ = 1
        var x = good.Exactness;
        Assert.Contains((good with { Exactness = x with { FastVsNaive = new ErrorStats(1e-8, 1e-8, 10) } }).Claims().Failures,
            f => f.Id == "fast-equals-naive");
        Assert.Contains((good with { Exactness = x with { WeightSumGap = 1e-5 } }).Claims().Failures, f => f.Id == "weights-sum-to-one");
        Assert.Contains((good with { Exactness = x with { PlainConstantBlocks = new ErrorStats(1e-9, 1e-9, 10) } }).Claims().Failures,
            f => f.Id == "exact-when-pooling-exact");
        Assert.Contains((good with { Exactness = x with { ConstantAllBeneficial = false } }).Claims().Failures, f => f.Id == "exact-when-pooling-exact");
        Assert.Contains((good with { Exactness = x with { TauOne = new ErrorStats(double.NaN, double.NaN, 10) } }).Claims().Failures,
            f => f.Id == "tau-one-is-full");

        // the timing is reported: faster rectified flips its status, never the check; no timing phase → not shown
        var fast = good with { Timings = good.Timings.Select(t => t.Method == RectifiedExperiment.RectifiedName ? t with { MedianMs = 1.0 } : t).ToList() };
        Assert.Equal(ClaimStatus.Holds, fast.Claims()["forward-speed"].Status);
        Assert.Equal(ClaimStatus.NotShown, (good with { Timings = Array.Empty<RectifiedTiming>() }).Claims()["forward-speed"].Status);
    }

    [Fact]
    public void BadConfigNamesTheField()
    {
        Assert.Equal("Taus", Assert.Throws<ArgumentException>(() => (RectifiedExperiment.Config.Smoke with { Taus = new[] { 1.0 } }).Validate()).ParamName);
        Assert.Equal("FixedTau", Assert.Throws<ArgumentException>(() => (RectifiedExperiment.Config.Smoke with { FixedTau = 0.55 }).Validate()).ParamName);
        Assert.Equal("TimingRepeats", Assert.Throws<ArgumentException>(
            () => (RectifiedExperiment.Config.Smoke with { TimingRepeats = -1 }).Validate()).ParamName);
    }
}
