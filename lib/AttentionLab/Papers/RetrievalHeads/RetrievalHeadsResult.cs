using AttentionLab.Core;
using AttentionLab.Interp;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>Everything <see cref="RetrievalHeadsExperiment.Run"/> measured, its tables, plot series and claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Layers">Model layers.</param>
/// <param name="Heads">Heads per layer.</param>
/// <param name="Exactness">The §6 identities.</param>
/// <param name="Scores">Retrieval score per head [L, H] (mean over retrieved detection runs).</param>
/// <param name="Ranking">Heads by score, highest first.</param>
/// <param name="DetectionRuns">Detection runs made.</param>
/// <param name="RetrievedRuns">Runs that counted (ROUGE-1 recall &gt; 0.5).</param>
/// <param name="Clean">NIAH score per cell [lengths, depths], no mask.</param>
/// <param name="TopMasked">NIAH score per cell with the top-<c>ClaimK</c> heads masked.</param>
/// <param name="RandomMasked">NIAH score per cell with the first random draw of <c>ClaimK</c> heads masked.</param>
/// <param name="TopAccuracy">Mean NIAH score with the top-k masked, k = 0 … MaxK.</param>
/// <param name="RandomAccuracy">Mean NIAH score with k random non-top heads masked [k, draw].</param>
/// <param name="RandomHeads">The heads of each random draw.</param>
/// <param name="ZeroAccuracy">Top-<c>ClaimK</c> masked by zeroing z.</param>
/// <param name="MeanAccuracy">Top-<c>ClaimK</c> masked by mean z.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record RetrievalHeadsResult(RetrievalHeadsExperiment.Config Config, int Layers, int Heads, RetrievalHeadsExactness Exactness,
    double[,] Scores, (int Layer, int Head)[] Ranking, int DetectionRuns, int RetrievedRuns, double[,] Clean, double[,] TopMasked,
    double[,] RandomMasked, double[] TopAccuracy, double[,] RandomAccuracy, IReadOnlyList<(int K, int Draw, (int Layer, int Head)[] Heads)> RandomHeads,
    double ZeroAccuracy, double MeanAccuracy, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Spec §6: random-k minus top-k accuracy that counts as "clearly more" (docs/decisions.md, P12).</summary>
    public const double ClaimMargin = 0.2;

    /// <summary>Heads scoring above the paper's 0.1 threshold.</summary>
    public int RetrievalHeadCount => Ranking.Count(x => Scores[x.Layer, x.Head] > RetrievalScore.Threshold);

    /// <summary>Mean NIAH score over the random draws of k heads.</summary>
    public double RandomMean(int k) => Enumerable.Range(0, RandomAccuracy.GetLength(1)).Average(d => RandomAccuracy[k, d]);

    /// <summary>Smallest and largest random-k draw.</summary>
    public (double Min, double Max) RandomRange(int k)
    {
        var all = Enumerable.Range(0, RandomAccuracy.GetLength(1)).Select(d => RandomAccuracy[k, d]).ToArray();
        return (all.Min(), all.Max());
    }

    /// <summary>The top-10 heads (spec §5): rank, layer, head, score, retrieval head (score &gt; 0.1).</summary>
    public DataFrame ToDataFrame()
    {
        var top = Ranking.Take(10).ToArray();
        return new DataFrame(
            new Int32DataFrameColumn("rank", Enumerable.Range(1, top.Length)),
            new Int32DataFrameColumn("layer", top.Select(x => x.Layer)),
            new Int32DataFrameColumn("head", top.Select(x => x.Head)),
            new DoubleDataFrameColumn("score", top.Select(x => Scores[x.Layer, x.Head])),
            new BooleanDataFrameColumn("retrieval head", top.Select(x => Scores[x.Layer, x.Head] > RetrievalScore.Threshold)));
    }

    /// <summary>NIAH score vs k masked: k, top-k, random-k mean, min and max over draws.</summary>
    public DataFrame AccuracyFrame()
    {
        var ks = Enumerable.Range(0, TopAccuracy.Length).ToArray();
        return new DataFrame(
            new Int32DataFrameColumn("k", ks),
            new DoubleDataFrameColumn("top-k masked", ks.Select(k => TopAccuracy[k])),
            new DoubleDataFrameColumn("random-k masked (mean)", ks.Select(RandomMean)),
            new DoubleDataFrameColumn("random-k min", ks.Select(k => RandomRange(k).Min)),
            new DoubleDataFrameColumn("random-k max", ks.Select(k => RandomRange(k).Max)));
    }

    /// <summary>Rows of a [L, H] or grid array for a heatmap.</summary>
    public static double[][] RowsOf(double[,] a) =>
        Enumerable.Range(0, a.GetLength(0)).Select(i => Enumerable.Range(0, a.GetLength(1)).Select(j => a[i, j]).ToArray()).ToArray();

    /// <summary>Score histogram (bins of 0.1 from 0 to 1): labels and head counts, for the log-y sparsity chart.</summary>
    public (string[] Bins, double[] Counts) Histogram()
    {
        var counts = new double[10];
        foreach (var (l, h) in Ranking)
            if (!double.IsNaN(Scores[l, h])) counts[Math.Clamp((int)Math.Floor(Scores[l, h] * 10), 0, 9)]++;
        return (Enumerable.Range(0, 10).Select(i => $"{i / 10.0:F1}–{(i + 1) / 10.0:F1}").ToArray(), counts);
    }

    /// <summary>Grid axis labels: haystack lengths (rows) and depths in % (columns).</summary>
    public (string[] Lengths, string[] Depths) GridLabels() =>
        (Config.Haystacks.Select(h => h.ToString()).ToArray(), Config.Depths.Select(d => $"{d * 100:F0}%").ToArray());

    static string Head((int Layer, int Head) x) => $"L{x.Layer}H{x.Head}";

    /// <summary>The paper's claims as this run measured them (spec §6 exactness, §7 headline at this size, sparsity, masks).</summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(RetrievalHeadsExperiment.Paper.Number, Config.Size);
        var ex = Exactness;
        claims.Exactness("score-hand-built",
            "A head with all mass on the needle token being emitted scores (#answer tokens)/(e − s); all on BOS, on a needle token ≠ the emitted "
            + "one, or on the emitted id outside the needle scores 0 (library and naive twin)",
            $"{ex.HandScore:F6} and naive {ex.HandNaiveScore:F6} (expected {ex.HandExpected:F6}); others max {ex.HandOthersMax:G3}",
            "|score − 3/7| ≤ 1e-12 in both forms; others = 0",
            Math.Abs(ex.HandScore - ex.HandExpected) <= 1e-12 && Math.Abs(ex.HandNaiveScore - ex.HandExpected) <= 1e-12 && ex.HandOthersMax == 0);
        claims.Exactness("score-naive-twin", "The library's retrieval score (argmax of the row) equals the naive loop over keys",
            $"max |Δ| {Num.Sci(ex.TwinMaxAbs)} over 50 random steps", "max |Δ| = 0", ex.TwinMaxAbs == 0);
        claims.Exactness("masked-row-uniform", "A masked head's pattern row i equals 1/(i+1) on the visible prefix (logits set to 0 and the uniform override)",
            $"max |Δ| {Num.Sci(ex.MaskedRowMaxAbs)}", "≤ 1e-6 (spec §6)", ex.MaskedRowMaxAbs <= 1e-6);
        claims.Exactness("masked-head-mean-v", "A masked head still writes: z_i = mean_{j≤i} v_j (not a zero output)",
            $"max |Δ| vs naive float64 {Num.Sci(ex.MaskedZMaxAbs)}", "≤ 1e-5 (float32 model)", ex.MaskedZMaxAbs <= 1e-5);
        claims.Exactness("mask-none-bitwise", "Masking no heads gives the unmasked forward", ex.NoMaskBitwise ? "bitwise equal" : "differs",
            "bitwise (spec §6)", ex.NoMaskBitwise);

        int k = Config.ClaimK;
        double clean = TopAccuracy[0], top = TopAccuracy[k], random = RandomMean(k);
        var (rMin, rMax) = RandomRange(k);
        var topHeads = string.Join(", ", Ranking.Take(k).Select(Head));
        bool contrast = random - top >= ClaimMargin;
        double best = Scores[Ranking[0].Layer, Ranking[0].Head];
        int tied = Ranking.Count(x => Scores[x.Layer, x.Head] == best);
        claims.Claim("top-vs-random-mask",
            $"Masking the top-{k} retrieval heads drops NIAH clearly more than masking {k} random non-top heads",
            "Llama-2-7B-80K: top-30 masked collapses NIAH, random-30 leaves it (README figure); spec's toy: top-2 0.45 vs random-2 0.94–0.96",
            $"unmasked {clean:F3}; top-{k} ({topHeads}) {top:F3} vs random-{k} {random:F3} (mean of {RandomAccuracy.GetLength(1)} draws, "
            + $"{rMin:F3}–{rMax:F3}); gap {random - top:F3}",
            $"random-{k} mean − top-{k} ≥ {ClaimMargin} (ROUGE-1 recall; the spec's toy gap ≈ 0.5)", contrast, asserted: false,
            deviation: "not asserted, though spec §6 asks a seed-0 notebook assertion: it presumes the spec's MQAR prototype, and the shipped "
            + "single-needle checkpoint does not meet it (docs/decisions.md, P12)",
            note: (tied > k ? $"{tied} heads tie at the top score {best:F2}, so the top-{k} among them is by (layer, head) order; " : "")
            + "the spec (§6) saw the contrast weak or reversed when the layer-1 heads tie at 1.0, and random heads can hit the "
            + "previous-token heads the circuit needs");

        double lowest = Ranking.Select(x => Scores[x.Layer, x.Head]).Where(v => !double.IsNaN(v)).DefaultIfEmpty(double.NaN).Min();
        claims.Claim("retrieval-heads-exist", "Some heads copy needle tokens almost every step (high retrieval score) while others do not",
            "Llama-2-7B-80K top heads 0.94, 0.92, 0.80 (official head_score json); spec's toy: 1.0 vs ≈ 0.03",
            $"top {Head(Ranking[0])} {best:F3}, lowest {lowest:F3}; {RetrievedRuns}/{DetectionRuns} detection runs retrieved",
            "top score ≥ 0.5 and the lowest < 0.1 (the paper's threshold)", best >= 0.5 && lowest < RetrievalScore.Threshold, asserted: false);

        int n = Layers * Heads, count = RetrievalHeadCount;
        string sparseOurs = $"{count} of {n} heads ({count / (double)n:P0}) score > 0.1";
        if (Config.UsesCheckpoint)
            claims.NotShown("sparse", "Retrieval heads are sparse: < 5 % of heads score > 0.1", "< 5 % of heads (Llama, Mistral, Qwen families)",
                sparseOurs, "share of heads > 0.1 below 5 %",
                "a single-task 8-head toy is not sparse (spec §4: 10 of 16 heads above 0.1 in its 4 × 4 prototype) and 5 % of 8 heads is under "
                + "one head; sparsity needs the Full size with mixed training");
        else
            claims.Claim("sparse", "Retrieval heads are sparse: < 5 % of heads score > 0.1", "< 5 % of heads (Llama, Mistral, Qwen families)",
                sparseOurs, "share of heads > 0.1 below 5 %", count / (double)n < 0.05, asserted: false,
                deviation: "trained on NIAH only, not the spec's LM + NIAH mixture (docs/decisions.md, P12)");

        claims.Reported("mask-kinds", $"Zero and mean ablation of the top-{k} beside the paper's uniform mask (not the paper's method)", "—",
            $"uniform {top:F3}, zero {ZeroAccuracy:F3}, mean {MeanAccuracy:F3}", "reported", true);
        claims.Reported("runtime", "Wall-clock time of the run (shared CPU)", "—",
            string.Join(", ", PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")) + $"; total {Seconds:F1} s", "reported", true);

        claims.Saw($"Detection over {DetectionRuns} NIAH prompts ({RetrievedRuns} retrieved) ranks {string.Join(", ", Ranking.Take(Math.Min(4, n))
            .Select(x => $"{Head(x)} ({Scores[x.Layer, x.Head]:F2})"))} first; {sparseOurs}.");
        claims.Saw($"Unmasked the model scores {clean:F2} on the NIAH grid; masking the top-{k} heads gives {top:F2}, masking {k} random non-top heads "
            + $"{random:F2} on average (draws {rMin:F2}–{rMax:F2}), a gap of {random - top:F2} against the spec's toy 0.45 vs 0.94–0.96.");
        claims.Saw("Accuracy with the top-k masked for k = 0 … " + (TopAccuracy.Length - 1) + ": "
            + string.Join(", ", TopAccuracy.Select(a => a.ToString("F2"))) + "; random-k: "
            + string.Join(", ", Enumerable.Range(0, TopAccuracy.Length).Select(i => RandomMean(i).ToString("F2"))) + ".");
        var worst = RandomHeads.Where(d => d.K == k).MinBy(d => RandomAccuracy[k, d.Draw]);
        if (worst.Heads is not null)
            claims.Saw($"The worst random-{k} draw masked {string.Join(", ", worst.Heads.Select(Head))} "
                + $"(scores {string.Join(", ", worst.Heads.Select(x => Scores[x.Layer, x.Head].ToString("F2")))}) and scored "
                + $"{RandomAccuracy[k, worst.Draw]:F2}: heads with a retrieval score near 0 can still be ones the circuit needs.");
        claims.Saw($"Removing the top-{k} by zeroing their output gives {ZeroAccuracy:F2} and by their mean output {MeanAccuracy:F2}, "
            + $"against {top:F2} for the paper's uniform mask.");
        return claims;
    }
}
