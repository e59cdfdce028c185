using AttentionLab.Plots;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Based;

/// <summary>Everything <see cref="BasedExperiment.Run"/> measured, as tables and as series for the plots.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Probe">Training-free recall per memory, knob and N.</param>
/// <param name="Mqar">The trained MQAR models.</param>
/// <param name="Decode">Per-token decode cost and state bytes vs tokens generated.</param>
/// <param name="Prefill">Forward time per method and T.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record BasedResult(BasedExperiment.Config Config, IReadOnlyList<ProbePoint> Probe, IReadOnlyList<MqarRun> Mqar,
    IReadOnlyList<DecodePoint> Decode, IReadOnlyList<PrefillPoint> Prefill, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds)
{
    /// <summary>The N the probe's claims and Pareto plot use: 64 when probed, else the largest N.</summary>
    public int ProbeN => Probe.Any(p => p.Pairs == 64) ? 64 : Probe.Max(p => p.Pairs);

    /// <summary>
    /// The spec's table — one row per probe point (at <see cref="ProbeN"/>) and per trained MQAR model. Columns: source
    /// (probe / mqar), family, name, d′, w, d_model, state_bytes (float32; MQAR: the whole model's streaming state after
    /// the sequence), recall (probe recall or MQAR accuracy at the query positions).
    /// </summary>
    public DataFrame ToDataFrame()
    {
        var probe = Probe.Where(p => p.Pairs == ProbeN).ToList();
        int Dm(MqarRun r) => Config.Mqar.DModel;
        return new DataFrame(
            new StringDataFrameColumn("source", probe.Select(_ => $"probe N={ProbeN}").Concat(Mqar.Select(_ => $"mqar T={Config.Mqar.SeqLen}"))),
            new StringDataFrameColumn("family", probe.Select(p => p.Family).Concat(Mqar.Select(r => r.Model.FamilyName))),
            new StringDataFrameColumn("name", probe.Select(p => p.Name).Concat(Mqar.Select(r => r.Model.Name))),
            new Int32DataFrameColumn("d_feature", probe.Select(p => (int?)p.FeatureDim).Concat(Mqar.Select(r => r.Model.Family == BasedLayerKind.LinearAttention ? (int?)r.Model.Knob : null))),
            new Int32DataFrameColumn("window", probe.Select(p => p.Window).Concat(Mqar.Select(r => r.Model.Family == BasedLayerKind.SlidingWindow ? (int?)r.Model.Knob : null))),
            new Int32DataFrameColumn("d_model", probe.Select(_ => (int?)null).Concat(Mqar.Select(r => (int?)Dm(r)))),
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
    public double TaylorRecall(int featureDim, int pairs) => Probe.Single(p => p.Name == $"taylor d′={featureDim}" && p.Pairs == pairs).Recall;

    /// <summary>Recall of the probe point named <paramref name="name"/> at N = <paramref name="pairs"/>.</summary>
    public double ProbeRecall(string name, int pairs) => Probe.Single(p => p.Name == name && p.Pairs == pairs).Recall;

    /// <summary>
    /// The claims at this size; throws InvalidOperationException naming every part that failed:
    /// probe (N = <see cref="ProbeN"/>): Taylor recall rises with d′; softmax ≥ Taylor d′ = 16 ≥ identity d′ = 16; a window
    /// as long as N equals softmax. MQAR: attention reaches <paramref name="attentionAccuracy"/>; the smallest-state BASED
    /// model beats the sliding-window model of the closest state size (within 1.5×) by <paramref name="margin"/>; every
    /// model's Step reproduces its forward pass. Decode: BASED's state stays constant while the KV cache grows.
    /// </summary>
    public string CheckClaim(double attentionAccuracy = 0.9, double margin = 0.2)
    {
        var problems = new List<string>();
        int n = ProbeN;
        var taylor = Config.ProbeFeatureDims.OrderBy(d => d).Select(d => (d, r: TaylorRecall(d, n))).ToList();
        for (int i = 1; i < taylor.Count; i++)
            if (!(taylor[i].r > taylor[i - 1].r))
                problems.Add($"probe: Taylor recall does not rise with d′ (d′={taylor[i - 1].d}: {taylor[i - 1].r:F3}, d′={taylor[i].d}: {taylor[i].r:F3})");
        double soft = ProbeRecall("softmax (KV cache)", n), t16 = TaylorRecall(16, n), id16 = ProbeRecall("identity d′=16", n);
        if (!(soft >= t16 && t16 >= id16)) problems.Add($"probe: expected softmax {soft:F3} ≥ Taylor16 {t16:F3} ≥ identity16 {id16:F3} at N={n}");
        foreach (var p in Probe.Where(p => p.Window is { } w && p.Pairs <= w))
            if (p.Recall != ProbeRecall("softmax (KV cache)", p.Pairs)) problems.Add($"probe: {p.Name} at N={p.Pairs} ≤ w differs from softmax ({p.Recall:F3})");

        string mqarLine = "";
        var attention = Mqar.FirstOrDefault(r => r.Model.Family == BasedLayerKind.Attention);
        var based = Mqar.Where(r => r.Model.Family == BasedLayerKind.LinearAttention).OrderBy(r => r.StateBytes).FirstOrDefault();
        var swa = based is null ? null : Mqar.Where(r => r.Model.Family == BasedLayerKind.SlidingWindow)
            .OrderBy(r => Math.Abs(Math.Log((double)r.StateBytes / based.StateBytes))).FirstOrDefault();
        if (attention is not null && !(attention.Accuracy >= attentionAccuracy))
            problems.Add($"MQAR: attention reached {attention.Accuracy:P1} < {attentionAccuracy:P0}: the task did not train");
        if (based is not null && swa is not null)
        {
            double ratio = (double)Math.Max(based.StateBytes, swa.StateBytes) / Math.Min(based.StateBytes, swa.StateBytes);
            if (ratio > 1.5) problems.Add($"MQAR: no sliding-window model within 1.5× of {based.Model.Name}'s state ({swa.Model.Name}: {ratio:F2}×)");
            else if (!(based.Accuracy >= swa.Accuracy + margin))
                problems.Add($"MQAR: {based.Model.Name} {based.Accuracy:P1} ({based.StateBytes:N0} B) does not beat {swa.Model.Name} {swa.Accuracy:P1} ({swa.StateBytes:N0} B) by {margin:P0}");
            mqarLine = $" MQAR: {based.Model.Name} {based.Accuracy:P1} at {based.StateBytes:N0} B vs {swa.Model.Name} {swa.Accuracy:P1} at {swa.StateBytes:N0} B" +
                       (attention is null ? "." : $"; attention {attention.Accuracy:P1} at {attention.StateBytes:N0} B (grows with T).");
        }
        foreach (var r in Mqar.Where(r => !(r.StepVsForwardMaxAbs < 1e-4)))
            problems.Add($"MQAR: {r.Model.Name}'s Step differs from its forward by {r.StepVsForwardMaxAbs:E2}");
        var basedDecode = Decode.Where(p => p.Method.StartsWith("based", StringComparison.Ordinal)).Select(p => p.StateBytes).Distinct().Count();
        var kv = Decode.Where(p => p.Method.StartsWith("softmax", StringComparison.Ordinal)).ToList();
        if (basedDecode != 1) problems.Add("decode: BASED's state changed size while decoding");
        if (kv.Count >= 2 && !(kv[^1].StateBytes > kv[0].StateBytes)) problems.Add("decode: the KV cache did not grow");
        if (problems.Count > 0)
            throw new InvalidOperationException("The BASED claim does not hold at this size: " + string.Join("; ", problems) + ".");
        return $"Claim holds: probe at N={n}: Taylor recall rises with d′ ({string.Join(" < ", taylor.Select(x => $"{x.r:F2}"))}), " +
               $"softmax {soft:F2} ≥ Taylor16 {t16:F2} ≥ identity16 {id16:F2}; windows ≥ N equal softmax.{mqarLine}";
    }

    /// <summary>Columns: model, family, accuracy, state_bytes, params, step_vs_forward, seconds.</summary>
    public DataFrame MqarFrame() => new(
        new StringDataFrameColumn("model", Mqar.Select(r => r.Model.Name)),
        new StringDataFrameColumn("family", Mqar.Select(r => r.Model.FamilyName)),
        new DoubleDataFrameColumn("accuracy", Mqar.Select(r => r.Accuracy)),
        new Int64DataFrameColumn("state_bytes", Mqar.Select(r => r.StateBytes)),
        new Int64DataFrameColumn("params", Mqar.Select(r => r.Params)),
        new DoubleDataFrameColumn("step_vs_forward", Mqar.Select(r => r.StepVsForwardMaxAbs)),
        new DoubleDataFrameColumn("seconds", Mqar.Select(r => r.Seconds)));
}
