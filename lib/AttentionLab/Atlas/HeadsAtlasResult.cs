using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Atlas;

/// <summary>The heads atlas's scores per model and role, its heatmaps, the table of heads with several roles, and its claims.</summary>
public sealed record HeadsAtlasResult(HeadsAtlas.Config Config, IReadOnlyList<HeadAtlasScores> Models, double Seconds) : IPaperResult
{
    /// <summary>Tolerance of the detector against its loop recomputation (float32 patterns summed in float64) [ours].</summary>
    public const double LoopTolerance = 1e-5;

    /// <summary>The shipped checkpoint whose circuit is documented (data/README.md: previous-token head in layer 0, induction heads in layer 1).</summary>
    public const string InductionCheckpoint = "induction-2l-attn-only";

    /// <summary>A role's best head must score this many times a uniform head's score on the same input [ours, as InductionCheckpointTests].</summary>
    public const double ChanceFactor = 5;

    /// <summary>Layer-1 induction must beat layer 0's best by this much [ours, as InductionCheckpointTests].</summary>
    public const double LayerMargin = 0.3;

    /// <summary>P25's spec: mean attention to [CLS] measured on MiniLM, layers 0–5, on four other sentences.</summary>
    public static readonly double[] SpecClsMass = [0.20, 0.53, 0.55, 0.50, 0.58, 0.32];

    static HeadRole Role(string name) => HeadsAtlas.Roles.First(r => r.Name == name);

    /// <summary>One row per (model, layer, head) with every role's score (NaN where the role is not defined for the model).</summary>
    public DataFrame ToDataFrame()
    {
        var rows = Models.SelectMany(m => Heads(m).Select(x => (m, x.Layer, x.Head))).ToList();
        var columns = new List<DataFrameColumn>
        {
            new StringDataFrameColumn("model", rows.Select(r => r.m.Model)),
            new Int32DataFrameColumn("layer", rows.Select(r => r.Layer)),
            new Int32DataFrameColumn("head", rows.Select(r => r.Head)),
        };
        foreach (var role in HeadsAtlas.Roles)
            columns.Add(new DoubleDataFrameColumn(role.Name,
                rows.Select(r => r.m.Scores.TryGetValue(role.Name, out var s) ? Math.Round(s[r.Layer, r.Head], 4) : double.NaN)));
        columns.Add(new StringDataFrameColumn("roles", rows.Select(r => string.Join(", ", RolesOf(r.m, r.Layer, r.Head)))));
        return new DataFrame(columns);
    }

    static IEnumerable<(int Layer, int Head)> Heads(HeadAtlasScores m) =>
        Enumerable.Range(0, m.Layers).SelectMany(l => Enumerable.Range(0, m.Heads).Select(h => (l, h)));

    /// <summary>The roles head (<paramref name="layer"/>, <paramref name="head"/>) of <paramref name="m"/> holds.</summary>
    public static IReadOnlyList<string> RolesOf(HeadAtlasScores m, int layer, int head) => HeadsAtlas.Roles
        .Where(r => m.Scores.TryGetValue(r.Name, out var s) && s[layer, head] >= r.Threshold).Select(r => r.Name).ToList();

    /// <summary>Heads with two roles or more, every model.</summary>
    public DataFrame SeveralRoles()
    {
        var rows = Models.SelectMany(m => Heads(m).Select(x => (m, x.Layer, x.Head, Roles: RolesOf(m, x.Layer, x.Head))))
            .Where(r => r.Roles.Count >= 2).ToList();
        return new DataFrame(
            new StringDataFrameColumn("model", rows.Select(r => r.m.Model)),
            new StringDataFrameColumn("head", rows.Select(r => $"L{r.Layer}H{r.Head}")),
            new StringDataFrameColumn("roles", rows.Select(r => string.Join(", ", r.Roles))),
            new StringDataFrameColumn("scores", rows.Select(r => string.Join(", ", r.Roles.Select(n => $"{n} {r.m.Scores[n][r.Layer, r.Head]:F2}")))));
    }

