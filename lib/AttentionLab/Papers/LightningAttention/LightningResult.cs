using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>One trained LM: parameters, training loss per step, validation loss (nats/char) and training seconds.</summary>
public sealed record LmSummary(string Name, long Params, IReadOnlyList<double> TrainLoss, double ValidationLoss, double TrainSeconds);

/// <summary>One form's distance from the masked parallel form: block (0: the form has none), dtype, what was compared.</summary>
public sealed record FormError(string Form, int Block, string DType, string What, ErrorStats Error)
{
    /// <summary>"tiled B=16", "recurrent".</summary>
    public string Label => Block > 0 ? $"{Form} B={Block}" : Form;
}

/// <summary>
/// The exactness phase of <see cref="LightningExperiment.Exactness"/>: every form against the masked parallel form
/// (outputs and hT in float64 and float32; gradients in float64), the H = 8 slopes, zero and strong decay.
/// </summary>
/// <param name="Forms">outputs and hT of every form, float64 and float32.</param>
/// <param name="Gradients">dq, dk, dv, dh0, dlogλ of every form against the masked form's (float64).</param>
/// <param name="SlopesH8">DecaySchedules.AlibiSlopes(8) as doubles.</param>
/// <param name="SlopesH8Float32">−DecaySchedules.Alibi(8) (the float32 log-decay tensor), read back as doubles.</param>
/// <param name="ZeroDecayMaxAbs">max |Δ| of every form (and the masked one) at a = 0 against [(QKᵀ) ⊙ tril] V (float64).</param>
/// <param name="StrongDecayFinite">a = 10 and λ = 0: every output, state and gradient finite, float32 and float64.</param>
/// <param name="StrongDecayMaxAbs">max |Δ| of those outputs against the float64 masked form.</param>
public sealed record LightningExactness(IReadOnlyList<FormError> Forms, IReadOnlyList<FormError> Gradients, double[] SlopesH8,
    double[] SlopesH8Float32, double ZeroDecayMaxAbs, bool StrongDecayFinite, double StrongDecayMaxAbs)
{
    /// <summary>Spec §6 tolerances: float64 1e−10 (max |Δ|); float32 1e−4 (RMS-relative).</summary>
    public const double Float64Tolerance = 1e-10, Float32Tolerance = 1e-4;

    /// <summary>The spec's H = 8 slopes: 1/2, 1/4, …, 1/256.</summary>
    public static double[] ExpectedSlopesH8 => Enumerable.Range(1, 8).Select(h => Math.Pow(2, -h)).ToArray();

    /// <summary>Largest max |Δ| over the float64 outputs and states (NaN if any is NaN).</summary>
    public double Float64MaxAbs => Worst(Forms.Where(f => f.DType == "float64").Select(f => f.Error.MaxAbs));
    /// <summary>Largest RMS-relative error over the float32 outputs and states (NaN if any is NaN).</summary>
    public double Float32RmsRelative => Worst(Forms.Where(f => f.DType == "float32").Select(f => f.Error.RmsRelative));
    /// <summary>Largest max |Δ| over the float64 gradients (NaN if any is NaN).</summary>
    public double GradientMaxAbs => Worst(Gradients.Select(f => f.Error.MaxAbs));

    /// <summary>The maximum, NaN when any value is NaN (LINQ's Max skips NaN), NaN when empty (nothing was compared).</summary>
    static double Worst(IEnumerable<double> xs)
    {
        var list = xs.ToList();
        return list.Count == 0 || list.Any(double.IsNaN) ? double.NaN : list.Max();
    }

    /// <summary>Columns: form, dtype, what, max_abs, rms_relative.</summary>
    public DataFrame ToDataFrame()
    {
        var all = Forms.Concat(Gradients).ToList();
        return Tables.From(all.Select(f => new
            {
                Form = f.Label,
                Dtype = f.DType,
                f.What,
                MaxAbsVsMasked = f.Error.MaxAbs,
                f.Error.RmsRelative,
            }));
    }
}

