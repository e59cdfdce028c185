namespace AttentionLab.Papers.PreplanAnchor;

/// <summary>Loop twins of <see cref="AttentionRhythm"/> and <see cref="Grpo"/>, in double precision, written from the equations.</summary>
public static class PreplanAnchorNaive
{
    /// <summary>WAAD_t = Σ_{s≤t} A[t, s] · min(t − s, W).</summary>
    public static double[] Waad(double[,] a, int window)
    {
        int t = a.GetLength(0);
        var w = new double[t];
        for (int i = 0; i < t; i++)
            for (int s = 0; s <= i; s++) w[i] += a[i, s] * Math.Min(i - s, window);
        return w;
    }

    /// <summary>FAI_s = mean over t &gt; s of A[t, s] (divided by 1 − A[t, 0] when the first column is excluded); NaN without a later query.</summary>
    public static double[] Fai(double[,] a, bool excludeFirst)
    {
        int t = a.GetLength(0);
        var f = new double[t];
        for (int s = 0; s < t; s++)
        {
            if (excludeFirst && s == 0 || s == t - 1) { f[s] = double.NaN; continue; }
            double sum = 0;
            for (int i = s + 1; i < t; i++)
            {
                double rest = excludeFirst ? 1 - a[i, 0] : 1;
                sum += rest > 0 ? a[i, s] / rest : 0;
            }
            f[s] = sum / (t - 1 - s);
        }
        return f;
    }

    /// <summary>Â_i = (R_i − mean_g) / (std_g + ε), std with n − 1.</summary>
    public static double[] SequenceAdvantages(double[] rewards, int groupSize)
    {
        var adv = new double[rewards.Length];
        for (int g = 0; g < rewards.Length; g += groupSize)
        {
            double mean = 0;
            for (int i = 0; i < groupSize; i++) mean += rewards[g + i] / groupSize;
            double ss = 0;
            for (int i = 0; i < groupSize; i++) ss += (rewards[g + i] - mean) * (rewards[g + i] - mean);
            double std = Math.Sqrt(ss / (groupSize - 1));
            for (int i = 0; i < groupSize; i++) adv[g + i] = (rewards[g + i] - mean) / (std + Grpo.Epsilon);
        }
        return adv;
    }

    /// <summary>−(1/N) Σ_i (1/n) Σ_t min(ρ Â_i w_t, clip(ρ) Â_i w_t), with w_t = (1 + γ flag) / mean(1 + γ flag).</summary>
    public static double Loss(double[,] logProbs, double[,] oldLogProbs, double[] advantages, bool[,] critical, double gamma, double clip)
    {
        int n = logProbs.GetLength(0), len = logProbs.GetLength(1);
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            double mean = 0;
            for (int t = 0; t < len; t++) mean += (1 + (critical[i, t] ? gamma : 0)) / len;
            double row = 0;
            for (int t = 0; t < len; t++)
            {
                double a = advantages[i] * (1 + (critical[i, t] ? gamma : 0)) / mean;
                double rho = Math.Exp(logProbs[i, t] - oldLogProbs[i, t]);
                row += Math.Min(rho * a, Math.Clamp(rho, 1 - clip, 1 + clip) * a);
            }
            total += row / len;
        }
        return -total / n;
    }
}
