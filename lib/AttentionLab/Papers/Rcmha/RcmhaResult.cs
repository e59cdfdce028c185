using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Rcmha;

/// <summary>The exactness phase (float64): the gaps each check measured.</summary>
/// <param name="ShiftGap">Shift form vs the (i, j) loop: max |Δ| over visible scores and the gradients of q, k, u, v, p.</param>
/// <param name="GatherGap">Gather form vs the loop.</param>
/// <param name="MaskExact">Both forms and the loop put exactly −∞ on every j &gt; i and a finite score on every j ≤ i.</param>
/// <param name="MixerGap">The four mixers vs <see cref="RcmhaNaive"/>: max |Δ| over outputs and every gradient.</param>
/// <param name="CausalPast">max |Δ| of past outputs when future inputs change (0 exactly when causal).</param>
/// <param name="CausalFuture">max |Δ| of the outputs at the changed positions (nonzero: the probe changed something).</param>
/// <param name="ReducesToMha">Delta kernel, W_R = 0, u = v = 0: max |RCMHA − position-free MHA|.</param>
/// <param name="StepVsForward">Token-by-token decoding vs the parallel forward, worst of the four variants.</param>
public sealed record RcmhaExactness(double ShiftGap, double GatherGap, bool MaskExact, double MixerGap, double CausalPast, double CausalFuture,
    double ReducesToMha, double StepVsForward)
{
    /// <summary>Naive-twin tolerance (float64).</summary>
    public const double TwinTolerance = 1e-10;
    /// <summary>The spec's §6 tolerance for the reduction to MHA.</summary>
    public const double IdentityTolerance = 1e-6;
}

/// <summary>One variant read at one evaluation length: validation loss (nats/char) and next-character accuracy over every position.</summary>
public sealed record RcmhaEval(string Variant, int Length, double LengthRatio, double Loss, double Accuracy);

/// <summary>Peak process memory growth (MiB) of one training step at T tokens; null where the platform does not expose it.</summary>
public sealed record RcmhaPeak(int Length, double? PeakMiB, string Method);

/// <summary>One variant: parameters, where its weights came from, training losses (when trained here) and its costs.</summary>
public sealed record RcmhaRun(string Variant, long Params, string Source, bool TrainedHere, IReadOnlyList<double> TrainLoss, double? TrainMsPerStep,
    double StepMs, IReadOnlyList<RcmhaPeak> Peaks);

/// <summary>The first layer's convolution taps of one projection: the mean and the mean |·| over channels, tap 0 = the oldest input.</summary>
public sealed record RcmhaKernel(string Variant, string Projection, double[] MeanTap, double[] MeanAbsTap);

