namespace AttentionLab.Papers.AttentionGuard;

/// <summary>
/// A discrete-state hidden Markov model with initial distribution π and transition matrix A (rows sum to 1); emissions
/// are given per step as log-likelihoods log p(o_t | s_t = k), so any emission model plugs in.
/// </summary>
/// <remarks>
/// Forward (scaled): α̂_1(k) = π_k b_1(k) / c_1, α̂_t(k) = Σ_j α̂_{t−1}(j) A_jk b_t(k) / c_t, with c_t the sum that makes α̂_t sum to 1.
/// Backward: β̂_T = 1, β̂_t(j) = Σ_k A_jk b_{t+1}(k) β̂_{t+1}(k) / c_{t+1}.
/// Posterior γ_t(k) = p(s_t = k | o_1..T) = α̂_t(k) β̂_t(k); log p(o_1..T) = Σ_t log c_t.
/// b_t(k) = exp(log b_t(k) − max_k log b_t(k)) per step (the shift is added back to log c_t), so long windows do not underflow.
/// </remarks>
public sealed class Hmm
{
    /// <summary>A model with <paramref name="initial"/> π [K] and <paramref name="transition"/> A [K, K].</summary>
    public Hmm(double[] initial, double[,] transition)
    {
        ArgumentNullException.ThrowIfNull(initial);
        ArgumentNullException.ThrowIfNull(transition);
        int k = initial.Length;
        if (k == 0) throw new ArgumentException("the model needs at least one state; initial is empty.", nameof(initial));
        if (transition.GetLength(0) != k || transition.GetLength(1) != k)
            throw new ArgumentException(
                $"transition is [{transition.GetLength(0)}, {transition.GetLength(1)}] but initial has {k} states; it must be [{k}, {k}].", nameof(transition));
        CheckDistribution(initial, nameof(initial));
        for (int i = 0; i < k; i++) CheckDistribution(Enumerable.Range(0, k).Select(j => transition[i, j]).ToArray(), $"{nameof(transition)} row {i}");
        Initial = (double[])initial.Clone();
        Transition = (double[,])transition.Clone();
    }

    /// <summary>π: p(s_1 = k).</summary>
    public double[] Initial { get; }
    /// <summary>A: p(s_{t+1} = k | s_t = j) at [j, k].</summary>
    public double[,] Transition { get; }
    /// <summary>K, the number of states.</summary>
    public int States => Initial.Length;

