using AttentionLab.Bench.Systems;
using AttentionLab.Core;
using AttentionLab.Papers.AttentionOffloading;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's run with a tiny probe: tables and series have the right shape; every claim follows its measurement.</summary>
public class OffloadingExperimentTests(ITestOutputHelper output)
{
    static readonly OffloadingExperiment.Config Tiny = OffloadingExperiment.Config.Smoke with { ProbeContexts = new[] { 64, 256, 1024 }, ProbeRepeats = 1,
        ProbeFitFromContext = 256 };

    [Fact]
    public void RunProducesEveryTableAndSeries()
    {
        var r = OffloadingExperiment.Run(Tiny, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(r.ComparisonFrame().ToString());
        Assert.Equal(8, r.Split.Count);
        Assert.All(r.Split.Where(s => !double.IsNaN(s.LseMaxAbs)), s => Assert.True(s.OutputMaxAbs <= OffloadingResult.SplitToleranceOf(s.DType)
            && s.LseMaxAbs <= OffloadingResult.SplitToleranceOf(s.DType), $"{s.Partition} {s.DType}: {s.OutputMaxAbs}, {s.LseMaxAbs}"));
        Assert.All(r.Split.Where(s => s.DType == "float64" && !double.IsNaN(s.LseMaxAbs)),
            s => Assert.True(s.OutputMaxAbs <= 1e-12, $"{s.Partition}: {s.OutputMaxAbs}"));
        Assert.All(r.Split.Where(s => double.IsNaN(s.LseMaxAbs)), s => Assert.True(s.OutputMaxAbs > 1e-3, "the plain average should be wrong"));
        Assert.Equal(2 * Tiny.Contexts.Length * Tiny.BatchCaps.Length, r.Grid.Count);
        Assert.Equal(Tiny.Contexts.Length, r.Best.Count);
        Assert.Equal(Tiny.Contexts.Length, r.Serial.Count);
        Assert.Same(r.Best, r.Pipelined);                                          // the preset pipelines both sides
        // serial is never faster than pipelined (equal, up to rounding, where both stages are bound by the same HBM)
        Assert.All(r.Serial, c => Assert.True(c.Homogeneous.StepMs >= r.Best.First(b => b.Context == c.Context).Homogeneous.StepMs * (1 - 1e-12)));
        Assert.Equal(Tiny.AttentionDeviceCounts.Length, r.DeviceSweep.Count);
        Assert.Equal(2 * Tiny.Contexts.Length, r.ToDataFrame().Rows.Count);
        Assert.All(r.Best, c => Assert.True(c.Homogeneous.Fits && c.Offloaded.Fits));
        Assert.All(r.Best, c => Assert.Equal(Tiny.Model.Layers * Tiny.NetworkLatencyUs * 1e-3, c.Offloaded.NetworkLatencyMs, 12));
        // the probe: one point per length, bytes = 2 (K and V) · B · n · H · D · 4 B
        Assert.Equal(Tiny.ProbeContexts, r.Probe.Select(p => p.Context));
        Assert.All(r.Probe, p => Assert.Equal(2L * Tiny.ProbeBatch * p.Context * Tiny.ProbeHeads * Tiny.ProbeHeadDim * 4, p.KvBytes));
        Assert.Equal(Tiny.ProbeContexts.Length, r.ProbeFrame().Rows.Count);
        Assert.Equal(new bool?[] { false, true, true }, ((Microsoft.Data.Analysis.BooleanDataFrameColumn)r.ProbeFrame()["in_fit"]).ToArray());
        Assert.Equal("config", Assert.Throws<ArgumentException>(() => OffloadingExperiment.Run(Tiny with { ProbeFitFromContext = 1000 }, torch.CPU)).ParamName);

        // the claims: every exactness check and asserted claim holds (statuses are compared with tests/expected-claims.csv)
        var claims = r.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        Assert.Equal(0, r.Invariants.MonotoneViolations);
        Assert.True(r.Invariants.MonotoneCases > 0);
        Assert.NotNull(r.TimeBreakdownChart());
        Assert.NotNull(r.RatioHeatmap());
        Assert.NotNull(r.RatioChart());
        Assert.NotNull(r.BatchSweepChart());
        Assert.NotNull(r.DeviceSweepChart());
        Assert.NotNull(r.TrafficChart());
        Assert.NotNull(r.ProbeChart());
    }

    [Fact]
    public void FitRecoversAKnownBandwidth()
    {
        // t = 0.05 ms + bytes / 5 GB/s, exactly, in the minimum (the fitted statistic); the median is ignored
        var points = new[] { 1L << 20, 1L << 22, 1L << 24 }.Select(b => new ProbePoint(0, b, 1.0, 0.05 + b / 5e9 * 1e3)).ToList();
        var fit = DecodeBandwidthProbe.Fit(points);
        Assert.Equal(5.0, fit.BandwidthGBs, 9);
        Assert.Equal(0.05, fit.InterceptMs, 9);
        var proportional = DecodeBandwidthProbe.Fit(points.Select(p => p with { MinMs = p.KvBytes / 5e9 * 1e3 }).ToList());
        Assert.Equal(1.0, proportional.LogLogSlope, 9);
        Assert.Equal("points", Assert.Throws<ArgumentException>(() => DecodeBandwidthProbe.Fit(points.Take(1).ToList())).ParamName);
        Assert.Equal("contexts", Assert.Throws<ArgumentException>(() => DecodeBandwidthProbe.Measure(new[] { 0 }, 1, 1, 1, torch.CPU)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => DecodeBandwidthProbe.Measure(new[] { 8 }, 1, 0, 1, torch.CPU)).ParamName);
    }

    /// <summary>A result built from the cost model and hand-made measurements (no torch run): each claim crosses its criterion.</summary>
    static OffloadingResult ByHand()
    {
        var c = OffloadingExperiment.Config.Smoke;
        List<Comparison> Compare(bool overlap) => c.Contexts.Select(n => new Comparison(
            ServingCostModel.AtBatchCap(c.Model, c.Homogeneous with { Overlap = overlap }, n, c.BatchCap),
            ServingCostModel.AtBatchCap(c.Model, c.Offloaded with { Overlap = overlap }, n, c.BatchCap))).ToList();
        var split = new[] { "float64", "float32" }.SelectMany(t => new[]
        {
            new SplitError("by requests", 3, 1e-15, 1e-15, t), new SplitError("by KV heads", 4, 1e-15, 1e-15, t),
            new SplitError("by sequence (LSE merge)", 3, t == "float64" ? 1e-15 : 2e-6, 1e-15, t),
            new SplitError("by sequence (plain average: wrong)", 3, 0.4, double.NaN, t),
        }).ToArray();
        var offload = new[] { 64, 256, 512 }.Select(n => new OffloadPoint(n, 2048, 2048, 2 * (n - 4.0) * 64 * 4 * 2, 1, 1, 0.1, 1e-7)).ToArray();
        var pipelined = Compare(true);
        return new OffloadingResult(c, split, Array.Empty<CostEstimate>(), pipelined, Array.Empty<CostEstimate>(),
            Array.Empty<ProbePoint>(), new ProbeFit(1.0, 1, 0, 5), "cpu", 0)
        {
            Offload = offload, Pipelined = pipelined, Serial = Compare(false), Invariants = new CostModelInvariants(0, 24, 0, 1e-9),
        };
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var good = ByHand();
        var claims = good.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal(new[] { "split-equals-monolithic-float64", "split-equals-monolithic-float32", "plain-average-differs", "offload-equals-local",
            "link-bytes-equal-formula", "cost-model-invariants",
            "throughput-per-dollar", "throughput-per-dollar-serial", "link-traffic-o-d", "attention-bandwidth-bound" }, claims.Select(x => x.Id));

        // a float64 split off by more than the spec's 1e-6, a float32 one by more than 1e-5, a plain average that happens to be
        // right, offloaded logits off by 1e-4, one byte more over the link, a violated invariant: each exactness check fails
        Assert.Contains(Fails(good with { Split = good.Split.Select((s, i) => i == 2 ? s with { OutputMaxAbs = 2e-6 } : s).ToList() }),
            f => f.Id == "split-equals-monolithic-float64");
        Assert.Contains(Fails(good with { Split = good.Split.Select((s, i) => i == 6 ? s with { LseMaxAbs = 2e-5 } : s).ToList() }),
            f => f.Id == "split-equals-monolithic-float32");
        Assert.Contains(Fails(good with { Split = good.Split.Select((s, i) => i == 7 ? s with { OutputMaxAbs = 1e-4 } : s).ToList() }),
            f => f.Id == "plain-average-differs");
        Assert.Contains(Fails(good with { Offload = good.Offload.Select((p, i) => i == 1 ? p with { MaxAbsVsLocal = 1e-4 } : p).ToList() }),
            f => f.Id == "offload-equals-local");
        Assert.Contains(Fails(good with { Offload = good.Offload.Select((p, i) => i == 1 ? p with { NetworkBytesPerToken = 2049 } : p).ToList() }),
            f => f.Id == "link-bytes-equal-formula");
        Assert.Contains(Fails(good with { Invariants = good.Invariants with { MonotoneViolations = 1 } }), f => f.Id == "cost-model-invariants");
        Assert.Contains(Fails(good with { Invariants = good.Invariants with { SerialSymmetryGap = 1e-6 } }), f => f.Id == "cost-model-invariants");
        var e = Assert.Throws<ClaimCheckException>(() => (good with { Offload = good.Offload.Select(
            (p, i) => i == 1 ? p with { MaxAbsVsLocal = double.NaN } : p).ToList() }).Claims().Check());
        Assert.Contains("offload-equals-local", e.Message);

        // the per-$ claim: an H20 at twice an H100's price ($4/h: $20/h against $8/h) scales every ratio by 8/20, which
        // brings the longest context's below 1 → does not hold, and the check names it
        Assert.Equal(ClaimStatus.Holds, claims["throughput-per-dollar"].Status);
        var c = good.Config with { Memory = DeviceSpec.H20(pricePerHour: 4.0) };
        var pricey = good with
        {
            Config = c,
            Best = c.Contexts.Select(n => new Comparison(ServingCostModel.AtBatchCap(c.Model, c.Homogeneous, n, c.BatchCap),
                ServingCostModel.AtBatchCap(c.Model, c.Offloaded, n, c.BatchCap))).ToList(),
        };
        Assert.Equal(good.Best[^1].Ratio * 8 / 20, pricey.Best[^1].Ratio, 9);
        Assert.True(pricey.Best[^1].Ratio < 1, $"{pricey.Best[^1].Ratio}");
        Assert.Equal(ClaimStatus.DoesNotHold, pricey.Claims()["throughput-per-dollar"].Status);
        Assert.Contains("throughput-per-dollar", Assert.Throws<ClaimCheckException>(() => pricey.Claims().Check()).Message);
        // a ratio that shrinks with context does not hold whatever its level
        var shrinking = good with { Best = good.Best.Reverse().ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, shrinking.Claims()["throughput-per-dollar"].Status);
        Assert.Contains(shrinking.Claims().Failures, f => f.Id == "throughput-per-dollar");

        // link bytes that grow with n: the O(d) claim fails
        var growing = good with { Offload = good.Offload.Select(
            p => p with { NetworkBytesPerToken = p.Context * 4.0, FormulaBytesPerToken = p.Context * 4.0 }).ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, growing.Claims()["link-traffic-o-d"].Status);
        Assert.Contains(growing.Claims().Failures, f => f.Id == "link-traffic-o-d");

        // the probe slope is a timing: outside the band it changes status but never fails the check
        var slow = good with { Fit = new ProbeFit(1.6, 1, 0, 5) };
        Assert.Equal(ClaimStatus.DoesNotHold, slow.Claims()["attention-bandwidth-bound"].Status);
        Assert.Empty(slow.Claims().Failures);
    }

    static IReadOnlyList<ClaimRecord> Fails(OffloadingResult r) => r.Claims().Failures;
}
