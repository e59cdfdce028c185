using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>
/// The slow, obviously-correct Recycled Attention decode of one layer: float64 loops over batch, steps, heads and keys.
/// The twin of <see cref="RecycledAttentionPolicy"/> running in a <see cref="Attention.SelectiveKvCache"/>.
/// </summary>
public static class RecycledAttentionNaive
{
    /// <summary>
    /// Decodes q [B, T, Hq, D] against k [B, T, Hkv, D], v [B, T, Hkv, Dv] one step at a time (query t sees keys ≤ t):
    /// full steps for t &lt; prefill and whenever t − t₀ ≥ stride; otherwise head h attends to I_{c(h)} ∪ {t₀+1 … t},
    /// I_c = the topK keys by Σ_{h∈group(c)} A_{h,t₀,j}. Returns the outputs [B, T, Hq, Dv] (float64, CPU).
    /// </summary>
    public static Tensor Decode(Tensor q, Tensor k, Tensor v, int topK, int stride, int prefill = 1, double? scale = null)
    {
        Attention.ReferenceAttention.Validate(q, k, v);
        if (q.shape[1] != k.shape[1])
            throw new ArgumentException($"q {Guard.ShapeText(q)} and k {Guard.ShapeText(k)} must have the same length (one query per key).", nameof(q));
        if (topK <= 0) throw new ArgumentException($"topK must be positive, got {topK}.", nameof(topK));
        if (stride <= 0) throw new ArgumentException($"stride must be positive, got {stride}.", nameof(stride));
        if (prefill <= 0) throw new ArgumentException($"prefill must be positive, got {prefill}.", nameof(prefill));
        int b = (int)q.shape[0], n = (int)q.shape[1], hq = (int)q.shape[2], d = (int)q.shape[3], hkv = (int)k.shape[2], dv = (int)v.shape[3];
        int group = hq / hkv;
        double s = scale ?? 1.0 / Math.Sqrt(d);
        var (Q, K, V) = (Read(q), Read(k), Read(v));
        var output = new double[b * n * hq * dv];
        for (int bi = 0; bi < b; bi++)
        {
            int t0 = -1;
            var sets = new int[hkv][];                                               // I_c
            for (int t = 0; t < n; t++)
            {
                bool full = t0 < 0 || t < prefill || t - t0 >= stride;
                var score = new double[hkv, t + 1];
                for (int h = 0; h < hq; h++)
                {
                    int c = h / group;
                    var keys = full ? Enumerable.Range(0, t + 1).ToArray()
                        : sets[c].Concat(Enumerable.Range(t0 + 1, t - t0)).ToArray();  // I_c ∪ {t₀+1 … t}
                    var logits = keys.Select(j => s * Dot(Q, ((bi * n + t) * hq + h) * d, K, ((bi * n + j) * hkv + c) * d, d)).ToArray();
                    double max = logits.Max();
                    var p = logits.Select(x => Math.Exp(x - max)).ToArray();
                    double z = p.Sum();
                    for (int i = 0; i < keys.Length; i++)
                    {
                        p[i] /= z;                                                   // softmax over the attended set
                        if (full) score[c, keys[i]] += p[i];                         // Σ over the group's query heads
                        for (int e = 0; e < dv; e++)
                            output[((bi * n + t) * hq + h) * dv + e] += p[i] * V[((bi * n + keys[i]) * hkv + c) * dv + e];
                    }
                }
                if (!full) continue;
                for (int c = 0; c < hkv; c++)
                    sets[c] = Enumerable.Range(0, t + 1).OrderByDescending(j => score[c, j]).ThenBy(j => j)
                        .Take(Math.Min(topK, t + 1)).OrderBy(j => j).ToArray();       // top-K, ascending
                t0 = t;
            }
        }
        return torch.tensor(output, new long[] { b, n, hq, dv }, dtype: ScalarType.Float64);
    }

    static double[] Read(Tensor t) => t.detach().to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();

    static double Dot(double[] a, int ai, double[] b, int bi, int d)
    {
        double sum = 0;
        for (int i = 0; i < d; i++) sum += a[ai + i] * b[bi + i];
        return sum;
    }
}
