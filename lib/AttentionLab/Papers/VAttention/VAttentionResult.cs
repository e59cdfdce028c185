using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.VAttention;

/// <summary>One page-arithmetic value: what <see cref="PageMath"/>/<see cref="KvGeometry"/> give and the hand formula's value.</summary>
public sealed record PageCheck(string What, long Library, long ByHand);

/// <summary>One layout's decode attention against the naive per-sequence form on toy tensors.</summary>
public sealed record FormCheck(string Form, ErrorStats Error);

/// <summary>The exactness phase (<see cref="VAttentionExperiment.Exactness"/>).</summary>
public sealed record VAttentionExactness(IReadOnlyList<PageCheck> Arithmetic, IReadOnlyList<FormCheck> Forms)
{
    /// <summary>Spec §6: length-masked attention on a padded slot equals attention on the exact-length tensor to 1e-6.</summary>
    public const double Tolerance = 1e-6;

    /// <summary>Columns: form, max_abs_vs_naive, rms_relative.</summary>
    public DataFrame ToDataFrame() => Tables.From(Forms.Select(f => new
        {
            f.Form,
            MaxAbsVsNaive = f.Error.MaxAbs,
            f.Error.RmsRelative,
        }));

    /// <summary>Columns: what, library, by_hand.</summary>
    public DataFrame ArithmeticFrame() => Tables.From(Arithmetic.Select(a => new { a.What, a.Library, a.ByHand }));
}

/// <summary>The simulator's books, checked at every step of every run (spec §6).</summary>
/// <param name="Steps">steps checked (all policies).</param>
/// <param name="ConservationViolations">steps where used ≤ held ≤ reserved ≤ budget fails.</param>
/// <param name="StaticWasteGap">largest |static waste − Σ(max_ctx − len)·bytes/token| in bytes.</param>
/// <param name="BoundViolations">steps where a paged run wastes more than running·(β − 1) tokens or a vAttention run more than running × the page
/// bound.</param>
/// <param name="WorstBoundShare">largest waste / bound over the paged and vAttention steps (≤ 1 when the bounds hold).</param>
public sealed record SimulatorAccounting(int Steps, int ConservationViolations, long StaticWasteGap, int BoundViolations, double WorstBoundShare);

