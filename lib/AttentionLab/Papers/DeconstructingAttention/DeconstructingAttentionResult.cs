using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.DeconstructingAttention;

/// <summary>One variant's mixer against its naive twin (float64): outputs, gradients, hooked pattern; the pattern's causality and row sums.</summary>
public sealed record VariantCheck(string Variant, double OutputMaxAbs, double GradientMaxAbs, double PatternMaxAbs, bool Causal, double RowSumError,
    long Parameters);

/// <summary>The exactness phase (see <see cref="DeconstructingAttentionExperiment.Exactness"/>).</summary>
/// <param name="Variants">Every variant against its twin.</param>
/// <param name="StandardVsReference">max |Δ| of the Standard mixer against the library's reference softmax attention.</param>
/// <param name="NoMixPerturbation">max |Δ| of NoMix's output t when every other token is redrawn.</param>
/// <param name="StaticInputDependence">max |Δ| between StaticMix's patterns for two different inputs.</param>
public sealed record DeconstructingExactness(IReadOnlyList<VariantCheck> Variants, double StandardVsReference, double NoMixPerturbation,
    double StaticInputDependence)
{
    /// <summary>Naive-twin tolerance in float64 (the conformance grid's).</summary>
    public const double TwinTolerance = 1e-10;

    /// <summary>Columns: variant, output_max_abs, gradient_max_abs, pattern_max_abs, causal, row_sum_error, parameters.</summary>
    public DataFrame ToDataFrame() => Tables.From(Variants);
}

/// <summary>One trained LM: its variant and schedule (S = standard, V = the variant per layer), parameters, validation loss, per-step loss.</summary>
public sealed record LmRun(string Variant, string Schedule, long Params, double ValLoss, IReadOnlyList<double> Losses, double Seconds)
{
    /// <summary>exp(validation loss).</summary>
    public double Perplexity => Math.Exp(ValLoss);
}

/// <summary>Head 0's mixing matrix in layer <c>Layer</c> of a trained model on one validation window (rows = queries).</summary>
public sealed record PatternMap(string Variant, string Schedule, int Layer, IReadOnlyList<double[]> Rows);

