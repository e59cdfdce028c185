using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>One policy's copy-phase result: accuracy, keys read per head and step (mean over layers and decoded steps,
/// full steps included), fraction of full steps after the prompt, KV bytes read per decoded token (Σ layers, per
/// sequence), ms per decoded token (the batch). For baselines <see cref="TopK"/> is their key budget.</summary>
public sealed record PolicyRow(string Policy, int TopK, int Stride, double TokenAccuracy, double ExactMatch, double AttendedMean,
    double FullStepFraction, double KvBytesReadPerToken, double MsPerToken, double Tau = double.NaN)
{
    public string Name => Policy switch
    {
        RecycledExperiment.Recycled => $"recycled K={TopK} S={Stride}",
        RecycledExperiment.RecycledDynamic => $"recycled K={TopK} τ={Tau}",
        RecycledExperiment.FullName => "full",
        _ => $"{Policy} B={TopK}",
    };
}

/// <summary>The exactness phase: the fast form vs its naive twin (float64), the set sizes, and K ≥ n / S = 1 vs the forward.</summary>
/// <param name="NaiveTwin">fast (SelectiveKvCache) vs naive Recycled Attention outputs on toy tensors.</param>
/// <param name="FullBudgetMaxAbs">max |Δlogit| of the K ≥ n decode against the dense KV-cache decode (checkpoint, float32).</param>
/// <param name="StrideOneMaxAbs">the same for S = 1.</param>
/// <param name="Steps">toy steps whose set sizes were checked.</param>
/// <param name="SetSizeErrors">steps (× KV heads) whose attended set differs from min(K, t₀+1) + (t − t₀) unique causal keys.</param>
public sealed record RecycledExactness(ErrorStats NaiveTwin, double FullBudgetMaxAbs, double StrideOneMaxAbs, int Steps, int SetSizeErrors)
{
    /// <summary>Naive twin in float64.</summary>
    public const double NaiveTolerance = 1e-12;
    /// <summary>Spec §6: K ≥ n or S = 1 ⇒ logits equal full decode, max |Δ| &lt; 1e-5 (float32).</summary>
    public const double FullTolerance = 1e-5;
}

