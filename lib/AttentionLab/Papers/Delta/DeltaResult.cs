using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>
/// One policy at one budget: accuracy on the second copy; attended tokens per layer and decode step (mean); their ratio
/// to full attention (Σ attended / Σ (t + 1) over decode steps) over all layers and over DELTA's sparse layers only; the
/// read ratio, which adds what choosing costs (the oracle's scoring row, Quest's page min/max; DELTA: nothing, its page
/// scores come from the Δ-layer's own full row); KV bytes read and held per layer and step; wall time per token.
/// </summary>
public sealed record DeltaRow(string Policy, int BudgetPages, double Accuracy, double AttendedPerToken, double AttendedRatio,
    double SparseAttendedRatio, double ReadRatio, double KvBytesRead, double KvBytesHeld, double MsPerToken)
{
    /// <summary>Fewer attended tokens than full attention, all layers: 1 / <see cref="AttendedRatio"/>.</summary>
    public double Reduction => 1 / AttendedRatio;

    public override string ToString() =>
        $"{Policy,-12} K={(BudgetPages == int.MaxValue ? "all" : BudgetPages.ToString()),-3} acc {Accuracy:F3}  attended {AttendedRatio:P0} of full (sparse " +
        $"layers {SparseAttendedRatio:P0}), read {ReadRatio:P0}  {MsPerToken:F2} ms/token";
}

/// <summary>The exactness phase of <see cref="DeltaExperiment.Exactness"/>.</summary>
/// <param name="PageScoreMaxAbs">max |Δ| of <see cref="PageScores.MaxOverHeads"/> vs its loop twin (float64).</param>
/// <param name="AllPagesMaxAbs">max |Δlogit| of DELTA with a budget covering every page vs the dense KV-cache decode (float32).</param>
/// <param name="AllFullMaxAbs">the same with every layer full.</param>
/// <param name="GatherVsMaskedMaxAbs">max |Δlogit| of the sparse layers' page gather vs the masked naive twin.</param>
/// <param name="TwinBudget">the budget (pages) of the gather-vs-masked check.</param>
public sealed record DeltaExactness(double PageScoreMaxAbs, double AllPagesMaxAbs, double AllFullMaxAbs, double GatherVsMaskedMaxAbs, int TwinBudget)
{
    /// <summary>Page scores in float64.</summary>
    public const double PageTolerance = 1e-12;
    /// <summary>Spec §6: budget ≥ #pages ⇒ logits == full (1e-5); float32 logits.</summary>
    public const double LogitTolerance = 1e-5;
}

