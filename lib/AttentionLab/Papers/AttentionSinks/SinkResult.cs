using AttentionLab.Attention;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>
/// Every sink measurement of one model on a validation batch: loss, sink score a_0 per head [L][H], sink rate (share of
/// heads with a_0 &gt; ε), massive-activation ratio per layer, value-norm ratio ρ per head, and the pattern [T][T] of the
/// head with the largest a_0; the variants' own no-op channels: attention mass sent nowhere, mean 1 − Σ_j A_ij (softmax₁,
/// sink logit; 0 for softmax), and the mean closed share of the G1 gate, 1 − σ(g) (NaN without a gate).
/// </summary>
public sealed record SinkMeasurement(double ValidationLoss, double[][] SinkScores, double SinkRate, double MaxSinkScore,
    double[] MassiveActivation, double[][] ValueNormRatio, (int Layer, int Head) StrongestHead, double[][] StrongestPattern,
    double AttendNowhere, double GateClosed);

/// <summary>Mean streaming loss of one cache set-up at one budget (entries per layer and head).</summary>
public sealed record CacheSweepPoint(string Setup, int Budget, double Loss);

/// <summary>Sink rate, largest sink score and validation loss at one training step.</summary>
public sealed record CurvePoint(int Step, double ValidationLoss, double SinkRate, double MaxSinkScore);

/// <summary>One trained variant: final measurement, its curve over training and streaming loss per chunk per set-up.</summary>
public sealed record VariantRun(AttentionKind Kind, int Seed, double FinalTrainLoss, SinkMeasurement Final,
    IReadOnlyList<CurvePoint> Curve, IReadOnlyDictionary<string, double[]> Streaming, TimeSpan TrainTime, TimeSpan StreamTime,
    IReadOnlyList<CacheSweepPoint> Sweep)
{
    /// <summary>Streaming loss of the last chunk (at StreamFactor × the training length).</summary>
    public double LastChunk(string setup) => Streaming[setup][^1];
}

/// <summary>What <see cref="SinkExperiment.Run"/> measured, with the notebook's tables and charts.</summary>
public sealed record SinkResult(SinkExperiment.Config Config, IReadOnlyList<VariantRun> Runs, double UnigramLoss, TimeSpan Elapsed)
{
    static readonly string[] Setups = { SinkExperiment.Dense, SinkExperiment.WindowOnly, SinkExperiment.SinkWindow, SinkExperiment.Recompute };

    /// <summary>Runs of one variant (one per seed).</summary>
    public IEnumerable<VariantRun> Of(AttentionKind kind) => Runs.Where(r => r.Kind == kind);

