using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.VAttention;

/// <summary>
/// The notebook's experiment (P44 §4): (a) the KV-memory simulator on a synthetic trace, Llama-3-8B geometry on an
/// 80 GB GPU, under static reservation, paged blocks and vAttention pages of several sizes; (b) the real TorchSharp
/// measurement of decode and prefill attention over a contiguous slot cache vs the paged cache, and the bytes both hold
/// during a short decode. Before both, an exactness phase on toy tensors (the page arithmetic, every layout against the
/// naive per-sequence form, a reused slot).
/// </summary>
public sealed class VAttentionExperiment : IPaperExperiment<VAttentionExperiment.Config, VAttentionResult>
{
    VAttentionExperiment() { }

    /// <summary>P44 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(44, "vAttention: dynamic KV memory without PagedAttention", "vattention");

    /// <summary>Sizes of one run. Smoke fits a CPU notebook in seconds; Full is the spec's GPU sweep (n up to 128k).</summary>
    public sealed record Config(KvGeometry Geometry, GpuBudget Budget, int MaxBatch, int MaxContext, int Requests,
        LengthDist PromptLen, LengthDist DecodeLen, double RatePerStep, int Seed, MemoryPolicy[] Policies,
        int[] BenchLengths, int[] BlockSizes, int BenchBatch, int Heads, int KvHeads, int HeadDim, int PrefillQueries,
        int Warmup, int Repeats, long[] DecodePrompts, int DecodeSteps, int DecodeBlockTokens, int DecodePageTokens) : IPaperConfig<Config>
    {
        /// <summary>The seven policies the spec compares (static; paged 16/256; vAttention 2 MB/256 KB/64 KB; 64 KB without deferred reclamation).</summary>
        public static MemoryPolicy[] SpecPolicies(int maxContext) => new[]
        {
            MemoryPolicy.Static(maxContext), MemoryPolicy.Paged(16), MemoryPolicy.Paged(256),
            MemoryPolicy.Virtual(PageMath.Page2MiB), MemoryPolicy.Virtual(PageMath.Page256KiB), MemoryPolicy.Virtual(PageMath.Page64KiB),
            MemoryPolicy.Virtual(PageMath.Page64KiB, deferredReclaim: false),
        };

        /// <summary>600 requests (long prompts, lognormal decodes); decode attention at n ≤ 2048 on the CPU.</summary>
        public static Config Smoke => new(KvGeometry.Llama3_8B, GpuBudget.A100_80GB_8B, MaxBatch: 256, MaxContext: 8192, Requests: 600,
            PromptLen: LengthDist.LogNormal(1500, 0.8, 32, 6000), DecodeLen: LengthDist.LogNormal(256, 1.0, 1, 2000), RatePerStep: 1.0, Seed: 0,
            Policies: SpecPolicies(8192), BenchLengths: new[] { 256, 512, 1024, 2048 }, BlockSizes: new[] { 16, 128 }, BenchBatch: 4,
            Heads: 8, KvHeads: 8, HeadDim: 64, PrefillQueries: 64, Warmup: 1, Repeats: 7,
            DecodePrompts: new long[] { 100, 37, 250, 5 }, DecodeSteps: 64, DecodeBlockTokens: 16, DecodePageTokens: 32) { Size = "smoke" };

        /// <summary>5,000 requests; decode attention up to n = 128k (GPU).</summary>
        public static Config Full => Smoke with
        {
            Requests = 5000, BenchLengths = new[] { 1024, 4096, 16384, 65536, 131072 }, BlockSizes = new[] { 16, 256, 1024 },
            BenchBatch = 4, HeadDim = 128, PrefillQueries = 512, Warmup = 2, Repeats = 11, DecodeSteps = 256, Size = "full",
        };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The trace this config describes.</summary>
        public RequestTrace Trace() => RequestTrace.Synthetic(Requests, PromptLen, DecodeLen, RatePerStep, Seed);

        /// <summary>Throws an ArgumentException naming the first bad field.</summary>
        public Config Validate()
        {
            ArgumentNullException.ThrowIfNull(Geometry); ArgumentNullException.ThrowIfNull(Budget);
            Geometry.Validate(); Budget.Validate();
            if (Policies is null || Policies.Length == 0) throw new ArgumentException("Policies must not be empty.", nameof(Policies));
            if (PromptLen.Max + DecodeLen.Max > MaxContext)
                throw new ArgumentException(
                    $"PromptLen.Max + DecodeLen.Max = {PromptLen.Max + DecodeLen.Max} exceeds MaxContext {MaxContext}.", nameof(MaxContext));
            if (DecodePrompts is null || DecodePrompts.Length == 0) throw new ArgumentException("DecodePrompts must not be empty.", nameof(DecodePrompts));
            return this;
        }
    }

