using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using TorchSharp;

namespace AttentionLab.Papers.S2Attention;

/// <summary>Probe retrieval of one variant at one (length, depth): accuracy over trials.</summary>
public sealed record NeedleCell(string Variant, int Length, double Depth, int Position, double Accuracy);

/// <summary>One variant at one length: mean probe accuracy over depths, token density (FLOP fraction vs dense causal),
/// KV tokens per head, union coverage of causal block pairs, ms of one forward (median).</summary>
public sealed record VariantRow(string Variant, int Length, double Accuracy, double Density, double KvTokensPerHead, double Coverage, double Ms);

/// <summary>One decode step (0-based t): tokens the pruned cache holds per head (mean, measured), tokens seen, and bytes
/// held by the pruned per-head cache and by the full cache (both measured from the states).</summary>
public sealed record DecodeRow(int Step, double HeldPerHead, long FullTokens, long KvBytes, long FullKvBytes);

/// <summary>
/// The decode phase: pruned per-head cache vs full cache and vs the parallel forward (max |Δ|), (step, head) pairs whose
/// held positions differ from the pattern's set or count (0 = exact), rows per block end, held tokens per head at the end
/// beside the formula, and the final bytes of both states.
/// </summary>
public sealed record S2DecodeCheck(int Length, double MaxAbsVsFull, double MaxAbsVsForward, int HeldMismatches, IReadOnlyList<DecodeRow> Rows,
    long[] HeldAtEnd, long[] FormulaAtEnd, long PrunedBytes, long FullBytes);

/// <summary>One fast form's distance from the dense masked twin in one dtype.</summary>
public sealed record S2FormError(string Form, string DType, double MaxAbs);

/// <summary>Coverage identities at one probe length: heterogeneous union coverage and density, homogeneous distant
/// coverage (aggregate, edge-biased) and its deviation from 1/s on rows with whole residue cycles.</summary>
public sealed record CoverageRow(int Length, double HeterogeneousCoverage, double HeterogeneousDensity, double HomogeneousDistantCoverage,
    double HomogeneousCycleDeviation);

/// <summary>The exactness phase on toy tensors.</summary>
public sealed record S2Exactness(IReadOnlyList<S2FormError> Forms, double LseMergeMaxAbs, IReadOnlyList<CoverageRow> Coverage)
{
    /// <summary>Spec §6 tolerances: float64 1e-10, float32 1e-5.</summary>
    public static double Tolerance(string dtype) => dtype == "float64" ? 1e-10 : 1e-5;

    /// <summary>Columns: form, dtype, max_abs_vs_naive, tolerance.</summary>
    public DataFrame ToDataFrame() => Tables.From(Forms.Select(f => new
        {
            f.Form,
            Dtype = f.DType,
            MaxAbsVsNaive = f.MaxAbs,
            Tolerance = Tolerance(f.DType),
        }));
}

