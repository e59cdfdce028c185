using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.VAttention;

/// <summary>Everything <see cref="VAttentionExperiment.Run"/> computed: simulator runs, the attention benchmark, the decode memory trace.</summary>
public sealed record VAttentionResult(VAttentionExperiment.Config Config, RequestTrace Trace, IReadOnlyList<SimulationRun> Runs,
    IReadOnlyList<BenchRow> Bench, IReadOnlyList<DecodeMemoryStep> Decode, double SimulationSeconds, double Seconds)
{
    const double GB = 1e9;

    /// <summary>The run of the policy equal to <paramref name="policy"/>.</summary>
    public SimulationRun Of(MemoryPolicy policy) => Runs.First(r => r.Policy == policy);

    /// <summary>One row per policy with every simulator metric (memory in GB = 10⁹ B).</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("policy", Runs.Select(r => r.Name)),
        new Int32DataFrameColumn("max_batch", Runs.Select(r => r.MaxBatch)),
        new DoubleDataFrameColumn("mean_batch", Runs.Select(r => r.MeanBatch)),
        new Int64DataFrameColumn("fits_at_median_len", Runs.Select(r => r.CapacityAtMedian)),
        new DoubleDataFrameColumn("fragmentation", Runs.Select(r => r.MeanFragmentation)),
        new DoubleDataFrameColumn("wasted_gb", Runs.Select(r => r.MeanWastedBytes / GB)),
        new DoubleDataFrameColumn("reclaimable_gb", Runs.Select(r => r.MeanReclaimableBytes / GB)),
        new DoubleDataFrameColumn("peak_reserved_gb", Runs.Select(r => r.PeakReserved / GB)),
        new DoubleDataFrameColumn("utilisation", Runs.Select(r => r.MeanUtilisation)),
        new DoubleDataFrameColumn("virtual_gb", Runs.Select(r => r.VirtualBytes / GB)),
        new Int64DataFrameColumn("alloc_events", Runs.Select(r => r.AllocationCalls)),
        new DoubleDataFrameColumn("alloc_events_per_step", Runs.Select(r => r.AllocationCallsPerStep)),
        new Int64DataFrameColumn("free_events", Runs.Select(r => r.FreeCalls)),
        new Int32DataFrameColumn("preemptions", Runs.Select(r => r.Preemptions)),
        new Int32DataFrameColumn("iterations", Runs.Select(r => r.Makespan)));

    /// <summary>The attention benchmark: phase, n, method, block, median µs, max |Δ| vs contiguous, bytes used and held.</summary>
    public DataFrame BenchFrame() => new(
        new StringDataFrameColumn("phase", Bench.Select(r => r.Phase)),
        new Int32DataFrameColumn("n", Bench.Select(r => r.SeqLen)),
        new StringDataFrameColumn("method", Bench.Select(r => r.Method)),
        new Int32DataFrameColumn("block", Bench.Select(r => r.BlockTokens)),
        new DoubleDataFrameColumn("median_us", Bench.Select(r => r.MedianUs)),
        new DoubleDataFrameColumn("vs_contiguous", Bench.Select(r => r.MedianUs / Contiguous(r).MedianUs)),
        new DoubleDataFrameColumn("max_abs_vs_contiguous", Bench.Select(r => r.MaxAbsVsContiguous)),
        new Int64DataFrameColumn("used_bytes", Bench.Select(r => r.UsedBytes)),
        new Int64DataFrameColumn("held_bytes", Bench.Select(r => r.HeldBytes)));

    /// <summary>KV bytes per decode step: used, paged (allocated blocks, whole pool), vAttention pages (computed), full reservation.</summary>
    public DataFrame DecodeFrame() => new(
        new Int32DataFrameColumn("step", Decode.Select(d => d.Step)),
        new Int64DataFrameColumn("used", Decode.Select(d => d.UsedBytes)),
        new Int64DataFrameColumn("paged_allocated", Decode.Select(d => d.PagedAllocatedBytes)),
        new Int64DataFrameColumn("paged_pool", Decode.Select(d => d.PagedPoolBytes)),
        new Int64DataFrameColumn("vattention_mapped", Decode.Select(d => d.VirtualMappedBytes)),
        new Int64DataFrameColumn("full_reservation", Decode.Select(d => d.FullBytes)),
        new DoubleDataFrameColumn("max_abs_paged_vs_contiguous", Decode.Select(d => d.MaxAbsPagedVsContiguous)));

    BenchRow Contiguous(BenchRow r) => Bench.First(c => c.Phase == r.Phase && c.SeqLen == r.SeqLen && c.Method == DecodeAttentionBench.ContiguousName);

    /// <summary>Used and held (reserved − reclaimable) memory over the trace for static, paged-16, and vAttention 2 MB / 64 KB.</summary>
    public GenericChart MemoryOverTime()
    {
        var chosen = Runs.Where(r => r.Policy is StaticPolicy || r.Policy == MemoryPolicy.Paged(16)
            || r.Policy == MemoryPolicy.Virtual(PageMath.Page2MiB) || r.Policy == MemoryPolicy.Virtual(PageMath.Page64KiB)).ToList();
        var series = chosen.SelectMany(r => new[]
        {
            new Series($"{r.Name}: held", r.Steps.Select(s => (double)s.Step).ToArray(), r.Steps.Select(s => s.HeldBytes / GB).ToArray()),
            new Series($"{r.Name}: used", r.Steps.Select(s => (double)s.Step).ToArray(), r.Steps.Select(s => s.UsedBytes / GB).ToArray()),
        });
        return Charts.Lines(series, $"KV memory over the trace ({Trace.Requests.Count} requests, budget {Config.Budget.KvBytes / GB:F0} GB) — simulated",
            "iteration", "GB", markers: false);
    }

    /// <summary>Most requests running at once, per policy (bars).</summary>
    public GenericChart MaxBatchBars() => Charts.Bars(Runs.Select(r => r.Name).ToArray(), Runs.Select(r => (double)r.MaxBatch).ToArray(),
        $"Max concurrent batch on the trace (cap {Config.MaxBatch}) — simulated", "requests");

    /// <summary>Mean fragmentation (1 − used/reserved) per policy (bars, log scale).</summary>
    public GenericChart FragmentationBars() => Charts.Bars(Runs.Select(r => r.Name).ToArray(), Runs.Select(r => 100 * r.MeanFragmentation).ToArray(),
        "Memory held for running requests but holding no token (mean %) — simulated", "% of held", logY: true);

    /// <summary>Decode attention µs vs n: contiguous vs paged gather / block loop per block size (measured).</summary>
    public GenericChart DecodeLatency(string phase = "decode")
    {
        var rows = Bench.Where(r => r.Phase == phase).ToList();
        var series = rows.GroupBy(r => r.BlockTokens == 0 ? r.Method : $"{r.Method}, β={r.BlockTokens}")
            .Select(g => new Series(g.Key, g.Select(r => (double)r.SeqLen).ToArray(), g.Select(r => r.MedianUs).ToArray()));
        return Charts.Lines(series, $"Decode attention, batch {Config.BenchBatch} × {Config.Heads} heads × d {Config.HeadDim} (measured, TorchSharp)",
            "n (longest sequence)", "µs per step", logX: true, logY: true);
    }

    /// <summary>KV bytes per decode step: used vs what each layout holds (measured for our caches; vAttention pages computed).</summary>
    public GenericChart DecodeBytes()
    {
        var x = Decode.Select(d => (double)d.Step).ToArray();
        return Charts.Lines(new[]
        {
            new Series("tokens (used)", x, Decode.Select(d => d.UsedBytes / 1024.0).ToArray()),
            new Series($"paged: blocks held (β={Config.DecodeBlockTokens})", x, Decode.Select(d => d.PagedAllocatedBytes / 1024.0).ToArray()),
            new Series("paged: whole pool", x, Decode.Select(d => d.PagedPoolBytes / 1024.0).ToArray()),
            new Series($"vAttention pages ({Config.DecodePageTokens} tokens, computed)", x, Decode.Select(d => d.VirtualMappedBytes / 1024.0).ToArray()),
            new Series("full max-length reservation", x, Decode.Select(d => d.FullBytes / 1024.0).ToArray()),
        }, "KV bytes held per decode step (4 sequences, one layer)", "decode step", "KiB", markers: false);
    }

    /// <summary>vAttention's slots × pages at the busiest step of the 256 KB run (first 64 slots): fill of each mapped page, −1 = unmapped.</summary>
    public GenericChart OccupancyHeatmap(MemoryPolicy? policy = null, int slots = 64)
    {
        var run = Of(policy ?? MemoryPolicy.Virtual(PageMath.Page256KiB));
        var snap = run.Occupancy ?? throw new ArgumentException($"{run.Name} has no occupancy snapshot (not a vAttention policy).", nameof(policy));
        var grid = snap.Grid().Take(slots).ToList();
        return Charts.Heatmap(grid, $"{run.Name}, iteration {snap.Step}: fill of each page ({snap.PageTokens} tokens; −1 = not mapped)",
            xLabels: Enumerable.Range(0, grid[0].Length).Select(j => j.ToString()).ToArray(),
            yLabels: Enumerable.Range(0, grid.Count).Select(s => $"slot {s}").ToArray(), xTitle: "page (per layer tensor)", yTitle: "slot");
    }

    /// <summary>
    /// The paper's memory claim at this size, and the exactness of our caches. vAttention with 64 KB pages: fragmentation within
    /// <paramref name="slack"/> of paged-16 and max batch ≥ 95 % of it, and far above static's; 2 MB pages waste more than 64 KB
    /// pages; deferred reclamation saves map calls; paged attention (gather and block loop) equals the contiguous one
    /// within <paramref name="tolerance"/>. Throws InvalidOperationException listing what failed.
    /// </summary>
    public string CheckClaim(double slack = 0.02, double tolerance = 1e-5)
    {
        var problems = new List<string>();
        var stat = Runs.First(r => r.Policy is StaticPolicy);
        var paged = Of(MemoryPolicy.Paged(16));
        var v64 = Of(MemoryPolicy.Virtual(PageMath.Page64KiB));
        var v2m = Of(MemoryPolicy.Virtual(PageMath.Page2MiB));
        var eager = Of(MemoryPolicy.Virtual(PageMath.Page64KiB, deferredReclaim: false));
        if (!(v64.MeanFragmentation <= paged.MeanFragmentation + slack))
            problems.Add($"vAttention-64KB fragmentation {v64.MeanFragmentation:P2} is not within {slack:P0} of paged-16's {paged.MeanFragmentation:P2}");
        if (!(v64.MaxBatch >= 0.95 * paged.MaxBatch))
            problems.Add($"vAttention-64KB max batch {v64.MaxBatch} is below 95 % of paged-16's {paged.MaxBatch}");
        if (!(v64.MaxBatch >= 2 * stat.MaxBatch))
            problems.Add($"vAttention-64KB max batch {v64.MaxBatch} is not ≥ 2× static's {stat.MaxBatch}");
        if (!(v2m.MeanFragmentation > v64.MeanFragmentation))
            problems.Add($"2 MB pages ({v2m.MeanFragmentation:P2}) do not waste more than 64 KB pages ({v64.MeanFragmentation:P2})");
        if (!(v64.AllocationCalls < eager.AllocationCalls))
            problems.Add($"deferred reclamation made {v64.AllocationCalls} map calls, not fewer than eager unmapping's {eager.AllocationCalls}");
        double worst = Bench.Max(r => r.MaxAbsVsContiguous), worstDecode = Decode.Max(d => d.MaxAbsPagedVsContiguous);
        if (!(worst <= tolerance) || !(worstDecode <= tolerance))
            problems.Add($"paged attention differs from contiguous by {Math.Max(worst, worstDecode):E2} > {tolerance:E0}");
        if (problems.Count > 0)
            throw new InvalidOperationException("The vAttention claim does not hold at this size: " + string.Join("; ", problems) + ".");
        return $"Claim holds (simulated memory, measured exactness): vAttention-64KB fragmentation {v64.MeanFragmentation:P2} vs paged-16 {paged.MeanFragmentation:P2}, " +
               $"2 MB pages {v2m.MeanFragmentation:P2}, static {stat.MeanFragmentation:P1}; max batch {v64.MaxBatch} vs paged {paged.MaxBatch} vs static {stat.MaxBatch}; " +
               $"map calls {v64.AllocationCalls:N0} deferred vs {eager.AllocationCalls:N0} eager; paged == contiguous to {Math.Max(worst, worstDecode):E1}.";
    }
}