/// <summary>Everything <see cref="VAttentionExperiment.Run"/> computed: simulator runs, the attention benchmark, the decode memory trace.</summary>
public sealed record VAttentionResult(VAttentionExperiment.Config Config, RequestTrace Trace, IReadOnlyList<SimulationRun> Runs,
    IReadOnlyList<BenchRow> Bench, IReadOnlyList<DecodeMemoryStep> Decode, double SimulationSeconds, double Seconds) : IPaperResult
{
    const double GB = 1e9;

    /// <summary>The exactness phase's measurements.</summary>
    public VAttentionExactness Exactness { get; init; } = new(Array.Empty<PageCheck>(), Array.Empty<FormCheck>());

    /// <summary>Conservation and waste bounds over every simulated step (computed from <see cref="Runs"/>).</summary>
    public SimulatorAccounting Accounting()
    {
        var g = Config.Geometry;
        int steps = 0, conservation = 0, bounds = 0;
        long staticGap = 0;
        double worst = 0;
        foreach (var run in Runs)
            foreach (var s in run.Steps)
            {
                steps++;
                if (!(s.UsedBytes <= s.HeldBytes && s.HeldBytes <= s.ReservedBytes && s.ReservedBytes <= run.BudgetBytes
                    && s.ReclaimableBytes >= 0)) conservation++;
                long? bound = run.Policy switch
                {
                    StaticPolicy p => null,
                    PagedPolicy p => s.Running * (p.BlockTokens - 1L) * g.BytesPerToken,
                    VirtualPolicy p => s.Running * PageMath.FragmentationBoundBytes(g, p.PageBytes),
                    _ => null,
                };
                if (run.Policy is StaticPolicy st)
                    staticGap = Math.Max(staticGap, Math.Abs(s.WastedBytes - (s.Running * (long)st.MaxContext * g.BytesPerToken - s.UsedBytes)));
                else if (bound is long b)
                {
                    if (s.WastedBytes > b) bounds++;
                    if (b > 0) worst = Math.Max(worst, s.WastedBytes / (double)b);
                }
            }
        return new SimulatorAccounting(steps, conservation, staticGap, bounds, worst);
    }

    /// <summary>The run of the policy equal to <paramref name="policy"/>.</summary>
    public SimulationRun Of(MemoryPolicy policy) => Runs.First(r => r.Policy == policy);

    /// <summary>One row per policy with every simulator metric (memory in GB = 10⁹ B).</summary>
    public DataFrame ToDataFrame() => Tables.From(Runs.Select(r => new
        {
            Policy = r.Name,
            r.MaxBatch,
            r.MeanBatch,
            FitsAtMedianLen = r.CapacityAtMedian,
            Fragmentation = r.MeanFragmentation,
            WastedGb = r.MeanWastedBytes / GB,
            ReclaimableGb = r.MeanReclaimableBytes / GB,
            PeakReservedGb = r.PeakReserved / GB,
            Utilisation = r.MeanUtilisation,
            VirtualGb = r.VirtualBytes / GB,
            AllocEvents = r.AllocationCalls,
            AllocEventsPerStep = r.AllocationCallsPerStep,
            FreeEvents = r.FreeCalls,
            r.Preemptions,
            Iterations = r.Makespan,
        }));

    /// <summary>The attention benchmark: phase, n, method, block, median µs, max |Δ| vs contiguous, bytes used and held.</summary>
    public DataFrame BenchFrame() => Tables.From(Bench.Select(r => new
        {
            r.Phase,
            N = r.SeqLen,
            r.Method,
            Block = r.BlockTokens,
            r.MedianUs,
            VsContiguous = r.MedianUs / Contiguous(r).MedianUs,
            r.MaxAbsVsContiguous,
            r.UsedBytes,
            r.HeldBytes,
        }));

    /// <summary>KV bytes per decode step: used, paged (allocated blocks, whole pool), vAttention pages (computed), full reservation.</summary>
    public DataFrame DecodeFrame() => Tables.From(Decode.Select(d => new
        {
            d.Step,
            Used = d.UsedBytes,
            PagedAllocated = d.PagedAllocatedBytes,
            PagedPool = d.PagedPoolBytes,
            VattentionMapped = d.VirtualMappedBytes,
            FullReservation = d.FullBytes,
            d.MaxAbsPagedVsContiguous,
        }));

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

    /// <summary>The largest value; NaN when any value is NaN or there is none (Enumerable.Max skips NaN).</summary>
    static double Worst(IEnumerable<double> values)
    {
        var list = values.ToList();
        return list.Count == 0 || list.Any(double.IsNaN) ? double.NaN : list.Max();
    }

    /// <summary>Median µs of <paramref name="method"/> (block size <paramref name="block"/>, 0 for contiguous) in <paramref name="phase"/> at n.</summary>
    public double Micros(string phase, int n, string method, int block = 0) =>
        Bench.First(r => r.Phase == phase && r.SeqLen == n && r.Method == method && r.BlockTokens == block).MedianUs;

    /// <summary>
    /// The claims. Exactness: the page arithmetic (spec §2 example); contiguous, gather, block loop and a reused slot equal
    /// the naive per-sequence form (spec §6, 1e-6); paged equals contiguous in the benchmark and at every decode step; the
    /// simulator's books (used ≤ held ≤ reserved ≤ budget, static waste = Σ(max_ctx − len), waste within the page and block
    /// bounds). Claims (the simulation): small pages match paged-16's memory efficiency; 2 MB pages waste more; dynamic
    /// allocation fits ≥ 2× the static batch; deferred reclamation maps less. Reported (measured, never asserted): decode
    /// over the contiguous cache vs the paged-aware block loop (the paper's decode claim) and vs gather (the paging tax),
    /// and prefill.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(VAttentionExperiment.Paper.Number, Config.Size);
        var x = Exactness;
        var wrong = x.Arithmetic.Where(a => a.Library != a.ByHand).ToList();
        var p2 = x.Arithmetic.FirstOrDefault(a => a.What.StartsWith("tokens per 2 MiB"));
        claims.Exactness("page-arithmetic",
            "tokens per page, KV bytes per token, the page-count ceiling and the fragmentation bound follow the spec's formulas",
            $"{x.Arithmetic.Count - wrong.Count} of {x.Arithmetic.Count} values equal the hand formulas (2 MiB page = {p2?.Library} tokens)"
                + (wrong.Count > 0 ? $"; differ: {string.Join(", ", wrong.Select(w => w.What))}" : ""),
            "every value equal (spec §2: 2 MB / (8·128·2 B) = 1024 tokens; 128 KB per token)", x.Arithmetic.Count > 0 && wrong.Count == 0,
            "spec §2 worked example");
        double formWorst = Worst(x.Forms.Select(f => f.Error.MaxAbs));
        claims.Exactness("layouts-equal-naive",
            "contiguous slots, paged gather, paged block loop and a reused slot equal attention on each sequence's exact-length keys",
            $"max |Δ| {Num.Sci(formWorst)} over {x.Forms.Count} forms (lengths 5, 17, 33, 1; a slot refilled with 3 tokens over 17 stale ones)",
            $"≤ {Num.Sci(VAttentionExactness.Tolerance, 0)} (spec §6)", x.Forms.Count == 4 && formWorst <= VAttentionExactness.Tolerance);
        double benchWorst = Worst(Bench.Select(r => r.MaxAbsVsContiguous)), decodeWorst = Worst(Decode.Select(d => d.MaxAbsPagedVsContiguous));
        double gatherWorst = Worst(Bench.Where(r => r.Method == DecodeAttentionBench.GatherName).Select(r => r.MaxAbsVsContiguous));
        claims.Exactness("paged-equals-contiguous",
            "paged attention (gather and block loop) equals contiguous attention at every benchmark size and decode step",
            $"gather {Num.Sci(gatherWorst)}, worst of both {Num.Sci(benchWorst)} over {Bench.Count} benchmark rows; {Num.Sci(decodeWorst)} over " +
            $"{Decode.Count} decode steps (float32)",
            "≤ 1e-5 (spec §6: exact in float32 for the gather; the block loop reorders the sums)", benchWorst <= 1e-5 && decodeWorst <= 1e-5);
        var acc = Accounting();
        claims.Exactness("simulator-accounting",
            "the simulator's books: used ≤ held ≤ reserved ≤ budget, static waste = Σ(max_ctx − len), paged and vAttention waste within their bounds",
            $"{acc.Steps:N0} steps: {acc.ConservationViolations} conservation violations, static gap {acc.StaticWasteGap} B, {acc.BoundViolations} bound " +
            $"violations (worst waste {acc.WorstBoundShare:P0} of its bound)",
            "no violation, gap 0 (spec §6)", acc.Steps > 0 && acc.ConservationViolations == 0 && acc.StaticWasteGap == 0 && acc.BoundViolations == 0);

        var stat = Runs.First(r => r.Policy is StaticPolicy);
        var paged = Of(MemoryPolicy.Paged(16));
        var v64 = Of(MemoryPolicy.Virtual(PageMath.Page64KiB));
        var v2m = Of(MemoryPolicy.Virtual(PageMath.Page2MiB));
        var eager = Of(MemoryPolicy.Virtual(PageMath.Page64KiB, deferredReclaim: false));
        string sim = $"simulated, {Trace.Requests.Count} requests, {Config.Budget.KvBytes / GB:F0} GB of KV budget";
        bool parity = v64.MeanFragmentation <= paged.MeanFragmentation + 0.02 && v64.MaxBatch >= 0.95 * paged.MaxBatch;
        claims.Claim("memory-parity-small-pages",
            "with small pages vAttention's dynamic memory is as efficient as PagedAttention's, while every request stays contiguous",
            "64–256 KB pages (modified UVM driver) avoid the 2 MB pages' fragmentation (paper §5); spec §7 toy: fragmentation close to paged allocation with " +
            "small pages",
            $"{sim}: vAttention-64 KB fragmentation {v64.MeanFragmentation:P2} ({v64.MeanWastedBytes / GB:F2} GB wasted on average), max batch " +
            $"{v64.MaxBatch}; paged-16 {paged.MeanFragmentation:P2} ({paged.MeanWastedBytes / GB:F2} GB), max batch {paged.MaxBatch}",
            "fragmentation ≤ paged-16's + 2 points and max batch ≥ 95 % of paged-16's [ours: the spec says \"close\"]", parity, asserted: true);
        bool bigPages = v2m.MeanFragmentation > v64.MeanFragmentation;
        claims.Claim("large-pages-fragment", "stock 2 MB pages waste more memory than small pages (up to page_tokens − 1 rows per layer tensor)",
            "2 MB page = 1024 tokens of one layer tensor: up to 1023 wasted per request and buffer (spec §2, from the paper)",
            $"{sim}: fragmentation 2 MB {v2m.MeanFragmentation:P2} ({v2m.MeanWastedBytes / GB:F2} GB) vs 64 KB {v64.MeanFragmentation:P2}; max batch " +
            $"{v2m.MaxBatch} vs {v64.MaxBatch}",
            "2 MB fragmentation > 64 KB fragmentation (spec §2)", bigPages, asserted: true);
        bool dynamic = v64.MaxBatch >= 2 * stat.MaxBatch;
        claims.Claim("dynamic-beats-static", "allocating on demand fits far more requests than reserving the maximum length up front",
            "static reservation (Orca, FasterTransformer) wastes memory to over-reservation (paper §2)",
            $"{sim}: max batch vAttention-64 KB {v64.MaxBatch} vs static {stat.MaxBatch}; static fragmentation {stat.MeanFragmentation:P1}",
            "≥ 2 × static's max batch [ours: the spec names no factor]", dynamic, asserted: true);
        bool deferred = v64.AllocationCalls < eager.AllocationCalls && v64.MaxBatch >= eager.MaxBatch;
        claims.Claim("deferred-reclaim-fewer-maps",
            "deferred reclamation reuses a finished request's pages and so needs fewer page mappings, at no cost in batch",
            "deferred reclamation and eager allocation hide or avoid most mapping calls (paper §6)",
            $"{sim}: {v64.AllocationCalls:N0} map calls deferred vs {eager.AllocationCalls:N0} eager " +
            $"({1 - (double)v64.AllocationCalls / eager.AllocationCalls:P0} fewer); max batch {v64.MaxBatch} vs {eager.MaxBatch}",
            "fewer map calls and no smaller max batch [ours: the spec names no factor]", deferred, asserted: true);

        var decodeNs = Bench.Where(r => r.Phase == "decode").Select(r => r.SeqLen).Distinct().OrderBy(n => n).ToList();
        if (decodeNs.Count == 0 || Config.BlockSizes.Length == 0)
            claims.NotShown("decode-vs-paged-kernel",
                "decode attention over the contiguous cache is at least as fast as a paged-aware kernel at equal batch and context",
                "decode up to 1.97× faster than vLLM (paper abstract)", "no benchmark rows", "contiguous ≤ paged block loop", "the benchmark did not run",
                ClaimKind.Reported);
        else
        {
            int top = decodeNs[^1], beta = Config.BlockSizes.Min();
            string Ratios(string method) => string.Join(", ",
                decodeNs.Select(n => $"{n}: {Micros("decode", n, method, beta) / Micros("decode", n, DecodeAttentionBench.ContiguousName):F2}×"));
            double contiguous = Micros("decode", top, DecodeAttentionBench.ContiguousName),
                blocks = Micros("decode", top, DecodeAttentionBench.BlocksName, beta),
                gather = Micros("decode", top, DecodeAttentionBench.GatherName, beta);
            string shape = $"batch {Config.BenchBatch} × {Config.Heads} heads × d {Config.HeadDim}, float32, β = {beta}, median of {Config.Repeats} " +
                "interleaved";
            claims.Reported("decode-vs-paged-kernel",
                "decode attention over the contiguous cache (an unmodified kernel) is at least as fast as a paged-aware kernel at equal batch and context",
                "decode up to 1.97× faster than vLLM (paper abstract)",
                $"n = {top}: contiguous {contiguous:F0} µs, paged block loop {blocks:F0} µs ({blocks / contiguous:F2}×); block loop / contiguous by n: " +
                $"{Ratios(DecodeAttentionBench.BlocksName)} ({shape})",
                $"contiguous ≤ block loop at n = {top} [paper: parity or better]", contiguous <= blocks,
                note: "reference attention in TorchSharp on a shared CPU, not FlashAttention vs vLLM's kernel: reported, never asserted");
            claims.Reported("decode-gather-tax", "a non-paged kernel on a paged cache must first gather the blocks: a measurable tax",
                "prefill up to 3.92× faster than the paged FlashAttention kernel (paper abstract); spec §7 toy: a measurable gather tax",
                $"n = {top}: paged gather {gather:F0} µs vs contiguous {contiguous:F0} µs ({gather / contiguous:F2}×); by n: " +
                $"{Ratios(DecodeAttentionBench.GatherName)} ({shape})",
                $"gather slower than contiguous at n = {top} (spec §7)", gather > contiguous, note: "a timing on a shared CPU: reported, never asserted");
            var prefill = Bench.Where(r => r.Phase == "prefill").ToList();
            if (prefill.Count > 0)
            {
                int pn = prefill[0].SeqLen;
                double pc = Micros("prefill", pn, DecodeAttentionBench.ContiguousName), pb = Micros("prefill", pn, DecodeAttentionBench.BlocksName, beta),
                    pg = Micros("prefill", pn, DecodeAttentionBench.GatherName, beta);
                claims.Reported("prefill-vs-paged", "prefill attention over the contiguous cache is at least as fast as over the paged cache",
                    "prefill up to 3.92× faster than paged FlashAttention and 1.45× faster than FlashInfer's paged kernel (paper abstract)",
                    $"n = {pn}, last {Config.PrefillQueries} queries: contiguous {pc:F0} µs, block loop {pb:F0} µs ({pb / pc:F2}×), gather {pg:F0} µs " +
                    $"({pg / pc:F2}×)",
                    "contiguous ≤ both paged forms [paper: parity or better]", pc <= pb && pc <= pg,
                    note: "a timing on a shared CPU: reported, never asserted");
            }
        }

        claims.Saw($"In the simulation, static reservation holds {stat.MeanFragmentation:P0} of its memory empty and fits {stat.MaxBatch} requests at most; " +
            $"vAttention with 64 KB pages fits {v64.MaxBatch} at {v64.MeanFragmentation:P2} fragmentation, paged-16 {paged.MaxBatch} at " +
            $"{paged.MeanFragmentation:P2}, and 2 MB pages {v2m.MaxBatch} at {v2m.MeanFragmentation:P1}.");
        claims.Saw($"Deferred reclamation made {v64.AllocationCalls:N0} map calls against {eager.AllocationCalls:N0} when unmapping eagerly.");
        if (decodeNs.Count > 0 && Config.BlockSizes.Length > 0)
        {
            int top = decodeNs[^1];
            claims.Saw($"Measured decode at n = {top} on this machine: contiguous {Micros("decode", top, DecodeAttentionBench.ContiguousName):F0} µs; " +
                       string.Join("; ", Config.BlockSizes.Select(
                           b => $"β = {b}: gather {Micros("decode", top, DecodeAttentionBench.GatherName, b):F0} µs, block loop " +
                           $"{Micros("decode", top, DecodeAttentionBench.BlocksName, b):F0} µs")) + ".");
        }
        return claims;
    }
}
