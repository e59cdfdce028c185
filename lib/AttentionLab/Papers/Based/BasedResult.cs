using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Based;

/// <summary>One form's distance from the naive quadratic twin: dtype and what was compared (output, h0 carry, dq, dk, dv).</summary>
public sealed record BasedFormError(string Form, string DType, string What, ErrorStats Error);

/// <summary>The exactness phase of <see cref="BasedExperiment.Exactness"/>.</summary>
/// <param name="KernelMaxAbs">max |φ(q)·φ(k) − (1 + s + s²/2)| over the full and the packed map (float64).</param>
/// <param name="PackedVsFullMaxAbs">max |packed kernel − full kernel|.</param>
/// <param name="Forms">every form's output (float64, float32) and its h0 carry-in (float64) against the naive twin.</param>
/// <param name="Gradients">dq, dk, dv of every form against the naive twin's (float64).</param>
/// <param name="MinKernel">smallest K(q, k) on spread-out inputs (≥ 1/2 in exact arithmetic).</param>
/// <param name="CausalMaxAbs">largest change of an output up to t when every token after t changes (every form).</param>
/// <param name="BasedWindowMaxAbs">SlidingWindowAttention with Based's window_size W ∈ {7, 8, 64} against flash-attn's window (W // 2, 0), row by row.</param>
public sealed record BasedExactness(double KernelMaxAbs, double PackedVsFullMaxAbs, IReadOnlyList<BasedFormError> Forms,
    IReadOnlyList<BasedFormError> Gradients, double MinKernel, double CausalMaxAbs, double BasedWindowMaxAbs)
{
    /// <summary>Spec §6: kernel identity 1e−6; forms float64 1e−10, float32 RMS-relative 1e−5.</summary>
    public const double KernelTolerance = 1e-6, Float64Tolerance = 1e-10, Float32Tolerance = 1e-5;

    /// <summary>Largest max |Δ| over the float64 outputs and carries (NaN if any is NaN).</summary>
    public double Float64MaxAbs => Worst(Forms.Where(f => f.DType == "float64").Select(f => f.Error.MaxAbs));
    /// <summary>Largest RMS-relative error over the float32 outputs (NaN if any is NaN).</summary>
    public double Float32RmsRelative => Worst(Forms.Where(f => f.DType == "float32").Select(f => f.Error.RmsRelative));
    /// <summary>Largest max |Δ| over the gradients (NaN if any is NaN).</summary>
    public double GradientMaxAbs => Worst(Gradients.Select(f => f.Error.MaxAbs));

    /// <summary>Columns: form, dtype, what, max_abs_vs_naive, rms_relative.</summary>
    public DataFrame ToDataFrame()
    {
        var all = Forms.Concat(Gradients).ToList();
        return Tables.From(all.Select(f => new
            {
                f.Form,
                Dtype = f.DType,
                f.What,
                MaxAbsVsNaive = f.Error.MaxAbs,
                f.Error.RmsRelative,
            }));
    }

    /// <summary>The maximum; NaN when any value is NaN (LINQ's Max skips NaN) or when nothing was compared.</summary>
    internal static double Worst(IEnumerable<double> xs)
    {
        var list = xs.ToList();
        return list.Count == 0 || list.Any(double.IsNaN) ? double.NaN : list.Max();
    }
}

