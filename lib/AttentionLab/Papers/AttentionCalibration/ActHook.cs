using AttentionLab.Interp;
using TorchSharp;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// ACT on a list of heads: one <see cref="Interventions.OverridePattern"/> per (layer, head) at <c>blocks.{L}.attn.hook_pattern</c>,
/// attached together through <c>HookedModel.Hooks</c>. The
/// mixer multiplies V by what the hook returns, so the calibrated pattern flows into A·V (spec §2 (iii): after softmax,
/// before A·V). Several heads of one layer chain: each hook edits its own head of the pattern the previous one returned.
/// </summary>
public static class ActHook
{
    /// <summary>Attaches ACT to <paramref name="heads"/> until the returned scope is disposed (an empty list attaches nothing).</summary>
    public static HookScope On(IHookedModel model, IEnumerable<(int Layer, int Head)> heads, double alpha = AttentionCalibrationOps.DefaultAlpha,
        double beta = AttentionCalibrationOps.DefaultBeta, bool dropFirst = true, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(heads);
        using (var probe = torch.ones(1, 1)) AttentionCalibrationOps.Check(probe, alpha, beta);
        var hooks = heads.Distinct()
            .Select(h => Interventions.OverridePattern(model, h.Layer, h.Head, p => AttentionCalibrationOps.Act(p, alpha, beta, dropFirst, causal)))
            .ToArray();
        return model.Hooks(hooks);
    }
}

/// <summary>One candidate of the head search: the accuracy with ACT on this head alone and its gain over the baseline.</summary>
public sealed record HeadGain(int Layer, int Head, double Accuracy, double Gain);

/// <summary>The head search on a calibration split: baseline accuracy, each candidate's gain, and the kept heads (gain &gt; 0).</summary>
public sealed record ActSearchResult(double Baseline, IReadOnlyList<HeadGain> Candidates)
{
    /// <summary>Heads whose calibration alone raised the accuracy (the official search's rule).</summary>
    public IReadOnlyList<(int Layer, int Head)> Kept => Candidates.Where(c => c.Gain > 0).Select(c => (c.Layer, c.Head)).ToList();
    /// <summary>The largest single-head gain (NaN when there is no candidate).</summary>
    public double BestGain => Candidates.Count == 0 ? double.NaN : Candidates.Max(c => c.Gain);
}

/// <summary>
/// The offline head search of ACT (official <c>scripts/calibration.sh</c>): calibrate one (layer, head) at a time, measure the
/// accuracy on a calibration split, keep a head when it beats the uncalibrated baseline. The kept set is then evaluated
/// together on a test split (S is recomputed per input at both stages).
/// </summary>
public static class ActSearch
{
    /// <summary>
    /// Searches <paramref name="candidates"/>; <paramref name="accuracy"/> scores the model (with whatever hooks are on) on the
    /// calibration split.
    /// </summary>
    public static ActSearchResult Run(IHookedModel model, Func<double> accuracy, IEnumerable<(int Layer, int Head)> candidates,
        double alpha = AttentionCalibrationOps.DefaultAlpha, double beta = AttentionCalibrationOps.DefaultBeta, bool dropFirst = true,
        bool causal = true, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(accuracy);
        ArgumentNullException.ThrowIfNull(candidates);
        double baseline = accuracy();
        var gains = new List<HeadGain>();
        foreach (var (layer, head) in candidates)
        {
            double acc;
            using (ActHook.On(model, new[] { (layer, head) }, alpha, beta, dropFirst, causal)) acc = accuracy();
            gains.Add(new HeadGain(layer, head, acc, acc - baseline));
            progress?.Report($"  L{layer}H{head}: {acc:P1} ({acc - baseline:+0.0%;-0.0%;±0.0%})");
        }
        return new ActSearchResult(baseline, gains);
    }
}
