using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SecondarySinks;

/// <summary>
/// The naive twins of <see cref="SinkDetector"/> and <see cref="SinkScores"/>: loops over float64 arrays, the spec's definitions
/// written out, never fast.
/// </summary>
public static class SecondarySinksNaive
{
    /// <summary>The window [s, e) from BOS norms n_l, by loops: s = argmax Δ + 1, e = s + argmin_{l ≥ s} Δ_l + 1 (e = S when no Δ follows s).</summary>
    public static (int Start, int End) PrimaryWindow(IReadOnlyList<double> norms)
    {
        ArgumentNullException.ThrowIfNull(norms);
        if (norms.Count < 2) throw new ArgumentException($"norms needs at least 2 states, got {norms.Count}.", nameof(norms));
        if (norms.Any(x => !double.IsFinite(x))) throw new ArgumentException("norms must be finite.", nameof(norms));
        var delta = new double[norms.Count - 1];
        for (int l = 0; l + 1 < norms.Count; l++) delta[l] = norms[l + 1] - norms[l];
        int up = 0;
        for (int l = 1; l < delta.Length; l++) if (delta[l] > delta[up]) up = l;
        int start = up + 1;
        if (start >= delta.Length) return (start, norms.Count);
        int down = start;
        for (int l = start + 1; l < delta.Length; l++) if (delta[l] < delta[down]) down = l;
        return (start, down + 1);                                                    // s + (argmin over the tail) + 1
    }

    /// <summary>The sink map by loops over hidden states [S][T][D]: token i &gt; b is a sink at l ∈ [s, e) when |cos(h_i, h_b)| &gt; cos.</summary>
    public static SinkMap Detect(double[][][] hidden, int bos, double cos = SinkDetector.DefaultCosine, (int Start, int End)? window = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        int s = hidden.Length, t = hidden[0].Length;
        var (start, end) = window ?? PrimaryWindow(hidden.Select(layer => Norm(layer[bos])).ToArray());
        var layers = new SortedDictionary<int, int[]>();
        for (int i = bos + 1; i < t; i++)
        {
            var flagged = new List<int>();
            for (int l = start; l < end; l++)
            {
                double c = Dot(hidden[l][i], hidden[l][bos]) / (Norm(hidden[l][i]) * Norm(hidden[l][bos]));
                if (Math.Abs(c) > cos) flagged.Add(l);
            }
            if (flagged.Count > 0) layers[i] = flagged.ToArray();
        }
        return new SinkMap(bos, start, end, layers);
    }

    /// <summary>Per-token sink scores [L][T] by loops over patterns [L, B, H, T, T]: mean over b, h and queries i ≥ j (all i when not causal).</summary>
    public static double[][] PerToken(Tensor patterns, bool causal = true)
    {
        Guard.Rank(patterns, 5, nameof(patterns), "L, B, H, T, T");
        var a = patterns.to(float64).cpu().data<double>().ToArray();
        int L = (int)patterns.shape[0], B = (int)patterns.shape[1], H = (int)patterns.shape[2], T = (int)patterns.shape[3];
        var result = new double[L][];
        for (int l = 0; l < L; l++)
        {
            result[l] = new double[T];
            for (int j = 0; j < T; j++)
            {
                double total = 0;
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++)
                    {
                        double sum = 0;
                        int n = 0;
                        for (int i = causal ? j : 0; i < T; i++, n++) sum += a[(((l * B + b) * H + h) * T + i) * T + j];
                        total += sum / n;
                    }
                result[l][j] = total / (B * H);
            }
        }
        return result;
    }

    /// <summary>The code's steering by loops: m_i ← τ m_i / ‖m_i‖ where i ≥ skip and cos(m_i, d) &gt; cos; mlpOut [B][T][D].</summary>
    public static double[][][] RescaleAligned(double[][][] mlpOut, double[] direction, double cos = SinkScores.AlignedCosine,
        double tau = SinkScores.DefaultTau, int skip = SinkScores.SkippedPositions)
    {
        ArgumentNullException.ThrowIfNull(mlpOut);
        ArgumentNullException.ThrowIfNull(direction);
        return mlpOut.Select(seq => seq.Select((m, i) =>
        {
            double c = Dot(m, direction) / (Norm(m) * Norm(direction));
            return i >= skip && c > cos ? m.Select(x => tau * x / Norm(m)).ToArray() : m.ToArray();
        }).ToArray()).ToArray();
    }

    /// <summary>A float tensor [A, B, C] as nested arrays (float64).</summary>
    public static double[][][] Array3(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "A, B, C");
        var v = x.to(float64).cpu().data<double>().ToArray();
        int a = (int)x.shape[0], b = (int)x.shape[1], c = (int)x.shape[2];
        return Enumerable.Range(0, a).Select(i => Enumerable.Range(0, b).Select(j => v.AsSpan((i * b + j) * c, c).ToArray()).ToArray()).ToArray();
    }

    static double Dot(double[] x, double[] y)
    {
        double s = 0;
        for (int k = 0; k < x.Length; k++) s += x[k] * y[k];
        return s;
    }

    static double Norm(double[] x) => Math.Sqrt(Dot(x, x));
}