/// <summary>Everything <see cref="BasedExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The forms against the naive twin on toy tensors, the kernel, causality, Based's window convention.</param>
/// <param name="Probe">Training-free recall per memory, knob and N.</param>
/// <param name="Mqar">The trained MQAR models.</param>
/// <param name="Decode">Per-token decode cost and state bytes vs tokens generated.</param>
/// <param name="Prefill">Forward time per method and T.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record BasedResult(BasedExperiment.Config Config, BasedExactness Exactness, IReadOnlyList<ProbePoint> Probe, IReadOnlyList<MqarRun> Mqar,
    IReadOnlyList<DecodePoint> Decode, IReadOnlyList<SweepPoint> Prefill, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>
    /// The spec's probe reference (§4a): recall of its numpy prototype (seed 0, 20 trials) — Taylor by d′ at N = 32 and 64,
    /// and softmax, identity and elu+1 at d′ = 16, N = 64; a window of 64 at N = 128. Keys: the probe point's name and N.
    /// </summary>
    public static IReadOnlyDictionary<(string Name, int Pairs), double> SpecPrototype { get; } = new Dictionary<(string, int), double>
    {
        [("taylor d′=4", 32)] = 0.23, [("taylor d′=8", 32)] = 0.47, [("taylor d′=16", 32)] = 0.77, [("taylor d′=24", 32)] = 0.90, [("taylor d′=32", 32)] = 0.98,
        [("taylor d′=4", 64)] = 0.12, [("taylor d′=8", 64)] = 0.24, [("taylor d′=16", 64)] = 0.56, [("taylor d′=24", 64)] = 0.73, [("taylor d′=32", 64)] = 0.88,
        [("softmax (KV cache)", 64)] = 0.86, [("identity d′=16", 64)] = 0.27, [("elu+1 d′=16", 64)] = 0.02, [("swa w=64", 128)] = 0.43,
    };

    /// <summary>
    /// How far our probe may sit from the spec's prototype and still "reproduce" it [ours: the spec calls its numbers what to expect, not guarantees].
    /// </summary>
    public const double PrototypeTolerance = 0.05;
    /// <summary>The spec's attention bar for trained MQAR (§6, written for the nightly size).</summary>
    public const double AttentionAccuracy = 0.9;
    /// <summary>BASED must beat the sliding window at matched state by this much [ours].</summary>
    public const double SwaMargin = 0.2;
    /// <summary>BASED must beat pure linear attention at equal state by this much to be asserted [ours]; a smaller lead is recorded, not asserted.</summary>
    public const double LinearMargin = 0.05;
    /// <summary>Step vs forward of a trained MQAR model (float32 logits) [ours].</summary>
    public const double StepTolerance = 1e-4;

    /// <summary>The N the probe's claims and Pareto plot use: 64 when probed, else the largest N.</summary>
    public int ProbeN => Probe.Any(p => p.Pairs == 64) ? 64 : Probe.Max(p => p.Pairs);

    /// <summary>
    /// The spec's table — one row per probe point (at <see cref="ProbeN"/>) and per trained MQAR model. Columns: source
    /// (probe / mqar), family, name, d′, window_keys (the keys a window keeps), d_model, state_bytes (float32; MQAR: the
    /// whole model's streaming state after the sequence), recall (probe recall or MQAR accuracy at the query positions).
    /// </summary>
    public DataFrame ToDataFrame()
    {
        var probe = Probe.Where(p => p.Pairs == ProbeN).ToList();
        bool Linear(MqarRun r) => r.Model.Family is BasedLayerKind.LinearAttention or BasedLayerKind.PlainLinearAttention;
        return new DataFrame(
            new StringDataFrameColumn("source", probe.Select(_ => $"probe N={ProbeN}").Concat(Mqar.Select(_ => $"mqar T={Config.Mqar.SeqLen}"))),
            new StringDataFrameColumn("family", probe.Select(p => p.Family).Concat(Mqar.Select(r => r.Model.FamilyName))),
            new StringDataFrameColumn("name", probe.Select(p => p.Name).Concat(Mqar.Select(r => r.Model.Name))),
            new Int32DataFrameColumn("d_feature", probe.Select(p => (int?)p.FeatureDim).Concat(Mqar.Select(r => Linear(r) ? (int?)r.Model.Knob : null))),
            new Int32DataFrameColumn("window_keys", probe.Select(p => p.WindowKeys).Concat(
                Mqar.Select(r => r.Model.Family == BasedLayerKind.SlidingWindow ? (int?)r.Model.Knob : null))),
            new Int32DataFrameColumn("d_model", probe.Select(_ => (int?)null).Concat(Mqar.Select(_ => (int?)Config.Mqar.DModel))),
            new Int64DataFrameColumn("state_bytes", probe.Select(p => p.StateFloats * sizeof(float)).Concat(Mqar.Select(r => r.StateBytes))),
            new DoubleDataFrameColumn("recall", probe.Select(p => p.Recall).Concat(Mqar.Select(r => r.Accuracy))));
    }

    /// <summary>Probe points at N = <paramref name="pairs"/> for a Pareto plot (x = state bytes, y = recall).</summary>
    public IReadOnlyList<LabeledPoint> ProbePareto(int pairs) =>
        Probe.Where(p => p.Pairs == pairs).Select(p => new LabeledPoint(p.Name, p.StateFloats * sizeof(float), p.Recall)).ToList();

    /// <summary>The trained MQAR models for a Pareto plot (x = streaming state bytes after T tokens, y = accuracy).</summary>
    public IReadOnlyList<LabeledPoint> MqarPareto() =>
        Mqar.Select(r => new LabeledPoint(r.Model.Name, r.StateBytes, r.Accuracy)).ToList();

    /// <summary>Taylor recall vs d′ at N = <paramref name="pairs"/>.</summary>
    public double TaylorRecall(int featureDim, int pairs) => ProbeRecall($"taylor d′={featureDim}", pairs);

    /// <summary>Recall of the probe point named <paramref name="name"/> at N = <paramref name="pairs"/>.</summary>
    public double ProbeRecall(string name, int pairs) => Probe.SingleOrDefault(p => p.Name == name && p.Pairs == pairs)?.Recall
        ?? throw new ArgumentException($"no probe point '{name}' at N = {pairs}.", nameof(name));

    /// <summary>Columns: model, family, accuracy, state_bytes, params, step_vs_forward, seconds.</summary>
    public DataFrame MqarFrame() => Tables.From(Mqar.Select(r => new
        {
            Model = r.Model.Name,
            Family = r.Model.FamilyName,
            r.Accuracy,
            r.StateBytes,
            r.Params,
            StepVsForward = r.StepVsForwardMaxAbs,
            r.Seconds,
        }));

    /// <summary>Columns: name, N, ours, spec's prototype, |Δ| — every probe point the spec's table names.</summary>
    public DataFrame PrototypeFrame()
    {
        var rows = PrototypeRows();
        return Tables.From(rows.Select(r => new PrototypeRow(r.Name, r.Pairs, r.Ours, r.Prototype, Math.Abs(r.Ours - r.Prototype))));
    }

    /// <summary>A row of <see cref="PrototypeFrame"/> (N keeps the spec's capital).</summary>
    sealed record PrototypeRow(string Name, [property: Column("N")] int Pairs, double Ours, [property: Column("spec_prototype")] double Prototype,
        double AbsDiff);

    /// <summary>The probe points the spec's prototype table names, beside its numbers.</summary>
    public IReadOnlyList<(string Name, int Pairs, double Ours, double Prototype)> PrototypeRows() =>
        SpecPrototype.Where(kv => Probe.Any(p => p.Name == kv.Key.Name && p.Pairs == kv.Key.Pairs))
            .Select(kv => (kv.Key.Name, kv.Key.Pairs, ProbeRecall(kv.Key.Name, kv.Key.Pairs), kv.Value)).ToList();

    /// <summary>
    /// The claims: exactness (the Taylor kernel; every form against the naive twin in float64/float32, with an h0 carry and
    /// gradients; positivity; causality; a window ≥ N reads what softmax reads; Based's window convention; Step = forward;
    /// constant decode state); the paper's claims at this size (probe: recall rises with d′, softmax ≥ Taylor16 ≥ identity16;
    /// trained MQAR: attention learns, BASED beats the sliding window at matched state and pure linear attention at equal
    /// state); and, reported, the probe against the spec's prototype and the decode / prefill timings.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(BasedExperiment.Paper.Number, Config.Size);
        var e = Exactness;
        claims.Exactness("taylor-kernel", "φ(q)·φ(k) = 1 + s + s²/2 (s = q·k/√d′), packed map = full map",
            $"max |Δ| {Num.Sci(e.KernelMaxAbs)}; packed vs full {Num.Sci(e.PackedVsFullMaxAbs)}", $"≤ {Num.Sci(BasedExactness.KernelTolerance, 0)} (spec §6)",
            e.KernelMaxAbs <= BasedExactness.KernelTolerance && e.PackedVsFullMaxAbs <= BasedExactness.KernelTolerance);
        const string formsText = "parallel, recurrent, chunked (packed and full φ) and fla's decomposition";
        claims.Exactness("forms-equal-naive-float64", $"{formsText} equal the naive quadratic twin, also continued from an h0 (float64)",
            $"max |Δ| {Num.Sci(e.Float64MaxAbs)} (T = 21, chunk 8, d′ = 5, carry after 13 tokens)",
            $"≤ {Num.Sci(BasedExactness.Float64Tolerance, 0)} (spec §6)",
            e.Float64MaxAbs <= BasedExactness.Float64Tolerance);
        claims.Exactness("forms-equal-naive-float32", $"{formsText} in float32 stay close to the float64 twin",
            $"RMS-relative {Num.Sci(e.Float32RmsRelative)}", $"≤ {Num.Sci(BasedExactness.Float32Tolerance, 0)} (spec §6)",
            e.Float32RmsRelative <= BasedExactness.Float32Tolerance);
        claims.Exactness("gradients-agree", "their gradients (q, k, v) equal the naive twin's (autograd, float64)",
            $"max |Δ| {Num.Sci(e.GradientMaxAbs)}", $"≤ {Num.Sci(BasedExactness.Float64Tolerance, 0)} (spec §6)",
            e.GradientMaxAbs <= BasedExactness.Float64Tolerance);
        claims.Exactness("denominator-positive", "the Taylor kernel never goes below 1/2, so the denominator is positive",
            $"smallest K {e.MinKernel:F4} (q, k × 4)", "K ≥ 1/2 (spec §6: denominator > 0)", e.MinKernel >= 0.5 - 1e-12);
        claims.Exactness("causal", "changing the tokens after t leaves every output up to t unchanged (every form)",
            $"max change {Num.Sci(e.CausalMaxAbs)}", "≤ 1e-12 (spec §6)", e.CausalMaxAbs <= 1e-12);
        var inside = Probe.Where(p => p.WindowKeys is { } w && p.Pairs <= w).ToList();
        var insideDiff = inside.Select(p => Math.Abs(p.Recall - ProbeRecall("softmax (KV cache)", p.Pairs))).DefaultIfEmpty(double.NaN).Max();
        claims.Exactness("swa-equals-softmax-in-window", "a sliding window that keeps all N pairs recalls exactly what softmax recalls",
            inside.Count == 0 ? "no window ≥ N was probed" : $"{inside.Count} probe points with w ≥ N: max |recall − softmax's| {insideDiff:F3}",
            "identical (spec §6: SWA(w) == softmax when N ≤ w)", inside.Count > 0 && insideDiff == 0);
        claims.Exactness("swa-based-window-convention",
            "BasedWindow.FromWindowSize(W) attends what Based's SlidingAttention(window_size = W) attends",
            $"max |Δ| {Num.Sci(e.BasedWindowMaxAbs)} for W = 7, 8, 64 (⌊W/2⌋ + 1 keys)", "≤ 1e-12 against flash-attn's window (W // 2, 0) row by row",
            e.BasedWindowMaxAbs <= 1e-12, paperFigure: "window = (window_size // 2, 0) (HazyResearch/based slide_attention.py)");
        double stepWorst = BasedExactness.Worst(Mqar.Select(r => r.StepVsForwardMaxAbs));
        claims.Exactness("step-equals-forward", "every trained MQAR model's token-by-token Step reproduces its forward pass",
            $"max |Δ| {Num.Sci(stepWorst)} over {Mqar.Count} models × {Config.Mqar.SeqLen} tokens", $"≤ {Num.Sci(StepTolerance, 0)} [ours: float32 logits]",
            Mqar.Count > 0 && stepWorst <= StepTolerance);
        var basedDecode = Decode.Where(p => p.Method.StartsWith("based", StringComparison.Ordinal)).ToList();
        var kv = Decode.Where(p => p.Method.StartsWith("softmax", StringComparison.Ordinal)).ToList();
        var basedBytes = basedDecode.Select(p => p.StateBytes).Distinct().ToList();
        bool kvLinear = kv.Count >= 2 && kv.All(p => p.StateBytes * kv[0].T == kv[0].StateBytes * p.T);
        claims.Exactness("decode-constant-state", "BASED decodes with a constant state; the KV cache grows linearly with t",
            $"BASED {(basedBytes.Count == 1 ? $"{basedBytes[0]:N0} B" : string.Join("/", basedBytes.Take(3)) + " B")} at every t ≤ {Config.DecodeLength}; " +
            $"KV cache {kv.FirstOrDefault()?.StateBytes ?? 0:N0} → {kv.LastOrDefault()?.StateBytes ?? 0:N0} B",
            "BASED's bytes identical at every t; KV bytes ∝ t", basedBytes.Count == 1 && kvLinear,
            paperFigure: "O(H·d′·d_v) state per sequence, constant in t (spec §8)");

        ProbeClaims(claims);
        MqarClaims(claims);
        TimingClaims(claims);
        return claims;
    }

    void ProbeClaims(ClaimSet claims)
    {
        int n = ProbeN;
        string Proto(int pairs) => string.Join(", ", Config.ProbeFeatureDims.Where(d => SpecPrototype.ContainsKey(($"taylor d′={d}", pairs)))
            .Select(d => $"{SpecPrototype[($"taylor d′={d}", pairs)]:F2}"));
        var taylor = Config.ProbeFeatureDims.OrderBy(d => d).Select(d => (d, r: TaylorRecall(d, n))).ToList();
        var steps = taylor.Zip(taylor.Skip(1), (a, b) => b.r - a.r).ToList();
        double smallest = steps.DefaultIfEmpty(double.NaN).Min();
        claims.Claim("probe-recall-rises-with-dprime", "recall is bought with state: Taylor recall rises with d′ (training-free associative-memory probe)",
            $"recall bought with state (abstract: the recall–memory Pareto frontier); spec's numpy prototype at N = {n}, d′ = " +
            $"{string.Join("/", Config.ProbeFeatureDims)}: {Proto(n)}",
            $"N = {n}: {string.Join(" < ", taylor.Select(x => $"{x.r:F2}"))} (d′ = {string.Join("/", taylor.Select(x => x.d))}; {Config.ProbeTrials} trials)",
            "strictly rising in d′ (spec §6, seed 0)", steps.Count > 0 && smallest > 0, asserted: steps.Count > 0 && Math.Abs(smallest) >= 0.02,
            note: steps.Count > 0 && Math.Abs(smallest) < 0.02 ? "the smallest step is under 0.02: not asserted" : null);

        double soft = ProbeRecall("softmax (KV cache)", n), t16 = TaylorRecall(16, n), id16 = ProbeRecall("identity d′=16", n),
            elu16 = ProbeRecall("elu+1 d′=16", n);
        double gap = Math.Min(soft - t16, t16 - id16);
        string protoOrder = SpecPrototype.TryGetValue(("softmax (KV cache)", n), out var ps)
            ? $"spec's numpy prototype at N = {n}: softmax {ps:F2}, Taylor d′=16 {SpecPrototype[("taylor d′=16", n)]:F2}, identity " +
            $"{SpecPrototype[("identity d′=16", n)]:F2}, elu+1 {SpecPrototype[("elu+1 d′=16", n)]:F2}"
            : "—";
        claims.Claim("probe-softmax-taylor-identity", "attention recalls most; the Taylor map more than plain linear attention at the same d′",
            protoOrder, $"N = {n}: softmax {soft:F2} ≥ Taylor d′=16 {t16:F2} ≥ identity {id16:F2} (elu+1 {elu16:F2})",
            "softmax ≥ Taylor16 ≥ identity16 (spec §6, seed 0)", soft >= t16 && t16 >= id16, asserted: Math.Abs(gap) >= 0.02,
            note: Math.Abs(gap) < 0.02 ? "a gap under 0.02: not asserted" : null);

        var rows = PrototypeRows();
        if (rows.Count > 0)
        {
            var worst = rows.OrderByDescending(r => Math.Abs(r.Ours - r.Prototype)).First();
            double worstDiff = Math.Abs(worst.Ours - worst.Prototype);
            claims.Reported("probe-matches-prototype", "our probe reproduces the spec's numpy prototype (a second implementation of the same probe)",
                $"spec's numpy prototype (seed 0, 20 trials): {rows.Count} numbers, e.g. Taylor d′=16 at N = 64: {SpecPrototype[("taylor d′=16", 64)]:F2}",
                $"max |Δ| {worstDiff:F2} over {rows.Count} cells (largest at {worst.Name}, N = {worst.Pairs}: {worst.Ours:F2} vs {worst.Prototype:F2})",
                $"every cell within ±{PrototypeTolerance} [ours: the spec calls its numbers what to expect, not guarantees]", worstDiff <= PrototypeTolerance,
                note: "different random draws than the prototype's numpy generator: a noisy number, reported");
        }
    }

    void MqarClaims(ClaimSet claims)
    {
        var s = Config.Mqar;
        string size = $"vocab {s.Vocab}, T = {s.SeqLen}, {s.Pairs} pairs, d = {s.DModel}, {s.Steps} steps, lr {s.LearningRate:G}";
        const string headline = "traverses the recall–memory Pareto frontier; +6.22 accuracy points over Mamba on recall-intensive tasks (1.3B; abstract)";
        var attention = Mqar.FirstOrDefault(r => r.Model.Family == BasedLayerKind.Attention);
        var based = Mqar.Where(r => r.Model.Family == BasedLayerKind.LinearAttention).OrderBy(r => r.StateBytes).FirstOrDefault();
        var swa = based is null ? null : Mqar.Where(r => r.Model.Family == BasedLayerKind.SlidingWindow)
            .OrderBy(r => Math.Abs(Math.Log((double)r.StateBytes / based.StateBytes))).FirstOrDefault();
        var linear = based is null ? null : Mqar.Where(r => r.Model.Family == BasedLayerKind.PlainLinearAttention)
            .OrderBy(r => Math.Abs(Math.Log((double)r.StateBytes / based.StateBytes))).FirstOrDefault();
        const string deviation = "the spec's criterion is written for the nightly size (T = 256, 32 pairs); applied here at its smoke size (T = 64, 4 pairs)";

        if (attention is null) claims.NotShown("mqar-attention-learns", "attention solves MQAR (the task trains at this size)", "—", "—",
            $"accuracy ≥ {AttentionAccuracy:P0} (spec §6)", "no attention model in this run's MQAR sweep");
        else
            claims.Claim("mqar-attention-learns", "attention solves MQAR (the task trains at this size: the comparison below means something)",
                "attention: full recall quality at the largest state (abstract)",
                $"{attention.Accuracy:P1} at {attention.StateBytes:N0} B after T = {s.SeqLen} (KV cache grows with T); {size}",
                $"≥ {AttentionAccuracy:P0} (spec §6)", attention.Accuracy >= AttentionAccuracy,
                asserted: Math.Abs(attention.Accuracy - AttentionAccuracy) >= 0.02, deviation: Config.Size == "smoke" ? deviation : null,
                note: Math.Abs(attention.Accuracy - AttentionAccuracy) < 0.02 ? "within 2 points of the bar: not asserted" : null);

        if (based is null || swa is null)
            claims.NotShown("mqar-based-beats-swa", "BASED recalls more than a sliding window at matched state", headline, "—",
                $"BASED ≥ window + {SwaMargin:F1} at a state within 1.5× (spec §6)", "the sweep has no BASED or no sliding-window model");
        else
        {
            double ratio = (double)Math.Max(based.StateBytes, swa.StateBytes) / Math.Min(based.StateBytes, swa.StateBytes);
            bool matched = ratio <= 1.5;
            string ours = $"{based.Model.Name} {based.Accuracy:P1} ({based.StateBytes:N0} B) vs {swa.Model.Name} {swa.Accuracy:P1} ({swa.StateBytes:N0} B, " +
                $"{ratio:F2}×)";
            string criterion = $"BASED ≥ window + {SwaMargin:F1} at a state within 1.5× (spec §6: BASED > SWA at matched state size; margin ours)";
            if (!matched) claims.NotShown("mqar-based-beats-swa", "BASED recalls more than a sliding window at matched state", headline, ours, criterion,
                $"no window within 1.5× of {based.Model.Name}'s state");
            else claims.Claim("mqar-based-beats-swa", "BASED recalls more than a sliding window at matched state", headline, ours, criterion,
                based.Accuracy >= swa.Accuracy + SwaMargin, asserted: Math.Abs(based.Accuracy - swa.Accuracy - SwaMargin) >= 0.05,
                deviation: Config.Size == "smoke" ? deviation
                    + "; BASED d′ = 4, not 16: at d = 64 BASED d′ = 16's state exceeds attention's whole KV cache at T = 64" : null);
        }

        if (based is null || linear is null)
            claims.NotShown("mqar-based-beats-pure-linear", "BASED's Taylor map recalls more than pure linear attention (elu+1) at equal state", headline, "—",
                $"BASED ≥ pure linear + {LinearMargin:F2} at a state within 1.1× [ours]", "the sweep has no BASED or no pure linear model");
        else
        {
            double ratio = (double)Math.Max(based.StateBytes, linear.StateBytes) / Math.Min(based.StateBytes, linear.StateBytes);
            double lead = based.Accuracy - linear.Accuracy;
            string ours = $"{based.Model.Name} {based.Accuracy:P1} ({based.StateBytes:N0} B) vs {linear.Model.Name} {linear.Accuracy:P1} " +
                $"({linear.StateBytes:N0} B)";
            string criterion = $"BASED > pure linear at a state within 1.1×; asserted when the lead is ≥ {LinearMargin:F2} [ours: spec §4b plots both " +
                "against state]";
            if (ratio > 1.1) claims.NotShown("mqar-based-beats-pure-linear",
                "BASED's Taylor map recalls more than pure linear attention (elu+1) at equal state",
                headline, ours, criterion, $"no pure linear model within 1.1× of {based.Model.Name}'s state");
            else claims.Claim("mqar-based-beats-pure-linear", "BASED's Taylor map recalls more than pure linear attention (elu+1) at equal state",
                headline, ours, criterion, lead > 0, asserted: Math.Abs(lead) >= LinearMargin,
                note: Math.Abs(lead) < LinearMargin ? $"a lead under {LinearMargin:F2}: recorded, not asserted"
                    : "one lr for all models: the lead depends on it (docs/decisions.md)");
        }
        if (attention is not null && based is not null)
            claims.Saw($"On MQAR ({size}) attention reaches {attention.Accuracy:P1} with a {attention.StateBytes:N0}-byte state that grows with T; " +
                $"{based.Model.Name} reaches {based.Accuracy:P1} with {based.StateBytes:N0} B" +
                       (swa is null ? "" : $", a window of {swa.Model.Knob} keys {swa.Accuracy:P1} with {swa.StateBytes:N0} B") +
                       (linear is null ? "." : $", pure linear (elu+1) {linear.Accuracy:P1} with {linear.StateBytes:N0} B."));
    }

    void TimingClaims(ClaimSet claims)
    {
        var byMethod = Decode.GroupBy(p => p.Method).ToDictionary(g => g.Key, g => g.OrderBy(p => p.T).ToList());
        var based = byMethod.FirstOrDefault(kv => kv.Key.StartsWith("based", StringComparison.Ordinal)).Value;
        var kv = byMethod.FirstOrDefault(kv => kv.Key.StartsWith("softmax", StringComparison.Ordinal)).Value;
        if (based is { Count: >= 2 } && kv is { Count: >= 2 })
        {
            double bGrowth = based[^1].MsPerToken / based[0].MsPerToken, kGrowth = kv[^1].MsPerToken / kv[0].MsPerToken;
            claims.Reported("decode-constant-cost", "BASED's per-token decode cost stays constant while attention's grows with the KV cache",
                "24× higher generation throughput than FlashAttention-2 (1.3B, 1024 generated tokens, IO-aware kernels; abstract)",
                $"ms per token, last window / first of {Config.DecodeLength} tokens: BASED {bGrowth:F2}× ({based[^1].MsPerToken:F3} ms), KV cache " +
                $"{kGrowth:F2}× ({kv[^1].MsPerToken:F3} ms); attention cores, 16 heads",
                "BASED's growth < 1.5× while the KV cache's > BASED's (spec §7 toy: constant vs growing per-token cost)", bGrowth < 1.5 && kGrowth > bGrowth,
                note: "timing on a shared CPU: reported, never asserted");
            var pairs = based.Zip(kv).ToList();
            int? cross = Enumerable.Range(0, pairs.Count).Where(i => pairs.Skip(i).All(p => p.First.MsPerToken < p.Second.MsPerToken))
                .Select(i => (int?)pairs[i].First.T).FirstOrDefault();                    // from this window on, BASED is cheaper in every window
            claims.Saw(cross is { } c
                ? $"Decoding, BASED's recurrent step is cheaper per token than the KV cache from the window ending at t = {c} on (spec §8: a few hundred " +
                "tokens at d′ = 16)."
                : $"Decoding, the KV cache stays cheaper per token than BASED's recurrent step up to t = {Config.DecodeLength} on this device (spec §8 " +
                "expects the crossover at a few hundred tokens).");
        }
        var slopes = Sweep.Slopes(Prefill);
        if (slopes.TryGetValue(BasedBenchmark.BasedChunked, out var bs) && slopes.TryGetValue(BasedBenchmark.Reference, out var rs))
        {
            claims.Reported("prefill-linear-time", "BASED's chunked prefill grows linearly in T; full softmax attention's quadratically",
                "linear in T (spec §8; the paper's IO-aware kernels are not reproduced)",
                $"log-log slope of time vs T = {string.Join(", ", Config.PrefillLengths)}: BASED chunked {bs:F2}, softmax reference {rs:F2}" +
                (slopes.TryGetValue(BasedBenchmark.Sdpa, out var ss) ? $", SDPA {ss:F2}" : ""),
                "BASED's slope ≤ 1.3 and below the reference's [ours: spec §8 asks to report the log-log slope]", bs <= 1.3 && bs < rs,
                note: "timing on a shared CPU: reported, never asserted");
            var cross = Sweep.Crossover(Prefill, BasedBenchmark.BasedChunked, BasedBenchmark.Sdpa);
            claims.Saw(cross is { } c ? $"Prefill: BASED chunked is faster than SDPA from T = {c} on, at these lengths on this device."
                : $"Prefill: SDPA's fused kernel stays faster than BASED chunked up to T = {Config.PrefillLengths.Max()} on this device (docs/benchmarks.md " +
                "has the sweep to T = 16384).");
        }
    }
}
