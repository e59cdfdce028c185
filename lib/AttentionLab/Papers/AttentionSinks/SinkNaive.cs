using AttentionLab.Interp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>The attention-sink measurements' naive twins.</summary>
public static class SinkNaive
{
    /// <summary>
    /// The naive twin of <see cref="SinkMeasurements.SinkOutputShare"/>: explicit loops over batch, heads, queries, keys and channels in
    /// float64, straight from the definition (slow; for tests and the exactness phase on toy tensors).
    /// </summary>
    public static double[,] SinkOutputShare(ActivationCache cache, IReadOnlyList<Tensor> outputWeights, long token = 0, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(outputWeights);
        if (outputWeights.Count != cache.LayerCount)
            throw new ArgumentException($"outputWeights must hold one W_O per layer ({cache.LayerCount}), got {outputWeights.Count}.", nameof(outputWeights));
        using var scope = NewDisposeScope();
        var result = new double[cache.LayerCount, cache["v", 0].shape[2]];
        for (int l = 0; l < cache.LayerCount; l++)
        {
            var (pattern, v, gate, w, first) = SinkMeasurements.ShareInputs(cache, outputWeights[l], l, token, causal);
            long b = v.shape[0], t = v.shape[1], heads = v.shape[2], dh = v.shape[3], d = w.shape[0];
            var A = pattern.to(ScalarType.Float64).cpu().data<double>().ToArray();             // [B, H, T, T]
            var V = v.to(ScalarType.Float64).cpu().data<double>().ToArray();                   // [B, T, H, Dh]
            var G = gate?.to(ScalarType.Float64).cpu().data<double>().ToArray();
            var W = w.to(ScalarType.Float64).cpu().data<double>().ToArray();                   // [d, H·Dh]
            for (long h = 0; h < heads; h++)
            {
                double sinkSum = 0, allSum = 0;
                for (long n = 0; n < b; n++)
                    for (long i = first; i < t; i++)
                    {
                        double a = A[((n * heads + h) * t + i) * t + token];
                        var sinkVec = new double[dh];
                        var allVec = new double[dh];
                        for (long e = 0; e < dh; e++)
                        {
                            double g = G is null ? 1 : G[((n * t + i) * heads + h) * dh + e];
                            sinkVec[e] = a * V[((n * t + token) * heads + h) * dh + e] * g;      // A_is v_s ⊙ g_i
                            double zsum = 0;
                            for (long j = 0; j < t; j++) zsum += A[((n * heads + h) * t + i) * t + j] * V[((n * t + j) * heads + h) * dh + e];
                            allVec[e] = zsum * g;                                                 // (Σ_j A_ij v_j) ⊙ g_i
                        }
                        double sinkSq = 0, allSq = 0;
                        for (long o = 0; o < d; o++)
                        {
                            double so = 0, ao = 0;
                            for (long e = 0; e < dh; e++)
                            {
                                double wo = W[o * heads * dh + h * dh + e];                       // W_O[o, h·Dh + e]
                                so += wo * sinkVec[e];
                                ao += wo * allVec[e];
                            }
                            sinkSq += so * so; allSq += ao * ao;
                        }
                        sinkSum += Math.Sqrt(sinkSq); allSum += Math.Sqrt(allSq);
                    }
                result[l, h] = sinkSum / allSum;
            }
        }
        return result;
    }
}
