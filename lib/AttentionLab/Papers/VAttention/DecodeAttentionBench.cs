using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.VAttention;

/// <summary>
/// One timed attention call: phase (decode: 1 query per sequence; prefill: the last Tq), method, block size, median µs, and its distance from the contiguous
/// result.
/// </summary>
public sealed record BenchRow(string Phase, int SeqLen, string Method, int BlockTokens, double MedianUs, double MaxAbsVsContiguous,
    long UsedBytes, long HeldBytes);

/// <summary>One decode step of the memory trace: bytes the tokens need, what each layout holds, and max |paged − contiguous|.</summary>
public sealed record DecodeMemoryStep(int Step, long UsedBytes, long PagedAllocatedBytes, long PagedPoolBytes, long VirtualMappedBytes,
    long FullBytes, double MaxAbsPagedVsContiguous);

/// <summary>
/// The real measurement behind the simulator: decode (and prefill) attention in TorchSharp over vAttention's contiguous
/// slots (<see cref="SlotKvCache"/>) vs the library's <see cref="PagedKvCache"/> read by gather or by a block loop.
/// Sequences of one batch have different lengths: n, n − n/(2B), … (down to ≈ n/2). Timings go to tables, never to asserts.
/// </summary>
public static class DecodeAttentionBench
{
    /// <summary>Method names in tables and plots.</summary>
    public const string ContiguousName = "contiguous (vAttention layout)", GatherName = "paged, gather", BlocksName = "paged, block loop";

    /// <summary>Lengths of the B sequences at size n: L_b = n − b·⌊n / 2B⌋.</summary>
    public static long[] Lengths(int n, int batch)
    {
        Guard.Positive(n, nameof(n)); Guard.Positive(batch, nameof(batch));
        return Enumerable.Range(0, batch).Select(b => (long)Math.Max(1, n - b * (n / (2 * batch)))).ToArray();
    }

    /// <summary>
    /// Times the three methods at each n in <paramref name="lengths"/> and each block size; then prefill of the last
    /// <paramref name="prefillQueries"/> tokens at the largest n. Random q, k, v (seed 0), float32.
    /// </summary>
    public static IReadOnlyList<BenchRow> Run(int[] lengths, int[] blockSizes, int batch, int heads, int kvHeads, int dim,
        int prefillQueries, int warmup, int repeats, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(blockSizes);
        ArgumentNullException.ThrowIfNull(device);
        if (lengths.Length == 0 || lengths.Any(n => n <= 0)) throw new ArgumentException("lengths must be non-empty and positive.", nameof(lengths));
        if (blockSizes.Length == 0 || blockSizes.Any(b => b <= 0)) throw new ArgumentException("blockSizes must be non-empty and positive.",
            nameof(blockSizes));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(kvHeads, nameof(kvHeads)); Guard.Positive(dim, nameof(dim));
        if (heads % kvHeads != 0) throw new ArgumentException($"heads {heads} must be a multiple of kvHeads {kvHeads}.", nameof(kvHeads));
        Guard.Positive(prefillQueries, nameof(prefillQueries)); Guard.Positive(repeats, nameof(repeats));
        var rows = new List<BenchRow>();
        using var noGrad = torch.no_grad();
        foreach (int n in lengths)
        {
            progress?.Report($"decode attention at n = {n}");
            rows.AddRange(Measure("decode", n, 1, blockSizes, batch, heads, kvHeads, dim, warmup, repeats, device));
        }
        int longest = lengths.Max();
        long shortest = Lengths(longest, batch).Min();
        int tq = (int)Math.Min(prefillQueries, shortest);
        progress?.Report($"prefill attention ({tq} queries per sequence) at n = {longest}");
        rows.AddRange(Measure("prefill", longest, tq, blockSizes, batch, heads, kvHeads, dim, warmup, repeats, device));
        return rows;
    }

