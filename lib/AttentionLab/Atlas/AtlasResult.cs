using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Atlas;

/// <summary>The atlas's points with its table, its two Pareto charts and its claims.</summary>
public sealed record AtlasResult(MixerAtlas.Config Config, IReadOnlyList<AtlasPoint> Points, double Seconds) : IPaperResult
{
    /// <summary>One row per mixer.</summary>
    public DataFrame ToDataFrame() => Tables.From(Points.Select(p => new
        {
            Mixer = p.Name,
            p.Family,
            p.Recall,
            p.StateBytes,
            TokensPerS = Math.Round(p.TokensPerSecond),
            p.Params,
            StepVsForward = p.StepVsForwardMaxAbs,
            TrainS = p.TrainSeconds,
            StateKind = p.StateBytes is null ? "cannot stream" : p.StateCounted ? "counted" : "streamed",
        }));

    /// <summary>Recall against streaming state bytes (log x) with the Pareto front; mixers that cannot stream are left out.</summary>
    public GenericChart RecallVsState() => AnalysisCharts.Pareto(
        Points.Where(p => p.StateBytes is > 0).Select(p => new LabeledPoint(p.Name, p.StateBytes!.Value, p.Recall)).ToList(),
        $"MQAR recall vs recurrent state after T = {Config.SeqLen} tokens", "state bytes (2 layers, batch 1)", "recall", logX: true);

    /// <summary>Recall against time per token of the forward pass (log x) with the Pareto front.</summary>
    public GenericChart RecallVsSpeed() => AnalysisCharts.Pareto(
        Points.Select(p => new LabeledPoint(p.Name, 1e6 / p.TokensPerSecond, p.Recall)).ToList(),
        $"MQAR recall vs forward time per token (T = {Config.SeqLen}, batch {Config.TestCount})", "µs per token (lower is faster)", "recall", logX: true);

    /// <summary>The mixers on the recall-vs-state Pareto front, smallest state first.</summary>
    public IReadOnlyList<string> StateFront()
    {
        var streaming = Points.Where(p => p.StateBytes is > 0).ToList();
        return Numerics.ParetoFront(streaming.Select(p => (double)p.StateBytes!.Value).ToList(), streaming.Select(p => p.Recall).ToList())
            .Select(i => streaming[i]).OrderBy(p => p.StateBytes).Select(p => p.Name).ToList();
    }

    /// <summary>The streamed points whose mixer states its state's size (<see cref="AtlasMixer.StateFormula"/>), with that formula.</summary>
    IEnumerable<(AtlasPoint Point, AtlasStateFormula Formula)> WithFormula() =>
        from p in Points
        where p.FormulaStateBytes is not null
        let formula = Config.Mixers.FirstOrDefault(m => m.Name == p.Name)?.StateFormula
        where formula is not null
        select (p, formula);

    /// <summary>Chance recall: values are drawn from half the vocabulary.</summary>
    public double Chance => 2.0 / Config.Vocab;

    /// <summary>Margin above chance a mixer must clear to count as having learned MQAR [ours].</summary>
    public const double OverChance = 0.05;

    /// <summary>Step-vs-forward tolerance for a trained float32 two-layer model [ours].</summary>
    public const double StepTolerance = 1e-3;

    /// <summary>A kebab-case claim id from a mixer's name ("sliding window w=8" → "sliding-window-w-8", "σ-linear" → "sigma-linear").</summary>
    public static string Slug(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var text = name.ToLowerInvariant().Replace("σ", "sigma").Replace("ℓ", "l").Replace("′", "");
        var chars = text.Select(ch => ch is (>= 'a' and <= 'z') or (>= '0' and <= '9') ? ch : '-').ToArray();
        var slug = string.Join("-", new string(chars).Split('-', StringSplitOptions.RemoveEmptyEntries));
        return slug.Length == 0 ? "mixer" : slug;
    }

    /// <summary>
    /// The atlas's claims: every streaming mixer's Step reproduces its forward pass; a mixer whose paper states its cache
    /// (S2's pruned per-head cache, BAM's E caches, GQA's G heads) streams exactly that many bytes; softmax attention solves MQAR (asserted); each other mixer
    /// learns MQAR above chance (recorded per mixer, not asserted: at smoke size several sit near chance); state bytes and
    /// time per token reported.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(MixerAtlas.Paper.Number, Config.Size);
        var streamed = Points.Where(p => p.StateBytes is not null && !p.StateCounted).ToList();
        double worst = streamed.Select(p => p.StepVsForwardMaxAbs).DefaultIfEmpty(0).Max(x => double.IsNaN(x) ? double.PositiveInfinity : x);
        var worstPoint = streamed.OrderByDescending(p => double.IsNaN(p.StepVsForwardMaxAbs) ? double.PositiveInfinity
            : p.StepVsForwardMaxAbs).FirstOrDefault();
        claims.Exactness("step-equals-forward", "every streaming mixer's Step reproduces its parallel forward (both layers, trained weights)",
            streamed.Count == 0 ? "no streaming mixer in this run" : $"max |Δ| {Num.Sci(worst)} over {streamed.Count} mixers (worst: {worstPoint!.Name})",
            $"≤ {Num.Sci(StepTolerance, 0)} (float32, two trained layers) [ours]", streamed.Count == 0 || worst <= StepTolerance,
            paperFigure: "identity (each paper's recurrent form)");

