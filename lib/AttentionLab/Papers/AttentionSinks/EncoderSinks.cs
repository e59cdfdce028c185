using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>Sink measurements of an encoder over several sentences, averaged: [CLS] and [SEP] sink scores [L][H], massive activation and ρ of [CLS].</summary>
public sealed record EncoderSinkSummary(int Sentences, double MeanLength, double[][] ClsScores, double[][] SepScores,
    double[] ClsMassiveActivation, double[][] ClsValueNormRatio)
{
    /// <summary>Share of heads whose [CLS] score exceeds ε.</summary>
    public double ClsSinkRate(double epsilon = 0.3) => ClsScores.SelectMany(r => r).Average(s => s > epsilon ? 1.0 : 0.0);
    /// <summary>Heads per layer whose [CLS] score exceeds ε.</summary>
    public int[] ClsSinkHeadsPerLayer(double epsilon = 0.3) => ClsScores.Select(r => r.Count(s => s > epsilon)).ToArray();
}

/// <summary>The sink toolkit on the pretrained <see cref="MiniLm"/>: each sentence runs on its own (no padding), so every query sees only real tokens.</summary>
public static class EncoderSinks
{
    /// <summary>Encoder sink scores (mean over all queries) of [CLS] (position 0) and [SEP] (the last position), averaged over sentences.</summary>
    public static EncoderSinkSummary Measure(MiniLm model, IReadOnlyList<string> sentences)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sentences);
        if (sentences.Count == 0) throw new ArgumentException("sentences must not be empty.", nameof(sentences));
        using var scope = NewDisposeScope();
        Tensor? cls = null, sep = null, ratio = null;
        double[]? massive = null;
        double length = 0;
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
            }
        }
        int n = sentences.Count;
        return new EncoderSinkSummary(n, length / n, Rows(cls! / n), Rows(sep! / n), massive!.Select(x => x / n).ToArray(), Rows(ratio! / n));
    }

    static Tensor Add(Tensor? total, Tensor value) => total is null ? value.to(ScalarType.Float64).cpu() : total + value.to(ScalarType.Float64).cpu();

    static double[][] Rows(Tensor m) => Enumerable.Range(0, (int)m.shape[0]).Select(i => m[i].data<double>().ToArray()).ToArray();
}