    /// <summary>
    /// Every method at one size on the same q, k, v: contiguous, then gather and block loop per block size. After
    /// <paramref name="warmup"/> untimed calls of each, the timed calls go round-robin over the methods (repeat r of every
    /// method before repeat r + 1 of any), so load that comes and goes on a shared machine hits all methods alike; median.
    /// </summary>
    static IEnumerable<BenchRow> Measure(string phase, int n, int tq, int[] blockSizes, int batch, int heads, int kvHeads, int dim,
        int warmup, int repeats, Device device)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(0);
        var lens = Lengths(n, batch);
        var kv = lens.Select(l => (K: torch.randn(l, kvHeads, dim, device: device), V: torch.randn(l, kvHeads, dim, device: device))).ToList();
        var q = torch.randn(batch, tq, heads, dim, device: device);
        using var slots = new SlotKvCache(batch, n, kvHeads, dim, dim, device: device);
        for (int b = 0; b < batch; b++) slots.Append(b, kv[b].K, kv[b].V);
        using var reference = DecodeAttention.Contiguous(slots, q);
        var caches = new List<PagedKvCache>();
        try
        {
            var methods = new List<(string Name, int Block, Action Run, double MaxAbs, long Used, long Held)>
            {
                (ContiguousName, 0, () => DecodeAttention.Contiguous(slots, q).Dispose(), 0, slots.Bytes, slots.ReservedBytes),
            };
            foreach (int beta in blockSizes)
            {
                var paged = new PagedKvCache(batch, kvHeads, dim, dim, beta, initialBlocks: (int)lens.Sum(l => PageMath.CeilDiv(l, beta)), device: device);
                caches.Add(paged);
                for (int b = 0; b < batch; b++) paged.Append(b, kv[b].K, kv[b].V);
                using var gathered = DecodeAttention.PagedGather(paged, q);
                var (blocks, _) = DecodeAttention.PagedBlocks(paged, q);
                methods.Add((GatherName, beta, () => DecodeAttention.PagedGather(paged, q).Dispose(), ErrorStats.Of(gathered.Output, reference.Output).MaxAbs,
                    paged.Bytes, paged.AllocatedBytes));
                methods.Add((BlocksName, beta, () => { using var s = NewDisposeScope(); DecodeAttention.PagedBlocks(paged, q); },
                    ErrorStats.Of(blocks, reference.Output).MaxAbs, paged.Bytes, paged.AllocatedBytes));
            }
            foreach (var m in methods) Benchmark.Time(m.Run, warmup: 0, repeats: Math.Max(1, warmup), device: device);
            var us = methods.Select(_ => new List<double>()).ToList();
            for (int r = 0; r < repeats; r++)
                for (int i = 0; i < methods.Count; i++)
                    us[i].Add(Benchmark.Time(methods[i].Run, warmup: 0, repeats: 1, device: device).MedianMs * 1000);
            return methods.Select((m, i) => new BenchRow(phase, n, m.Name, m.Block, Median(us[i]), m.MaxAbs, m.Used, m.Held)).ToList();
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }

    static double Median(List<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : 0.5 * (s[s.Count / 2 - 1] + s[s.Count / 2]);
    }

    /// <summary>
    /// Decodes <paramref name="steps"/> tokens for sequences starting at <paramref name="promptLengths"/>, appending the
    /// same random k, v to a slot cache (max_ctx = longest prompt + steps) and a paged cache (β = <paramref name="blockTokens"/>);
    /// each step records the bytes both hold and compares their attention outputs.
    /// </summary>
    public static IReadOnlyList<DecodeMemoryStep> DecodeMemory(long[] promptLengths, int steps, int blockTokens, int pageTokens,
        int heads, int dim, Device device)
    {
        ArgumentNullException.ThrowIfNull(promptLengths);
        ArgumentNullException.ThrowIfNull(device);
        if (promptLengths.Length == 0 || promptLengths.Any(l => l <= 0)) throw new ArgumentException("promptLengths must be non-empty and positive.",
            nameof(promptLengths));
        Guard.Positive(steps, nameof(steps)); Guard.Positive(blockTokens, nameof(blockTokens)); Guard.Positive(pageTokens, nameof(pageTokens));
        Guard.Positive(heads, nameof(heads)); Guard.Positive(dim, nameof(dim));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        int batch = promptLengths.Length;
        using var slots = new SlotKvCache(batch, (int)promptLengths.Max() + steps, heads, dim, dim, pageTokens, device: device);
        using var paged = new PagedKvCache(batch, heads, dim, dim, blockTokens, device: device);
        void Add(int b, long n)
        {
            using var s = NewDisposeScope();
            var (k, v) = (torch.randn(n, heads, dim, device: device), torch.randn(n, heads, dim, device: device));
            slots.Append(b, k, v);
            paged.Append(b, k, v);
        }
        for (int b = 0; b < batch; b++) Add(b, promptLengths[b]);
        var rows = new List<DecodeMemoryStep>();
        for (int t = 1; t <= steps; t++)
        {
            using var stepScope = NewDisposeScope();
            for (int b = 0; b < batch; b++) Add(b, 1);
            var q = torch.randn(batch, 1, heads, dim, device: device);
            using var contiguous = DecodeAttention.Contiguous(slots, q);
            using var gathered = DecodeAttention.PagedGather(paged, q);
            rows.Add(new DecodeMemoryStep(t, slots.Bytes, paged.AllocatedBytes, paged.PoolBytes, slots.MappedBytes, slots.ReservedBytes,
                ErrorStats.Of(gathered.Output, contiguous.Output).MaxAbs));
        }
        return rows;
    }
}
