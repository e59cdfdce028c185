using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>One policy's copy-phase result: accuracy, attended tokens per step (mean over layers and heads), fraction of
/// full steps after the prompt, KV bytes read per decoded token (Σ layers, per sequence), ms per decoded token (the batch).</summary>
public sealed record PolicyRow(string Policy, int TopK, int Stride, double TokenAccuracy, double ExactMatch, double AttendedMean,
    double FullStepFraction, double KvBytesReadPerToken, double MsPerToken, double Tau = double.NaN)
{
    public string Name => Policy switch
    {
        RecycledExperiment.Recycled => $"recycled K={TopK} S={Stride}",
        RecycledExperiment.RecycledDynamic => $"recycled K={TopK} τ={Tau}",
        "full" => "full",
        _ => $"{Policy} K={TopK}",
    };
}

/// <summary>Everything the notebook shows for P05.</summary>
public sealed record RecycledResult(RecycledExperiment.Config Config, IReadOnlyList<PolicyRow> Rows, MassProbe Probe, int ContextLength, TimeSpan Elapsed)
{
    /// <summary>Columns: policy, K, S, tau, accuracy, exact_match, attended_mean, full_step_fraction, kv_bytes_read_per_token, ms_per_token.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("policy", Rows.Select(r => r.Policy)),
        new Int32DataFrameColumn("K", Rows.Select(r => r.TopK)),
        new Int32DataFrameColumn("S", Rows.Select(r => r.Stride)),
        new DoubleDataFrameColumn("tau", Rows.Select(r => r.Tau)),
        new DoubleDataFrameColumn("accuracy", Rows.Select(r => r.TokenAccuracy)),
        new DoubleDataFrameColumn("exact_match", Rows.Select(r => r.ExactMatch)),
        new DoubleDataFrameColumn("attended_mean", Rows.Select(r => r.AttendedMean)),
        new DoubleDataFrameColumn("full_step_fraction", Rows.Select(r => r.FullStepFraction)),
        new DoubleDataFrameColumn("kv_bytes_read_per_token", Rows.Select(r => r.KvBytesReadPerToken)),
        new DoubleDataFrameColumn("ms_per_token", Rows.Select(r => r.MsPerToken)));

    /// <summary>
    /// The claim at this size, as a line; throws when it fails: the full model copies (accuracy ≥ 90 %), and at K = n/8
    /// Recycled Attention with S = 4 reaches ≥ 2× StreamingLLM's accuracy while attending to fewer than half the tokens of
    /// full attention per step.
    /// </summary>
    public string CheckClaim()
    {
        int k = Config.ClaimK, s = Config.Strides.Contains(4) ? 4 : Config.Strides.Max();
        var full = Row("full", 0);
        var recycled = Row("recycled", k, s);
        var streaming = Row("streamingllm", k);
        string line = $"K = {k} (n/8), S = {s}: recycled {recycled.TokenAccuracy:P1} vs StreamingLLM {streaming.TokenAccuracy:P1} " +
            $"(full {full.TokenAccuracy:P1}); attended {recycled.AttendedMean:F1} vs {full.AttendedMean:F1} tokens per step";
        if (full.TokenAccuracy < 0.9) throw new InvalidOperationException($"the checkpoint does not copy under full attention: {line}");
        if (recycled.TokenAccuracy < 2 * streaming.TokenAccuracy) throw new InvalidOperationException($"recycled is not ≥ 2× StreamingLLM: {line}");
        if (recycled.AttendedMean >= full.AttendedMean / 2) throw new InvalidOperationException($"recycled does not attend to a small subset: {line}");
        return "claim holds: " + line;
    }

    /// <summary>The row of <paramref name="policy"/> at K (and S for recycled).</summary>
    public PolicyRow Row(string policy, int k, int s = 0) => Rows.First(r => r.Policy == policy && r.TopK == k && r.Stride == s);

    /// <summary>Accuracy vs attended tokens per step, one curve per policy family (recycled: one per S).</summary>
    public GenericChart AccuracyChart()
    {
        var groups = Rows.Where(r => r.Policy != "full").GroupBy(r => r.Policy switch
        {
            RecycledExperiment.Recycled => $"recycled S={r.Stride}",
            RecycledExperiment.RecycledDynamic => $"recycled τ={r.Tau}",
            _ => r.Policy,
        });
        var series = groups.Select(g => new Series(g.Key, g.Select(r => r.AttendedMean).ToArray(), g.Select(r => r.TokenAccuracy).ToArray())).ToList();
        var full = Rows.First(r => r.Policy == "full");
        series.Add(new Series("full", new[] { full.AttendedMean }, new[] { full.TokenAccuracy }));
        return Charts.Lines(series, "Copy accuracy vs attended tokens per step", "attended tokens per step (mean)", "token accuracy");
    }

    /// <summary>The last layer's sharpest head: full-model probabilities, rows = decode steps t = t₀ …, columns = context position.</summary>
    public GenericChart ProbabilityHeatmap() => Charts.Heatmap(Probe.Heatmap, $"full-step probabilities, layer {Probe.Layer} head {Probe.Head} (rows t = {Probe.FullStep}…)");

    /// <summary>The same rows: 1 where the recycled set (K, S of the probe) holds the key.</summary>
    public GenericChart RecycledSetHeatmap() => Charts.Heatmap(Probe.Selected, $"recycled set (K = {Probe.TopK}, S = {Probe.Stride}; full steps re-select)");

    /// <summary>Recovered attention mass vs steps since the full step: recycled set vs a sink + window set of the same size.</summary>
    public GenericChart MassChart() => Charts.Lines(new[] { Series.Of("recycled", Probe.Recycled), Series.Of("sink + window (same size)", Probe.SinkWindow) },
        $"Attention mass recovered (K = {Probe.TopK})", "steps since the full step", "mass");

    /// <summary>ms per decoded token (batch of queries) per policy.</summary>
    public GenericChart TimingChart() => Charts.Bars(Rows.Select(r => r.Name).ToList(), Rows.Select(r => r.MsPerToken).ToList(),
        $"ms per decoded token (n = {ContextLength}: the MLP-free toy is overhead-bound)", "ms / token");
}
