using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Dha;

/// <summary>The exactness phase (float64, toy TinyGpt): the gaps each check measured.</summary>
/// <param name="IdentityPlanVsMha">max |Δ logits| of DHA at identity grouping (search at ρ = 1, decouple, collapse) vs the MHA.</param>
/// <param name="IdentityPlanIsIdentity">The search at ρ = 1 keeps every head (2LH groups).</param>
/// <param name="DecoupledVsMha">max |Δ logits| of the decoupled model at ω = I (a ρ = 0.5 plan) vs the MHA.</param>
/// <param name="GqaGroupSizeOneVsMha">max |Δ logits| of GQA mean-pool with group size 1 (G = H) vs the MHA.</param>
/// <param name="IdenticalCollapseVsModel">max |Δ logits| after collapsing groups of identical heads (random in-group ω) vs that model.</param>
/// <param name="IdenticalSearchCost">The search's fusion cost on the identical-heads model at the same budget (0: it finds the copies).</param>
/// <param name="SearchMatchesNaive">The fast search (Ward's growth) and the naive one (SSE recomputed) give the same plan.</param>
/// <param name="SearchCostRelGap">|cost − naive cost| / naive cost.</param>
/// <param name="FusionLossRelGap">|L_fuse − naive| / naive at a random in-group ω.</param>
/// <param name="FusionGradMaxAbs">max |∂L_fuse/∂ω − naive| over every layer's K and V ω.</param>
/// <param name="Budgets">Per searched ρ: the target round(ρ·2LH) and Σ groups the plan kept.</param>
/// <param name="KvCounted">KV bytes per token the converted model counts (float64).</param>
/// <param name="KvFormula">Σ_ℓ (g_K + g_V) · d_h · 8.</param>
/// <param name="DecodeBytes">Bytes the decode state holds after T tokens of B sequences.</param>
/// <param name="DecodeExpected">B · T · formula.</param>
public sealed record DhaExactness(double IdentityPlanVsMha, bool IdentityPlanIsIdentity, double DecoupledVsMha, double GqaGroupSizeOneVsMha,
    double IdenticalCollapseVsModel, double IdenticalSearchCost, bool SearchMatchesNaive, double SearchCostRelGap, double FusionLossRelGap,
    double FusionGradMaxAbs, IReadOnlyList<(double Ratio, int Target, int Total)> Budgets,
    long KvCounted, long KvFormula, long DecodeBytes, long DecodeExpected)
{
    /// <summary>The spec's §6 tolerance for "reproduces the MHA logits".</summary>
    public const double MhaTolerance = 1e-6;
    /// <summary>The spec's §6 tolerance for "identical heads collapse with no change".</summary>
    public const double CollapseTolerance = 1e-5;
    /// <summary>Naive-twin tolerance (float64).</summary>
    public const double TwinTolerance = 1e-10;
}

/// <summary>The fusion stage at one budget: val loss at ω = I, collapsed without fusion, after fusion (before collapse); L_fuse and λ per step.</summary>
public sealed record DhaFusion(double Ratio, double LossAtIdentity, double LossWithoutFusion, double LossAfterFusion, double FuseStart,
    double FuseEndRelative, IReadOnlyList<double> FuseRelative, IReadOnlyList<double> Lambdas);

/// <summary>One continued-training run: validation loss at <see cref="Steps"/> (step 0 = right after conversion) and the train loss per step.</summary>
public sealed record DhaCurve(string Method, double Ratio, int CachedHeads, long KvBytesPerToken, IReadOnlyList<int> Steps, IReadOnlyList<double> ValLoss,
    IReadOnlyList<double> TrainLoss)
{
    /// <summary>Val loss at the first evaluation at or after <paramref name="step"/>.</summary>
    public double At(int step)
    {
        for (int i = 0; i < Steps.Count; i++) if (Steps[i] >= step) return ValLoss[i];
        return ValLoss[^1];
    }

    /// <summary>The first evaluated step whose val loss is ≤ <paramref name="target"/>, or null.</summary>
    public int? StepsTo(double target)
    {
        for (int i = 0; i < Steps.Count; i++) if (ValLoss[i] <= target) return Steps[i];
        return null;
    }
}

