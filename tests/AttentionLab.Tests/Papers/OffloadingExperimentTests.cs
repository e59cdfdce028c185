using AttentionLab.Core;
using AttentionLab.Papers.AttentionOffloading;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's run with a tiny probe: tables and series have the right shape; the claim check reads well.</summary>
public class OffloadingExperimentTests(ITestOutputHelper output)
{
    static readonly OffloadingExperiment.Config Tiny = OffloadingExperiment.Config.Smoke with { ProbeContexts = new[] { 64, 256, 1024 }, ProbeRepeats = 1, ProbeFitFromContext = 256 };

    [Fact]
    public void RunProducesEveryTableAndSeries()
    {
        var r = OffloadingExperiment.Run(Tiny, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(r.ComparisonFrame().ToString());
        Assert.Equal(4, r.Split.Count);
        Assert.All(r.Split.Take(3), s => Assert.True(s.OutputMaxAbs <= 1e-5 && s.LseMaxAbs <= 1e-5, $"{s.Partition}: {s.OutputMaxAbs}, {s.LseMaxAbs}"));
        Assert.True(r.Split[3].OutputMaxAbs > 1e-3, "the plain average should be wrong");
        Assert.Equal(2 * Tiny.Contexts.Length * Tiny.BatchCaps.Length, r.Grid.Count);
        Assert.Equal(Tiny.Contexts.Length, r.Best.Count);
        Assert.Equal(Tiny.AttentionDeviceCounts.Length, r.DeviceSweep.Count);
        Assert.Equal(2 * Tiny.Contexts.Length, r.ToDataFrame().Rows.Count);
        Assert.True(r.Best[^1].Ratio > 1 && r.Best[^1].Ratio > r.Best[0].Ratio, $"ratio {r.Best[0].Ratio} → {r.Best[^1].Ratio}");
        Assert.All(r.Best, c => Assert.True(c.Homogeneous.Fits && c.Offloaded.Fits));
        // the probe: one point per length, bytes = 2 (K and V) · B · n · H · D · 4 B
        Assert.Equal(Tiny.ProbeContexts, r.Probe.Select(p => p.Context));
        Assert.All(r.Probe, p => Assert.Equal(2L * Tiny.ProbeBatch * p.Context * Tiny.ProbeHeads * Tiny.ProbeHeadDim * 4, p.KvBytes));
        Assert.Equal(Tiny.ProbeContexts.Length, r.ProbeFrame().Rows.Count);
        Assert.Equal(new bool?[] { false, true, true }, ((Microsoft.Data.Analysis.BooleanDataFrameColumn)r.ProbeFrame()["in_fit"]).ToArray());
        Assert.Equal("config", Assert.Throws<ArgumentException>(() => OffloadingExperiment.Run(Tiny with { ProbeFitFromContext = 1000 }, torch.CPU)).ParamName);
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

    [Fact]
    public void ClaimCheckThrowsAReadableMessage()
    {
        var r = OffloadingExperiment.Run(Tiny with { ProbeContexts = new[] { 16, 32 }, ProbeFitFromContext = 0 }, torch.CPU);
        var good = r with { Fit = new ProbeFit(1.0, 1, 0, 5) };
        Assert.StartsWith("Claim holds", good.CheckClaim());
        Assert.Contains("reported, not asserted", (r with { Fit = new ProbeFit(0.3, 1, 0, 5) }).CheckClaim());          // a timing outside the range is reported, not thrown
        var flipped = good with { Best = good.Best.Reverse().ToList() };
        Assert.Contains("does not grow with context", Assert.Throws<InvalidOperationException>(() => flipped.CheckClaim()).Message);
        var broken = good with { Split = good.Split.Select((s, i) => i == 2 ? s with { OutputMaxAbs = 0.1 } : s).ToList() };
        Assert.Contains("by sequence", Assert.Throws<InvalidOperationException>(() => broken.CheckClaim()).Message);
        Assert.NotNull(good.TimeBreakdownChart());
        Assert.NotNull(good.RatioHeatmap());
        Assert.NotNull(good.RatioChart());
        Assert.NotNull(good.BatchSweepChart());
        Assert.NotNull(good.DeviceSweepChart());
        Assert.NotNull(good.TrafficChart());
        Assert.NotNull(good.ProbeChart());
    }
}