/// <summary>Everything <see cref="DeconstructingAttentionExperiment.Run"/> measured.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The variants against their naive twins.</param>
/// <param name="Runs">Every trained LM: Standard first, then per variant the uniform schedule and the hybrids.</param>
/// <param name="BigramLoss">Validation cross-entropy of the add-α bigram model (nats/char): the no-mixing reference.</param>
/// <param name="UnigramLoss">Validation cross-entropy of the unigram model (nats/char): context ignored.</param>
/// <param name="Patterns">Head-0 patterns of the last layer where it is the variant (and Standard's).</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record DeconstructingAttentionResult(
    DeconstructingAttentionExperiment.Config Config,
    DeconstructingExactness Exactness,
    IReadOnlyList<LmRun> Runs,
    double BigramLoss,
    double UnigramLoss,
    IReadOnlyList<PatternMap> Patterns,
    double Seconds,
    IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>The all-standard run.</summary>
    public LmRun Standard => Run(nameof(MixerKind.Standard), Config.StandardSchedule);
    /// <summary>Every layer <paramref name="kind"/>.</summary>
    public LmRun Uniform(MixerKind kind) => Run(kind.ToString(), Config.UniformSchedule);
    /// <summary><paramref name="kind"/> interleaved with standard layers (the first hybrid schedule unless named).</summary>
    public LmRun Hybrid(MixerKind kind, string? schedule = null) => Run(kind.ToString(), schedule ?? Config.HybridSchedules[0]);

    LmRun Run(string variant, string schedule) => Runs.FirstOrDefault(r => r.Variant == variant && r.Schedule == schedule)
        ?? throw new ArgumentException(
            $"no run of {variant} with schedule {schedule} (runs: {string.Join(", ", Runs.Select(r => $"{r.Variant} {r.Schedule}"))}).", nameof(variant));

    /// <summary>Columns: variant, schedule, params, val_loss, perplexity, delta_to_standard (val loss − Standard's, nats/char), seconds.</summary>
    public DataFrame ToDataFrame()
    {
        double standard = Standard.ValLoss;
        return Tables.From(Runs.Select(r => new
        {
            r.Variant,
            r.Schedule,
            r.Params,
            r.ValLoss,
            r.Perplexity,
            DeltaToStandard = r.ValLoss - standard,
            r.Seconds,
        }));
    }

    /// <summary>
    /// Exactness (every variant equals its naive twin; patterns causal with unit rows; Standard equals reference attention;
    /// NoMix mixes nothing; StaticMix ignores the input), the paper's ordering at this size with spec §6's criteria
    /// (uniform NoMix collapses to the bigram level; hybrid StaticMix near standard; uniform StaticMix worse than hybrid), and
    /// reported: hybrid beats uniform for every variant; parameter counts.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(DeconstructingAttentionExperiment.Paper.Number, Config.Size);
        var v = Exactness.Variants;
        double worst = v.Max(c => Math.Max(c.OutputMaxAbs, Math.Max(c.GradientMaxAbs, c.PatternMaxAbs)));
        claims.Exactness("variants-equal-naive",
            $"every variant's mixer ({string.Join(", ", v.Select(c => c.Variant))}) equals its naive twin: outputs, gradients, hooked pattern",
            $"max |Δ| {Num.Sci(worst)} (float64, B 2, T 7, d 15, 3 heads)", $"≤ {Num.Sci(DeconstructingExactness.TwinTolerance, 0)} (float64)",
            worst <= DeconstructingExactness.TwinTolerance, paperFigure: "definitions [ours] (spec §2)");
        double rowSum = v.Max(c => c.RowSumError);
        claims.Exactness("patterns-causal-rows-sum-to-one", "every mixing matrix is causal and its rows sum to 1 (NoMix: the identity)",
            $"{v.Count(c => c.Causal)}/{v.Count} causal, max |Σ_j A_ij − 1| {Num.Sci(rowSum)}", "all causal, ≤ 1e-12 (spec §6)",
            v.All(c => c.Causal) && rowSum <= 1e-12);
        claims.Exactness("standard-equals-reference", "the Standard mixer equals the library's reference softmax attention",
            $"max |Δ| {Num.Sci(Exactness.StandardVsReference)}", "≤ 1e-6 (spec §6)", Exactness.StandardVsReference <= 1e-6);
        claims.Exactness("nomix-no-interaction", "NoMix: redrawing every token j ≠ t leaves output t unchanged",
            $"max |Δ| {Num.Sci(Exactness.NoMixPerturbation)}", "≤ 1e-12 (spec §6: unchanged)", Exactness.NoMixPerturbation <= 1e-12);
        claims.Exactness("staticmix-input-independent", "StaticMix: the mixing matrix is identical for two different inputs",
            $"max |Δ| {Num.Sci(Exactness.StaticInputDependence)}", "≤ 1e-12 (spec §6: identical)", Exactness.StaticInputDependence <= 1e-12);

        double standard = Standard.Perplexity, bigram = Math.Exp(BigramLoss);
        string lm = $"char LM, {Config.Layers} layers, d {Config.DModel}, T {Config.SeqLen}, {Config.Steps} steps, seed {Config.Seed}";
        double contextGain = BigramLoss - Standard.ValLoss;                              // how far Standard got past the no-mixing level
        if (Config.Variants.Contains(MixerKind.NoMix))
        {
            var noMixRun = Uniform(MixerKind.NoMix);
            double noMix = noMixRun.Perplexity;
            string where = $"ppl NoMix {noMix:F2} = {noMix / standard:F2}× Standard {standard:F2}; bigram reference {bigram:F2} ({lm})";
            bool collapses = noMix > 2 * standard && noMix >= 0.9 * bigram;
            claims.Claim("nomix-collapses", "without token mixing the model collapses to the no-context level (uniform NoMix)",
                "no mixing → near-random behaviour (paper abstract; qualitative)", where,
                "NoMix ppl > 2 × Standard and ≥ 0.9 × bigram (spec §6, seed 0)", collapses, asserted: AssertNoMixCollapse,
                note: collapses ? null
                    : $"a 2× gap needs Standard ≥ {Math.Log(2):F2} nats/char below NoMix; at this size Standard is {contextGain:F2} nats below the bigram " +
                      "level, so the spec's factor cannot be reached here (a longer-trained checkpoint would decide it: issue 13 item 3, not shipped)");
            double gap = noMixRun.ValLoss - Standard.ValLoss;
            claims.Claim("nomix-worse-than-standard", "the ordering: uniform NoMix is worse than Standard and no better than the bigram model",
                "no mixing → near-random behaviour (paper abstract; qualitative)", $"{where}; gap {gap:F3} nats/char",
                $"NoMix − Standard ≥ {OrderingMargin} nats/char and NoMix ppl ≥ 0.9 × bigram", gap >= OrderingMargin && noMix >= 0.9 * bigram,
                asserted: AssertNoMixOrdering,
                deviation: $"spec §6's factor 2 replaced by a gap of ≥ {OrderingMargin} nats/char (the ordering only), because the smoke run cannot train " +
                    "Standard far enough past the bigram level for a factor 2 (see nomix-collapses and docs/decisions.md)");
        }
        if (Config.Variants.Contains(MixerKind.StaticMix))
        {
            double hybrid = Hybrid(MixerKind.StaticMix).Perplexity, uniform = Uniform(MixerKind.StaticMix).Perplexity;
            claims.Claim("hybrid-staticmix-near-standard", "input-independent mixing works when interleaved with standard attention (hybrid StaticMix)",
                "sequence dependence can be relaxed, especially in hybrids (paper abstract; qualitative)",
                $"ppl hybrid StaticMix ({Config.HybridSchedules[0]}) {hybrid:F2} = {hybrid / standard:F3}× Standard {standard:F2} ({lm})",
                "hybrid StaticMix ppl ≤ 1.15 × Standard (spec §6, seed 0)", hybrid <= 1.15 * standard, asserted: AssertHybridStatic,
                note: Config.Variants.Contains(MixerKind.NoMix)
                    ? $"at this size even uniform NoMix is at {Uniform(MixerKind.NoMix).Perplexity / standard:F2}× Standard: the 1.15× bound separates little"
                    : null);
            claims.Claim("staticmix-uniform-worse-than-hybrid", "StaticMix in every layer is worse than StaticMix interleaved with standard layers",
                "variants that fail in isolation work when interleaved (paper abstract; qualitative)",
                $"ppl uniform StaticMix {uniform:F2} vs hybrid {hybrid:F2} ({uniform / hybrid:F3}×)",
                "uniform StaticMix ppl > hybrid StaticMix ppl (spec §6, seed 0)", uniform > hybrid, asserted: AssertUniformStatic,
                note: $"difference {Math.Log(uniform / hybrid):+0.000;-0.000} nats/char on one seed");
        }
        var pairs = Config.Variants.Select(k => (Kind: k, Uniform: Uniform(k).Perplexity, Hybrid: Hybrid(k).Perplexity)).ToList();
        claims.Reported("hybrid-beats-uniform-every-variant", "every variant does better interleaved with standard attention than alone",
            "a cooperative effect: even variants that fail in isolation are robust when interleaved (paper abstract; qualitative)",
            string.Join("; ", pairs.Select(p => $"{p.Kind} uniform {p.Uniform:F2} vs hybrid {p.Hybrid:F2}")),
            "hybrid ppl < uniform ppl for every variant [ours: the spec names no threshold; one seed, so reported]", pairs.All(p => p.Hybrid < p.Uniform));
        var counts = Runs.Where(r => r.Schedule == Config.UniformSchedule || r.Variant == nameof(MixerKind.Standard)).ToList();
        claims.Reported("parameter-counts", "NoMix, FixedMix and StaticMix drop W_Q and W_K; DecoupledQK keeps the standard count",
            "reported parameter counts (spec §2, §9)", string.Join("; ", counts.Select(r => $"{r.Variant} {r.Params:N0}")),
            "every q/k-free uniform model has fewer parameters than Standard; DecoupledQK the same [ours]",
            counts.All(r => r.Variant is nameof(MixerKind.NoMix) or nameof(MixerKind.FixedMix) or nameof(MixerKind.StaticMix)
                ? r.Params < Standard.Params
                : r.Variant is not nameof(MixerKind.DecoupledQK) || r.Params == Standard.Params));

        claims.Saw($"Standard attention reached {Standard.ValLoss:F3} nats/char (ppl {standard:F2}); the bigram reference is {BigramLoss:F3} and the " +
            $"unigram {UnigramLoss:F3} nats/char.");
        foreach (var p in pairs)
            claims.Saw($"{p.Kind}: uniform ppl {p.Uniform:F2} ({p.Uniform / standard:F2}× Standard), hybrid ppl {p.Hybrid:F2} ({p.Hybrid / standard:F2}×).");
        var best = Runs.Where(r => r.Variant != nameof(MixerKind.Standard)).OrderBy(r => r.ValLoss).First();
        claims.Saw($"The best non-standard run was {best.Variant} {best.Schedule} at {best.ValLoss - Standard.ValLoss:+0.000;-0.000} nats/char from Standard.");
        return claims;
    }

    /// <summary>Whether this size decides each ordering claim with margin (set from the smoke run; see docs/decisions.md).</summary>
    const bool AssertNoMixCollapse = false, AssertNoMixOrdering = true, AssertHybridStatic = true, AssertUniformStatic = false;

    /// <summary>The smallest validation-loss gap (nats/char) counted as an ordering at this size [ours].</summary>
    public const double OrderingMargin = 0.05;
}