/// <summary>Everything the P22 notebook shows, and its claims.</summary>
public sealed record S2Result(S2Experiment.Config Config, S2Exactness Exactness, IReadOnlyList<NeedleCell> Cells, IReadOnlyList<VariantRow> Rows,
    S2DecodeCheck Decode, IReadOnlyList<TrainedNeedle> Trained, IReadOnlyDictionary<string, BlockMask> Masks, double Seconds,
    IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Margin [ours] of the trained test: dense must reach this accuracy before a comparison with it means anything.</summary>
    public const double LearnedAccuracy = 0.9;

    /// <summary>Columns: variant, n, accuracy (probe), density, kv_tokens_per_head, coverage, ms.</summary>
    public DataFrame ToDataFrame() => Tables.From(Rows.Select(r => new
        {
            r.Variant,
            N = r.Length,
            r.Accuracy,
            r.Density,
            r.KvTokensPerHead,
            r.Coverage,
            r.Ms,
        }));

    /// <summary>Columns: variant, accuracy, off_stride_accuracy, final_loss, train_s, params (the trained needle test).</summary>
    public DataFrame TrainedFrame() => Tables.From(Trained.Select(r => new
        {
            r.Variant,
            r.Accuracy,
            r.OffStrideAccuracy,
            r.FinalLoss,
            TrainS = r.TrainSeconds,
            r.Params,
        }));

    /// <summary>Columns: step, held_per_head, full_tokens, kv_bytes, full_kv_bytes.</summary>
    public DataFrame DecodeFrame() => Tables.From(Decode.Rows.Select(r => new { r.Step, r.HeldPerHead, r.FullTokens, r.KvBytes, r.FullKvBytes }));

    /// <summary>Mean probe accuracy of a variant over every length and depth.</summary>
    public double Accuracy(string variant) => Cells.Where(c => c.Variant == variant).Average(c => c.Accuracy);

    /// <summary>
    /// Probe accuracy of a variant at the needles the homogeneous pattern cannot read: outside the last query's local
    /// window and off the shared stride (key block j with j mod s ≠ r₀).
    /// </summary>
    public double OffStrideAccuracy(string variant)
    {
        var cells = Cells.Where(c => c.Variant == variant && OffStride(c)).ToArray();
        return cells.Length == 0 ? double.NaN : cells.Average(c => c.Accuracy);
    }

    /// <summary>True when the homogeneous pattern cannot see this needle from the last query.</summary>
    public bool OffStride(NeedleCell c)
    {
        int b = Config.Block, jb = c.Position / b, ib = (c.Length - 1) / b;
        int r0 = S2Pattern.Residues(Config.Heads, Config.VertStride, homoHead: true)[0]!.Value;
        return ib - jb >= Config.LocalBlocks && jb % Config.VertStride != r0;
    }

    /// <summary>The trained result of a variant (null when it was not trained).</summary>
    public TrainedNeedle? TrainedVariant(string variant) => Trained.FirstOrDefault(t => t.Variant == variant);

    /// <summary>The spec's "KV tokens per head ≈ n/s + ℓ·b", rounded up to whole stride blocks: b·⌈n/(s·b)⌉ + ℓ·b.</summary>
    public long KvFormulaTokens => (long)Config.Block * ((Decode.Length + Config.VertStride * Config.Block - 1) / (Config.VertStride * Config.Block))
                                   + (long)Config.LocalBlocks * Config.Block;

    /// <summary>
    /// The claims: the fast forms and the LSE merge equal the dense masked twin; the coverage identities; the pruned
    /// per-head decode equals the full-cache decode with exactly the pattern's keys held; each head's measured cache
    /// against n/s + ℓ·b; the probe (heterogeneous ≥ dense − 5 pts, homogeneous fails off its stride); the trained-model
    /// needle test (the same two criteria, spec §6); the forward timing (reported).
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(S2Experiment.Paper.Number, Config.Size);
        foreach (var group in Exactness.Forms.GroupBy(f => f.DType))
        {
            double tol = S2Exactness.Tolerance(group.Key), worst = group.Max(f => f.MaxAbs);
            claims.Exactness($"forms-equal-naive-{group.Key}",
                $"gather block-sparse and strided + local (LSE merge) equal dense masked attention ({group.Key})",
                $"max |Δ| {Num.Sci(worst)} (T = 45, b = 4, ℓ = 2, s = 3, GQA 4:2)", $"≤ {Num.Sci(tol, 0)} (spec §6)", worst <= tol);
        }
        claims.Exactness("lse-merge", "the LSE merge of attention over key partitions equals monolithic attention",
            $"max |Δ| {Num.Sci(Exactness.LseMergeMaxAbs)} (3 partitions, float64)", "≤ 1e-6 (spec §6)", Exactness.LseMergeMaxAbs <= 1e-6);

        var cov = Exactness.Coverage;
        bool covered = cov.All(c => c.HeterogeneousCoverage == 1.0 && c.HeterogeneousDensity < 1)
            && cov.All(c => c.HomogeneousCycleDeviation == 0 && c.HomogeneousDistantCoverage < 1);
        claims.Exactness("union-coverage",
            "heterogeneous residues cover every causal block pair at density < 1; a homogeneous stride reads exactly 1/s of the distant blocks",
            string.Join("; ", cov.Select(c =>
                $"n = {c.Length}: coverage {c.HeterogeneousCoverage:P1} at density {c.HeterogeneousDensity:P1}, homogeneous distant " +
                $"{c.HomogeneousDistantCoverage:P1} (|Δ from 1/s| on whole cycles {Num.Sci(c.HomogeneousCycleDeviation)})")),
            $"coverage = 1, density < 1; homogeneous = 1/s = {1.0 / Config.VertStride:P0} per row over whole residue cycles (spec §6)", covered,
            paperFigure: "the union of the heads' shards is the full context (paper §3)");

        var dec = Decode;
        claims.Exactness("pruned-decode-equals-full", "decoding with each head's pruned KV cache equals the full-cache decode and the parallel forward",
            $"max |Δ| vs full cache {Num.Sci(dec.MaxAbsVsFull)}, vs forward {Num.Sci(dec.MaxAbsVsForward)}; held set ≠ pattern in {dec.HeldMismatches} of " +
            $"{dec.Length * Config.Heads} (step, head) pairs",
            "≤ 1e-5 (float32, spec §6) and the held keys are exactly those the next query reads, count = (t − c·b) + b·|{j < c : j ≡ r}|",
            dec.MaxAbsVsFull <= 1e-5 && dec.MaxAbsVsForward <= 1e-5 && dec.HeldMismatches == 0);

        long formula = KvFormulaTokens, worstHead = dec.HeldAtEnd.Max();
        double meanHeld = dec.HeldAtEnd.Average();
        claims.Claim("kv-tokens-per-head", "a KV head keeps only its stride blocks plus the local window: about n/s + ℓ·b tokens instead of n",
            "KV cache reduction \"as a free meal\" at inference (v1 abstract); n/s + ℓ·b tokens per KV head (dkernel's KV-efficiency rule, spec §2)",
            $"measured after n = {dec.Length}: [{string.Join(", ", dec.HeldAtEnd)}] tokens per head (mean {meanHeld:F0}, {meanHeld / dec.Length:P1} of n); " +
            $"{dec.PrunedBytes:N0} B vs {dec.FullBytes:N0} B for the full cache",
            $"every head ≤ b·⌈n/(s·b)⌉ + ℓ·b = {formula} tokens (spec §2) and < n", worstHead <= formula && worstHead < dec.Length, asserted: true);

        double dense = Accuracy("dense"), het = Accuracy("heterogeneous"), homoOff = OffStrideAccuracy("homogeneous"),
            hetOff = OffStrideAccuracy("heterogeneous");
        int probes = Config.Lengths.Length * Config.Depths.Length * Config.Trials;
        claims.Claim("probe-heterogeneous-near-dense",
            "attention-level probe: the heterogeneous pattern retrieves a single needle within 5 points of dense attention",
            "perfect needle retrieval at 32K context (v1 abstract; trained 1.3B/7B models)",
            $"retrieval (argmax over {Config.Lengths.Min() - 1}–{Config.Lengths.Max() - 1} token identities of the head-mean output): dense {dense:P1}, " +
            $"heterogeneous {het:P1} (off-stride needles {hetOff:P1}), hybrid {Accuracy("hybrid"):P1}; {probes} probes each",
            "heterogeneous ≥ dense − 5 pts (spec §6, applied to the probe)", het >= dense - 0.05, asserted: false,
            note: "recorded, not asserted: a training-free stand-in (one layer, random keys, a fixed head-mean W_O), where the heads that cannot see the " +
            "needle add noise to the output; the trained test below is the claim's test.");
        claims.Claim("probe-homogeneous-blind", "attention-level probe: a homogeneous stride fails on needles off its stride beyond the window",
            "heterogeneous sharding is needed for full-context coverage (paper §3 ablations)",
            $"homogeneous {homoOff:P1} on the off-stride needles (chance {1.0 / (Config.Lengths.Min() - 1):P1}), heterogeneous {hetOff:P1}",
            "homogeneous < 50 % on off-stride needles (spec §6: \"homogeneous fails at off-stride depths beyond the window\")",
            homoOff < 0.5, asserted: true);

        var n = Config.Needle;
        var tDense = TrainedVariant("dense")!;
        var tHet = TrainedVariant("heterogeneous")!;
        var tHomo = TrainedVariant("homogeneous");
        int tests = n.TestDepths * n.TestPerDepth;
        string trainedSize = $"one-layer TinyGpt, d = {n.DModel}, H = {n.Heads}, T = {n.Length}, b = {n.Block}, ℓ = {n.LocalBlocks}, s = {n.VertStride}, " +
            $"{n.Steps} steps × {n.BatchSize}, same seed and batches";
        string trainedOurs = $"needle accuracy dense {tDense.Accuracy:P1}, heterogeneous {tHet.Accuracy:P1}" +
                             (tHomo is null ? "" : $", homogeneous {tHomo.Accuracy:P1}")
                                 + (TrainedVariant("hybrid") is { } hy ? $", hybrid {hy.Accuracy:P1}" : "") +
                             $" ({tests} test rows at {n.TestDepths} depths; chance {1.0 / n.Task.NeedleClasses:P1})";
        const string trainedDeviation = "spec smoke n = 512, b = 16, ℓ = 4: the trained test runs at T = 128, b = 8, ℓ = 2 to fit the notebook budget; the " +
            "task is a one-token needle (copy the one needle-class token), not a passkey (docs/decisions.md)";
        if (tDense.Accuracy < LearnedAccuracy)
            claims.NotShown("trained-heterogeneous-near-dense",
                "a model trained with the heterogeneous pattern retrieves the needle within 5 points of dense attention",
                "perfect needle retrieval at 32K (v1 abstract); on-par quality with dense (paper §5)", trainedOurs,
                "heterogeneous ≥ dense − 5 pts (spec §6, nightly)",
                $"not shown at this size: dense attention reached only {tDense.Accuracy:P1} (< {LearnedAccuracy:P0}) in {n.Steps} steps — {trainedSize}.",
                deviation: trainedDeviation);
        else
        {
            claims.Claim("trained-heterogeneous-near-dense",
                "a model trained with the heterogeneous pattern retrieves the needle within 5 points of dense attention",
                "perfect needle retrieval at 32K (v1 abstract); on-par quality with dense (paper §5)", trainedOurs,
                "heterogeneous ≥ dense − 5 pts (spec §6, nightly)", tHet.Accuracy >= tDense.Accuracy - 0.05, asserted: true,
                deviation: trainedDeviation, note: trainedSize + ".");
        }
        if (tHomo is null)
            claims.NotShown("trained-homogeneous-blind", "a model trained with a homogeneous stride fails on needles off its stride beyond the window",
                "heterogeneous sharding is needed (paper §3 ablations)", "homogeneous not trained in this run",
                "homogeneous < 50 % on off-stride needles (spec §6)",
                "the run's NeedleVariants leave the homogeneous model out.");
        else if (tDense.Accuracy < LearnedAccuracy)
            claims.NotShown("trained-homogeneous-blind", "a model trained with a homogeneous stride fails on needles off its stride beyond the window",
                "heterogeneous sharding is needed (paper §3 ablations)", $"homogeneous off-stride {tHomo.OffStrideAccuracy:P1}, dense {tDense.Accuracy:P1}",
                "homogeneous < 50 % on off-stride needles (spec §6)",
                $"not shown at this size: dense attention did not learn the task (< {LearnedAccuracy:P0}).");
        else
            claims.Claim("trained-homogeneous-blind", "a model trained with a homogeneous stride fails on needles off its stride beyond the window",
                "heterogeneous sharding is needed (paper §3 ablations)",
                $"off-stride needles: homogeneous {tHomo.OffStrideAccuracy:P1}, heterogeneous {tHet.OffStrideAccuracy:P1}, dense " +
                $"{tDense.OffStrideAccuracy:P1} (chance {1.0 / n.Task.NeedleClasses:P1})",
                "homogeneous < 50 % on off-stride needles (spec §6)", tHomo.OffStrideAccuracy < 0.5,
                asserted: true,
                deviation: trainedDeviation);

        int longest = Config.Lengths.Max();
        var at = Rows.Where(r => r.Length == longest).ToDictionary(r => r.Variant);
        double speedup = at["dense"].Ms / at["heterogeneous"].Ms;
        claims.Reported("speed", "S2's sparse forward is faster than dense attention",
            "25.3× attention speed-up over FlashAttention-2 (v1 abstract; Triton kernel, A100)",
            $"forward at n = {longest}: dense reference {at["dense"].Ms:F2} ms, heterogeneous strided + local {at["heterogeneous"].Ms:F2} ms ({speedup:F2}×) " +
            $"at density {at["heterogeneous"].Density:P1}",
            "heterogeneous faster than dense (a CPU timing on a shared machine: reported)", speedup > 1,
            note: "no fused kernel here: the strided + local form pays for gathers, padding and the LSE merge; see docs/benchmarks.md for longer n.");

        claims.Saw($"Probe: dense retrieves {dense:P1} of the needles, heterogeneous {het:P1} and hybrid {Accuracy("hybrid"):P1}; on the needles off the " +
            $"homogeneous stride, heterogeneous {hetOff:P1} vs homogeneous {homoOff:P1}.");
        claims.Saw($"Trained needle models (T = {n.Length}, {n.Steps} steps): "
            + string.Join(", ", Trained.Select(t => $"{t.Variant} {t.Accuracy:P1} (off-stride {t.OffStrideAccuracy:P1}, {t.TrainSeconds:F1} s)")) + ".");
        claims.Saw($"Decoding {dec.Length} tokens, each head's pruned cache holds [{string.Join(", ", dec.HeldAtEnd)}] tokens ({dec.PrunedBytes:N0} B vs " +
            $"{dec.FullBytes:N0} B for the full cache), and the outputs match the full-cache decode to {Num.Sci(dec.MaxAbsVsFull)}.");
        claims.Saw($"At n = {longest} the heterogeneous pattern computes {at["heterogeneous"].Density:P1} of dense causal attention's scores; its forward " +
            $"took {at["heterogeneous"].Ms:F2} ms vs dense {at["dense"].Ms:F2} ms on this machine.");
        return claims;
    }

    /// <summary>Per-head block masks of a variant plus their union (share of heads reading the block), at the shortest length.</summary>
    public GenericChart MaskHeatmaps(string variant) => MaskChart(Masks[variant], variant);

    /// <summary>Per-head block masks of a pattern plus their union (share of heads reading each block).</summary>
    public static GenericChart MaskChart(BlockMask m, string variant)
    {
        ArgumentNullException.ThrowIfNull(m);
        var images = Enumerable.Range(0, m.Heads + 1).Select(h => torch.tensor(
            Enumerable.Range(0, m.Blocks * m.Blocks).Select(x => (x / m.Blocks, x % m.Blocks)).Select(ij => h < m.Heads
                ? (m.Allows(h, ij.Item1, ij.Item2) ? 1.0 : 0.0)
                : Enumerable.Range(0, m.Heads).Count(g => m.Allows(g, ij.Item1, ij.Item2)) / (double)m.Heads).ToArray(),
            new long[] { m.Blocks, m.Blocks })).ToArray();
        var titles = Enumerable.Range(0, m.Heads).Select(h => $"{variant} head {h}").Append($"union (coverage {m.Coverage():P0})").ToArray();
        var chart = AnalysisCharts.ImageGrid(images, titles, columns: m.Heads + 1);
        foreach (var t in images) t.Dispose();
        return chart;
    }

    /// <summary>Probe accuracy heatmap (depth × length) of a variant.</summary>
    public GenericChart NeedleHeatmap(string variant)
    {
        var rows = Config.Depths.Select(d => Config.Lengths.Select(
            n => Cells.First(c => c.Variant == variant && c.Length == n && c.Depth == d).Accuracy).ToArray()).ToArray();
        return Charts.Heatmap(rows, $"probe retrieval: {variant}", Config.Lengths.Select(n => n.ToString()).ToArray(),
            Config.Depths.Select(d => d.ToString("F2")).ToArray());
    }

    /// <summary>Trained needle accuracy heatmap: depth × variant.</summary>
    public GenericChart TrainedHeatmap()
    {
        var depths = Config.Needle.Depths;
        var rows = depths.Select((_, i) => Trained.Select(t => t.DepthAccuracy[i]).ToArray()).ToArray();
        return Charts.Heatmap(rows, $"trained needle accuracy (T = {Config.Needle.Length})", Trained.Select(t => t.Variant).ToArray(),
            depths.Select(d => d.ToString("F2")).ToArray());
    }

    /// <summary>Bars: attention FLOP fraction (density) and KV tokens per head / n, per variant at the longest length.</summary>
    public GenericChart CostBars()
    {
        int n = Config.Lengths.Max();
        var rows = Rows.Where(r => r.Length == n).ToArray();
        return Charts.Bars(rows.Select(r => r.Variant + " FLOP").Concat(rows.Select(r => r.Variant + " KV")).ToArray(),
            rows.Select(r => r.Density).Concat(rows.Select(r => r.KvTokensPerHead / n)).ToArray(),
            $"attention FLOP fraction and KV tokens per head / n at n = {n}", "fraction of dense");
    }

    /// <summary>Decode: KV bytes held per step, pruned per-head cache vs full cache (both measured).</summary>
    public GenericChart DecodeChart() => Charts.Lines(new[]
    {
        new Series("full cache", Decode.Rows.Select(r => (double)r.FullTokens).ToArray(), Decode.Rows.Select(r => r.FullKvBytes / 1024.0).ToArray()),
        new Series("heterogeneous S2, pruned per head", Decode.Rows.Select(r => (double)r.FullTokens).ToArray(),
            Decode.Rows.Select(r => r.KvBytes / 1024.0).ToArray()),
    }, "decode: KV cache held after t tokens (one layer, all heads, measured)", "tokens seen", "KiB");
}
