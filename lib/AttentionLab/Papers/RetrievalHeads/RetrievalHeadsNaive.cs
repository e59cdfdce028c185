namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>
/// The naive twins of the paper's two operations, in loops and float64: the retrieval score of one decode step (the library's
/// fast form is <see cref="Interp.RetrievalScore.AddStep"/>) and a masked head (logits set to 0, so softmax over the causal
/// prefix; the fast forms are <see cref="HeadMask"/>'s hooks).
/// </summary>
public static class RetrievalHeadsNaive
{
    /// <summary>
    /// score_{l,h} += 1/(e − s) when j* = argmax_j a^{l,h}_j (first maximum) lies in [s, e) and x_{j*} = w.
    /// <paramref name="rows"/>[l][h][j] is the last query's attention over the S context tokens.
    /// </summary>
    public static void ScoreStep(double[][][] rows, long generated, IReadOnlyList<long> context, int needleStart, int needleEnd, double[,] scores)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(scores);
        if (needleStart < 0 || needleEnd <= needleStart || needleEnd > context.Count)
            throw new ArgumentException($"the needle [{needleStart}, {needleEnd}) must be a non-empty span of {context.Count} tokens.", nameof(needleStart));
        for (int l = 0; l < rows.Length; l++)
            for (int h = 0; h < rows[l].Length; h++)
            {
                var a = rows[l][h];
                if (a.Length != context.Count) throw new ArgumentException($"rows[{l}][{h}] has {a.Length} keys, context {context.Count}.", nameof(rows));
                int top = 0;
                for (int j = 1; j < a.Length; j++)
                    if (a[j] > a[top] || (double.IsNaN(a[j]) && !double.IsNaN(a[top]))) top = j;   // torch's argmax: NaN is the max
                if (top >= needleStart && top < needleEnd && context[top] == generated) scores[l, h] += 1.0 / (needleEnd - needleStart);
            }
    }

    /// <summary>The masked head's pattern: logits s_ij = 0 for j ≤ i (−∞ after), A_ij = e^0 / Σ_{j'≤i} e^0 = 1/(i+1).</summary>
    public static double[,] ZeroLogitPattern(int length)
    {
        if (length < 1) throw new ArgumentException($"length must be ≥ 1, got {length}.", nameof(length));
        var a = new double[length, length];
        for (int i = 0; i < length; i++)
        {
            double z = 0;
            for (int j = 0; j <= i; j++) z += Math.Exp(0.0);
            for (int j = 0; j <= i; j++) a[i, j] = Math.Exp(0.0) / z;
        }
        return a;
    }

    /// <summary>The masked head's output z_i = Σ_j A_ij v_j = mean of v_0 … v_i (v [T, Dh]).</summary>
    public static double[,] MaskedHeadOutput(double[,] v)
    {
        ArgumentNullException.ThrowIfNull(v);
        int t = v.GetLength(0), d = v.GetLength(1);
        var a = ZeroLogitPattern(t);
        var z = new double[t, d];
        for (int i = 0; i < t; i++)
            for (int j = 0; j <= i; j++)
                for (int c = 0; c < d; c++) z[i, c] += a[i, j] * v[j, c];
        return z;
    }
}