    /// <summary>One row per (variant, seed): losses, sink rate, largest sink score, massive activation of the last layer, streaming losses at the end.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("variant", Runs.Select(r => r.Kind.ToString())),
        new Int32DataFrameColumn("seed", Runs.Select(r => r.Seed)),
        new DoubleDataFrameColumn("train_loss", Runs.Select(r => r.FinalTrainLoss)),
        new DoubleDataFrameColumn("val_loss", Runs.Select(r => r.Final.ValidationLoss)),
        new DoubleDataFrameColumn("sink_rate", Runs.Select(r => r.Final.SinkRate)),
        new DoubleDataFrameColumn("max_sink_score", Runs.Select(r => r.Final.MaxSinkScore)),
        new DoubleDataFrameColumn("massive_act_last", Runs.Select(r => r.Final.MassiveActivation[^1])),
        new DoubleDataFrameColumn("attend_nowhere", Runs.Select(r => r.Final.AttendNowhere)),
        new DoubleDataFrameColumn("gate_closed", Runs.Select(r => r.Final.GateClosed)),
        new DoubleDataFrameColumn($"stream_{Config.StreamFactor}x_window", Runs.Select(r => r.LastChunk(SinkExperiment.WindowOnly))),
        new DoubleDataFrameColumn($"stream_{Config.StreamFactor}x_sink_window", Runs.Select(r => r.LastChunk(SinkExperiment.SinkWindow))),
        new DoubleDataFrameColumn($"stream_{Config.StreamFactor}x_dense", Runs.Select(r => r.LastChunk(SinkExperiment.Dense))),
        new DoubleDataFrameColumn($"stream_{Config.StreamFactor}x_recompute", Runs.Select(r => r.LastChunk(SinkExperiment.Recompute))),
        new DoubleDataFrameColumn("train_s", Runs.Select(r => r.TrainTime.TotalSeconds)),
        new DoubleDataFrameColumn("stream_s", Runs.Select(r => r.StreamTime.TotalSeconds)));

    /// <summary>Streaming loss against cache budget, window vs sink + window (the first variant's first seed).</summary>
    public GenericChart CacheSweepChart()
    {
        var run = Runs[0];
        return Charts.Lines(run.Sweep.GroupBy(p => p.Setup).Select(g => new Series(g.Key, g.Select(p => (double)p.Budget).ToArray(), g.Select(p => p.Loss).ToArray())),
            $"{run.Kind}: mean loss over {Config.StreamFactor * Config.SeqLen} streamed tokens vs KV entries kept", "cache budget (entries per head)", "next-token loss (nats)", logX: true);
    }

    /// <summary>Sink score a_0 of every head: rows "variant · layer" (first seed), columns heads.</summary>
    public GenericChart SinkScoreGrid()
    {
        var runs = Config.Variants.Select(k => Of(k).First()).ToList();
        var rows = runs.SelectMany(r => r.Final.SinkScores).ToList();
        var labels = runs.SelectMany(r => r.Final.SinkScores.Select((_, l) => $"{r.Kind} L{l}")).ToList();
        return Charts.Heatmap(rows, $"Sink score of position 0 per head (ε = {Config.Epsilon} marks a sink)",
            xLabels: Enumerable.Range(0, Config.Heads).Select(h => $"H{h}").ToArray(), yLabels: labels, xTitle: "head", yTitle: "variant · layer");
    }

    /// <summary>Sink rate over training, one line per variant (mean over seeds).</summary>
    public GenericChart SinkRateCurves() => Charts.Lines(Config.Variants.Select(k =>
    {
        var runs = Of(k).ToList();
        var steps = runs[0].Curve.Select(p => (double)p.Step).ToArray();
        return new Series(k.ToString(), steps, steps.Select((_, i) => runs.Average(r => r.Curve[i].SinkRate)).ToArray());
    }), $"Sink rate during training (share of heads with a_0 > {Config.Epsilon})", "step", "sink rate");

    /// <summary>Largest sink score over training, one line per variant (mean over seeds).</summary>
    public GenericChart MaxSinkCurves() => Charts.Lines(Config.Variants.Select(k =>
    {
        var runs = Of(k).ToList();
        var steps = runs[0].Curve.Select(p => (double)p.Step).ToArray();
        return new Series(k.ToString(), steps, steps.Select((_, i) => runs.Average(r => r.Curve[i].MaxSinkScore)).ToArray());
    }), "Largest sink score during training", "step", "max a_0");

    /// <summary>Massive-activation ratio ‖h_0‖ / median ‖h_i‖ per layer, one line per variant (first seed).</summary>
    public GenericChart MassiveActivationChart() => Charts.Lines(Config.Variants.Select(k =>
        Series.Of(k.ToString(), Of(k).First().Final.MassiveActivation)), "Massive activation of position 0 (residual after each block)", "layer", "‖h_0‖ / median ‖h_i‖");

    /// <summary>Streaming loss per chunk under the four set-ups for <paramref name="kind"/> (first seed).</summary>
    public GenericChart StreamingChart(AttentionKind kind = AttentionKind.Softmax)
    {
        var run = Of(kind).First();
        int chunk = Config.Window;
        return Charts.Lines(Setups.Select(s => new Series(s, run.Streaming[s].Select((_, i) => (double)(i + 1) * chunk).ToArray(), run.Streaming[s])),
            $"{kind}: streaming loss per {chunk}-token chunk (trained on {Config.SeqLen}; cache budget {Config.Window + Config.SinkTokens})",
            "tokens streamed", "next-token loss (nats)");
    }
}