        var softmax = Points.FirstOrDefault(p => p.Name == AtlasMixers.Softmax.Name);
        foreach (var (p, formula) in WithFormula())
            claims.Exactness($"{Slug(p.Name)}-{formula.Id}", $"{p.Name} {formula.Statement}",
                $"streamed {p.StateBytes:N0} B, formula {p.FormulaStateBytes:N0} B"
                    + (softmax?.StateBytes is { } sb ? $", softmax's full cache {sb:N0} B" : ""),
                formula.Criterion,
                p.StateBytes == p.FormulaStateBytes && (!formula.BelowSoftmax || softmax?.StateBytes is not { } full || p.StateBytes < full),
                paperFigure: formula.PaperFigure);

        int queries = Config.TestCount * Config.Pairs;
        if (softmax is null)
            claims.NotShown("attention-solves-mqar", "softmax attention solves MQAR (the reference every fixed-state mixer is measured against)",
                "attention solves MQAR at every model size (zoology, Arora et al. 2023; BASED Fig. 2)", "softmax attention not in this run",
                "recall ≥ 90 % [ours, the atlas's earlier check]", "the run's mixer list leaves softmax attention out.");
        else
            claims.Claim("attention-solves-mqar", "softmax attention solves MQAR (the reference every fixed-state mixer is measured against)",
                "attention solves MQAR at every model size (zoology, Arora et al. 2023; BASED Fig. 2)",
                $"recall {softmax.Recall:P1} on {queries:N0} held-out queries (T = {Config.SeqLen}, {Config.Pairs} pairs, {Config.Steps} steps)",
                "recall ≥ 90 % [ours, the atlas's earlier check]", softmax.Recall >= 0.9, asserted: true);

        foreach (var p in Points.Where(p => p.Name != AtlasMixers.Softmax.Name))
            claims.Claim($"learns-{Slug(p.Name)}", $"{p.Name} learns MQAR at this size (same data, width, depth and steps as attention)",
                "recall ordered by state size (BASED, Arora et al. 2024, Fig. 2)",
                $"recall {p.Recall:P1} (chance {Chance:P1}; softmax {softmax?.Recall ?? double.NaN:P1})",
                $"recall > chance + {OverChance * 100:F0} pts [ours, the atlas's earlier check]", p.Recall > Chance + OverChance, asserted: false,
                note: "recorded, not asserted: at smoke size (T = 32, 200 steps, one seed) some fixed-state mixers sit near chance.");

        var withState = Points.Where(p => p.StateBytes is > 0).OrderBy(p => p.StateBytes).ToList();
        var growing = Config.Mixers.Where(m => m.GrowsWithLength).Select(m => m.Name).ToHashSet();
        var fixedState = withState.Where(p => !growing.Contains(p.Name)).ToList();
        bool smaller = softmax?.StateBytes is { } kv && fixedState.All(p => p.StateBytes < kv);
        claims.Reported("state-bytes", "fixed-state mixers hold less than attention's KV cache after T tokens",
            "recurrent state is fixed in T while attention's KV cache grows as 2·T·d per layer (BASED, Arora et al. 2024, Fig. 2)",
            string.Join("; ", withState.Select(p => $"{p.Name} {p.StateBytes:N0} B" + (p.StateCounted ? " (counted)" : ""))),
            "each fixed-state mixer's bytes < softmax's at T (at small T a large feature state can exceed the cache)", smaller,
            note: $"after T = {Config.SeqLen} tokens, 2 layers, batch 1.");

        var speeds = Points.OrderBy(p => 1e6 / p.TokensPerSecond).ToList();
        double softmaxUs = softmax is null ? double.NaN : 1e6 / softmax.TokensPerSecond;
        var linear = Points.Where(p => p.Family is "BASED" or "Lightning" or "Flowformer" or "Aaren").ToList();
        claims.Reported("time-per-token", "linear-time mixers run faster per token than softmax attention",
            "BASED 24× FlashAttention-2 generation throughput (BASED abstract); Lightning constant speed in n (P39)",
            string.Join("; ", speeds.Select(p => $"{p.Name} {1e6 / p.TokensPerSecond:F2} µs")),
            $"each BASED / Lightning / Flowformer / Aaren point faster per token than softmax (forward, T = {Config.SeqLen}, batch {Config.TestCount}; a CPU " +
            "timing: reported)",
            softmax is not null && linear.Count > 0 && linear.All(p => 1e6 / p.TokensPerSecond < softmaxUs));

        var best = Points.OrderByDescending(p => p.Recall).First();
        claims.Saw($"{Points.Count} mixers trained on MQAR (T = {Config.SeqLen}, {Config.Pairs} pairs, {Config.Steps} steps): best recall {best.Name} " +
                   $"{best.Recall:P1}; {Points.Count(p => p.Recall > Chance + OverChance)} of {Points.Count} clear chance ({Chance:P1}) by " +
                   $"{OverChance * 100:F0} points.");
        if (withState.Count > 0) claims.Saw(
            $"The recall-vs-state front runs {string.Join(" → ", StateFront())}; the smallest state is {withState[0].Name} ({withState[0].StateBytes:N0} B), " +
            $"the largest {withState[^1].Name} ({withState[^1].StateBytes:N0} B).");
        foreach (var (p, _) in WithFormula())
            claims.Saw($"{p.Name} keeps {p.StateBytes:N0} B after {Config.SeqLen} tokens (recall {p.Recall:P1})"
                + (softmax?.StateBytes is { } sb ? $" against softmax's {sb:N0} B ({(double)p.StateBytes!.Value / sb:F2}×)." : "."));
        claims.Saw($"Fastest forward per token on this machine: {speeds[0].Name} ({1e6 / speeds[0].TokensPerSecond:F2} µs); slowest: {speeds[^1].Name} " +
            $"({1e6 / speeds[^1].TokensPerSecond:F2} µs).");
        return claims;
    }
}
