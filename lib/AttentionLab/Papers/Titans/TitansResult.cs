using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Titans;

/// <summary>One exactness check: max |Δ| against its tolerance.</summary>
public sealed record ExactnessCheck(string Check, double MaxAbs, double Tolerance)
{
    public bool Holds => MaxAbs <= Tolerance;
}

/// <summary>One test query: distance from its key to the query position, and whether the argmax was the value.</summary>
public sealed record QueryOutcome(int Distance, bool Correct);

/// <summary>One trained model: parameters, decode-state bytes of one sequence, forward time per token, training losses, test queries.</summary>
public sealed record ModelRun(string Model, long Params, long StateBytes, double MsPerToken, IReadOnlyList<double> Losses, IReadOnlyList<QueryOutcome> Queries)
{
    /// <summary>Accuracy (and count) of the queries with from ≤ distance &lt; to.</summary>
    public (double Accuracy, int Count) Accuracy(int from, int to = int.MaxValue)
    {
        var q = Queries.Where(o => o.Distance >= from && o.Distance < to).ToList();
        return (q.Count == 0 ? double.NaN : q.Average(o => o.Correct ? 1.0 : 0.0), q.Count);
    }
}

/// <summary>Task A: the fraction of <c>Pairs</c> stored pairs a memory (or SWA) recalls after <c>Gap</c> filler tokens.</summary>
public sealed record RecallPoint(string Memory, int Pairs, int Gap, double Accuracy);

/// <summary>Per-token gates of layer 0, head 0 of the trained MAG on one test sequence.</summary>
public sealed record GateTrace(long[] Tokens, double[] Theta, double[] Alpha, double[] Eta);