    /// <summary>One heatmap of <paramref name="role"/>: a row per (model, layer) of the decoder checkpoints that define it, a column per head.</summary>
    public GenericChart Heatmap(string role)
    {
        var r = Role(role);
        var models = Models.Where(m => m.Model != "MiniLM" && m.Scores.TryGetValue(role, out var s) && !double.IsNaN(s[0, 0])).ToList();
        if (models.Count == 0) throw new ArgumentException($"no decoder checkpoint of this run defines '{role}'.", nameof(role));
        int heads = models.Max(m => m.Heads);
        var rows = models.SelectMany(m => Enumerable.Range(0, m.Layers).Select(l => (Label: $"{m.Model} L{l}",
            Values: Enumerable.Range(0, heads).Select(h => h < m.Heads ? m.Scores[role][l, h] : 0.0).ToArray()))).ToList();
        return Charts.Heatmap(rows.Select(x => x.Values).ToList(), $"{role} score per head (holds the role at ≥ {r.Threshold})",
            Enumerable.Range(0, heads).Select(h => $"H{h}").ToList(), rows.Select(x => x.Label).ToList(), "head", "model, layer");
    }

    /// <summary>MiniLM's pattern detectors in one heatmap: a row per (detector, layer), a column per head.</summary>
    public GenericChart MiniLmHeatmap()
    {
        var m = Models.FirstOrDefault(x => x.Model == "MiniLM") ?? throw new InvalidOperationException("this run did not include MiniLM.");
        var roles = HeadsAtlas.Roles.Where(r => m.Scores.ContainsKey(r.Name)).ToList();
        var rows = roles.SelectMany(r => Enumerable.Range(0, m.Layers).Select(l => (Label: $"{r.Name} L{l}",
            Values: Enumerable.Range(0, m.Heads).Select(h => m.Scores[r.Name][l, h]).ToArray()))).ToList();
        return Charts.Heatmap(rows.Select(x => x.Values).ToList(), "MiniLM (all-MiniLM-L6-v2): pattern detectors per head",
            Enumerable.Range(0, m.Heads).Select(h => $"H{h}").ToList(), rows.Select(x => x.Label).ToList(), "head", "detector, layer");
    }

    /// <summary>Heads per role and model (counts at the role's threshold) as a table.</summary>
    public DataFrame RoleCounts()
    {
        var columns = new List<DataFrameColumn> { new StringDataFrameColumn("model", Models.Select(m => m.Model)),
            new Int32DataFrameColumn("heads", Models.Select(m => m.Layers * m.Heads)) };
        foreach (var role in HeadsAtlas.Roles)
            columns.Add(new StringDataFrameColumn(role.Name, Models.Select(m => m.Scores.TryGetValue(role.Name, out var s)
                ? double.IsNaN(s[0, 0]) ? "no run counted" : HeadsAtlas.Count(s, role.Threshold).ToString() : "—")));
        foreach (var role in new[] { HeadsAtlas.PreviousToken, HeadsAtlas.DuplicateToken, HeadsAtlas.Induction })
            columns.Add(new DoubleDataFrameColumn($"{role} (uniform head)", Models.Select(m => Math.Round(m.Uniform[role], 3))));
        return new DataFrame(columns);
    }

