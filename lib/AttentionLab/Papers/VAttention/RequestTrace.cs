namespace AttentionLab.Papers.VAttention;

/// <summary>A length distribution for synthetic requests, clipped to [Min, Max] and rounded to whole tokens.</summary>
/// <param name="Kind">constant (Median), uniform on [Min, Max], or lognormal.</param>
/// <param name="Median">the constant, or the lognormal's median.</param>
/// <param name="Sigma">the lognormal's log-standard deviation.</param>
/// <param name="Min">smallest length.</param>
/// <param name="Max">largest length.</param>
public sealed record LengthDist(LengthDist.Shape Kind, double Median, double Sigma, int Min, int Max)
{
    /// <summary>The family of the distribution.</summary>
    public enum Shape { Constant, Uniform, LogNormal }

    /// <summary>Always <paramref name="tokens"/>.</summary>
    public static LengthDist Constant(int tokens) => new(Shape.Constant, tokens, 0, tokens, tokens);
    /// <summary>Uniform on [min, max].</summary>
    public static LengthDist Uniform(int min, int max) => new(Shape.Uniform, 0.5 * (min + max), 0, min, max);
    /// <summary>exp(N(ln median, σ²)), clipped to [min, max].</summary>
    public static LengthDist LogNormal(double median, double sigma, int min, int max) => new(Shape.LogNormal, median, sigma, min, max);

    /// <summary>One draw.</summary>
    public int Sample(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        double x = Kind switch
        {
            Shape.Constant => Median,
            Shape.Uniform => Min + rng.NextDouble() * (Max - Min + 1),
            _ => Math.Exp(Math.Log(Median) + Sigma * Gaussian(rng)),                  // ln x ~ N(ln median, σ²)
        };
        return (int)Math.Clamp(Math.Floor(x), Min, Max);
    }

    /// <summary>Throws an ArgumentException (naming <paramref name="name"/>) when the bounds are not 1 ≤ Min ≤ Max.</summary>
    public LengthDist Validate(string name)
    {
        if (Min < 1 || Max < Min) throw new ArgumentException($"{name} needs 1 ≤ Min ≤ Max, got [{Min}, {Max}].", name);
        if (Kind == Shape.LogNormal && (Median <= 0 || Sigma < 0))
            throw new ArgumentException($"{name} needs Median > 0 and Sigma ≥ 0, got {Median}, {Sigma}.", name);
        return this;
    }

    static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());   // Box–Muller
}

/// <summary>
/// One request: arrives at iteration <paramref name="Arrival"/>, has a prompt of <paramref name="PromptLen"/> tokens and generates
/// <paramref name="DecodeLen"/>.
/// </summary>
public sealed record TraceRequest(int Id, int Arrival, int PromptLen, int DecodeLen)
{
    /// <summary>Tokens in the KV cache when the request finishes: prompt + decode.</summary>
    public int FinalLen => PromptLen + DecodeLen;
}

/// <summary>A seeded list of requests, ordered by arrival. Time is counted in serving iterations (one decode step of the batch).</summary>
public sealed record RequestTrace(IReadOnlyList<TraceRequest> Requests)
{
    /// <summary>
    /// <paramref name="n"/> requests with Poisson arrivals at <paramref name="ratePerStep"/> requests per iteration
    /// (exponential gaps), prompt and decode lengths from the two distributions; the same seed gives the same trace.
    /// </summary>
    public static RequestTrace Synthetic(int n, LengthDist promptLen, LengthDist decodeLen, double ratePerStep, int seed)
    {
        if (n <= 0) throw new ArgumentException($"n must be positive, got {n}.", nameof(n));
        ArgumentNullException.ThrowIfNull(promptLen);
        ArgumentNullException.ThrowIfNull(decodeLen);
        promptLen.Validate(nameof(promptLen));
        decodeLen.Validate(nameof(decodeLen));
        if (!(ratePerStep > 0) || double.IsInfinity(ratePerStep))
            throw new ArgumentException($"ratePerStep must be positive and finite, got {ratePerStep}.", nameof(ratePerStep));
        var rng = new Random(seed);
        double t = 0;
        var requests = new List<TraceRequest>(n);
        for (int i = 0; i < n; i++)
        {
            t += -Math.Log(1 - rng.NextDouble()) / ratePerStep;                       // gap ~ Exp(rate)
            requests.Add(new TraceRequest(i, (int)t, promptLen.Sample(rng), decodeLen.Sample(rng)));
        }
        return new RequestTrace(requests);
    }

    /// <summary>Longest prompt + decode in the trace.</summary>
    public int MaxLen => Requests.Max(r => r.FinalLen);
}