    /// <summary>Runs the exactness phase, (a) and (b) on <paramref name="device"/>, one progress line per phase.</summary>
    public static VAttentionResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var exactness = Exactness(device);
        progress?.Report("exactness: " + string.Join(", ", exactness.Forms.Select(f => $"{f.Form} {f.Error.MaxAbs:E1}")));
        var trace = config.Trace();
        progress?.Report($"simulating {trace.Requests.Count} requests under {config.Policies.Length} policies");
        var simulator = new KvMemorySimulator(config.Budget, config.Geometry, config.MaxBatch, config.MaxContext);
        var runs = new List<SimulationRun>();
        foreach (var policy in config.Policies)
        {
            var run = simulator.Run(trace, policy);
            progress?.Report($"  {run.Name}: max batch {run.MaxBatch}, fragmentation {run.MeanFragmentation:P1}, {run.Makespan} iterations");
            runs.Add(run);
        }
        double simSeconds = clock.Elapsed.TotalSeconds;
        var bench = DecodeAttentionBench.Run(config.BenchLengths, config.BlockSizes, config.BenchBatch, config.Heads, config.KvHeads,
            config.HeadDim, config.PrefillQueries, config.Warmup, config.Repeats, device, progress);
        progress?.Report($"decoding {config.DecodeSteps} steps with both caches");
        var decode = DecodeAttentionBench.DecodeMemory(config.DecodePrompts, config.DecodeSteps, config.DecodeBlockTokens,
            config.DecodePageTokens, config.KvHeads, config.HeadDim, device);
        progress?.Report($"done in {clock.Elapsed.TotalSeconds:F1} s");
        return new VAttentionResult(config, trace, runs, bench, decode, simSeconds, clock.Elapsed.TotalSeconds) { Exactness = exactness };
    }

    /// <summary>
    /// The exactness phase. Page arithmetic of the spec's Llama-3-8B example against hand formulas (tokens per 2 MiB page,
    /// KV bytes per token, the page-count ceiling); then four sequences of lengths 5, 17, 33, 1 (two heads of width 7, one
    /// decode query each, float32) in a contiguous slot cache (page 8) and a paged cache (β = 8): contiguous, gather and
    /// block loop against the naive per-sequence form; and a reused slot — sequence 1 freed and refilled with 3 new tokens —
    /// against the naive form on exactly those 3 (its stale keys must be masked).
    /// </summary>
    public static VAttentionExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        var g = KvGeometry.Llama3_8B;
        long tokenRow = (long)g.KvHeads * g.HeadDim * g.DtypeBytes;                          // H_kv·D·bytes = 2048 B
        var arithmetic = new List<PageCheck>
        {
            new("tokens per 2 MiB page", PageMath.PageTokens(g, PageMath.Page2MiB), (2L << 20) / tokenRow),
            new("tokens per 64 KiB page", PageMath.PageTokens(g, PageMath.Page64KiB), (64L << 10) / tokenRow),
            new("KV bytes per token (Llama-3-8B)", g.BytesPerToken, 2L * 32 * 8 * 128 * 2),
        };
        foreach (long tokens in new long[] { 0, 1, 1024, 1025, 8191 })
            arithmetic.Add(new($"2 MiB pages per layer tensor at {tokens} tokens", PageMath.PagesPerTensor(g, PageMath.Page2MiB, tokens),
                (tokens + 1023) / 1024));
        arithmetic.Add(new("fragmentation bound per request, 2 MiB pages (bytes)", PageMath.FragmentationBoundBytes(g, PageMath.Page2MiB),
            2L * 32 * 1023 * tokenRow));

        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator((ulong)seed);
        long[] lens = { 5, 17, 33, 1 };
        var toyK = lens.Select(l => torch.randn(new long[] { l, 2, 7 }, generator: gen).to(device)).ToList();
        var toyV = lens.Select(l => torch.randn(new long[] { l, 2, 7 }, generator: gen).to(device)).ToList();
        using var slots = new SlotKvCache(4, 40, 2, 7, 7, pageTokens: 8, device: device);
        using var paged = new PagedKvCache(4, 2, 7, 7, blockSize: 8, device: device);
        for (int b = 0; b < 4; b++) { slots.Append(b, toyK[b], toyV[b]); paged.Append(b, toyK[b], toyV[b]); }
        var q = torch.randn(new long[] { 4, 1, 2, 7 }, generator: gen).to(device);
        var naive = VAttentionNaive.Decode(toyK.Zip(toyV, (k, v) => (k.unsqueeze(0), v.unsqueeze(0))).ToList(), q);
        using var contiguous = DecodeAttention.Contiguous(slots, q);
        using var gathered = DecodeAttention.PagedGather(paged, q);
        var forms = new List<FormCheck>
        {
            new("contiguous slots, length-masked", ErrorStats.Of(contiguous.Output, naive)),
            new("paged, gather then mask", ErrorStats.Of(gathered.Output, naive)),
            new("paged, block loop + LSE merge", ErrorStats.Of(DecodeAttention.PagedBlocks(paged, q).Output, naive)),
        };
        // slot reuse: the request in slot 1 ends; a new one of 3 tokens takes the slot (17 stale keys stay in the buffer)
        slots.Free(1);
        var newK = torch.randn(new long[] { 3, 2, 7 }, generator: gen).to(device);
        var newV = torch.randn(new long[] { 3, 2, 7 }, generator: gen).to(device);
        slots.Append(1, newK, newV);
        toyK[1] = newK; toyV[1] = newV;
        var naiveReused = VAttentionNaive.Decode(toyK.Zip(toyV, (k, v) => (k.unsqueeze(0), v.unsqueeze(0))).ToList(), q);
        using var reused = DecodeAttention.Contiguous(slots, q);
        forms.Add(new("reused slot (length cleared), contiguous", ErrorStats.Of(reused.Output, naiveReused)));
        return new VAttentionExactness(arithmetic, forms);
    }

    /// <summary>The page arithmetic for <paramref name="geometry"/>: per page size, tokens per page and the fragmentation bound per request.</summary>
    public static DataFrame PageSizes(KvGeometry geometry, params long[] pageBytes)
    {
        ArgumentNullException.ThrowIfNull(geometry);
        if (pageBytes is null || pageBytes.Length == 0) pageBytes = new[] { PageMath.Page64KiB, PageMath.Page128KiB, PageMath.Page256KiB, PageMath.Page2MiB };
        return new DataFrame(
            new Int64DataFrameColumn("page_kib", pageBytes.Select(p => p >> 10)),
            new Int64DataFrameColumn("bytes_per_token_per_tensor", pageBytes.Select(_ => geometry.BytesPerTokenPerTensor)),
            new Int64DataFrameColumn("tokens_per_page", pageBytes.Select(p => PageMath.PageTokens(geometry, p))),
            new DoubleDataFrameColumn("max_waste_per_request_mib", pageBytes.Select(p => PageMath.FragmentationBoundBytes(geometry, p) / 1048576.0)),
            new DoubleDataFrameColumn("max_waste_tokens_equiv", pageBytes.Select(p => (double)(PageMath.PageTokens(geometry, p) - 1))));
    }
}
