using AttentionLab.Interp;
using AttentionLab.Models;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>
/// Sink measurements of an encoder over several sentences, averaged: [CLS] and [SEP] sink scores [L][H], massive
/// activation and ρ of [CLS]; and, on the first sentence, its WordPiece tokens, the pattern [T][T] of the head with the
/// largest mean [CLS] score, and the [CLS] outlier dimensions after the last layer.
/// </summary>
public sealed record EncoderSinkSummary(int Sentences, double MeanLength, double[][] ClsScores, double[][] SepScores,
    double[] ClsMassiveActivation, double[][] ClsValueNormRatio, IReadOnlyList<string> FirstTokens,
    (int Layer, int Head) StrongestHead, double[][] StrongestPattern, IReadOnlyList<(long Dimension, double Value)> Outliers)
{
    /// <summary>Share of heads whose [CLS] score exceeds ε.</summary>
    public double ClsSinkRate(double epsilon = 0.3) => ClsScores.SelectMany(r => r).Average(s => s > epsilon ? 1.0 : 0.0);
    /// <summary>Heads per layer whose [CLS] score exceeds ε.</summary>
    public int[] ClsSinkHeadsPerLayer(double epsilon = 0.3) => ClsScores.Select(r => r.Count(s => s > epsilon)).ToArray();
    /// <summary>The largest [SEP] score of any head.</summary>
    public double MaxSepScore => SepScores.SelectMany(r => r).Max();
    /// <summary>Mean ρ (‖v_[CLS]‖ / mean ‖v_i‖) over the heads whose [CLS] score exceeds ε (NaN when none does).</summary>
    public double SinkHeadValueRatio(double epsilon = 0.3)
    {
        var rows = ClsScores.SelectMany((r, l) => r.Select((s, h) => (s, rho: ClsValueNormRatio[l][h]))).Where(x => x.s > epsilon).ToList();
        return rows.Count == 0 ? double.NaN : rows.Average(x => x.rho);
    }

    /// <summary>One row per (layer, head): [CLS] score, sink (&gt; ε), [SEP] score, ρ of [CLS]; averaged over the sentences.</summary>
    public DataFrame HeadFrame(double epsilon = 0.3)
    {
        var cells = ClsScores.SelectMany((r, l) => r.Select((_, h) => (l, h))).ToList();
        return new DataFrame(
            new Int32DataFrameColumn("layer", cells.Select(c => c.l)),
            new Int32DataFrameColumn("head", cells.Select(c => c.h)),
            new DoubleDataFrameColumn("cls_score", cells.Select(c => ClsScores[c.l][c.h])),
            new BooleanDataFrameColumn($"sink (> {epsilon})", cells.Select(c => ClsScores[c.l][c.h] > epsilon)),
            new DoubleDataFrameColumn("sep_score", cells.Select(c => SepScores[c.l][c.h])),
            new DoubleDataFrameColumn("cls_value_norm_ratio", cells.Select(c => ClsValueNormRatio[c.l][c.h])));
    }
}

/// <summary>
/// The sink toolkit on the pretrained <see cref="MiniLm"/>: each sentence runs on its own (no padding), so every query sees
/// only real tokens.
/// </summary>
public static class EncoderSinks
{
    /// <summary>Encoder sink scores (mean over all queries) of [CLS] (position 0) and [SEP] (the last position), averaged over sentences.</summary>
    public static EncoderSinkSummary Measure(MiniLm model, IReadOnlyList<string> sentences)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sentences);
        if (sentences.Count == 0) throw new ArgumentException("sentences must not be empty.", nameof(sentences));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        Tensor? cls = null, sep = null, ratio = null;
        double[]? massive = null;
        double length = 0;
        var patterns = new List<Tensor>();                                                  // the first sentence's patterns per layer
        IReadOnlyList<string> firstTokens = Array.Empty<string>();
        IReadOnlyList<(long, double)> outliers = Array.Empty<(long, double)>();
        foreach (var sentence in sentences)
        {
            using var enc = model.Tokenize(new[] { sentence });
            var (_, cache) = ((IHookedModel)model).RunWithCache(enc.InputIds.to(model.Device),
                n => n.EndsWith("hook_pattern") || n.EndsWith("hook_v") || n.EndsWith("normalized_resid_post"));
            using (cache)
            {
                long last = enc.InputIds.shape[1] - 1;
                length += last + 1;
                cls = Add(cls, HeadScores.SinkScore(cache, 0, causal: false));
                sep = Add(sep, HeadScores.SinkScore(cache, last, causal: false));
                ratio = Add(ratio, SinkMeasurements.ValueNormRatio(cache));
                var m = SinkMeasurements.MassiveActivation(cache, residual: "normalized_resid_post");
                massive = massive is null ? m : massive.Zip(m, (a, b) => a + b).ToArray();
                if (patterns.Count == 0)
                {
                    firstTokens = enc.Tokens[0].ToList();
                    patterns.AddRange(Enumerable.Range(0, cache.LayerCount)
                        .Select(l => cache["pattern", l][0].to(ScalarType.Float64).cpu().DetachFromDisposeScope()));
                    outliers = SinkMeasurements.OutlierDimensions(cache, cache.LayerCount - 1, count: 5, residual: "normalized_resid_post");
                }
            }
        }
        int n = sentences.Count;
        var clsRows = Rows(cls! / n);
        var flat = clsRows.SelectMany(r => r).ToArray();
        int heads = clsRows[0].Length, best = Array.IndexOf(flat, flat.Max());
        var strongest = (best / heads, best % heads);
        var pattern = Rows(patterns[strongest.Item1][strongest.Item2]);
        foreach (var p in patterns) p.Dispose();
        return new EncoderSinkSummary(n, length / n, clsRows, Rows(sep! / n), massive!.Select(x => x / n).ToArray(), Rows(ratio! / n),
            firstTokens, strongest, pattern, outliers);
    }

    static Tensor Add(Tensor? total, Tensor value) => total is null ? value.to(ScalarType.Float64).cpu() : total + value.to(ScalarType.Float64).cpu();

    static double[][] Rows(Tensor m) => Enumerable.Range(0, (int)m.shape[0]).Select(i => m[i].to(ScalarType.Float64).cpu().data<double>().ToArray()).ToArray();
}