/// <summary>Everything <see cref="RcmhaExperiment.Run"/> measured, its tables, plot series and claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The exactness phase.</param>
/// <param name="Runs">One per variant.</param>
/// <param name="Evals">Every variant at every evaluation length.</param>
/// <param name="Profile">The first layer's relative-bias profile (v·W_R r_δ)/√Dk per head × distance δ (RCMHA's), or null.</param>
/// <param name="Kernels">The first layer's convolution taps (RCMHA's).</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record RcmhaResult(RcmhaExperiment.Config Config, RcmhaExactness Exactness, IReadOnlyList<RcmhaRun> Runs, IReadOnlyList<RcmhaEval> Evals,
    double[,]? Profile, IReadOnlyList<RcmhaKernel> Kernels, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>The evaluation of <paramref name="variant"/> at <paramref name="length"/>.</summary>
    public RcmhaEval Eval(string variant, int length) => Evals.FirstOrDefault(e => e.Variant == variant && e.Length == length)
        ?? throw new ArgumentException($"no evaluation of '{variant}' at T = {length}.", nameof(variant));

    /// <summary>Columns: variant, params, accuracy and loss at each length, ms/step, peak MiB at each memory length, source.</summary>
    public DataFrame ToDataFrame()
    {
        var columns = new List<DataFrameColumn>
        {
            new StringDataFrameColumn("variant", Runs.Select(r => r.Variant)),
            new Int64DataFrameColumn("params", Runs.Select(r => r.Params)),
        };
        foreach (int t in Config.EvalLengths)
            columns.Add(new DoubleDataFrameColumn($"acc@{t}", Runs.Select(r => Math.Round(Eval(r.Variant, t).Accuracy, 4))));
        foreach (int t in Config.EvalLengths)
            columns.Add(new DoubleDataFrameColumn($"loss@{t}", Runs.Select(r => Math.Round(Eval(r.Variant, t).Loss, 4))));
        columns.Add(new DoubleDataFrameColumn("ms/step", Runs.Select(r => Math.Round(r.StepMs, 1))));
        foreach (int t in Config.MemoryLengths)
            columns.Add(new DoubleDataFrameColumn($"peak MiB@{t}",
                Runs.Select(r => r.Peaks.FirstOrDefault(p => p.Length == t)?.PeakMiB is { } m ? Math.Round(m, 1) : (double?)null)));
        columns.Add(new StringDataFrameColumn("weights", Runs.Select(r => r.Source)));
        return new DataFrame(columns);
    }

    /// <summary>Accuracy vs evaluation length, one series per variant (x = length).</summary>
    public IEnumerable<Series> AccuracyByLength() => Runs.Select(r => new Series(r.Variant,
        Config.EvalLengths.Select(t => (double)t).ToArray(), Config.EvalLengths.Select(t => Eval(r.Variant, t).Accuracy).ToArray()));

    /// <summary>Validation loss vs evaluation length, one series per variant.</summary>
    public IEnumerable<Series> LossByLength() => Runs.Select(r => new Series(r.Variant,
        Config.EvalLengths.Select(t => (double)t).ToArray(), Config.EvalLengths.Select(t => Eval(r.Variant, t).Loss).ToArray()));

    /// <summary>Training-loss curves of the variants trained in this run (empty when every model came from a checkpoint).</summary>
    public IEnumerable<Series> LossCurves() => Runs.Where(r => r.TrainLoss.Count > 0).Select(r => Series.Of(r.Variant, r.TrainLoss));

    /// <summary>The relative-bias profile as heatmap rows (head × distance) with labels, or null.</summary>
    public (IReadOnlyList<double[]> Rows, string[] Heads, string[] Distances)? ProfileRows()
    {
        if (Profile is null) return null;
        int h = Profile.GetLength(0), l = Profile.GetLength(1);
        var rows = Enumerable.Range(0, h).Select(i => Enumerable.Range(0, l).Select(j => Profile[i, j]).ToArray()).ToList();
        return (rows, Enumerable.Range(0, h).Select(i => $"head {i}").ToArray(), Enumerable.Range(0, l).Select(j => j.ToString()).ToArray());
    }

    /// <summary>The convolution kernels as series over taps (x = offset from the current token: −(w−1) … 0).</summary>
    public IEnumerable<Series> KernelSeries() => Kernels.Select(k => new Series($"{k.Variant} W_{k.Projection} mean tap",
        Enumerable.Range(0, k.MeanTap.Length).Select(m => (double)(m - (k.MeanTap.Length - 1))).ToArray(), k.MeanTap));

    /// <summary>
    /// The claims: exactness of the relative scores (shift and gather vs the loop, exact masking), the mixers vs their twin, causality,
    /// the reduction to MHA, decoding; RCMHA's quality at T and beyond it; memory and step time reported.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(RcmhaExperiment.Paper.Number, Config.Size);
        var ex = Exactness;
        string twin = $"≤ {Num.Sci(RcmhaExactness.TwinTolerance, 0)} (float64, scores and the gradients of q, k, u, v, p)";
        claims.Exactness("shift-equals-loop", "Transformer-XL's relative shift places (q_i + v)·W_R r_{i−j} at (i, j) exactly as an explicit (i, j) loop",
            $"max |Δ| {Num.Sci(ex.ShiftGap)} (B 2, T 9 and 1, H 2, D 5 and 3)", twin + "; spec §6: shift = gather to 1e-6",
            ex.ShiftGap <= RcmhaExactness.TwinTolerance);
        claims.Exactness("gather-equals-loop", "the gather form (column i − j of (q + v)·pᵀ) equals the loop", $"max |Δ| {Num.Sci(ex.GatherGap)}", twin,
            ex.GatherGap <= RcmhaExactness.TwinTolerance);
        claims.Exactness("causal-mask-exact", "scores are exactly −∞ for every j > i and finite for every j ≤ i (shift, gather and loop)",
            ex.MaskExact ? "every entry as required" : "an entry differs", "exact", ex.MaskExact);
        claims.Exactness("mixer-equals-naive", "the four mixers (MHA, MDHA, RMHA, RCMHA) equal their naive twin (conv as a loop over taps, scores as the loop)",
            $"max |Δ| {Num.Sci(ex.MixerGap)} (B 2, T 7, d 10, H 2, w 3)", "≤ 1e-10 (float64, output and the gradients of x and every weight)",
            ex.MixerGap <= RcmhaExactness.TwinTolerance);
        claims.Exactness("conv-is-causal", "the causal convolution (and the whole RCMHA layer) does not change past outputs when future inputs change",
            $"past max |Δ| {Num.Sci(ex.CausalPast)}, changed positions {Num.Sci(ex.CausalFuture)}", "past exactly 0, changed positions > 0 (spec §6)",
            ex.CausalPast == 0 && ex.CausalFuture > 0);
        claims.Exactness("reduces-to-mha", "delta kernel [0, …, 1], W_R = 0, u = v = 0 ⇒ RCMHA equals position-free MHA",
            $"max |Δ| {Num.Sci(ex.ReducesToMha)} vs the library's CausalSelfAttention, same W_QKV and W_O",
            $"≤ {Num.Sci(RcmhaExactness.IdentityTolerance, 0)} (spec §6)", ex.ReducesToMha <= RcmhaExactness.IdentityTolerance);
        claims.Exactness("step-equals-forward", "token-by-token decoding (conv state + KV cache, gathered relative scores) reproduces the parallel forward",
            $"max |Δ| {Num.Sci(ex.StepVsForward)} (worst of the four)", "≤ 1e-10 (float64)", ex.StepVsForward <= RcmhaExactness.TwinTolerance);

        int t = Config.SeqLen;
        bool fallback = Runs.Any(r => r.TrainedHere) && Config.FromCheckpoints;
        string budget = fallback
            ? $"at least one model trained only {Config.FallbackSteps} steps here because its checkpoint was missing or did not match"
            : null!;
        var rc = Runs.FirstOrDefault(r => r.Variant == RcmhaVariant.Rcmha.Name);
        var others = Runs.Where(r => r.Variant != RcmhaVariant.Rcmha.Name).ToList();
        if (rc is null || others.Count == 0)
        {
            claims.NotShown("quality-at-train-length", "RCMHA reaches the best accuracy of the four variants", "accuracy 0.572, above MHA, MDHA and RMHA " +
                "(paper abstract; dataset not given)", "—", "acc(RCMHA) ≥ acc(each other variant) at T", "this run did not train RCMHA and another variant");
            return claims;
        }
        var atT = Eval(rc.Variant, t);
        var bestOther = others.Select(r => Eval(r.Variant, t)).OrderByDescending(e => e.Accuracy).First();
        string OthersAt(int length) => string.Join(", ", others.Select(r => $"{r.Variant} {Eval(r.Variant, length).Accuracy:F4}"));
        claims.Claim("quality-at-train-length", "RCMHA reaches the best accuracy of the four variants (at the training length)",
            "accuracy 0.572 for RCMHA, above MHA, MDHA and RMHA (paper abstract; dataset not given in the sources read)",
            $"next-char accuracy at T = {t}: RCMHA {atT.Accuracy:F4}; {OthersAt(t)} (equal steps and batches, one seed); validation loss RCMHA " +
            $"{atT.Loss:F4}, best other {others.Min(r => Eval(r.Variant, t).Loss):F4} nats/char",
            "acc(RCMHA) ≥ acc(each other variant) at T (spec §7: RCMHA ≥ the others)", atT.Accuracy >= bestOther.Accuracy, asserted: false,
            note: fallback ? budget
                : $"not asserted: one seed, and RCMHA's accuracy gap to the best other variant ({bestOther.Variant}) is " +
                  $"{100 * (atT.Accuracy - bestOther.Accuracy):+0.00;-0.00} points, inside what a seed moves at this size (docs/decisions.md)");

        int twice = 2 * t;
        var mha = Runs.FirstOrDefault(r => r.Variant == RcmhaVariant.Mha.Name);
        if (mha is not null && Config.EvalLengths.Contains(twice))
        {
            var rc2 = Eval(rc.Variant, twice);
            var mha2 = Eval(mha.Variant, twice);
            claims.Claim("beyond-train-length", "beyond the training length RCMHA keeps its accuracy better than MHA (RCMHA ≥ MHA at 2× T)",
                "RCMHA above MHA (accuracy 0.572 vs lower, paper abstract; the paper reports no length sweep)",
                $"accuracy at 2T = {twice}: RCMHA {rc2.Accuracy:F4}, MHA {mha2.Accuracy:F4} (at T: {atT.Accuracy:F4} vs {Eval(mha.Variant, t).Accuracy:F4})",
                "acc(RCMHA) ≥ acc(MHA) at 2× T, seed 0 (spec §6)", rc2.Accuracy >= mha2.Accuracy, asserted: !fallback,
                note: fallback ? budget + "; not asserted" : null);
            double gapT = atT.Accuracy - Eval(mha.Variant, t).Accuracy, gap2 = rc2.Accuracy - mha2.Accuracy;
            claims.Reported("clearest-beyond-length", "RCMHA's lead over MHA is larger beyond the training length than at it",
                "— (spec §7's toy analogue: 'most clearly beyond the training length')",
                $"RCMHA − MHA accuracy: {gapT:+0.0000;-0.0000} at T, {gap2:+0.0000;-0.0000} at 2T",
                "gap(2T) > gap(T) [ours: spec §7 gives no threshold]", gap2 > gapT);
        }
        int longest = Config.EvalLengths.Max();
        if (longest > t)
        {
            var best = Runs.Select(r => Eval(r.Variant, longest)).OrderByDescending(e => e.Accuracy).First();
            claims.Reported("ranking-at-longest", $"RCMHA is the best of the four at the longest evaluation length ({longest / t}× T)",
                "— (the paper reports one accuracy per variant, no length sweep)",
                $"accuracy at T = {longest}: RCMHA {Eval(rc.Variant, longest).Accuracy:F4}; {OthersAt(longest)}",
                "acc(RCMHA) ≥ acc(each other variant) [ours]", best.Variant == rc.Variant || Eval(rc.Variant, longest).Accuracy >= best.Accuracy);
        }

        var rmha = Runs.FirstOrDefault(r => r.Variant == RcmhaVariant.Rmha.Name);
        int memT = Config.MemoryLengths.Length == 0 ? 0 : Config.MemoryLengths.Max();
        string Peak(RcmhaRun r) => r.Peaks.FirstOrDefault(p => p.Length == memT)?.PeakMiB is { } m ? $"{m:F1} MiB" : "n/a";
        claims.NotShown("memory-saving", "RCMHA needs less memory than RMHA",
            "2.98 GB for RCMHA vs 3.5 GB for RMHA (paper abstract, whose memory sentence is garbled; the spec's reading)",
            rmha is null ? "—" : $"peak process memory growth of one training step at T = {memT}, batch {Config.TimingBatch}: " +
                $"RCMHA {Peak(rc)}, RMHA {Peak(rmha)}; " +
                string.Join(", ", Runs.Select(r => $"{r.Variant} {Peak(r)}")),
            "RCMHA < RMHA in GB at the paper's model size",
            "memory differences at toy size are an implementation fact, not the method's: they come from which activations autograd keeps in this " +
            "implementation (the convolution adds three [B, T, d] tensors per layer; the shift pads one [B, H, T, T] block) and from page-granular " +
            "process RSS on a shared CPU; the paper's model, batch and framework are not given, so its GB figures cannot be scaled down");
        if (rmha is not null)
            claims.Reported("step-time", "cost per training step of the four variants (the relative term adds O(T²·H), the convolution O(T·d))",
                "— (the paper gives memory, not time)",
                $"ms per forward+backward at T = {t}, batch {Config.TimingBatch}: " + string.Join(", ", Runs.Select(r => $"{r.Variant} {r.StepMs:F1}")),
                "RMHA and RCMHA ≥ MHA (timing on a shared CPU: reported)", rmha.StepMs >= (mha?.StepMs ?? 0) && rc.StepMs >= (mha?.StepMs ?? 0));

        claims.Saw("Weights: " + string.Join("; ", Runs.Select(r => $"{r.Variant} {r.Source}")) + ".");
        claims.Saw($"At the training length T = {t}, next-character accuracy was " +
            string.Join(", ", Runs.Select(r => $"{r.Variant} {Eval(r.Variant, t).Accuracy:P1}")) + ".");
        foreach (int len in Config.EvalLengths.Where(l => l > t))
            claims.Saw($"At T = {len} ({len / (double)t:0.#}× the training length): " +
                string.Join(", ", Runs.Select(r => $"{r.Variant} {Eval(r.Variant, len).Accuracy:P1} (loss {Eval(r.Variant, len).Loss:F3})")) + ".");
        claims.Saw("Peak memory growth of one training step: " + string.Join("; ", Runs.Select(r =>
            $"{r.Variant} " + string.Join(", ", r.Peaks.Select(p => $"{(p.PeakMiB is { } m ? $"{m:F1} MiB" : "n/a")} at T = {p.Length}")))) +
            " — differences at this size come from the implementation.");
        return claims;
    }
}