/// <summary>Everything <see cref="LightningExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The forms against the masked parallel form on toy tensors, slopes, zero and strong decay.</param>
/// <param name="Speed">The constant-tokens sweep, forward + backward, every method but the cumsum form at every length it ran (median of interleaved
/// rounds).</param>
/// <param name="CumsumSpeed">The cumsum form and the chunked form at <c>CumsumTokensPerBatch</c> (its own interleaved sweep).</param>
/// <param name="SplitLength">n of the intra/inter split.</param>
/// <param name="Intra">Time of all intra-block left products at <paramref name="SplitLength"/>.</param>
/// <param name="Inter">Time of all inter-block right products and state updates.</param>
/// <param name="Lms">The TNL and softmax char LMs.</param>
/// <param name="UnigramLoss">A context-free model's validation loss (character frequencies).</param>
/// <param name="Decode">Both LMs decoding one validation window token by token.</param>
/// <param name="StepVsForwardMaxAbs">max |Step − forward| of the trained TNL model (logits) on that window's first LmSeqLen tokens.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record LightningResult(
    LightningExperiment.Config Config,
    LightningExactness Exactness,
    SpeedSweep Speed,
    SpeedSweep CumsumSpeed,
    int SplitLength,
    TimingStats Intra,
    TimingStats Inter,
    IReadOnlyList<LmSummary> Lms,
    double UnigramLoss,
    IReadOnlyList<StreamPoint> Decode,
    double StepVsForwardMaxAbs,
    double Seconds,
    IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>The spec's §6 speed criterion: chunked tokens/s varies less than this across n, while SDPA's falls by more.</summary>
    public const double MaxSpread = 2.0;
    /// <summary>The TNL LM's validation loss may be at most this multiple of the softmax model's [ours: the spec names no threshold].</summary>
    public const double LossFactor = 1.15;
    /// <summary>The LM claim is asserted only when the loss ratio is at least this far from <see cref="LossFactor"/> (either way).</summary>
    public const double LossMargin = 0.05;
    /// <summary>Step vs forward of the trained TNL model (float32 logits) [ours].</summary>
    public const double StepTolerance = 1e-4;

    /// <summary>The rows of one method, by length.</summary>
    public IReadOnlyList<SpeedRow> Of(string method) => Speed.Of(method);

    /// <summary>The speed sweep (see <see cref="SpeedSweep.ToDataFrame"/>).</summary>
    public DataFrame ToDataFrame() => Speed.ToDataFrame();

    /// <summary>Per method: slope, tokens/s spread, slowdown (see <see cref="SpeedSweep.SummaryFrame"/>).</summary>
    public DataFrame SummaryFrame() => Speed.SummaryFrame();

    /// <summary>The two LMs: model, params, validation loss, train seconds (and the unigram baseline).</summary>
    public DataFrame LmFrame() => new(
        new StringDataFrameColumn("model", Lms.Select(l => l.Name).Append("unigram (no context)")),
        new Int64DataFrameColumn("params", Lms.Select(l => l.Params).Append(0)),
        new DoubleDataFrameColumn("validation_nats_per_char", Lms.Select(l => Math.Round(l.ValidationLoss, 4)).Append(Math.Round(UnigramLoss, 4))),
        new DoubleDataFrameColumn("train_s", Lms.Select(l => Math.Round(l.TrainSeconds, 1)).Append(0)),
        new Int64DataFrameColumn("state_bytes_after_stream", Lms.Select(l => Decode.LastOrDefault(d => d.Model == l.Name)?.StateBytes ?? 0).Append(0)));

    /// <summary>The LM called <paramref name="name"/>.</summary>
    public LmSummary Lm(string name) => Lms.FirstOrDefault(l => l.Name == name) ?? throw new ArgumentException($"no LM named '{name}'.", nameof(name));

    /// <summary>
    /// The claims: the forms equal the masked parallel form (spec §6 tolerances; outputs, states, gradients), the H = 8
    /// slopes, a = 0 and a = 10; decoding keeps a constant state and reproduces the forward pass; the TNL LM's validation
    /// loss against the softmax model's (a claim with our threshold); and, reported with a computed status, the
    /// constant-speed sweep (spec §6) and Lightning against the cumsum form.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(LightningExperiment.Paper.Number, Config.Size);
        var e = Exactness;
        string blocks = string.Join(", ", LightningExperiment.ExactnessBlocks);
        string forms = $"tiled and chunked (blocks {blocks}), recurrent and cumsum";
        claims.Exactness("forms-equal-masked-float64", $"{forms} equal the masked parallel form, h0 in, hT out (float64)",
            $"max |Δ| {Num.Sci(e.Float64MaxAbs)} (T = 77, H = 4, D = 5, Dv = 3)", $"≤ {Num.Sci(LightningExactness.Float64Tolerance, 0)} (spec §6)",
            e.Float64MaxAbs <= LightningExactness.Float64Tolerance);
        claims.Exactness("gradients-equal-masked-float64", "their gradients (q, k, v, h0, log λ) equal the masked form's (float64)",
            $"max |Δ| {Num.Sci(e.GradientMaxAbs)}", $"≤ {Num.Sci(LightningExactness.Float64Tolerance, 0)} (spec §6, the fla test recipe)",
            e.GradientMaxAbs <= LightningExactness.Float64Tolerance);
        claims.Exactness("forms-equal-masked-float32", $"{forms} in float32 stay close to the float64 masked form",
            $"RMS-relative {Num.Sci(e.Float32RmsRelative)}", $"≤ {Num.Sci(LightningExactness.Float32Tolerance, 0)} (spec §6)",
            e.Float32RmsRelative <= LightningExactness.Float32Tolerance);
        var expected = LightningExactness.ExpectedSlopesH8;
        bool slopesExact = e.SlopesH8.SequenceEqual(expected) && e.SlopesH8Float32.SequenceEqual(expected);
        claims.Exactness("alibi-slopes-h8", "the default slopes for H = 8 are the reference's bare ALiBi slopes",
            $"{string.Join(", ", e.SlopesH8.Select(a => $"1/{1 / a:0.###}"))} (float32 tensor " +
            $"{(e.SlopesH8Float32.SequenceEqual(expected) ? "equal" : "differs")})",
            "exactly {1/2, …, 1/256} (spec §6; lightning-attention _build_slope_tensor)", slopesExact,
            paperFigure: "_build_slope_tensor(8) = 1/2 … 1/256 (lightning-attention)");
        claims.Exactness("zero-decay-is-linear-attention", "a = 0 gives plain causal linear attention [(QKᵀ) ⊙ tril] V (every form)",
            $"max |Δ| {Num.Sci(e.ZeroDecayMaxAbs)}", $"≤ {Num.Sci(LightningExactness.Float64Tolerance, 0)} (spec §6)",
            e.ZeroDecayMaxAbs <= LightningExactness.Float64Tolerance);
        claims.Exactness("no-nan-strong-decay", "a = 10 (and λ = 0) makes no NaN in values, states or gradients (every form, float32 and float64)",
            $"finite: {(e.StrongDecayFinite ? "yes" : "no")}; max |Δ| vs float64 masked {Num.Sci(e.StrongDecayMaxAbs)}",
            "no NaN or ∞ (spec §6)", e.StrongDecayFinite);

        var tnlDecode = Decode.Where(d => d.Model == LightningExperiment.TnlName).ToList();
        var softDecode = Decode.Where(d => d.Model == LightningExperiment.SoftmaxName).ToList();
        var tnlBytes = tnlDecode.Select(d => d.StateBytes).Distinct().ToList();
        claims.Exactness("decode-constant-state", "TNL decodes with a constant state (one d_h × d_h matrix per head and layer)",
            $"{(tnlBytes.Count == 1 ? $"{tnlBytes[0]:N0} B" : string.Join("/", tnlBytes.Take(3)) + " B")} at every t ≤ {tnlDecode.Count}; " +
            $"softmax KV cache {softDecode.FirstOrDefault()?.StateBytes ?? 0:N0} → {softDecode.LastOrDefault()?.StateBytes ?? 0:N0} B",
            "state bytes identical at every t", tnlDecode.Count > 0 && tnlBytes.Count == 1, paperFigure: "a carried d×d state between blocks (spec §1)");
        claims.Exactness("decode-equals-forward", "TNL's token-by-token Step reproduces its forward pass (trained model, logits)",
            $"max |Δ| {Num.Sci(StepVsForwardMaxAbs)} over {Math.Min(Config.LmSeqLen, Config.StreamLength)} tokens",
            $"≤ {Num.Sci(StepTolerance, 0)} [ours: float32, 2 layers]", StepVsForwardMaxAbs <= StepTolerance);

        var tnl = Lm(LightningExperiment.TnlName);
        var soft = Lm(LightningExperiment.SoftmaxName);
        double ratio = tnl.ValidationLoss / soft.ValidationLoss;
        bool lmHolds = tnl.ValidationLoss < UnigramLoss && ratio <= LossFactor;
        bool decided = !(tnl.ValidationLoss < UnigramLoss) || Math.Abs(ratio - LossFactor) >= LossMargin;   // asserted only with margin, either way
        claims.Claim("tnl-lm-on-par",
            "a TNL LM (Lightning mixers) is on par with a softmax Transformer of the same size (toy: Moby-Dick characters, same batches)",
            "TNL on par with Transformer-based LLMs (abstract)",
            $"validation {tnl.ValidationLoss:F3} vs {soft.ValidationLoss:F3} nats/char (ratio {ratio:F3}); unigram {UnigramLoss:F3}",
            $"TNL < unigram and ≤ {LossFactor} × softmax [ours: spec §4 asks for \"comparable loss\" without a threshold]",
            lmHolds, asserted: decided,
            note: decided ? null : $"the ratio is within {LossMargin} of the threshold: this size does not decide it, so it is recorded, not asserted");

        var ns = Config.Lengths;
        string chunked = LightningBenchmarks.Chunked, sdpa = LightningBenchmarks.Sdpa, cumsum = LightningBenchmarks.CumsumLinear;
        if (Speed.Of(chunked).Count >= 2 && Speed.Of(sdpa).Count >= 2)
        {
            double spread = Speed.SpeedSpread(chunked), sdpaDrop = Speed.Slowdown(sdpa);
            int rounds = Speed.Of(chunked)[0].Time.Repeats;
            claims.Reported("constant-speed",
                "Lightning's training speed (tokens/s) stays constant across n at fixed tokens per batch, while softmax attention's falls",
                "constant speed across lengths (paper title); repo README (batch 4, 32 heads, d 128, bf16): forward 17.7 ms vs FlashAttention-2 162.9 ms " +
                "at n = 32k, 0.35 vs 0.09 ms at n = 512 — Lightning's tokens/s varies 1.27× over n = 512…32k, FlashAttention-2's falls 27×",
                $"chunked tokens/s varies {spread:F2}× across n = {ns.Min()}…{ns.Max()} ({Config.TokensPerBatch} tokens per batch, median of {rounds} " +
                $"interleaved rounds); SDPA falls {sdpaDrop:F2}×; slope of time per sequence {Speed.Slope(chunked):F2} (SDPA {Speed.Slope(sdpa):F2})",
                $"chunked spread < {MaxSpread}× while SDPA falls > {MaxSpread}× (spec §6)", spread < MaxSpread && sdpaDrop > MaxSpread,
                note: "timing on a shared CPU: reported, never asserted");
        }
        else claims.NotShown("constant-speed", "Lightning's training speed stays constant across n while softmax attention's falls",
            "repo README: 17.7 ms vs 162.9 ms at n = 32k", "—", $"chunked spread < {MaxSpread}× while SDPA falls > {MaxSpread}× (spec §6)",
            "the sweep ran fewer than two lengths for the chunked form or SDPA", ClaimKind.Reported);

        var vsCumsum = CumsumSpeed.SpeedRatio(chunked, cumsum);
        if (vsCumsum.Count > 0)
        {
            int rounds = CumsumSpeed.Of(cumsum)[0].Time.Repeats;
            claims.Reported("beats-cumsum", "Lightning's tiling beats the cumsum form of causal linear attention (all n prefix states materialised)",
                "no figure; \"due to the issue with cumulative summation (cumsum), current linear attention algorithms cannot demonstrate their theoretical " +
                "advantage in a causal setting\" (abstract)",
                $"chunked / cumsum tokens/s {vsCumsum.Min(x => x.Ratio):F0}–{vsCumsum.Max(x => x.Ratio):F0}× at n = " +
                $"{string.Join(", ", vsCumsum.Select(x => x.SeqLen))}, " +
                $"{Config.CumsumTokensPerBatch} tokens per batch, median of {rounds} interleaved rounds (peak memory: cumsum {PeakMiB(CumsumSpeed, cumsum)}, " +
                $"chunked {PeakMiB(CumsumSpeed, chunked)})",
                "chunked faster at every n [ours: spec §4 expects the cumsum form to \"OOM or crawl\"]", vsCumsum.All(x => x.Ratio > 1),
                deviation: Config.CumsumTokensPerBatch != Config.TokensPerBatch
                    ? $"measured at {Config.CumsumTokensPerBatch} tokens per batch, not the main sweep's {Config.TokensPerBatch}: one cumsum call there " +
                    "takes seconds on this CPU; both forms at the same budget"
                    : null,
                note: "timing on a shared CPU: reported, never asserted");
        }
        else claims.NotShown("beats-cumsum", "Lightning's tiling beats the cumsum form of causal linear attention", "—", "—",
            "chunked faster at every n", "the sweep did not run both the chunked and the cumsum form", ClaimKind.Reported);

        if (Speed.Crossover(chunked, sdpa) is { } cross)
            claims.Saw($"From n = {cross} on, Lightning (chunked) is faster than SDPA at {Config.TokensPerBatch} tokens per batch on this device; in the " +
                "repo README's GPU forward times the crossover lies between n = 2048 and 4096.");
        else if (Speed.Of(sdpa).Count > 0)
            claims.Saw($"SDPA stays faster than Lightning (chunked) up to n = {ns.Max()} on this device (median tokens/s at the longest n: " +
                $"{Speed.Of(chunked)[^1].TokensPerSecond / 1000:F0}k vs {Speed.Of(sdpa)[^1].TokensPerSecond / 1000:F0}k); in the repo README's GPU forward " +
                "times the crossover lies between n = 2048 and 4096.");
        if (CumsumSpeed.Of(cumsum).Count > 0 && CumsumSpeed.Of(chunked).Count > 0)
            claims.Saw($"The cumsum form does constant work per token too, but materialises n d×d states per sequence: at {Config.CumsumTokensPerBatch} " +
                       $"tokens per batch it runs at {CumsumSpeed.Of(cumsum).Average(r => r.TokensPerSecond) / 1000:F2}k tokens/s against Lightning's " +
                       $"{CumsumSpeed.Of(chunked).Average(r => r.TokensPerSecond) / 1000:F0}k.");
        claims.Saw($"The tiled loop at n = {SplitLength} spends {Intra.MedianMs:F1} ms in the intra-block products and {Inter.MedianMs:F1} ms in the " +
            "inter-block products and state updates (forward).");
        claims.Saw($"TNL reaches {tnl.ValidationLoss:F3} nats/char after {Config.LmSteps} steps, the softmax Transformer {soft.ValidationLoss:F3} (unigram " +
            $"{UnigramLoss:F3}); TNL decodes with {(tnlBytes.Count > 0 ? tnlBytes[0] : 0):N0} B of state while the KV cache reaches " +
            $"{softDecode.LastOrDefault()?.StateBytes ?? 0:N0} B after {softDecode.Count} tokens.");
        return claims;
    }

    /// <summary>"123 MiB" at the longest n a method ran, or "not measured".</summary>
    static string PeakMiB(SpeedSweep sweep, string method) => sweep.Of(method).LastOrDefault()?.PeakBytes is { } b ? $"{b / 1048576.0:F0} MiB" : "not measured";
}