/// <summary>Everything <see cref="TitansExperiment.Run"/> measured, its tables and its claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The exactness phase (float64 toy tensors).</param>
/// <param name="Mechanism">Task A (no outer training): recall vs stored pairs for each memory and SWA.</param>
/// <param name="Runs">The SWA baseline first, then the Titans variants, same batches and steps.</param>
/// <param name="Gates">θ, α, η along one test sequence (MAG's first layer), or null without MAG.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record TitansResult(TitansExperiment.Config Config, IReadOnlyList<ExactnessCheck> Exactness,
    IReadOnlyList<RecallPoint> Mechanism, IReadOnlyList<ModelRun> Runs,
    GateTrace? Gates, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Keys within the window: distance &lt; n (the key is inside the query's own window).</summary>
    public int NearTo => Config.Window;
    /// <summary>Far: distance ≥ 4n (spec §6), beyond the receptive field of the stacked windows (Layers·(n − 1)).</summary>
    public int FarFrom => Math.Max(4 * Config.Window, Config.Layers * (Config.Window - 1) + 1);

    /// <summary>The run of a model.</summary>
    public ModelRun Run(string model) => Runs.FirstOrDefault(r => r.Model == model)
        ?? throw new ArgumentException($"no run of model '{model}'; ran {string.Join(", ", Runs.Select(r => r.Model))}.", nameof(model));

    /// <summary>Columns: model, params, state_bytes, ms_per_token, acc_near, acc_mid, acc_far, n_near, n_far, final_loss.</summary>
    public DataFrame ToDataFrame() => Tables.From(Runs.Select(r => new
    {
        r.Model,
        r.Params,
        r.StateBytes,
        r.MsPerToken,
        AccNear = r.Accuracy(0, NearTo).Accuracy,
        AccMid = r.Accuracy(NearTo, FarFrom).Accuracy,
        AccFar = r.Accuracy(FarFrom).Accuracy,
        NNear = r.Accuracy(0, NearTo).Count,
        NFar = r.Accuracy(FarFrom).Count,
        FinalLoss = FinalLoss(r),
    }));

    /// <summary>Task A recall of a memory (or "SWA") at <paramref name="pairs"/> stored pairs.</summary>
    public double Recall(string memory, int pairs) => Mechanism.FirstOrDefault(p => p.Memory == memory && p.Pairs == pairs)?.Accuracy
        ?? throw new ArgumentException($"no task-A point for '{memory}' at {pairs} pairs.", nameof(memory));

    /// <summary>Mean training loss over the last tenth of the steps.</summary>
    public static double FinalLoss(ModelRun run) => run.Losses.Count == 0 ? double.NaN : run.Losses.TakeLast(Math.Max(1, run.Losses.Count / 10)).Average();

    /// <summary>Columns: memory, pairs, gap, accuracy (task A).</summary>
    public DataFrame MechanismFrame() => Tables.From(Mechanism);

    /// <summary>Columns: check, max_abs, tolerance, holds.</summary>
    public DataFrame ExactnessFrame() => Tables.From(Exactness.Select(e => new { e.Check, e.MaxAbs, e.Tolerance, e.Holds }));

    /// <summary>Accuracy per distance bin of width n for every model: (model, bin start, accuracy, count).</summary>
    public IReadOnlyList<(string Model, int From, double Accuracy, int Count)> ByDistance()
    {
        int w = Config.Window, max = Runs.SelectMany(r => r.Queries).Max(o => o.Distance);
        var rows = new List<(string, int, double, int)>();
        foreach (var r in Runs)
            for (int from = 0; from <= max; from += w)
            {
                var (acc, n) = r.Accuracy(from, from + w);
                if (n > 0) rows.Add((r.Model, from, acc, n));
            }
        return rows;
    }

    /// <summary>
    /// The claims: exactness (fast forms vs naive twin, streaming vs forward, causality; always asserted), the toy claim
    /// (spec §7: recall ≥ 90 % far beyond the window where SWA is at chance; §6: MAG beats SWA by &gt; 30 pp at 4× the
    /// window), the baseline's own win inside its window, and state bytes and time per token (reported).
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(TitansExperiment.Paper.Number, Config.Size);
        foreach (var (id, prefix) in new[]
                 {
                     ("memory-fast-equals-naive", "MLP memory"), ("linear-memory-fast-equals-naive", "linear memory"),
                     ("mag-equals-naive", "MAG"), ("mal-equals-naive", "MAL"), ("mac-equals-naive", "MAC"),
                 })
        {
            var group = Exactness.Where(e => e.Check.StartsWith(prefix, StringComparison.Ordinal)
                && e.Check.Contains("naive", StringComparison.Ordinal)).ToList();
            double worst = group.Max(e => e.MaxAbs);
            claims.Exactness(id,
                $"{prefix} mixer: fast forms (chunked, recurrent) equal the naive twin (autograd inner gradients), outputs and every parameter gradient",
                $"max |Δ| {Num.Sci(worst)} over {group.Count} checks (float64, T = 13, chunk 4)", "≤ 1e-10 (float64, conformance tolerance)",
                group.All(e => e.Holds));
        }
        var stream = Exactness.Where(e => e.Check.Contains("streaming", StringComparison.Ordinal)).ToList();
        claims.Exactness("streaming-equals-forward", "memory, MAG, MAL and MAC: Step token by token reproduces the recurrent forward",
            $"max |Δ| {Num.Sci(stream.Max(e => e.MaxAbs))} ({stream.Count} mixers, float64, T = 13)", "≤ 1e-10", stream.All(e => e.Holds));
        var causal = Exactness.Where(e => e.Check.Contains("perturbing", StringComparison.Ordinal)).ToList();
        claims.Exactness("causal-chunked",
            "chunked MAG and MAC are causal: token t reads only memories written by tokens < t (no end-of-chunk or end-of-segment leak)",
            $"max |Δ| of the outputs before a changed token: {Num.Sci(causal.Max(e => e.MaxAbs))} " +
            $"({string.Join(", ", causal.Select(e => e.Check.Split(' ')[0]))}; " +
            "MAG: the last token, MAC: a token inside its second segment)", "exactly 0 (spec §6)", causal.All(e => e.Holds));

        // Task A (mechanism, no outer training): the memory holds D/2 pairs across 4n filler tokens; SWA sees only its window.
        int d = Config.DModel, half = d / 2;
        double linearHalf = Recall("linear", half), swaHalf = Recall(TitansExperiment.SwaName, half);
        int gap = Mechanism[0].Gap;
        claims.Claim("memory-recall-beyond-window",
            "the neural memory recalls stored pairs far beyond the attention window, where SWA is at chance " +
            "(spec §4 task A: identity projections, no outer training)",
            "recall kept far beyond the window (paper §5.3, NIAH/BABILong beyond 2M tokens); toy analogue spec §7",
            $"linear memory {linearHalf:P1} vs SWA {swaHalf:P1} of {half} pairs after a gap of {gap} tokens " +
            $"(4 × window {Config.Window}); chance {1.0 / half:P1}",
            "memory ≥ 90 % and SWA ≤ 2 × chance (spec §7)", linearHalf >= 0.9 && swaHalf <= 2.0 / half, asserted: true,
            deviation: "spec §7's criterion applied to task A (no outer training); the trained version is the next records");
        double linear2d = Recall("linear", 2 * d), mlp2d = Recall("mlp", 2 * d);
        claims.Reported("deep-memory-capacity", "a deeper (MLP) memory stores more pairs than a linear one once the pairs outnumber its key width",
            "deeper memories scale better with context length (paper §5.5, Fig. 7)",
            $"at {2 * d} pairs (2 × D): MLP {mlp2d:P1}, linear {linear2d:P1}; at {half}: MLP {Recall("mlp", half):P1}, linear {linearHalf:P1}",
            "MLP > linear at 2 × D pairs [ours: the spec names no threshold]", mlp2d > linear2d);

        // Task B (trained): MQAR, far queries.
        var swa = Run(TitansExperiment.SwaName);
        var (swaNear, nNear) = swa.Accuracy(0, NearTo);
        var (swaFar, nFar) = swa.Accuracy(FarFrom);
        double chance = Config.Chance;
        string far = $"distance ≥ {FarFrom} (window n = {Config.Window})";
        bool baselineTrained = swaNear >= swaFar + 0.30;
        bool anyAboveChance = Runs.Any(r => r.Accuracy(FarFrom).Accuracy > 2 * chance);
        string untrained = $"undecided at this size: in {Config.Steps} steps no model left the loss plateau (final loss " +
            string.Join(", ", Runs.Select(r => $"{r.Model} {FinalLoss(r):F2}")) + $"; ln(V/2) = {Math.Log(Config.VocabSize / 2.0):F2}) — the SWA baseline " +
            "does not even recall inside its window, so the comparison says nothing about memory; the full preset decides it";
        foreach (var variant in Config.Variants)
        {
            var run = Run(variant);
            var (acc, _) = run.Accuracy(FarFrom);
            string lower = variant.ToLowerInvariant();
            string statement = $"Titans-{variant} recalls far beyond the attention window, where SWA alone is at chance (MQAR, same steps and batches)";
            string ours = $"{variant} {acc:P1} vs SWA {swaFar:P1} at {far}, {nFar} queries; chance {chance:P1}; SWA inside its window {swaNear:P1}";
            const string figure = "NIAH/BABILong accuracy kept beyond 2M tokens (paper Fig. 6, Table 2); toy analogue from spec §7";
            const string criterion = "variant ≥ 90 % and SWA ≤ 2 × chance (spec §7)";
            if (!baselineTrained && !anyAboveChance) claims.NotShown($"{lower}-recall-beyond-window", statement, figure, ours, criterion, untrained);
            else claims.Claim($"{lower}-recall-beyond-window", statement, figure, ours, criterion, acc >= 0.9 && swaFar <= 2 * chance,
                asserted: variant == TitansExperiment.MagName);
            string beats = $"Titans-{variant} beats SWA at 4× the window by more than 30 pp";
            string oursBeats = $"{variant} − SWA = {100 * (acc - swaFar):F1} pp at {far}";
            if (!baselineTrained && !anyAboveChance)
                claims.NotShown($"{lower}-beats-swa-4x-window", beats, "spec §6 qualitative check (seed 0)", oursBeats, "> 30 pp (spec §6)", untrained);
            else claims.Claim($"{lower}-beats-swa-4x-window", beats, "spec §6 qualitative check (seed 0)", oursBeats, "> 30 pp (spec §6)", acc - swaFar > 0.30,
                asserted: variant == TitansExperiment.MagName);
        }
        claims.Reported("swa-wins-in-window", "the SWA baseline can recall inside its window (so that its far failure is the window's, not training's)",
            "SWA is exact within its window (by construction)", $"SWA {swaNear:P1} at distance < {NearTo} ({nNear} queries) vs {swaFar:P1} far",
            "near accuracy ≥ far accuracy + 30 pp [ours: the spec names no threshold]", baselineTrained);

        string bytes = string.Join(", ", Runs.Select(r => $"{r.Model} {r.StateBytes:N0} B"));
        long kv = 2L * Config.SeqLen * Config.DModel * sizeof(float) * Config.Layers;
        claims.Reported("state-bytes", "constant-size state: memory weights instead of an O(T) KV cache",
            "linear cost in T, constant-size state (paper §3, spec §8)",
            $"decode state per sequence: {bytes}; a full KV cache at T = {Config.SeqLen}: {kv:N0} B",
            "reported: bytes by formula (window and P keys and values, memory and momentum, conv); the memory part is constant in T by construction",
            Runs.All(r => r.StateBytes > 0));
        claims.Reported("time-per-token", "forward time per token of the trained models (shared CPU: reported, never asserted)",
            "full attention wins at small T; the inner loop is FLOP-heavy (spec §8)",
            string.Join(", ", Runs.Select(r => $"{r.Model} {r.MsPerToken * 1000:F1} µs")), "none (timing)", true);

        claims.Saw($"Without outer training, a linear memory recalled {linearHalf:P0} of {half} pairs after {gap} filler tokens, where SWA recalled " +
            $"{swaHalf:P0}; at {2 * d} pairs the MLP memory recalled {mlp2d:P0} and the linear one {linear2d:P0}.");
        foreach (var variant in Config.Variants)
        {
            var (acc, _) = Run(variant).Accuracy(FarFrom);
            claims.Saw($"At distances of {FarFrom} tokens or more ({FarFrom / (double)Config.Window:F0}× the window), {variant} answered {acc:P0} of the " +
                $"{nFar} queries and SWA {swaFar:P0} (chance {chance:P0}); inside the window SWA answered {swaNear:P0}.");
        }
        claims.Saw($"The decode state of one sequence: {bytes}; the memory's part does not grow with T.");
        return claims;
    }
}
