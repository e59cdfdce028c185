using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// The notebook's experiment (P22 §4), in five phases. (1) Exactness on toy tensors: both fast forms and the LSE merge
/// against the dense masked twin, and the pattern's coverage identities. (2) An attention-level needle probe (training-free):
/// one needle key, one query that matches it in every head, token identities as values; the layer's output (the mean over
/// heads, a fixed W_O) must point at the needle's identity among every earlier token's — so a head that cannot see the
/// needle adds noise, and a pattern no head of which sees it fails. (3) Decode with S2's pruned per-head KV cache against
/// the full-cache decode and the parallel forward, measuring the bytes each head holds. (4) The trained-model needle test:
/// a one-layer TinyGpt per variant, same seed, batches and steps. (5) Forward timings (reported).
/// </summary>
public sealed class S2Experiment : IPaperExperiment<S2Experiment.Config, S2Result>
{
    S2Experiment() { }

    /// <summary>P22 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(22, "S2-Attention: heterogeneous context sharding among heads", "s2-attention");

    /// <summary>Sizes of one run: the probe (Lengths … QueryGain), timings, the trained needle test and the decode check.</summary>
    public sealed record Config(int[] Lengths, double[] Depths, int Heads, int HeadDim, int Block, int LocalBlocks, int VertStride,
        int Trials, double QueryGain, int TimingRepeats, int Seed, S2NeedleConfig Needle, string[] NeedleVariants) : IPaperConfig<Config>
    {
        /// <summary>
        /// Probe at the spec's smoke size (n ≤ 512, b = 16, ℓ = 4, s = 4, H = 4). The trained test is smaller than the spec's
        /// n = 512 (deviation, docs/decisions.md): T = 128, b = 8, ℓ = 2, s = 4, H = 4, d = 32, 200 steps of 32 rows.
        /// </summary>
        public static Config Smoke => new(new[] { 256, 512 }, Enumerable.Range(0, 10).Select(i => i / 10.0).ToArray(), 4, 32, 16, 4, 4, 4, 3.0, 2, 0,
            new S2NeedleConfig(Length: 128, VocabSize: 64, DModel: 32, Heads: 4, Block: 8, LocalBlocks: 2, VertStride: 4, Steps: 200, BatchSize: 32,
                LearningRate: 1e-2, TestDepths: 8, TestPerDepth: 32, Seed: 0),
            new[] { "dense", "homogeneous", "heterogeneous" }) { Size = "smoke" };

        /// <summary>Probe n up to 4k, b = 64, ℓ = 4, s = 8, H = 8 (spec full size); trained test T = 1024, b = 32, ℓ = 4, s = 8, H = 8.</summary>
        public static Config Full => new(new[] { 1024, 2048, 4096 }, Enumerable.Range(0, 20).Select(i => i / 20.0).ToArray(), 8, 64, 64, 4, 8, 16, 3.0, 5, 0,
            new S2NeedleConfig(Length: 1024, VocabSize: 128, DModel: 64, Heads: 8, Block: 32, LocalBlocks: 4, VertStride: 8, Steps: 2000, BatchSize: 64,
                LearningRate: 3e-3, TestDepths: 16, TestPerDepth: 64, Seed: 0),
            new[] { "dense", "homogeneous", "heterogeneous", "hybrid" }) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; "custom" once a field changes.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
        public Config Validate()
        {
            if (Lengths is null || Lengths.Length == 0 || Lengths.Any(n => n <= 2))
                throw new ArgumentException("Lengths must be non-empty and > 2.", nameof(Lengths));
            if (Depths is null || Depths.Length == 0 || Depths.Any(d => !(d >= 0 && d < 1)))
                throw new ArgumentException("Depths must be non-empty, in [0, 1).", nameof(Depths));
            Guard.Positive(Heads, nameof(Heads)); Guard.Positive(HeadDim, nameof(HeadDim)); Guard.Positive(Block, nameof(Block));
            Guard.Positive(LocalBlocks, nameof(LocalBlocks)); Guard.Positive(VertStride, nameof(VertStride)); Guard.Positive(Trials, nameof(Trials));
            Guard.Positive(TimingRepeats, nameof(TimingRepeats));
            if (!(QueryGain > 0)) throw new ArgumentException($"QueryGain must be positive, got {QueryGain}.", nameof(QueryGain));
            ArgumentNullException.ThrowIfNull(Needle, nameof(Needle));
            Needle.Validate();
            if (NeedleVariants is null || NeedleVariants.Length == 0 || NeedleVariants.Any(v => !Variants.Contains(v)) || !NeedleVariants.Contains("dense")
                || !NeedleVariants.Contains("heterogeneous"))
                throw new ArgumentException($"NeedleVariants must hold dense and heterogeneous, from {string.Join(", ", Variants)}.", nameof(NeedleVariants));
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
        "hybrid" => S2Pattern.Residues(c.Heads, c.VertStride, denseHeads: 1),
        _ => throw new ArgumentException($"unknown variant '{variant}'.", nameof(variant)),
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

    /// <summary>Runs the five phases; progress lines per phase.</summary>
    public static S2Result Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        var exactness = Exactness(config, device);
        clock.Lap("exactness");

        var cells = new List<NeedleCell>();
        var summary = new List<VariantRow>();
        foreach (int n in config.Lengths)
        {
            foreach (var variant in Variants)
            {
                var hits = new double[config.Depths.Length];
                for (int di = 0; di < config.Depths.Length; di++)
                {
                    int pos = NeedlePosition(config.Depths[di], n);
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
            progress?.Report($"probe n = {n}: " + string.Join(", ", summary.Where(r => r.Length == n).Select(r => $"{r.Variant} {r.Accuracy:P0}")));
        }
        clock.Lap("probe + timings");

        var decode = Decode(config, device);
        clock.Lap("decode");
        progress?.Report($"decode {decode.Length} tokens: pruned vs full-cache max |Δ| {Num.Sci(decode.MaxAbsVsFull)}, " +
            $"held tokens per head [{string.Join(", ", decode.HeldAtEnd)}] of {decode.Length}");

        progress?.Report($"training one-layer needle models ({string.Join(", ", config.NeedleVariants)}), {config.Needle.Steps} steps each, " +
            $"T = {config.Needle.Length}");
        var trained = S2NeedleTraining.Run(config.Needle, config.NeedleVariants, device, progress);
        clock.Lap("trained needle");

        var masks = Variants.Skip(1).ToDictionary(v => v, v => Pattern(v, config, config.Lengths.Min())!);
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new S2Result(config, exactness, cells, summary, decode, trained, masks, clock.Seconds, clock.Phases);
    }

    /// <summary>Needle position at depth d of an n-token probe (the last token is the query).</summary>
    public static int NeedlePosition(double depth, int n) => (int)Math.Floor(depth * (n - 2));

    /// <summary>
    /// The toy exactness phase: T = 45 (not a multiple of b = 4), GQA 4 query heads on 2 KV heads, head dim 5, values of
    /// dim 3, ℓ = 2, s = 3 — gather and strided + local vs the dense masked twin in float64 and float32; the LSE merge of three
    /// key partitions vs monolithic attention (float64); and at the probe's lengths the coverage identities: heterogeneous
    /// union coverage 1 at density &lt; 1, homogeneous distant coverage exactly 1/s on rows with whole residue cycles.
    /// </summary>
    public static S2Exactness Exactness(Config config, Device device)
    {
        ArgumentNullException.ThrowIfNull(config);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)config.Seed + 1);
        var toy = S2Pattern.LocalStride(2, 45, 4, 2, 3);
        var forms = new List<S2FormError>();
        foreach (var dtype in new[] { ScalarType.Float64, ScalarType.Float32 })
        {
            var q = torch.randn(new long[] { 2, 45, 4, 5 }, generator: gen, dtype: float64).to(dtype).to(device);
            var k = torch.randn(new long[] { 2, 45, 2, 5 }, generator: gen, dtype: float64).to(dtype).to(device);
            var v = torch.randn(new long[] { 2, 45, 2, 3 }, generator: gen, dtype: float64).to(dtype).to(device);
            using var naive = S2Naive.Forward(q, k, v, toy);
            string type = dtype == ScalarType.Float64 ? "float64" : "float32";
            forms.Add(new S2FormError("gather block-sparse", type, MaxAbs(BlockSparseAttention.Forward(q, k, v, toy).Output, naive.Output)));
            forms.Add(new S2FormError("strided + local (LSE merge)", type,
                MaxAbs(StridedLocalAttention.Forward(q, k, v, 4, 2, 3, S2Pattern.Residues(2, 3)).Output, naive.Output)));
        }

        var (mq, mk, mv) = (torch.randn(new long[] { 2, 23, 2, 4 }, generator: gen, dtype: float64).to(device),
            torch.randn(new long[] { 2, 23, 2, 4 }, generator: gen, dtype: float64).to(device),
            torch.randn(new long[] { 2, 23, 2, 3 }, generator: gen, dtype: float64).to(device));
        using var whole = ReferenceAttention.Softmax(mq, mk, mv, causal: true);
        var parts = new List<(Tensor, Tensor)>();
        foreach (var (start, len) in new[] { (0, 7), (7, 9), (16, 7) })
        {
            var keep = torch.zeros(new long[] { 23, 23 }, dtype: ScalarType.Bool, device: device);
            keep.narrow(1, start, len).fill_(true);
            var r = ReferenceAttention.Softmax(mq, mk, mv, causal: true, mask: keep);
            parts.Add((r.Output, r.LogSumExp));
        }
        var (merged, mergedLse) = LseMerge.Combine(parts);
        double mergeError = Math.Max(MaxAbs(merged, whole.Output), MaxAbs(mergedLse, whole.LogSumExp));

        var coverage = config.Lengths.Select(n =>
        {
            var het = Pattern("heterogeneous", config, n)!;
            var homo = Pattern("homogeneous", config, n)!;
            return new CoverageRow(n, het.Coverage(), het.Density(n), homo.DistantCoverage(), CycleCoverageDeviation(homo, config.VertStride));
        }).ToList();
        return new S2Exactness(forms, mergeError, coverage);
    }

    /// <summary>
    /// max over rows i with whole residue cycles — d = i − ℓ + 1 distant blocks, d a positive multiple of s — of
    /// |(distant blocks some head reads) / d − 1/s|; 0 when no row qualifies. Exactly 0 for a homogeneous stride.
    /// </summary>
    public static double CycleCoverageDeviation(BlockMask mask, int vertStride)
    {
        ArgumentNullException.ThrowIfNull(mask);
        Guard.Positive(vertStride, nameof(vertStride));
        double worst = 0;
        for (int i = mask.LocalBlocks; i < mask.Blocks; i++)
        {
            int d = i - mask.LocalBlocks + 1;
            if (d % vertStride != 0) continue;
            int covered = Enumerable.Range(0, d).Count(j => Enumerable.Range(0, mask.Heads).Any(h => mask.Allows(h, i, j)));
            worst = Math.Max(worst, Math.Abs(covered / (double)d - 1.0 / vertStride));
        }
        return worst;
    }

    static double MaxAbs(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a.to(float64) - b.to(float64)).abs().max().item<double>();
    }

