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

    static SinkLoraResult Made(double noneP = 4.0, double fullP = 3.0, double rollP = 3.6, double noWrapP = 3.5, double sfP = 3.2)
    {
        var ex = new SinkLoraExactness(1e-15, 1e-15, 1e-15, 0.1, 0, 0, 0, 1e-15, 0, 1e-7, 7, 7);
        FtRun R(FtVariant v, double ppl) => new(SinkLoraExperiment.Name(v), ppl, 0.25, [1.0], 10, 1);
        var runs = new[] { R(FtVariant.None, noneP), R(FtVariant.Full, fullP), R(FtVariant.S2Roll, rollP), R(FtVariant.S2NoWrap, noWrapP),
            R(FtVariant.SinkFixed, sfP) };
        var budgets = new[] { new BudgetRun("H2O", 64, 0.125, 3.9, 64, 100), new BudgetRun("sink+window", 64, 0.125, 4.0, 64, 120),
            new BudgetRun("recent-only", 64, 0.125, 4.1, 64, 130) };
        var fp = new[] { new KvFootprint("smoke", 2, 64, 4, 1024, 1024), new KvFootprint("full", 6, 256, 8, 12288, 12288) };
        return new SinkLoraResult(SinkLoraExperiment.Config.Smoke, ex, "test", [], 3.0, runs, 3.5, budgets, new KeepMap(64, []), fp, 1, new Dictionary<string,
            double>());
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var good = Made();
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(0.4, good.Recovered(FtVariant.S2Roll), 12);
        Assert.Equal(0.8, good.Recovered(FtVariant.SinkFixed), 12);
        Assert.Equal(ClaimStatus.Holds, claims["recovered-fraction"].Status);
        Assert.Equal(ClaimStatus.Holds, claims["ppl-vs-kv-budget"].Status);

        // SF no better than S2-roll: the fraction claim and the soft ppl claim flip (recorded, not asserted)
        var worse = Made(sfP: 3.7).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, worse["recovered-fraction"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, worse["sf-ppl-vs-s2-roll"].Status);
        // SF beyond full attention: R_SF > 1 breaks "≤ 1"
        Assert.Equal(ClaimStatus.DoesNotHold, Made(sfP: 2.9).Claims()["recovered-fraction"].Status);
        // full attention not better than none: R undefined, not shown
        Assert.Equal(ClaimStatus.NotShown, Made(fullP: 4.1).Claims()["recovered-fraction"].Status);
        // no-wrap below roll
        Assert.Equal(ClaimStatus.DoesNotHold, Made(noWrapP: 3.7).Claims()["s2-nowrap-fraction"].Status);
        // H2O worse than recent-only; a cache over budget; a measured footprint off the formula
        Assert.Equal(ClaimStatus.DoesNotHold, (good with { Budgets = [good.Budgets[0] with { Ppl = 4.2 }, good.Budgets[1], good.Budgets[2]] })
            .Claims()["ppl-vs-kv-budget"].Status);
        var over = good with { Budgets = [good.Budgets[0] with { MaxHeld = 65 }, good.Budgets[1], good.Budgets[2]] };
        Assert.Contains("h2o-within-budget", Assert.Throws<ClaimCheckException>(() => over.Claims().Check()).Message);
        Assert.Equal(ClaimStatus.DoesNotHold, (good with { Footprints = [good.Footprints[0] with { Measured = 1000 }, good.Footprints[1]] })
            .Claims()["kv-bytes-per-token"].Status);

        // each exactness check fails when its measurement crosses the bound
        void Fails(SinkLoraExactness e, string id) =>
            Assert.Contains(id, Assert.Throws<ClaimCheckException>(() => (good with { Exactness = e }).Claims().Check()).Message);
        Fails(good.Exactness with { S2RollTwin = 1e-9 }, "s2-roll-equals-naive");
        Fails(good.Exactness with { S2NoWrapTwin = double.NaN }, "s2-nowrap-equals-naive");
        Fails(good.Exactness with { SinkFixedTwin = 1e-9 }, "sf-equals-naive");
        Fails(good.Exactness with { RollLeak = 0 }, "causality-probe");
        Fails(good.Exactness with { NoLeakChange = 1e-3 }, "causality-probe");
        Fails(good.Exactness with { MaskViolations = 1 }, "mask-rules");
        Fails(good.Exactness with { LoraZeroB = 1e-6 }, "lora-zero-b-is-base");
        Fails(good.Exactness with { LoraMerge = 1e-6 }, "lora-merge-equals-unmerged");
        Fails(good.Exactness with { H2OVsFullDecode = 1e-3 }, "h2o-full-budget-equals-full");
        Fails(good.Exactness with { ToyMaxHeld = 8 }, "h2o-within-budget");
    }
}
