using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// The notebook's experiment (P22 §4), training-free: an attention-level needle-in-a-haystack probe. Random keys and
/// values; the needle key u is planted at depth d in every head, and the last query is β·u. A variant retrieves the
/// needle when some head's output has cosine ≥ 0.9 with the needle's value — possible only if that head's pattern
/// reads the needle's block. Variants: dense, homogeneous stride, heterogeneous stride, hybrid (heterogeneous with the
/// last head dense, dkernel's num_dense_heads). The forward is the strided+local LSE form (dense: reference attention).
/// </summary>
public static class S2Experiment
{
    /// <summary>Sizes of one run.</summary>
    public sealed record Config(int[] Lengths, double[] Depths, int Heads, int HeadDim, int Block, int LocalBlocks, int VertStride,
        int Trials, double QueryGain, int TimingRepeats, int Seed)
    {
        /// <summary>n ≤ 512, b = 16, ℓ = 4, s = 4, H = 4 (spec smoke size).</summary>
        public static Config Smoke => new(new[] { 256, 512 }, Enumerable.Range(0, 10).Select(i => i / 10.0).ToArray(), 4, 32, 16, 4, 4, 4, 3.0, 2, 0);
        /// <summary>n up to 4k, b = 64, ℓ = 4, s = 8, H = 8 (spec full size).</summary>
        public static Config Full => new(new[] { 1024, 2048, 4096 }, Enumerable.Range(0, 20).Select(i => i / 20.0).ToArray(), 8, 64, 64, 4, 8, 16, 3.0, 5, 0);
        /// <summary>Smoke or Full.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
        public Config Validate()
        {
            if (Lengths is null || Lengths.Length == 0 || Lengths.Any(n => n <= 1)) throw new ArgumentException("Lengths must be non-empty and > 1.", nameof(Lengths));
            if (Depths is null || Depths.Length == 0 || Depths.Any(d => d < 0 || d >= 1)) throw new ArgumentException("Depths must be non-empty, in [0, 1).", nameof(Depths));
            Guard.Positive(Heads, nameof(Heads)); Guard.Positive(HeadDim, nameof(HeadDim)); Guard.Positive(Block, nameof(Block));
            Guard.Positive(LocalBlocks, nameof(LocalBlocks)); Guard.Positive(VertStride, nameof(VertStride)); Guard.Positive(Trials, nameof(Trials));
            Guard.Positive(TimingRepeats, nameof(TimingRepeats));
            return this;
        }
    }

    /// <summary>The four variants in plot order.</summary>
    public static readonly string[] Variants = { "dense", "homogeneous", "heterogeneous", "hybrid" };

    /// <summary>Variant's pattern (null = dense) at length n.</summary>
    public static BlockMask? Pattern(string variant, Config c, int n) => variant switch
    {
        "dense" => null,
        "homogeneous" => S2Pattern.LocalStride(c.Heads, n, c.Block, c.LocalBlocks, c.VertStride, homoHead: true),
        "heterogeneous" => S2Pattern.LocalStride(c.Heads, n, c.Block, c.LocalBlocks, c.VertStride),
        "hybrid" => S2Pattern.LocalStride(c.Heads, n, c.Block, c.LocalBlocks, c.VertStride, denseHeads: 1),
        _ => throw new ArgumentException($"unknown variant '{variant}'.", nameof(variant)),
    };

    static int?[]? Residues(string variant, Config c) => variant switch
    {
        "dense" => null,
        "homogeneous" => S2Pattern.Residues(c.Heads, c.VertStride, homoHead: true),
        "heterogeneous" => S2Pattern.Residues(c.Heads, c.VertStride),
        _ => S2Pattern.Residues(c.Heads, c.VertStride, denseHeads: 1),
    };

    /// <summary>Output [1, n, H, D] of the variant's fast form (dense: reference causal attention).</summary>
    public static Tensor Forward(string variant, Config c, Tensor q, Tensor k, Tensor v)
    {
        if (Residues(variant, c) is not { } r)
        {
            using var dense = ReferenceAttention.Softmax(q, k, v, causal: true);
            return dense.Output.alias();
        }
        var (o, l) = StridedLocalAttention.Forward(q, k, v, c.Block, c.LocalBlocks, c.VertStride, r);
        l.Dispose();
        return o;
    }