/// <summary>Everything the notebook shows for P05.</summary>
public sealed record RecycledResult(RecycledExperiment.Config Config, RecycledExactness Exactness, IReadOnlyList<PolicyRow> Rows, MassProbe Probe,
    int ContextLength, TimeSpan Elapsed) : IPaperResult
{
    /// <summary>Columns: policy, K (baselines: key budget), S, tau, accuracy, exact_match, attended_mean, full_step_fraction,
    /// kv_bytes_read_per_token, ms_per_token.</summary>
    public DataFrame ToDataFrame() => Tables.From(Rows.Select(r => new TableRow(r.Policy, r.TopK, r.Stride, r.Tau, r.TokenAccuracy, r.ExactMatch,
        r.AttendedMean, r.FullStepFraction, r.KvBytesReadPerToken, r.MsPerToken)));

    /// <summary>A row of <see cref="ToDataFrame"/> (K and S keep the paper's capitals).</summary>
    sealed record TableRow(string Policy, [property: Column("K")] int TopK, [property: Column("S")] int Stride, double Tau,
        [property: Column("accuracy")] double TokenAccuracy, double ExactMatch, double AttendedMean, double FullStepFraction,
        double KvBytesReadPerToken, double MsPerToken);

    /// <summary>The row of <paramref name="policy"/> at K (baselines: budget; and S for recycled).</summary>
    public PolicyRow Row(string policy, int k, int s = 0) => Rows.FirstOrDefault(r => r.Policy == policy && r.TopK == k && r.Stride == s)
        ?? throw new ArgumentException($"no row {policy} K = {k} S = {s}.", nameof(policy));

    /// <summary>The claim's Recycled row: K = n/8, S = 4.</summary>
    public PolicyRow ClaimRow => Row(RecycledExperiment.Recycled, Config.ClaimK, Config.ClaimStride);

    /// <summary>Keys per step the baselines get against <see cref="ClaimRow"/>: ⌈its mean⌉ (full steps counted).</summary>
    public int ClaimBudget => RecycledExperiment.EqualBudget(ClaimRow.AttendedMean);

    /// <summary>
    /// The claims. Exactness: fast = naive twin; set sizes; K ≥ n and S = 1 equal the forward; the top-K mass dominates a
    /// sink + window set at the full step. Claims at equal keys per step (Recycled's full steps counted): ≥ 2× StreamingLLM
    /// (spec §6), above H2O, and the gap to full attention (spec §7). Timing reported.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(RecycledExperiment.Paper.Number, Config.Size);
        var x = Exactness;
        claims.Exactness("fast-equals-naive", "Recycled Attention in a SelectiveKvCache equals its naive twin (float64 loops over steps, heads, keys)",
            $"max |Δ| {Num.Sci(x.NaiveTwin.MaxAbs)} (T = {x.Steps}, 4 query / 2 KV heads, D = 5, K = 4, S = 5, prefill 8)",
            $"≤ {Num.Sci(RecycledExactness.NaiveTolerance, 0)} (float64)", x.NaiveTwin.MaxAbs <= RecycledExactness.NaiveTolerance);
        claims.Exactness("recycled-set-size", "every step attends min(K, t₀+1) + (t − t₀) unique, causal keys (t + 1 on full steps)",
            $"{x.SetSizeErrors} mismatches over {x.Steps} steps × 2 KV heads", "0 mismatches (spec §6)", x.SetSizeErrors == 0);
        claims.Exactness("full-budget-equals-full", "K ≥ n and S = 1 reduce to full attention: the selective decode equals the dense KV-cache decode",
            $"max |Δlogit| K ≥ n {Num.Sci(x.FullBudgetMaxAbs)}, S = 1 {Num.Sci(x.StrideOneMaxAbs)} (checkpoint, 4 sequences, float32)",
            $"< {Num.Sci(RecycledExactness.FullTolerance, 0)} (spec §6)",
            x.FullBudgetMaxAbs < RecycledExactness.FullTolerance && x.StrideOneMaxAbs < RecycledExactness.FullTolerance);
        double top = Probe.Recycled[0], window = Probe.SinkWindow[0];
        claims.Exactness("topk-mass-dominates", "at the full step the recycled top-K holds at least the attention mass of a sink + window set of the same size",
            $"mass at t₀: top-K {top:F3}, sink + window {window:F3} (K = {Probe.TopK}, mean over layers, heads, queries)",
            "top-K ≥ sink + window (spec §6)", top >= window - 1e-12);

        var full = Row(RecycledExperiment.FullName, 0);
        var rec = ClaimRow;
        int budget = ClaimBudget;
        var stream = Row(RecycledExperiment.StreamingName, budget);
        var h2o = Row(RecycledExperiment.H2OName, budget);
        var oracle = Row(RecycledExperiment.OracleName, budget);
        string setting = $"recycled(K = {rec.TopK} = n/8, S = {rec.Stride}) {rec.TokenAccuracy:P1} at {rec.AttendedMean:F1} keys/step";
        double streamRatio = rec.TokenAccuracy / stream.TokenAccuracy;
        claims.Claim("beats-streamingllm-equal-keys",
            "at equal keys read per step, Recycled Attention reaches ≥ 2× the accuracy of a local-context baseline (StreamingLLM)",
            "≈ 2× the accuracy of local-context baselines at comparable speed-up (RULER, Llama-3.1-8B and Qwen2-7B; paper abstract)",
            $"{setting} vs StreamingLLM {stream.TokenAccuracy:P1} at {stream.AttendedMean:F1} keys/step (ratio {streamRatio:F1}×)",
            $"recycled ≥ 2 × StreamingLLM, StreamingLLM given ⌈recycled's mean keys per step⌉ = {budget} (spec §6)",
            rec.TokenAccuracy >= 2 * stream.TokenAccuracy, asserted: true,
            deviation: $"budget: the spec gives both methods K = n/8 = {rec.TopK}; recycled then reads {rec.AttendedMean:F1} keys per step (its full steps " +
            $"counted), so StreamingLLM gets {budget}",
            note: "The copy source lies 12–28 tokens back, so a window of this size only holds it for the shortest gaps: the spec's task is built against " +
            "windows.");
        claims.Claim("beats-h2o-equal-keys", "at equal keys read per step, Recycled Attention beats accumulated-attention eviction (H2O)",
            "compared with eviction by accumulated attention (H2O-style) on RULER (paper abstract); no single figure quoted here",
            $"{setting} vs H2O {h2o.TokenAccuracy:P1} at {h2o.AttendedMean:F1} keys/step",
            $"recycled > H2O at ⌈recycled's mean keys per step⌉ = {budget} [ours: spec §4 compares with H2O at equal K and names no threshold]",
            rec.TokenAccuracy > h2o.TokenAccuracy, asserted: true,
            deviation: "budget as in beats-streamingllm-equal-keys; the threshold is ours (the spec names none)");
        int smallS = Config.Strides.Min();
        var small = Row(RecycledExperiment.Recycled, Config.ClaimK, smallS);
        claims.Claim("near-full", "Recycled Attention stays close to full attention for small S (spec §7's toy analogue)",
            "RULER accuracy is reported beside full attention in the paper's tables (not quoted: this project could not verify them)",
            $"recycled(K = {small.TopK}, S = {small.Stride}) {small.TokenAccuracy:P1}, (S = {rec.Stride}) {rec.TokenAccuracy:P1} vs full " +
            $"{full.TokenAccuracy:P1} at {full.AttendedMean:F1} keys/step",
            $"≥ full − 10 pts at K = n/8 and the smallest S = {smallS} [ours: spec §7 says 'stays high for small S' with no number]",
            small.TokenAccuracy >= full.TokenAccuracy - 0.10, asserted: false,
            note: "Not asserted: the spec gives no number for it; recorded with its status at this size. Copying is the hardest case for a stale set (the " +
            "source moves every step).");

        claims.Reported("ms-per-token", "recycled steps read K + (t − t₀) KV rows instead of n: attention speed-up ≈ n / (K + n/S) (spec §8)",
            "speed-up comparable to local-context baselines (paper abstract); visible at n ≥ 8k on GPU (spec §8)",
            $"ms per decoded token at n = {ContextLength}: full {full.MsPerToken:F2}, {rec.Name} {rec.MsPerToken:F2}, StreamingLLM B={budget} " +
            $"{stream.MsPerToken:F2}",
            "recycled < full ms/token (n = 41 on a shared CPU is overhead-bound: reported, not asserted)", rec.MsPerToken < full.MsPerToken);

        claims.Saw($"Full attention copies {full.TokenAccuracy:P1} of the tokens reading {full.AttendedMean:F1} keys per step; Recycled Attention (K = " +
            $"{rec.TopK}, S = {rec.Stride}) reads {rec.AttendedMean:F1} ({rec.AttendedMean / full.AttendedMean:P0} of full, its full steps included) and " +
            $"copies {rec.TokenAccuracy:P1}.");
        claims.Saw($"At the same {budget} keys per step: StreamingLLM {stream.TokenAccuracy:P1}, H2O {h2o.TokenAccuracy:P1}, and a per-step top-k oracle " +
            $"(exact q·k over every key, an upper bound on choosing) {oracle.TokenAccuracy:P1}.");
        var pairs = Rows.Where(r => r.Policy == RecycledExperiment.Recycled)
            .Select(r => (Recycled: r, Window: Rows.FirstOrDefault(
                b => b.Policy == RecycledExperiment.StreamingName && b.TopK == RecycledExperiment.EqualBudget(r.AttendedMean))))
            .Where(p => p.Window is not null).ToList();
        var windowWins = pairs.Where(p => p.Window!.TokenAccuracy >= p.Recycled.TokenAccuracy).ToList();
        if (pairs.Count > 0)
            claims.Saw(windowWins.Count == 0
                ? $"Every fixed-stride Recycled row beats StreamingLLM at its own key budget ({pairs.Count} of {pairs.Count})."
                : $"StreamingLLM at equal keys matches or beats Recycled Attention in {windowWins.Count} of {pairs.Count} fixed-stride rows: " +
                  string.Join("; ", windowWins.Select(p =>
                      $"{p.Recycled.Name} {p.Recycled.TokenAccuracy:P1} vs window {p.Window!.TokenAccuracy:P1} at {p.Window.TopK} keys")) +
                  " — once the budget reaches the copy distance, a window holds the source every step and a stale set does not.");
        var bestTau = Rows.Where(r => r.Policy == RecycledExperiment.RecycledDynamic && r.TopK == Config.ClaimK).OrderByDescending(
            r => r.TokenAccuracy).FirstOrDefault();
        if (bestTau is not null)
            claims.Saw($"The dynamic schedule at K = {bestTau.TopK}, τ = {bestTau.Tau}: {bestTau.TokenAccuracy:P1} at {bestTau.AttendedMean:F1} keys per " +
                $"step, with {bestTau.FullStepFraction:P0} of the decoded steps full (S = {small.Stride}: {small.TokenAccuracy:P1} at " +
                $"{small.AttendedMean:F1} keys, {small.FullStepFraction:P0} full).");
        if (Probe.Recycled.Length > 1)
            claims.Saw($"Recovered attention mass of the recycled set falls from {Probe.Recycled[0]:F2} at the full step to {Probe.Recycled[1]:F2} one step " +
                $"later (sink + window of the same size: {Probe.SinkWindow[0]:F2} → {Probe.SinkWindow[1]:F2}).");
        return claims;
    }

    /// <summary>Accuracy vs keys read per step, one curve per policy family (recycled: one per S and per τ).</summary>
    public GenericChart AccuracyChart()
    {
        var groups = Rows.Where(r => r.Policy != RecycledExperiment.FullName).GroupBy(r => r.Policy switch
        {
            RecycledExperiment.Recycled => $"recycled S={r.Stride}",
            RecycledExperiment.RecycledDynamic => $"recycled τ={r.Tau}",
            _ => r.Policy,
        });
        var series = groups.Select(g => { var o = g.OrderBy(r => r.AttendedMean).ToList(); return new Series(g.Key, o.Select(r => r.AttendedMean).ToArray(),
            o.Select(r => r.TokenAccuracy).ToArray()); }).ToList();
        var full = Row(RecycledExperiment.FullName, 0);
        series.Add(new Series("full", new[] { full.AttendedMean }, new[] { full.TokenAccuracy }));
        return Charts.Lines(series, "Copy accuracy vs keys read per step (full steps included)", "keys read per head and step (mean)", "token accuracy");
    }

    /// <summary>The last layer's sharpest head: full-model probabilities, rows = decode steps t = t₀ …, columns = context position.</summary>
    public GenericChart ProbabilityHeatmap() => Charts.Heatmap(Probe.Heatmap,
        $"full-step probabilities, layer {Probe.Layer} head {Probe.Head} (rows t = {Probe.FullStep}…)");

    /// <summary>The same rows: 1 where the recycled set (K, S of the probe) holds the key.</summary>
    public GenericChart RecycledSetHeatmap() => Charts.Heatmap(Probe.Selected, $"recycled set (K = {Probe.TopK}, S = {Probe.Stride}; full steps re-select)");

    /// <summary>Recovered attention mass vs steps since the full step: recycled set vs a sink + window set of the same size.</summary>
    public GenericChart MassChart() => Charts.Lines(new[] { Series.Of("recycled", Probe.Recycled), Series.Of("sink + window (same size)", Probe.SinkWindow) },
        $"Attention mass recovered (K = {Probe.TopK})", "steps since the full step", "mass");

    /// <summary>ms per decoded token (batch of queries): full, the Recycled rows at K = n/8, and the baselines at the claim's budget.</summary>
    public GenericChart TimingChart()
    {
        var shown = Rows.Where(r => r.Policy == RecycledExperiment.FullName
            || (r.Policy is (RecycledExperiment.Recycled or RecycledExperiment.RecycledDynamic) && r.TopK == Config.ClaimK)
            || (r.Policy is (RecycledExperiment.StreamingName or RecycledExperiment.H2OName or RecycledExperiment.OracleName)
                && r.TopK == ClaimBudget)).ToList();
        return Charts.Bars(shown.Select(r => r.Name).ToList(), shown.Select(r => r.MsPerToken).ToList(),
            $"ms per decoded token (n = {ContextLength}: the MLP-free toy is overhead-bound)", "ms / token");
    }
}
