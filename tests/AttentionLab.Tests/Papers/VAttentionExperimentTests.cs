using AttentionLab.Core;
using AttentionLab.Papers.VAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once (shapes and claims), and a result built by hand whose claims cross their criteria.</summary>
public class VAttentionExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunMeetsItsClaims()
    {
        var config = VAttentionExperiment.Config.Smoke;
        var result = VAttentionExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.BenchFrame().ToString());
        Assert.Equal(config.Policies.Length, result.ToDataFrame().Rows.Count);
        Assert.Equal(config.DecodeSteps, result.DecodeFrame().Rows.Count);
        Assert.Equal((config.BenchLengths.Length + 1) * (1 + 2 * config.BlockSizes.Length), result.Bench.Count);
        Assert.All(result.Runs, r => Assert.Equal(config.Requests, r.Completed));
        Assert.Equal(4, result.Exactness.Forms.Count);
        Assert.All(result.Exactness.Arithmetic, a => Assert.Equal(a.ByHand, a.Library));
        Assert.Equal(4, result.Exactness.ToDataFrame().Rows.Count);
        Assert.NotNull(result.OccupancyHeatmap());
        Assert.NotNull(result.MemoryOverTime());
        Assert.NotNull(result.DecodeLatency());
        Assert.NotNull(result.DecodeBytes());
        Assert.NotNull(result.MaxBatchBars());
        Assert.Equal(1024L, VAttentionExperiment.PageSizes(KvGeometry.Llama3_8B)["tokens_per_page"][3]);

        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        output.WriteLine(claims.Findings().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        var acc = result.Accounting();
        Assert.Equal(result.Runs.Sum(r => r.Steps.Count), acc.Steps);
        Assert.InRange(acc.WorstBoundShare, 0, 1);
    }

    /// <summary>A small simulation (no torch), hand-made benchmark rows, decode steps and exactness.</summary>
    static VAttentionResult ByHand()
    {
        var c = VAttentionExperiment.Config.Smoke with
        {
            Budget = new GpuBudget(24_000_000_000, 16_000_000_000), MaxBatch = 64, MaxContext = 4096, Requests = 150,
            PromptLen = LengthDist.LogNormal(900, 0.9, 8, 3000), DecodeLen = LengthDist.LogNormal(120, 1.0, 1, 1000), RatePerStep = 2.0,
            Policies = VAttentionExperiment.Config.SpecPolicies(4096), BenchLengths = new[] { 256, 512 }, BlockSizes = new[] { 16 },
        };
        var trace = c.Trace();
        var sim = new KvMemorySimulator(c.Budget, c.Geometry, c.MaxBatch, c.MaxContext);
        var runs = c.Policies.Select(p => sim.Run(trace, p)).ToList();
        BenchRow Row(string phase, int n, string method, int block, double us) =>
            new(phase, n, method, block, us, method == DecodeAttentionBench.ContiguousName ? 0 : 1e-7, 0, 0);
        var bench = new[]
        {
            Row("decode", 256, DecodeAttentionBench.ContiguousName, 0, 100), Row("decode", 256, DecodeAttentionBench.GatherName, 16, 150),
            Row("decode", 256, DecodeAttentionBench.BlocksName, 16, 120),
            Row("decode", 512, DecodeAttentionBench.ContiguousName, 0, 200), Row("decode", 512, DecodeAttentionBench.GatherName, 16, 300),
            Row("decode", 512, DecodeAttentionBench.BlocksName, 16, 250),
            Row("prefill", 512, DecodeAttentionBench.ContiguousName, 0, 900), Row("prefill", 512, DecodeAttentionBench.GatherName, 16, 1200),
            Row("prefill", 512, DecodeAttentionBench.BlocksName, 16, 1000),
        };
        var decode = Enumerable.Range(1, 4).Select(t => new DecodeMemoryStep(t, 100, 200, 400, 150, 1000, 1e-7)).ToArray();
        var exact = new VAttentionExactness(new[] { new PageCheck("tokens per 2 MiB page", 1024, 1024),
            new PageCheck("KV bytes per token (Llama-3-8B)", 131072, 131072) },
            new[] { "contiguous", "gather", "blocks", "reused" }.Select(f => new FormCheck(f, new ErrorStats(1e-7, 1e-7, 10))).ToArray());
        return new VAttentionResult(c, trace, runs, bench, decode, 0, 0) { Exactness = exact };
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var good = ByHand();
        var claims = good.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Equal(new[] { "page-arithmetic", "layouts-equal-naive", "paged-equals-contiguous", "simulator-accounting", "memory-parity-small-pages",
            "large-pages-fragment", "dynamic-beats-static", "deferred-reclaim-fewer-maps", "decode-vs-paged-kernel", "decode-gather-tax", "prefill-vs-paged" },
            claims.Select(x => x.Id));
        Assert.Empty(claims.Failures);
        Assert.All(claims.Where(x => x.Kind == ClaimKind.Reported), x => Assert.Equal(ClaimStatus.Holds, x.Status));

        // exactness: a page count off by one, a layout off by 1e-5, paged ≠ contiguous at one decode step, a step using more than it holds
        Assert.Contains(
            (good with { Exactness = good.Exactness with { Arithmetic = new[] { new PageCheck("tokens per 2 MiB page", 1023, 1024) } } }).Claims().Failures,
            f => f.Id == "page-arithmetic");
        Assert.Contains((good with { Exactness = good.Exactness with { Forms = good.Exactness.Forms.Select(
            (f, i) => i == 3 ? f with { Error = new ErrorStats(1e-5, 1e-5, 10) } : f).ToArray() } }).Claims().Failures,
            f => f.Id == "layouts-equal-naive");
        Assert.Contains((good with { Decode = good.Decode.Select(
            (d, i) => i == 2 ? d with { MaxAbsPagedVsContiguous = double.NaN } : d).ToArray() }).Claims().Failures,
            f => f.Id == "paged-equals-contiguous");
        var v64 = MemoryPolicy.Virtual(PageMath.Page64KiB);
        var overdrawn = good with
        {
            Runs = good.Runs.Select(r => r.Policy == v64 ? r with { Steps = r.Steps.Select(
                (s, i) => i == 5 ? s with { UsedBytes = s.ReservedBytes + 1 } : s).ToList() } : r).ToList(),
        };
        Assert.Contains(overdrawn.Claims().Failures, f => f.Id == "simulator-accounting");

        // memory parity: vAttention-64 KB holding 10 % more than it needs at every step — fragmentation 2 points above paged's fails
        var wasteful = good with
        {
            Runs = good.Runs.Select(r => r.Policy == v64 ? r with { Steps = r.Steps.Select(
                s => s with { ReservedBytes = s.ReservedBytes + s.ReservedBytes / 10 + 1 }).ToList() } : r).ToList(),
        };
        Assert.Equal(ClaimStatus.DoesNotHold, wasteful.Claims()["memory-parity-small-pages"].Status);
        Assert.Contains("memory-parity-small-pages", Assert.Throws<ClaimCheckException>(() => wasteful.Claims().Check()).Message);
        // deferred reclamation that maps as often as eager unmapping does not hold
        var eager = MemoryPolicy.Virtual(PageMath.Page64KiB, deferredReclaim: false);
        var eagerCalls = good.Of(eager).AllocationCalls;
        var noSaving = good with
        {
            Runs = good.Runs.Select(r => r.Policy == v64 ? r with { Steps = r.Steps.Select(
                (s, i) => i == r.Steps.Count - 1 ? s with { AllocationCalls = eagerCalls } : s).ToList() } : r).ToList(),
        };
        Assert.Equal(ClaimStatus.DoesNotHold, noSaving.Claims()["deferred-reclaim-fewer-maps"].Status);

        // timings are reported: a slower contiguous kernel flips the decode and prefill records, never the check
        var slowContiguous = good with { Bench = good.Bench.Select(
            r => r.Method == DecodeAttentionBench.ContiguousName ? r with { MedianUs = r.MedianUs * 2 } : r).ToArray() };
        var slow = slowContiguous.Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, slow["decode-vs-paged-kernel"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, slow["decode-gather-tax"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, slow["prefill-vs-paged"].Status);
        Assert.Empty(slow.Failures);
    }
}