/// <summary>What <see cref="DeltaExperiment.Run(DeltaExperiment.Config, Device, IProgress{string}?)"/> measured.</summary>
/// <param name="Config">the run's sizes.</param>
/// <param name="Exactness">the exactness phase.</param>
/// <param name="Rows">one row per (policy, budget); the full-attention row first.</param>
/// <param name="ScoreRows">headline DELTA, sequence 0: the Δ-layer's page scores per decode step (NaN for pages not yet written).</param>
/// <param name="SelectedRows">the same grid, 1 where the page was selected.</param>
/// <param name="Overlap">[L, L] top-K Jaccard overlap of the layers' page scores, mean over steps with more than K pages.</param>
/// <param name="SparseRecall">per sparse layer: share of its full attention mass on the pages DELTA attended (mean over steps).</param>
/// <param name="RecallBySteps">the same per decode step (x = step, sequence 0), one series per sparse layer.</param>
/// <param name="Selections">headline DELTA's selections checked (every Δ-layer, every decode step, sequence 0).</param>
/// <param name="SelectionViolations">selections that miss a recent page, hold a page twice or out of order, or hold ≠ min(K, N) pages.</param>
/// <param name="Elapsed">wall time of the run.</param>
public sealed record DeltaResult(DeltaExperiment.Config Config, DeltaExactness Exactness, IReadOnlyList<DeltaRow> Rows, IReadOnlyList<double[]> ScoreRows,
    IReadOnlyList<double[]> SelectedRows, double[][] Overlap, IReadOnlyDictionary<int, double> SparseRecall, IReadOnlyList<Series> RecallBySteps,
    int Selections, int SelectionViolations, TimeSpan Elapsed) : IPaperResult
{
    /// <summary>The row of <paramref name="policy"/> at <paramref name="budget"/> (any budget for full).</summary>
    public DeltaRow Get(string policy, int budget) =>
        Rows.FirstOrDefault(r => r.Policy == policy && (policy == DeltaExperiment.FullName || r.BudgetPages == budget))
        ?? throw new ArgumentException($"no row {policy} at {budget} pages.", nameof(policy));

    /// <summary>Columns: policy, budget, accuracy, attended tokens per token, attended vs full (all layers, sparse layers),
    /// read vs full (selection cost included), KV bytes read / held per step, ms/token.</summary>
    public DataFrame ToDataFrame() => Tables.From(Rows.Select(r => new
        {
            r.Policy,
            Budget = r.BudgetPages == int.MaxValue ? "all" : $"{r.BudgetPages}×{Config.PageSize}",
            r.Accuracy,
            r.AttendedPerToken,
            AttendedVsFull = r.AttendedRatio,
            SparseLayersAttendedVsFull = r.SparseAttendedRatio,
            ReadVsFull = r.ReadRatio,
            KvBytesReadPerStep = r.KvBytesRead,
            KvBytesHeldPerStep = r.KvBytesHeld,
            r.MsPerToken,
        }));

    /// <summary>Accuracy against attended-token ratio (all layers), one series per policy (full is one point).</summary>
    public IReadOnlyList<Series> AccuracyVsAttended() => Rows.GroupBy(r => r.Policy)
        .Select(g => new Series(g.Key, g.Select(r => r.AttendedRatio).ToArray(), g.Select(r => r.Accuracy).ToArray())).ToList();

    /// <summary>
    /// The claims. Exactness: page score = loop; budget ≥ pages and all-full = dense decode; gather = masked twin; selection
    /// invariants; nothing evicted. Claims at the headline budget, every baseline at DELTA's reads: ≥ full − 2 pts (spec §6),
    /// ≥ StreamingLLM + 20 pts (spec §6), near-full at ≈ 4× fewer attended tokens (spec §7). Reported: DELTA vs Quest-like
    /// at equal reads; ms/token.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(DeltaExperiment.Paper.Number, Config.Size);
        var x = Exactness;
        int k = Config.HeadlineBudget, p = Config.PageSize, n = DeltaCheckpoint.Task.Length;
        claims.Exactness("page-score-equals-loop", "s_p = Σ_{j∈p} max_h a_{h,j} (max over heads before the page sum) equals the explicit loop",
            $"max |Δ| {Num.Sci(x.PageScoreMaxAbs)} (B 2, H 4, 3 queries, 22 keys, P = 4: a partial last page)",
            $"≤ {Num.Sci(DeltaExactness.PageTolerance, 0)} (float64; spec §6)", x.PageScoreMaxAbs <= DeltaExactness.PageTolerance);
        claims.Exactness("full-budget-equals-dense", "a budget covering every page, and every layer full, reduce DELTA to the dense KV-cache decode",
            $"max |Δlogit| K ≥ pages {Num.Sci(x.AllPagesMaxAbs)}, all layers full {Num.Sci(x.AllFullMaxAbs)} (checkpoint, 4 sequences, float32)",
            $"≤ {Num.Sci(DeltaExactness.LogitTolerance, 0)} (spec §6)",
            x.AllPagesMaxAbs <= DeltaExactness.LogitTolerance && x.AllFullMaxAbs <= DeltaExactness.LogitTolerance);
        claims.Exactness("gather-equals-masked",
            "the sparse layers' gather of the selected pages equals the naive twin (full score row masked to −∞ outside them)",
            $"max |Δlogit| {Num.Sci(x.GatherVsMaskedMaxAbs)} at K = {x.TwinBudget} pages (checkpoint, 4 sequences, float32)",
            $"≤ {Num.Sci(DeltaExactness.LogitTolerance, 0)}", x.GatherVsMaskedMaxAbs <= DeltaExactness.LogitTolerance);
        claims.Exactness("selection-invariants", "every selection holds the last L pages and min(K, N) unique pages in logical order",
            $"{SelectionViolations} violations in {Selections} selections (headline K = {k}, L = {Config.RecentPages}, sequence 0, every decode step)",
            "0 violations (spec §6)", Selections > 0 && SelectionViolations == 0);
        var full = Get(DeltaExperiment.FullName, 0);
        var keepers = new[] { DeltaExperiment.DeltaName, DeltaExperiment.PerLayerName, DeltaExperiment.QuestName }.Select(q => Get(q, k)).ToList();
        claims.Exactness("never-evicts", "the full KV cache is never evicted: DELTA, the oracle and Quest hold what full attention holds at every step",
            $"KV held per layer and step: full {full.KvBytesHeld:N0} B; " + string.Join(", ", keepers.Select(r => $"{r.Policy} {r.KvBytesHeld:N0} B")),
            "equal to full (spec §6: the full cache is never modified)",
            keepers.All(r => Math.Abs(r.KvBytesHeld - full.KvBytesHeld) <= 1e-9 * full.KvBytesHeld));

        var delta = Get(DeltaExperiment.DeltaName, k);
        var stream = Get(DeltaExperiment.StreamingName, k);
        var quest = Get(DeltaExperiment.QuestName, k);
        var oracle = Get(DeltaExperiment.PerLayerName, k);
        var h2o = Get(DeltaExperiment.H2OName, k);
        string budget = $"K = {k} pages × P = {p} = {k * p} tokens ({(double)k * p / n:P0} of n = {n} at the last step)";
        string attended = $"attended {delta.AttendedRatio:P0} of full's tokens over all layers (sparse layers {delta.SparseAttendedRatio:P0})";
        claims.Claim("near-full-at-25pct-budget", "DELTA at a 25 % budget stays within 2 points of full attention",
            "matches or beats full attention on AIME and GPQA-Diamond (DeepSeek-R1-Distill models; paper abstract)",
            $"DELTA {delta.Accuracy:P1} vs full {full.Accuracy:P1} ({100 * (delta.Accuracy - full.Accuracy):+0.0;−0.0} pts) at {budget}; {attended}",
            "≥ full − 2 pts (spec §6)", delta.Accuracy >= full.Accuracy - 0.02, asserted: false,
            note: $"Not asserted: the spec's criterion is written for the nightly size (512 sequences); at smoke size ({Config.Sequences} sequences) it is " +
                  "recorded with its status. The budget is fixed in pages, so early steps (fewer than K pages) attend every token: the sparse layers read " +
                  "more than the nominal share.");
        claims.Claim("beats-streamingllm", "DELTA keeps delayed references that eviction loses: ≥ StreamingLLM + 20 pts at the same reads",
            "DELTA never evicts; eviction methods accumulate errors where early tokens are needed later (spec §4, §7: eviction baselines fail on delayed " +
            "references)",
            $"DELTA {delta.Accuracy:P1} vs StreamingLLM {stream.Accuracy:P1} (H2O {h2o.Accuracy:P1}); both attend {delta.AttendedRatio:P0} / " +
            $"{stream.AttendedRatio:P0} of full's tokens",
            "DELTA ≥ StreamingLLM + 20 pts (spec §6)", delta.Accuracy >= stream.Accuracy + 0.20, asserted: true,
            deviation: $"equal reads: StreamingLLM (sinks + window of {k * p} tokens) evicts in DELTA's sparse layers only and keeps layers " +
            $"{string.Join(", ", Config.FullLayers.Concat(Config.DeltaLayers).Order())} full, as DELTA does; the spec's StreamingLLM evicts in every layer " +
            "and so reads fewer tokens");
        int dense = Enumerable.Range(0, DeltaCheckpoint.Config.Layers).Count(Config.IsDense);
        claims.Claim("fewer-attended-tokens", "near-full accuracy at about 4× fewer attended tokens (spec §7's toy analogue)",
            "up to 5× fewer attended tokens (v2: 4.25×) with 1.5× end-to-end speed-up, 28 layers (5 full) at 16k+ tokens (paper; spec §7–8)",
            $"{delta.Reduction:F2}× fewer over all layers (full and Δ-layers {string.Join(", ", Config.FullLayers.Concat(Config.DeltaLayers).Order())} at " +
            $"100 %, sparse layers {delta.SparseAttendedRatio:P0}) at {delta.Accuracy:P1} vs full {full.Accuracy:P1}",
            "≥ 4× fewer attended tokens, all layers and decode steps, at ≥ full − 2 pts (spec §7)",
            delta.Reduction >= 4 && delta.Accuracy >= full.Accuracy - 0.02, asserted: false,
            note: $"At this size it cannot hold: with {dense} of {DeltaCheckpoint.Config.Layers} layers attending fully (spec §4's smoke roles) the " +
                  $"reduction is at most {(double)DeltaCheckpoint.Config.Layers / dense:0.#}× whatever the budget; spec §8's formula gives ≈ 4.3× for 5 " +
                  "full of 28 layers at n = 16k.");

        claims.Reported("quest-equal-reads",
            "one Δ-layer's selection serves the layers after it as well as per-layer query-aware selection (Quest-like) at equal reads",
            "Quest-like per-layer selection is the spec's selection baseline (spec §4); the paper's comparison figures are not quoted here",
            $"DELTA {delta.Accuracy:P1} vs Quest-like {quest.Accuracy:P1}, both attending {delta.AttendedRatio:P0} / {quest.AttendedRatio:P0} of full's " +
            $"tokens; reads with selection cost: DELTA {delta.ReadRatio:P0}, Quest {quest.ReadRatio:P0} (page min/max)",
            "DELTA ≥ Quest-like − 2 pts [ours: the spec names no threshold]", delta.Accuracy >= quest.Accuracy - 0.02);
        claims.Reported("ms-per-token", "fewer attended tokens make decoding faster",
            "1.5× end-to-end speed-up (v2: 1.54×) on long reasoning traces, GPU (paper)",
            $"full {full.MsPerToken:F2} ms/token, DELTA {delta.MsPerToken:F2} ms/token ({Config.Sequences} sequences, n = {n}, this machine)",
            "DELTA < full ms/token (n = 73 on a shared CPU is overhead-bound: reported, not asserted)", delta.MsPerToken < full.MsPerToken);

        claims.Saw($"At {budget}, DELTA's sparse layers attend {delta.SparseAttendedRatio:P0} of full's tokens and all layers {delta.AttendedRatio:P0} " +
            $"({delta.Reduction:F2}× fewer); accuracy {delta.Accuracy:P1} vs full {full.Accuracy:P1}.");
        claims.Saw($"At the same reads: per-layer oracle {oracle.Accuracy:P1} (it scores every key to choose: reads {oracle.ReadRatio:P0} of full), " +
            $"Quest-like {quest.Accuracy:P1} (reads {quest.ReadRatio:P0} with its page bounds), StreamingLLM {stream.Accuracy:P1}, H2O {h2o.Accuracy:P1}.");
        int tight = Config.BudgetPages.Min();
        if (tight != k && Rows.Any(r => r.Policy == DeltaExperiment.DeltaName && r.BudgetPages == tight))
        {
            var d = Get(DeltaExperiment.DeltaName, tight);
            claims.Saw($"At the tightest budget (K = {tight} pages) DELTA reaches {d.Accuracy:P1} with its sparse layers at {d.SparseAttendedRatio:P0} of " +
                $"full's tokens; the oracle {Get(DeltaExperiment.PerLayerName, tight).Accuracy:P1}, Quest-like " +
                $"{Get(DeltaExperiment.QuestName, tight).Accuracy:P1}, StreamingLLM {Get(DeltaExperiment.StreamingName, tight).Accuracy:P1}.");
        }
        if (SparseRecall.Count > 0)
            claims.Saw("Share of each sparse layer's full attention mass on DELTA's pages: "
                + string.Join(", ", SparseRecall.OrderBy(kv => kv.Key).Select(kv => $"layer {kv.Key} {kv.Value:P1}")) + ".");
        return claims;
    }

    internal static DeltaResult From(DeltaExperiment.Config config, DeltaExactness exactness, List<DeltaRow> rows, DeltaDecoder headline, int layers,
        TimeSpan elapsed)
    {
        int deltaLayer = config.DeltaLayers.Min();
        var sel = headline.Selections.Where(s => s.Layer == deltaLayer).ToList();
        int width = sel.Max(s => s.Scores.Length);
        var scores = sel.Select(s => Enumerable.Range(0, width).Select(p => p < s.Scores.Length ? s.Scores[p] : double.NaN).ToArray()).ToList();
        var chosen = sel.Select(s => Enumerable.Range(0, width).Select(
            p => p < s.Scores.Length ? (s.Pages.Contains(p) ? 1.0 : 0.0) : double.NaN).ToArray()).ToList();
        var overlap = new double[layers][];
        for (int i = 0; i < layers; i++) overlap[i] = new double[layers];
        int counted = 0;
        using (var scope = NewDisposeScope())
            foreach (var c in headline.Captures.Where(c => c.LayerPageScores[0].Length > config.HeadlineBudget))
            {
                var m = torch.tensor(c.LayerPageScores.SelectMany(r => r).ToArray(), new long[] { layers, c.LayerPageScores[0].Length },
                    dtype: ScalarType.Float64);
                var j = PageScores.LayerTopKOverlap(m, config.HeadlineBudget).data<double>().ToArray();
                for (int a = 0; a < layers; a++) for (int b = 0; b < layers; b++) overlap[a][b] += j[a * layers + b];
                counted++;
            }
        foreach (var row in overlap) for (int b = 0; b < layers; b++) row[b] /= Math.Max(1, counted);
        var recall = headline.Captures.SelectMany(c => c.SparseRecall).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Average(kv => kv.Value));
        var bySteps = recall.Keys.OrderBy(l => l).Select(l => new Series($"layer {l}",
            headline.Captures.Select(c => (double)c.Step).ToArray(), headline.Captures.Select(c => c.SparseRecall[l]).ToArray())).ToList();
        int violations = headline.Selections.Count(s => !SelectionValid(s, headline.Policy));
        return new DeltaResult(config, exactness, rows, scores, chosen, overlap, recall, bySteps, headline.Selections.Count, violations, elapsed);
    }

    /// <summary>Spec §6: the selection of N = ⌈(t+1)/P⌉ pages holds min(K, N) unique pages in ascending order, the last min(L, N) among them.</summary>
    public static bool SelectionValid(DeltaSelection selection, DeltaPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(selection);
        ArgumentNullException.ThrowIfNull(policy);
        long pages = policy.Pages(selection.Step + 1);
        var chosen = selection.Pages;
        if (selection.Scores.Length != pages || chosen.Length != Math.Min(policy.BudgetPages, pages)) return false;
        for (int i = 0; i < chosen.Length; i++)
            if (chosen[i] < 0 || chosen[i] >= pages || (i > 0 && chosen[i] <= chosen[i - 1])) return false;   // in range, unique, ascending
        for (long r = Math.Max(0, pages - policy.RecentPages); r < pages; r++)
            if (Array.BinarySearch(chosen, r) < 0) return false;                                             // recency window forced in
        return true;
    }
}
