namespace AttentionLab.Papers.AttentionGuard;

/// <summary>The naive twin of <see cref="Hmm.Posteriors"/>: enumerate every state path (Kᵀ of them) and sum their joint probabilities.</summary>
public static class HmmNaive
{
    /// <summary>Longest sequence enumerated (4¹⁰ ≈ 10⁶ paths).</summary>
    public const int MaxSteps = 10;

    /// <summary>γ_t(k) = Σ_{paths with s_t = k} p(path, o) / Σ_{paths} p(path, o); log p(o) = log Σ_{paths} p(path, o).</summary>
    public static (double[][] Posteriors, double LogLikelihood) Posteriors(Hmm model, IReadOnlyList<double[]> logEmissions)
    {
        ArgumentNullException.ThrowIfNull(model);
        Hmm.CheckEmissions(logEmissions, model.States);
        int t = logEmissions.Count, k = model.States;
        if (t > MaxSteps) throw new ArgumentException($"brute force enumerates {k}^{t} paths; keep sequences to {MaxSteps} steps.", nameof(logEmissions));
        var gamma = new double[t][];
        for (int s = 0; s < t; s++) gamma[s] = new double[k];
        double total = 0, shift = logEmissions.Sum(row => row.Max());            // a common shift keeps exp() in range
        var path = new int[t];
        long count = (long)Math.Pow(k, t);
        for (long code = 0; code < count; code++)
        {
            long rest = code;
            for (int s = 0; s < t; s++) { path[s] = (int)(rest % k); rest /= k; }
            double logJoint = Math.Log(model.Initial[path[0]]) + logEmissions[0][path[0]];     // log π_{s1} + log b_1(s1)
            for (int s = 1; s < t; s++) logJoint += Math.Log(model.Transition[path[s - 1], path[s]]) + logEmissions[s][path[s]];
            double joint = Math.Exp(logJoint - shift);
            total += joint;
            for (int s = 0; s < t; s++) gamma[s][path[s]] += joint;
        }
        foreach (var row in gamma) for (int j = 0; j < k; j++) row[j] /= total;
        return (gamma, Math.Log(total) + shift);
    }
}
