using AttentionLab.Atlas;
using AttentionLab.Core;
using AttentionLab.Papers.Hcam;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The memory atlas (notebook 91): plumbing on a tiny run, the smoke run's claims, and claims built by hand that flip when a
/// measurement crosses its criterion.</summary>
public class MemoryAtlasTests(ITestOutputHelper output)
{
    static MemoryAtlas.Config Tiny(params MemoryMixer[] mixers) =>
        MemoryAtlas.Config.Smoke with { Steps = 3, BatchSize = 4, TestCount = 8, TimingRepeats = 1, Mixers = mixers };

    [Fact]
    public void ATinyAtlasMeasuresEveryMixer()
    {
        var config = Tiny(MemoryAtlasMixers.Softmax, MemoryAtlasMixers.SlidingWindow, MemoryAtlasMixers.GatedLinear, MemoryAtlasMixers.TitansLmm,
            MemoryAtlasMixers.Titans("MAC"), MemoryAtlasMixers.Miras("Yaad"), MemoryAtlasMixers.Hcam());
        var result = MemoryAtlas.Run(config, torch.CPU);
        Assert.Equal(config.Mixers.Select(m => m.Name), result.Points.Select(p => p.Name));
        foreach (var p in result.Points.Where(p => !p.StateCounted))
            Assert.True(p.StepVsForwardMaxAbs < MemoryAtlasResult.StepTolerance, $"{p.Name}: Step vs exact forward {p.StepVsForwardMaxAbs}");
        Assert.All(result.Points, p => Assert.InRange(p.Recall, 0, 1));
        Assert.All(result.Points, p => Assert.True(p.StateBytes > 0, p.Name));
        // the chunked memories differ from their recurrence (an approximation); the exact mixers do not
        Assert.Equal(0, result.Points[0].ChunkedVsExactMaxAbs);
        Assert.True(result.Points[3].ChunkedVsExactMaxAbs > 0, "Titans LMM chunked form equals its recurrence exactly: the twin was not exercised");

        // softmax streams its full KV cache; SWA only n keys; HCAM is counted by its formula
        long conv = 2L * config.DModel * sizeof(float);
        Assert.Equal(conv + 2L * config.SeqLen * config.DModel * sizeof(float), result.Points[0].StateBytes);
        Assert.True(result.Points[1].StateBytes < result.Points[0].StateBytes);
        var hcam = result.Points[^1];
        Assert.True(hcam.StateCounted);
        using (var probe = new HcamMixer(config.DModel, config.Heads, config.Window, 2, config.Window))
            Assert.Equal(conv + probe.StateBytes(config.SeqLen), hcam.StateBytes);
        Assert.True(double.IsNaN(hcam.StepVsForwardMaxAbs));

        Assert.Equal(7, result.ToDataFrame().Rows.Count);
        Assert.NotNull(result.RecallVsState());
        Assert.NotNull(result.RecallVsSpeed());
        Assert.NotNull(result.NearVsFar());
        Assert.NotEmpty(result.StateFront());

        // three steps solve nothing: the asserted attention claim does not hold and the check names it
        var claims = result.Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, claims["attention-solves-mqar"].Status);
        Assert.Contains("attention-solves-mqar", Assert.Throws<ClaimCheckException>(() => claims.Check()).Message);
        Assert.Equal(ClaimStatus.Holds, claims["step-equals-forward"].Status);
    }

    [Fact]
    public void DistancesFollowTheLayout()
    {
        var task = MemoryAtlas.Config.Smoke.Task;
        using var batch = task.Generate(16, 3);
        var d = MemoryAtlas.Distances(batch, task.Pairs);
        var tokens = batch.Tokens.data<long>().ToArray();
        for (int n = 0; n < 16; n++)
            for (int i = 0; i < task.Pairs; i++)
            {
                long q = 2 * i + d[n, i];                                                   // the query repeats key i
                Assert.Equal(tokens[n * task.Length + 2 * i], tokens[n * task.Length + q]);
                Assert.InRange(d[n, i], 2, task.Length - 1);
            }
    }

    [Fact]
    public void SmokeRunHoldsItsAssertedClaims()
    {
        var result = MemoryAtlas.Run(MemoryAtlas.Config.Smoke, torch.CPU, new InlineProgress<string>(output.WriteLine));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        output.WriteLine(claims.Findings().ToString());
        output.WriteLine($"{result.Seconds:F1} s");
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        Assert.Equal(MemoryAtlasMixers.Smoke.Count, result.Points.Count);
        Assert.Equal(result.Points.Count(p => p.Role == MemoryRole.Memory),
            claims.Count(c => c.Id.EndsWith("-beats-swa-beyond-window") && c.Id != "memory-beats-swa-beyond-window"));
    }

    static MemoryPoint Point(string name, MemoryRole role, double recall, double far, long bytes, double us, bool counted = false) =>
        new(name, name, role, recall, 0.9, far, 500, bytes, counted, us, 1, counted ? double.NaN : 1e-6, 0, 1.0, 1);

    /// <summary>A result built by hand: the asserted claims hold; then each measurement is pushed across its criterion.</summary>
    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var config = MemoryAtlas.Config.Smoke;
        var points = new[]
        {
            Point(MemoryAtlasMixers.Softmax.Name, MemoryRole.Baseline, 0.99, 0.98, 16_640, 5),
            Point(MemoryAtlasMixers.SlidingWindow.Name, MemoryRole.Baseline, 0.30, 0.03, 2_304, 5),
            Point(MemoryAtlasMixers.Linear.Name, MemoryRole.Baseline, 0.40, 0.35, 2_304, 3),
            Point(MemoryAtlasMixers.GatedLinear.Name, MemoryRole.Baseline, 0.50, 0.45, 2_304, 4),
            Point("Titans MAG", MemoryRole.Memory, 0.80, 0.75, 9_000, 20),
            Point("HCAM k=2", MemoryRole.Memory, 0.20, 0.10, 40_000, 10, counted: true),
        };
        var good = new MemoryAtlasResult(config, points, 1);
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(new[] { "step-equals-forward", "attention-solves-mqar", "swa-at-chance-beyond-window", "titans-mag-beats-swa-beyond-window",
            "hcam-k-2-beats-swa-beyond-window", "memory-beats-swa-beyond-window", "memory-beats-gated-linear", "state-bytes", "time-per-token" },
            claims.Select(c => c.Id));
        Assert.Equal(ClaimStatus.Holds, claims["titans-mag-beats-swa-beyond-window"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, claims["hcam-k-2-beats-swa-beyond-window"].Status);
        Assert.False(claims["hcam-k-2-beats-swa-beyond-window"].Asserted);
        Assert.Equal(ClaimStatus.Holds, claims["memory-beats-gated-linear"].Status);
        Assert.Equal(ClaimStatus.Holds, claims["state-bytes"].Status);                  // HCAM is counted: listed, not compared
        Assert.Equal(ClaimStatus.Holds, claims["time-per-token"].Status);

        MemoryAtlasResult With(int i, MemoryPoint p) => good with { Points = points.Select((q, j) => j == i ? p : q).ToArray() };
        Assert.Contains(With(0, points[0] with { Recall = 0.85 }).Claims().Failures, f => f.Id == "attention-solves-mqar");
        Assert.Contains(With(4, points[4] with { StepVsForwardMaxAbs = 2e-3 }).Claims().Failures, f => f.Id == "step-equals-forward");
        Assert.Contains(With(4, points[4] with { StepVsForwardMaxAbs = double.NaN }).Claims().Failures, f => f.Id == "step-equals-forward");
        Assert.Contains(With(1, points[1] with { FarRecall = 0.07 }).Claims().Failures, f => f.Id == "swa-at-chance-beyond-window");
        var weak = With(4, points[4] with { FarRecall = 0.30 }).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, weak["memory-beats-swa-beyond-window"].Status);
        Assert.Empty(weak.Failures);                                                       // recorded, not asserted
        Assert.Equal(ClaimStatus.DoesNotHold, weak["titans-mag-beats-swa-beyond-window"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, With(4, points[4] with { Recall = 0.52 }).Claims()["memory-beats-gated-linear"].Status);
        // reported: a memory state above the KV cache, a memory faster than linear attention — statuses change, the check does not fail
        var big = With(4, points[4] with { StateBytes = 20_000 }).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, big["state-bytes"].Status);
        Assert.Empty(big.Failures);
        var fast = With(4, points[4] with { MicrosecondsPerToken = 2 }).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, fast["time-per-token"].Status);
        Assert.Empty(fast.Failures);
        // without SWA, the comparisons are not shown
        var noSwa = (good with { Points = points.Where((_, j) => j != 1).ToArray() }).Claims();
        Assert.Equal(ClaimStatus.NotShown, noSwa["memory-beats-swa-beyond-window"].Status);
        Assert.Equal(ClaimStatus.NotShown, noSwa["swa-at-chance-beyond-window"].Status);
    }

    [Fact]
    public void EveryEntryHasItsOwnClaimId()
    {
        Assert.Equal(MemoryAtlasMixers.Full.Count, MemoryAtlasMixers.Full.Select(m => AtlasResult.Slug(m.Name)).Distinct().Count());
        Assert.Equal("titans-mag", AtlasResult.Slug(MemoryAtlasMixers.Titans("MAG").Name));
        Assert.Equal("miras-l2", AtlasResult.Slug(MemoryAtlasMixers.Miras("l2").Name));
        Assert.All(MemoryAtlasMixers.Smoke, m => Assert.Contains(m, MemoryAtlasMixers.Full));
    }

    [Fact]
    public void BadConfigIsNamed()
    {
        Assert.Equal("Mixers", Assert.Throws<ArgumentException>(
            () => (MemoryAtlas.Config.Smoke with { Mixers = Array.Empty<MemoryMixer>() }).Validate()).ParamName);
        Assert.Equal("Mixers", Assert.Throws<ArgumentException>(
            () => (MemoryAtlas.Config.Smoke with { Mixers = new[] { MemoryAtlasMixers.Softmax, MemoryAtlasMixers.Softmax } }).Validate()).ParamName);
        Assert.Equal("Heads", Assert.Throws<ArgumentException>(() => (MemoryAtlas.Config.Smoke with { Heads = 3 }).Validate()).ParamName);
        Assert.Equal("Window", Assert.Throws<ArgumentException>(() => (MemoryAtlas.Config.Smoke with { Window = 32 }).Validate()).ParamName);
        Assert.Equal("full", MemoryAtlas.Config.For(RunSize.Full).Size);
        Assert.Equal(91, MemoryAtlas.Paper.Number);
    }
}