    /// <summary>The atlas's claims: the detector against loops, the documented induction circuit, induction heads' copying OV
    /// circuits, retrieval against induction scores, MiniLM's [CLS] sink against P25's measurement, succession, multi-role heads.</summary>
    public ClaimSet Claims()
    {
        var set = new ClaimSet(HeadsAtlas.Paper.Number, Config.Size);
        var decoders = Models.Where(m => m.Model != "MiniLM").ToList();
        if (decoders.Count > 0)
        {
            double gap = decoders.Max(m => m.DetectorLoopGap);
            set.Exactness("detector-matches-loops",
                "the previous-token detector's score equals Σ_i A_{i,i−1} / Σ A recomputed by loops over the cached patterns of every checkpoint",
                $"max |Δ| {Num.Sci(gap)} over {decoders.Sum(m => m.Layers * m.Heads)} heads", $"≤ {Num.Sci(LoopTolerance)}", gap <= LoopTolerance);
        }

        var induction = decoders.FirstOrDefault(m => m.Model == InductionCheckpoint);
        var th = Role(HeadsAtlas.Induction).Threshold;
        if (induction is not null)
        {
            double prev0 = Max(induction.Scores[HeadsAtlas.PreviousToken], 0), ind1 = Max(induction.Scores[HeadsAtlas.Induction], 1),
                ind0 = Max(induction.Scores[HeadsAtlas.Induction], 0);
            double chancePrev = induction.Uniform[HeadsAtlas.PreviousToken], chanceInd = induction.Uniform[HeadsAtlas.Induction];
            bool holds = prev0 >= ChanceFactor * chancePrev && ind1 >= ChanceFactor * chanceInd && ind1 - ind0 >= LayerMargin;
            set.Claim("two-layer-induction-circuit",
                "a two-layer attention-only model forms induction heads in layer 1 on top of a previous-token head in layer 0 (Olsson et al. 2022)",
                "previous-token head in layer 0, induction heads in layer 1 of small attention-only models (Olsson et al. 2022, §3)",
                $"{InductionCheckpoint}: best layer-0 previous-token {prev0:F2} (uniform head {chancePrev:F2}), best layer-1 induction {ind1:F2} " +
                $"(uniform head {chanceInd:F2}; layer 0's best {ind0:F2})",
                $"both ≥ {ChanceFactor}× a uniform head's score, and layer-1 induction ≥ layer 0's + {LayerMargin}", holds, asserted: true);
        }

        var copyingTh = Role(HeadsAtlas.Copying).Threshold;
        var inductionHeads = decoders.SelectMany(m => Heads(m).Where(x => m.Scores[HeadsAtlas.Induction][x.Layer, x.Head] >= th)
            .Select(x => m.Scores[HeadsAtlas.Copying][x.Layer, x.Head])).ToList();
        var others = decoders.SelectMany(m => Heads(m).Where(x => m.Scores[HeadsAtlas.Induction][x.Layer, x.Head] < th)
            .Select(x => m.Scores[HeadsAtlas.Copying][x.Layer, x.Head])).ToList();
        if (inductionHeads.Count == 0)
            set.NotShown("induction-heads-copy", "induction heads have copying OV circuits (positive eigenvalues)",
                "induction heads' OV circuits copy (Olsson et al. 2022, §3; Elhage et al. 2021)", "no induction head found", $"induction ≥ {th}",
                "no checkpoint of this run has an induction head.");
        else
        {
            double share = inductionHeads.Count(s => s > copyingTh) / (double)inductionHeads.Count;
            double meanInd = inductionHeads.Average(), meanOther = others.Count > 0 ? others.Average() : double.NaN;
            set.Claim("induction-heads-copy", "induction heads have copying OV circuits (positive eigenvalues)",
                "induction heads' OV circuits copy (Olsson et al. 2022, §3; Elhage et al. 2021)",
                $"{share:P0} of {inductionHeads.Count} induction heads copy (Σλ/Σ|λ| > {copyingTh}); mean {meanInd:F2} vs {meanOther:F2} for the other heads",
                $"most induction heads copy (> 50 % above {copyingTh}) and their mean exceeds the other heads'", share > 0.5 && meanInd > meanOther,
                asserted: false, note: "Across checkpoints trained on different tasks; recorded, not asserted.");
        }

        var retrievalModels = decoders.Where(m => !double.IsNaN(m.Scores[HeadsAtlas.Retrieval][0, 0])).ToList();
        if (retrievalModels.Count == 0)
            set.NotShown("retrieval-heads-are-induction-like", "retrieval heads (Wu et al.) are the heads that copy from context, like induction heads",
                "retrieval heads implement copy-paste from the needle (Wu et al. 2024, §2)", "no retrieval run counted", "Spearman ρ > 0.5",
                "no checkpoint retrieved the answer (ROUGE-1 recall > 0.5) in any run, so no retrieval score is defined.", ClaimKind.Reported);
        else
        {
            var pairs = retrievalModels.SelectMany(m => Heads(m).Select(x => (Ind: m.Scores[HeadsAtlas.Induction][x.Layer, x.Head],
                Ret: m.Scores[HeadsAtlas.Retrieval][x.Layer, x.Head]))).ToList();
            double rho = Metrics.Spearman(pairs.Select(p => p.Ind).ToList(), pairs.Select(p => p.Ret).ToList());
            set.Reported("retrieval-heads-are-induction-like", "retrieval heads (Wu et al.) are the heads that copy from context, like induction heads",
                "retrieval heads implement copy-paste from the needle (Wu et al. 2024, §2)",
                $"Spearman ρ {rho:F2} between induction and retrieval scores over {pairs.Count} heads of {retrievalModels.Count} checkpoints " +
                $"({retrievalModels.Sum(m => m.RetrievalRunsCounted)} of {retrievalModels.Sum(m => m.RetrievalRuns)} runs retrieved)",
                "ρ > 0.5", rho > 0.5);
        }

        var minilm = Models.FirstOrDefault(m => m.Model == "MiniLM");
        if (minilm is not null)
        {
            var mass = Enumerable.Range(0, minilm.Layers).Select(l => Enumerable.Range(0, minilm.Heads).Average(h => minilm.Scores[HeadsAtlas.Sink][l, h]))
                .ToArray();
            bool holds = mass.Length == SpecClsMass.Length && Enumerable.Range(1, 4).All(l => mass[l] >= 0.3);
            set.Reported("minilm-cls-sink", "MiniLM's [CLS] is a primary sink in its middle layers (P25 spec §4, measured on other sentences)",
                $"mean attention to [CLS], layers 0–5: {string.Join(" / ", SpecClsMass.Select(v => v.ToString("F2")))} (P25 spec)",
                $"{string.Join(" / ", mass.Select(v => v.ToString("F2")))} over {HeadsAtlas.Sentences.Count} sentences; " +
                $"{HeadsAtlas.Count(minilm.Scores[HeadsAtlas.Sink], HeadsAtlas.Roles.First(r => r.Name == HeadsAtlas.Sink).Threshold)} of " +
                $"{minilm.Layers * minilm.Heads} heads ≥ 0.3", "layers 1–4 each ≥ 0.3", holds);
        }

        var successor = decoders.Where(m => m.Scores.ContainsKey(HeadsAtlas.Successor)).ToList();
        if (successor.Count > 0)
        {
            double best = successor.Max(m => m.Scores[HeadsAtlas.Successor].Cast<double>().Max());
            var where = successor.SelectMany(m => Heads(m).Select(x => (m.Model, x.Layer, x.Head, S: m.Scores[HeadsAtlas.Successor][x.Layer, x.Head])))
                .MaxBy(x => x.S);
            double chance = 1.0 / 25;
            set.Reported("successor-heads", "some heads map each ordinal token to its successor (succession score; Gould et al. 2023)",
                "successor heads in GPT-2, Pythia and Llama-2 with succession scores near 1 (Gould et al. 2023)",
                $"best {best:F2} ({where.Model} L{where.Layer}H{where.Head}) over a … z; chance {chance:F2}",
                $"a head ≥ {Role(HeadsAtlas.Successor).Threshold}", best >= Role(HeadsAtlas.Successor).Threshold,
                note: "Character models of Moby-Dick, 1,500 steps: a toy may well have no successor head.");
        }

        int several = Models.Sum(m => Heads(m).Count(x => RolesOf(m, x.Layer, x.Head).Count >= 2));
        int all = Models.Sum(m => m.Layers * m.Heads);
        set.Reported("heads-with-several-roles", "a head can hold several roles at once (e.g. induction and copying)", "—",
            $"{several} of {all} heads hold two roles or more", "at least one", several > 0);

        foreach (var m in Models)
            set.Saw($"{m.Model}: " + string.Join(", ", HeadsAtlas.Roles.Where(r => m.Scores.TryGetValue(r.Name, out var s) && !double.IsNaN(s[0, 0]))
                .Select(r => $"{HeadsAtlas.Count(m.Scores[r.Name], r.Threshold)} {r.Name}")) + $" of {m.Layers * m.Heads} heads" +
                (m.RetrievalRuns > 0 ? $"; {m.RetrievalRunsCounted} of {m.RetrievalRuns} retrieval runs retrieved the answer" : "") + ".");
        set.Saw($"The atlas ran in {Seconds:F1} s.");
        return set;
    }

    static double Max(double[,] s, int layer) => Enumerable.Range(0, s.GetLength(1)).Max(h => s[layer, h]);
}