    /// <summary>Posteriors γ [T][K] (each row sums to 1) and log p(o_1..T), by scaled forward–backward.</summary>
    public (double[][] Posteriors, double LogLikelihood) Posteriors(IReadOnlyList<double[]> logEmissions)
    {
        CheckEmissions(logEmissions, States);
        int t = logEmissions.Count, k = States;
        var alpha = new double[t][];
        var scale = new double[t];
        var b = new double[t][];
        double logLik = 0;
        for (int s = 0; s < t; s++)
        {
            double shift = logEmissions[s].Max();
            b[s] = logEmissions[s].Select(x => Math.Exp(x - shift)).ToArray();       // b_t(k) up to e^{shift}
            alpha[s] = new double[k];
            for (int j = 0; j < k; j++)
            {
                double prior = 0;
                if (s == 0) prior = Initial[j];                                      // π_k
                else for (int i = 0; i < k; i++) prior += alpha[s - 1][i] * Transition[i, j];   // Σ_j α̂_{t−1}(j) A_jk
                alpha[s][j] = prior * b[s][j];
            }
            scale[s] = alpha[s].Sum();                                              // c_t
            if (!(scale[s] > 0))
                throw new ArgumentException($"the observations at step {s} have probability 0 under every reachable state.", nameof(logEmissions));
            for (int j = 0; j < k; j++) alpha[s][j] /= scale[s];
            logLik += Math.Log(scale[s]) + shift;                                   // log p(o) = Σ log c_t
        }
        var beta = new double[k];
        Array.Fill(beta, 1.0);                                                      // β̂_T = 1
        var gamma = new double[t][];
        for (int s = t - 1; s >= 0; s--)
        {
            gamma[s] = new double[k];
            for (int j = 0; j < k; j++) gamma[s][j] = alpha[s][j] * beta[j];        // γ_t = α̂_t β̂_t
            double norm = gamma[s].Sum();
            for (int j = 0; j < k; j++) gamma[s][j] /= norm;
            if (s == 0) break;
            var next = new double[k];
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) next[i] += Transition[i, j] * b[s][j] * beta[j];   // Σ_k A_jk b_{t+1}(k) β̂_{t+1}(k)
            for (int i = 0; i < k; i++) next[i] /= scale[s];                        // / c_{t+1}
            beta = next;
        }
        return (gamma, logLik);
    }

    /// <summary>Marginal state distributions p(s_t) = π Aᵗ⁻¹ for t = 1 … <paramref name="steps"/> (no observations).</summary>
    public double[][] Marginals(int steps)
    {
        if (steps <= 0) throw new ArgumentException($"steps must be positive, got {steps}.", nameof(steps));
        var result = new double[steps][];
        result[0] = (double[])Initial.Clone();
        for (int s = 1; s < steps; s++)
        {
            result[s] = new double[States];
            for (int i = 0; i < States; i++)
                for (int j = 0; j < States; j++) result[s][j] += result[s - 1][i] * Transition[i, j];
        }
        return result;
    }

    /// <summary>
    /// Per-step posteriors from that step's observation alone: p(s_t | o_t) ∝ p(s_t) p(o_t | s_t) — the Bayes-optimal
    /// classifier for a model that sees one window at a time (and knows the step index).
    /// </summary>
    public double[][] SingleStepPosteriors(IReadOnlyList<double[]> logEmissions)
    {
        CheckEmissions(logEmissions, States);
        var prior = Marginals(logEmissions.Count);
        return logEmissions.Select((log, s) =>
        {
            double shift = log.Max();
            var p = log.Select((x, k) => prior[s][k] * Math.Exp(x - shift)).ToArray();
            double norm = p.Sum();
            if (!(norm > 0)) throw new ArgumentException($"the observation at step {s} has probability 0 under every reachable state.", nameof(logEmissions));
            return p.Select(x => x / norm).ToArray();
        }).ToArray();
    }

    /// <summary>The stationary distribution (left eigenvector of A for eigenvalue 1, by power iteration to 1e-13).</summary>
    public double[] Stationary()
    {
        var p = Enumerable.Repeat(1.0 / States, States).ToArray();
        for (int it = 0; it < 100_000; it++)
        {
            var next = new double[States];
            for (int i = 0; i < States; i++)
                for (int j = 0; j < States; j++) next[j] += p[i] * Transition[i, j];
            double change = next.Zip(p, (a, c) => Math.Abs(a - c)).Sum();
            p = next;
            if (change < 1e-13) break;
        }
        return p;
    }

    /// <summary>Checks a step list of log-likelihood rows: non-empty, each of length <paramref name="states"/>, no NaN or +∞.</summary>
    internal static void CheckEmissions(IReadOnlyList<double[]> logEmissions, int states)
    {
        ArgumentNullException.ThrowIfNull(logEmissions);
        if (logEmissions.Count == 0) throw new ArgumentException("the observation sequence is empty; posteriors need at least one step.", nameof(logEmissions));
        for (int s = 0; s < logEmissions.Count; s++)
        {
            var row = logEmissions[s] ?? throw new ArgumentException($"step {s} has no emission row.", nameof(logEmissions));
            if (row.Length != states)
                throw new ArgumentException($"step {s} has {row.Length} emission log-likelihoods but the model has {states} states.", nameof(logEmissions));
            if (row.Any(x => double.IsNaN(x) || double.IsPositiveInfinity(x)))
                throw new ArgumentException($"step {s} has a NaN or +∞ log-likelihood.", nameof(logEmissions));
            if (row.All(double.IsNegativeInfinity))
                throw new ArgumentException($"the observation at step {s} has probability 0 under every state.", nameof(logEmissions));
        }
    }

    static void CheckDistribution(double[] p, string name)
    {
        if (p.Any(x => double.IsNaN(x) || x < 0 || double.IsInfinity(x)))
            throw new ArgumentException($"{name} must hold finite non-negative probabilities, got [{string.Join(", ", p)}].", name);
        if (Math.Abs(p.Sum() - 1) > 1e-9) throw new ArgumentException($"{name} must sum to 1, sums to {p.Sum()}.", name);
    }
}