    /// <summary>Runs the probe over lengths × depths × variants, then the decode statistics; one progress line per length.</summary>
    public static S2Result Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var cells = new List<NeedleCell>();
        var summary = new List<VariantRow>();
        foreach (int n in config.Lengths)
        {
            foreach (var variant in Variants)
            {
                var hits = new double[config.Depths.Length];
                for (int di = 0; di < config.Depths.Length; di++)
                {
                    int pos = (int)Math.Floor(config.Depths[di] * (n - 1));
                    for (int trial = 0; trial < config.Trials; trial++)
                        hits[di] += Probe(variant, config, n, pos, config.Seed + 1000 * trial + di, device) ? 1 : 0;
                    hits[di] /= config.Trials;
                    cells.Add(new NeedleCell(variant, n, config.Depths[di], pos, hits[di]));
                }
                var pattern = Pattern(variant, config, n);
                double ms = Time(variant, config, n, device);
                summary.Add(new VariantRow(variant, n, hits.Average(), pattern?.Density(n) ?? 1.0,
                    pattern?.KvTokensPerHead(n).Average() ?? n, pattern?.Coverage() ?? 1.0, ms));
            }
            progress?.Report($"n = {n}: " + string.Join(", ", summary.Where(r => r.Length == n).Select(r => $"{r.Variant} {r.Accuracy:P0}")));
        }
        int longest = config.Lengths.Max();
        var decode = DecodeRows(Pattern("heterogeneous", config, longest)!, longest, config.HeadDim, config.Block);
        var masks = Variants.Skip(1).ToDictionary(v => v, v => Pattern(v, config, config.Lengths.Min())!);
        return new S2Result(config, cells, summary, decode, masks, clock.Elapsed);
    }

    static bool Probe(string variant, Config c, int n, int pos, int seed, Device device)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var k = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, generator: gen);
        var v = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, generator: gen);
        var u = torch.randn(new long[] { c.HeadDim }, generator: gen);
        u = u / u.norm() * Math.Sqrt(c.HeadDim);                                          // |u|² = D
        var q = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, generator: gen);
        k[0, pos] = u.expand(c.Heads, c.HeadDim);                                          // the needle, in every head
        q[0, n - 1] = (c.QueryGain * u).expand(c.Heads, c.HeadDim);                        // query = β·u: needle logit β√D
        var o = Forward(variant, c, q.to(device), k.to(device), v.to(device)).cpu()[0, n - 1];   // [H, D]
        var cos = nn.functional.cosine_similarity(o, v[0, pos], dim: -1);                  // per head
        return cos.max().item<float>() >= 0.9f;
    }

    static double Time(string variant, Config c, int n, Device device)
    {
        torch.manual_seed(c.Seed);
        using var q = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, device: device);
        return Benchmark.Time(() => { using var s = NewDisposeScope(); Forward(variant, c, q, q, q); }, warmup: 1, repeats: c.TimingRepeats, device: device).MedianMs;
    }

    /// <summary>
    /// Per decode step t (one row per block end): keys attended and KV bytes a cache must hold, summed over heads,
    /// for the pattern vs full attention (float32 K and V of D each per head).
    /// </summary>
    public static IReadOnlyList<DecodeRow> DecodeRows(BlockMask mask, int length, int headDim, int every)
    {
        ArgumentNullException.ThrowIfNull(mask);
        Guard.Positive(every, nameof(every));
        long perToken = 2L * headDim * sizeof(float);
        var rows = new List<DecodeRow>();
        for (int t = every - 1; t < length; t += every)
        {
            long attended = Enumerable.Range(0, mask.Heads).Sum(h => mask.AttendedTokens(h, t));   // absolute stride: attended = held
            long full = (long)mask.Heads * (t + 1);
            rows.Add(new DecodeRow(t, attended / (double)mask.Heads, t + 1, attended * perToken, full * perToken));
        }
        return rows;
    }
}