/// <summary>KV-cache bytes per token (per sequence, all layers) of one method at one width.</summary>
public sealed record DhaKvRow(string Width, int Layers, int DModel, int Heads, string Method, double Ratio, int CachedHeads, long BytesFp32, long BytesFp16);

/// <summary>Everything <see cref="DhaExperiment.Run"/> measured, its tables, plot series and claims.</summary>
public sealed record DhaResult(DhaExperiment.Config Config, DhaExactness Exactness, string PretrainSource, IReadOnlyList<double> PretrainLosses,
    double[][][] KeySimilarity, double[][][] ValueSimilarity, IReadOnlyList<DhaPlan> Plans, IReadOnlyList<DhaFusion> Fusions, IReadOnlyList<DhaCurve> Curves,
    IReadOnlyList<DhaKvRow> KvRows, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>The continued-training curve of <paramref name="method"/> at <paramref name="ratio"/> (MHA: ratio 1).</summary>
    public DhaCurve Curve(string method, double ratio = 1) => Curves.FirstOrDefault(c => c.Method == method && Math.Abs(c.Ratio - ratio) < 1e-9)
        ?? throw new ArgumentException($"no curve {method} at {ratio} " +
            $"(have: {string.Join(", ", Curves.Select(c => $"{c.Method} {c.Ratio}"))}).", nameof(method));

    DhaCurve Mha => Curve(DhaExperiment.MhaName);

    /// <summary>Loss gap to the MHA at the same continued-training step.</summary>
    double Gap(DhaCurve c, int i) => c.ValLoss[i] - Mha.ValLoss[Math.Min(i, Mha.ValLoss.Count - 1)];

    /// <summary>Share of the post-conversion gap to the MHA closed by the end: 1 − gap(final) / gap(0).</summary>
    public double Recovered(DhaCurve c)
    {
        ArgumentNullException.ThrowIfNull(c);
        double g0 = Gap(c, 0);
        return g0 > 0 ? 1 - Gap(c, c.ValLoss.Count - 1) / g0 : double.NaN;
    }

    /// <summary>Columns: method, budget, cached heads, KV bytes/token (fp32), val loss at steps 0 / 50 / final,
    ///  gap to MHA at 0, share of it recovered.</summary>
    public DataFrame ToDataFrame() => Tables.From(Curves.Select(c => new
    {
        c.Method,
        Budget = c.Ratio,
        c.CachedHeads,
        KvBytesPerToken = c.KvBytesPerToken,
        Loss0 = c.ValLoss[0],
        Loss50 = c.At(50),
        LossFinal = c.ValLoss[^1],
        GapAtStep0 = Gap(c, 0),
        GapRecovered = c.Method == DhaExperiment.MhaName ? double.NaN : Recovered(c),
    }));

    /// <summary>Columns: budget, layer, g_K, g_V (DHA's allocation; GQA keeps ρ·H of each in every layer).</summary>
    public DataFrame PlanFrame() => Tables.From(Plans.SelectMany(p => Enumerable.Range(0, p.Layers).Select(l => new
    {
        Budget = p.Ratio,
        Layer = l,
        KeyHeads = p.KeyCounts[l],
        ValueHeads = p.ValueCounts[l],
        KeyGroups = string.Join(" ", p.KeyGroups[l]),
        ValueGroups = string.Join(" ", p.ValueGroups[l]),
    })));

    /// <summary>Columns: budget, val loss at ω = I, collapsed without fusion, after fusion, collapsed (step 0 of DHA's curve), L_fuse left.</summary>
    public DataFrame FusionFrame() => Tables.From(Fusions.Select(f => new
    {
        Budget = f.Ratio,
        f.LossAtIdentity,
        f.LossWithoutFusion,
        f.LossAfterFusion,
        LossCollapsed = Curve(DhaExperiment.DhaName, f.Ratio).ValLoss[0],
        FuseLeft = f.FuseEndRelative,
        LambdaEnd = f.Lambdas.Count > 0 ? f.Lambdas[^1] : double.NaN,
    }));

    /// <summary>Columns: width, L, d, H, method, budget, cached heads, KV bytes per token in fp32 and fp16.</summary>
    public DataFrame KvFrame() => Tables.From(KvRows);

    /// <summary>
    /// The claims: exactness (spec §6 identities, naive twins, budget, KV bytes), the post-conversion gap DHA vs GQA at 25 % and
    /// 50 % (spec §6), recovery speed (spec §7), the share of MHA's performance kept, KV bytes per token (issue 13 item 4).
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(DhaExperiment.Paper.Number, Config.Size);
        var ex = Exactness;
        string mhaTol = $"≤ {Num.Sci(DhaExactness.MhaTolerance, 0)} (spec §6)";
        claims.Exactness("identity-grouping-is-mha", "DHA at identity grouping (ρ = 1: search keeps every head, ω = I, collapse) reproduces the MHA logits",
            $"max |Δ logits| {Num.Sci(ex.IdentityPlanVsMha)} (float64, L 2, d 24, H 6, RoPE, random biases); " +
            $"plan keeps every head: {ex.IdentityPlanIsIdentity}",
            mhaTol, ex.IdentityPlanVsMha <= DhaExactness.MhaTolerance && ex.IdentityPlanIsIdentity);
        claims.Exactness("decoupled-start-is-mha", "the fusion stage starts at the MHA: decoupled heads with ω = I (a ρ = 50 % plan) give the MHA logits",
            $"max |Δ logits| {Num.Sci(ex.DecoupledVsMha)}", mhaTol, ex.DecoupledVsMha <= DhaExactness.MhaTolerance);
        claims.Exactness("gqa-group-size-one-is-mha", "GQA mean-pool with group size 1 (G = H) equals the MHA",
            $"max |Δ logits| {Num.Sci(ex.GqaGroupSizeOneVsMha)}", mhaTol, ex.GqaGroupSizeOneVsMha <= DhaExactness.MhaTolerance);
        claims.Exactness("identical-heads-collapse", "a group of identical heads collapses with no change (any row-stochastic in-group ω), " +
            "and the search finds such groups at zero cost",
            $"max |Δ logits| {Num.Sci(ex.IdenticalCollapseVsModel)}; search cost on that model {Num.Sci(ex.IdenticalSearchCost)}",
            $"≤ {Num.Sci(DhaExactness.CollapseTolerance, 0)} (spec §6); cost ≤ 1e-20",
            ex.IdenticalCollapseVsModel <= DhaExactness.CollapseTolerance && ex.IdenticalSearchCost <= 1e-20);
        claims.Exactness("search-equals-naive",
            "the search (Ward's growth |A||B|/(|A|+|B|)·‖w̄_A − w̄_B‖²) equals the naive search recomputing Σ‖w − w̄_G‖²",
            $"same plan at ρ = 50 %: {ex.SearchMatchesNaive}; relative cost gap {Num.Sci(ex.SearchCostRelGap)}", "same plan; ≤ 1e-10",
            ex.SearchMatchesNaive && ex.SearchCostRelGap <= DhaExactness.TwinTolerance);
        claims.Exactness("fusion-loss-equals-naive", "L_fuse (group-mean matrix form) equals its loop over groups and members, value and ∂/∂ω",
            $"relative value gap {Num.Sci(ex.FusionLossRelGap)}, max |Δ grad| {Num.Sci(ex.FusionGradMaxAbs)}", "≤ 1e-10 (float64)",
            ex.FusionLossRelGap <= DhaExactness.TwinTolerance && ex.FusionGradMaxAbs <= DhaExactness.TwinTolerance);
        var budgets = ex.Budgets.Concat(Plans.Select(p => (p.Ratio, p.Target, Total: p.TotalGroups))).ToList();
        claims.Exactness("budget-met", "Σ_ℓ (g_K^ℓ + g_V^ℓ) equals the target round(ρ·2LH)",
            string.Join("; ", budgets.Select(b => $"ρ {b.Ratio:0.##}: {b.Total} of target {b.Target}")), "equal for every plan (spec §6)",
            budgets.All(b => b.Total == b.Target));
        int dh = Config.DModel / Config.Heads;
        bool curvesMatch = Curves.All(c => c.KvBytesPerToken == DhaConverter.KvBytesFormula(c.CachedHeads, dh));
        claims.Exactness("kv-bytes-formula", "KV bytes per token match Σ_ℓ (g_K + g_V)·d_h·bytes, counted by the model and held by its decode cache",
            $"toy: counted {ex.KvCounted} B, formula {ex.KvFormula} B, decode cache {ex.DecodeBytes} B vs B·T·formula {ex.DecodeExpected} B; " +
            $"every run's model matches the formula: {curvesMatch}", "equal (spec §6, §8)",
            ex.KvCounted == ex.KvFormula && ex.DecodeBytes == ex.DecodeExpected && curvesMatch);

        var mha = Mha;
        foreach (var ratio in Config.Ratios)
        {
            var gqa = Curve(DhaExperiment.GqaName, ratio);
            var dha = Curve(DhaExperiment.DhaName, ratio);
            double gG = Gap(gqa, 0), gD = Gap(dha, 0);
            bool quarter = Math.Abs(ratio - 0.25) < 1e-9;
            claims.Claim($"smaller-gap-after-conversion-{ratio * 100:0}", $"right after conversion at ρ = {ratio:P0} (equal KV budget), " +
                "DHA's loss is below GQA's",
                quarter ? "DHA recovers 97.6 % of performance with 0.25 % of pretraining while saving 75 % of the KV cache; " +
                      "+13.93 % over GQA at a 0.01 % budget (arXiv 2406.06567 abstract)"
                    : "paper: DHA beats GQA at every budget it reports (spec §7)",
                $"val loss at step 0: DHA {dha.ValLoss[0]:F4}, GQA {gqa.ValLoss[0]:F4}, MHA {mha.ValLoss[0]:F4} nats/char (gap to MHA {gD:F4} vs {gG:F4}); " +
                $"{dha.CachedHeads} cached heads each",
                "loss_DHA(0) < loss_GQA(0), seed 0 (spec §6)", dha.ValLoss[0] < gqa.ValLoss[0], asserted: true,
                deviation: "the search compares head weights scaled by their partition's RMS norm, " +
                           "and L_fuse enters the Lagrangian relative to its start (docs/decisions.md)");
        }

        var g25 = Curve(DhaExperiment.GqaName, Config.Ratios[0]);
        var d25 = Curve(DhaExperiment.DhaName, Config.Ratios[0]);
        double target = g25.ValLoss[^1];
        int gqaSteps = g25.StepsTo(target) ?? Config.ContinueSteps;
        int? dhaSteps = d25.StepsTo(target);
        string speed = dhaSteps is int s ? s == 0 ? "already at step 0" : $"{gqaSteps / (double)s:F1}× fewer steps" : "never within the run";
        claims.Claim("recovers-faster", $"DHA at ρ = {Config.Ratios[0]:P0} reaches GQA's final loss in fewer continued-training steps than GQA",
            "5× faster training than GQA (arXiv v1) / 12× (NeurIPS version) to the same performance (spec §7)",
            $"GQA reaches its final val loss {target:F4} at step {gqaSteps}; " +
            $"DHA at step {(dhaSteps?.ToString() ?? "—")} ({speed}); evaluated every {Config.EvalEvery} steps",
            "DHA needs fewer steps than GQA to reach GQA's final loss (spec §7: 'recovers in fewer steps')",
            dhaSteps is int ds && ds < gqaSteps, asserted: false,
            note: "not asserted: the spec grades the claim B at toy size (a tiny model's head redundancy is not LLaMA's); at smoke the head start " +
                  "DHA has at step 0 is used up within the continued steps at 25 %, so the order at the end follows the run; read it at full size");

        var kept = Config.Ratios.Select(r => (r, Curve(DhaExperiment.DhaName, r), Curve(DhaExperiment.GqaName, r))).ToList();
        double perf = mha.ValLoss[^1] / d25.ValLoss[^1];
        claims.Reported("performance-kept", $"after {Config.ContinueSteps} continued steps " +
            $"DHA at ρ = {Config.Ratios[0]:P0} keeps ≥ 97.6 % of the MHA's performance",
            "97.6 % of the original performance with 0.25 % of the pretraining budget, 75 % KV saving (arXiv 2406.06567 abstract; benchmark accuracy)",
            $"loss ratio MHA/DHA {perf:P1} at ρ {Config.Ratios[0]:P0}; share of the post-conversion gap closed: " +
            string.Join("; ", kept.Select(k => $"ρ {k.r:P0} DHA {Recovered(k.Item2):P0}, GQA {Recovered(k.Item3):P0}")),
            "loss(MHA) / loss(DHA) ≥ 0.976 at the same continued steps [ours: the paper's accuracy ratio read as a loss ratio]", perf >= 0.976);

        var smoke = KvRows.Where(r => r.Width != "spec full").ToList();
        var full = KvRows.Where(r => r.Width == "spec full").ToList();
        string Row(IEnumerable<DhaKvRow> rows) => string.Join(", ",
            rows.Select(r => $"{r.Method}{(r.Method == DhaExperiment.MhaName ? "" : $" {r.Ratio:P0}")} {r.BytesFp32} B"));
        bool equalBudgets = KvRows.GroupBy(r => (r.Width, r.Ratio)).Where(g => g.Key.Ratio < 1).All(g => g.Select(r => r.BytesFp32).Distinct().Count() == 1)
            && KvRows.Where(r => r.Ratio < 1).All(r =>
            {
                var m = KvRows.First(x => x.Width == r.Width && x.Method == DhaExperiment.MhaName);
                return Math.Abs(r.BytesFp32 - r.Ratio * m.BytesFp32) < 1e-9 * m.BytesFp32 + r.DModel / r.Heads * 4;
            });
        claims.Reported("kv-bytes-per-token", "KV-cache bytes per token: DHA and GQA at ρ keep ρ of MHA's (75 % saved at ρ = 25 %)",
            "75 % KV-cache saving at ρ = 25 % (arXiv 2406.06567 abstract)",
            $"fp32, per sequence, all layers — this run (L {Config.Layers}, d {Config.DModel}, H {Config.Heads}): {Row(smoke)}" +
            (full.Count > 0 ? $"; spec full (L {full[0].Layers}, d {full[0].DModel}, H {full[0].Heads}): {Row(full)}" : ""),
            "DHA = GQA = ρ · MHA bytes at each budget (spec §8 formula)", equalBudgets);

        foreach (var ratio in Config.Ratios)
        {
            var gqa = Curve(DhaExperiment.GqaName, ratio);
            var dha = Curve(DhaExperiment.DhaName, ratio);
            var plan = Plans.FirstOrDefault(p => p.Ratio == ratio);
            var fusion = Fusions.FirstOrDefault(f => f.Ratio == ratio);
            claims.Saw($"At ρ = {ratio:P0} ({dha.CachedHeads} of {2 * Config.Layers * Config.Heads} cached heads) the loss right after conversion was " +
                $"{dha.ValLoss[0]:F3} for DHA and {gqa.ValLoss[0]:F3} for GQA against the MHA's {mha.ValLoss[0]:F3} nats/char; after {Config.ContinueSteps} " +
                $"steps {dha.ValLoss[^1]:F3} vs {gqa.ValLoss[^1]:F3} (MHA {mha.ValLoss[^1]:F3}).");
            if (plan is not null)
                claims.Saw($"The search at ρ = {ratio:P0} kept K heads [{string.Join(", ", plan.KeyCounts)}] " +
                    $"and V heads [{string.Join(", ", plan.ValueCounts)}] per layer.");
            if (fusion is not null)
                claims.Saw($"Fusion at ρ = {ratio:P0}: collapsing the searched groups " +
                    $"without fusion gave {fusion.LossWithoutFusion:F3}; after {Config.FusionSteps} " +
                    $"steps of ω the decoupled model read {fusion.LossAfterFusion:F3}" +
                    $" with {fusion.FuseEndRelative:P1} of L_fuse left, and {dha.ValLoss[0]:F3} once collapsed.");
        }
        claims.Saw($"The pretrained MHA came from: {PretrainSource}.");
        return claims;
    }
}