    /// <summary>
    /// One probe: keys per head random, the needle key u_h (|u_h|² = D) at <paramref name="pos"/>, the last query β·u_h in
    /// every head, values = token identities e_j shared by the heads. Retrieved = argmax_j ⟨mean_h o_h, e_j⟩ over the n − 1
    /// earlier tokens; correct when it is the needle (chance 1/(n − 1)).
    /// </summary>
    static bool Probe(string variant, Config c, int n, int pos, int seed, Device device)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var k = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, generator: gen);      // each head's own keys
        var q = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, generator: gen);
        var e = torch.randn(new long[] { n, c.HeadDim }, generator: gen);                   // token identities
        var u = torch.randn(new long[] { c.Heads, c.HeadDim }, generator: gen);
        u = u / u.norm(-1, keepdim: true) * Math.Sqrt(c.HeadDim);// |u_h|² = D
        k[0, pos] = u;                                                                       // the needle's key in each head
        q[0, n - 1] = c.QueryGain * u;                                                       // the query: needle logit β√D in each head
        var v = e.view(1, n, 1, c.HeadDim).expand(1, n, c.Heads, c.HeadDim).contiguous();   // every head copies the token's identity
        var o = Forward(variant, c, q.to(device), k.to(device), v.to(device)).cpu()[0, n - 1];   // [H, D]
        var y = o.mean(new long[] { 0 });                                                                // a fixed W_O: the mean over heads
        var scores = e.narrow(0, 0, n - 1).matmul(y);                                        // ⟨y, e_j⟩, j < n − 1
        return scores.argmax().item<long>() == pos;
    }

    static double Time(string variant, Config c, int n, Device device)
    {
        torch.manual_seed(c.Seed);
        using var q = torch.randn(new long[] { 1, n, c.Heads, c.HeadDim }, device: device);
        return Benchmark.Time(() => { using var s = NewDisposeScope(); Forward(variant, c, q, q, q); },
            warmup: 1, repeats: c.TimingRepeats, device: device).MedianMs;
    }

    /// <summary>
    /// Streams n = max(Lengths) random inputs through an <see cref="S2SelfAttention"/> mixer (random weights, d = H·D,
    /// float32) twice — with its pruned per-head cache and with the full cache — and compares both with the parallel
    /// forward. After every token it checks each head's held positions against the pattern (the keys the next query reads)
    /// and their count against <see cref="S2SelfAttention.HeldTokens"/>; one row per block end.
    /// </summary>
    public static S2DecodeCheck Decode(Config config, Device device)
    {
        ArgumentNullException.ThrowIfNull(config);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        int n = config.Lengths.Max(), d = config.Heads * config.HeadDim;
        torch.manual_seed(config.Seed);
        using var mixer = new S2SelfAttention(d, config.Heads, config.Block, config.LocalBlocks, config.VertStride);
        mixer.to(device);
        var x = torch.randn(new long[] { 1, n, d }, device: device);
        var forward = mixer.call(x);
        using var pruned = (S2KvState)mixer.NewState(1, ScalarType.Float32, device);
        using var full = mixer.NewFullState(1, ScalarType.Float32, device);
        var rows = new List<DecodeRow>();
        double vsFull = 0, vsForward = 0;
        int mismatches = 0;
        for (int t = 0; t < n; t++)
        {
            using var step = NewDisposeScope();
            var xt = x.select(1, t);
            var yp = mixer.Step(xt, pruned);
            var yf = mixer.Step(xt, full);
            vsFull = Math.Max(vsFull, MaxAbs(yp, yf));
            vsForward = Math.Max(vsForward, MaxAbs(yp, forward.select(1, t)));
            long seen = t + 1;
            for (int h = 0; h < config.Heads; h++)
            {
                var held = pruned.Heads[h].HeldPositions();
                var expected = Enumerable.Range(0, (int)seen).Where(j => mixer.Reads(h, seen, j)).Select(j => (long)j);
                if (held.Length != mixer.HeldTokens(h, seen) || !held.SequenceEqual(expected)) mismatches++;
            }
            if (seen % config.Block == 0 || seen == n)
                rows.Add(new DecodeRow(t, pruned.Heads.Average(h => (double)h.Held), seen, pruned.Bytes, full.Bytes));
        }
        var heldAtEnd = pruned.Heads.Select(h => h.Held).ToArray();
        var formula = Enumerable.Range(0, config.Heads).Select(h => mixer.HeldTokens(h, n)).ToArray();
        return new S2DecodeCheck(n, vsFull, vsForward, mismatches, rows, heldAtEnd, formula, pruned.Bytes, full.Bytes);
    }
}
