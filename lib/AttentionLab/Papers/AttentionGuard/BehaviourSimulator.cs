using MathNet.Numerics.Distributions;

namespace AttentionLab.Papers.AttentionGuard;

/// <summary>Transition profiles: an "ADHD-like" learner switches out of focus faster and stays hyperfocused longer.</summary>
public enum LearnerProfile
{
    Typical = 0,
    AdhdLike = 1,
}

/// <summary>
/// What a learner emits per second in one state: events arrive as a Poisson process of <paramref name="Rate"/> per second
/// (times the learner's rate factor); each event's kind is drawn from <paramref name="KindProbabilities"/> (order of
/// <see cref="EventKind"/>); an answer is wrong with probability <paramref name="ErrorRate"/> and its latency is
/// log-normal(<paramref name="LatencyLogMean"/> + log κ, <paramref name="LatencyLogSd"/>) s; a scroll's velocity is
/// log-normal(<paramref name="ScrollLogMean"/>, <paramref name="ScrollLogSd"/>) px/s.
/// </summary>
public sealed record StateEmission(double Rate, double[] KindProbabilities, double ErrorRate, double LatencyLogMean, double LatencyLogSd,
    double ScrollLogMean, double ScrollLogSd);

/// <summary>One simulated learner's true parameters: the oracle Bayes classifier uses exactly these.</summary>
/// <param name="Learner">Learner id.</param>
/// <param name="Profile">Transition profile.</param>
/// <param name="RateFactor">ρ, the learner's event-rate multiplier (log-normal random effect).</param>
/// <param name="LatencyFactor">κ, the learner's answer-latency multiplier (log-normal random effect).</param>
/// <param name="Model">The learner's HMM over the four states, one step per 30-s window (rows Dirichlet-perturbed around the profile).</param>
/// <param name="Emissions">Per-state emission parameters (shared by all learners).</param>
public sealed record LearnerParameters(int Learner, LearnerProfile Profile, double RateFactor, double LatencyFactor, Hmm Model,
    IReadOnlyList<StateEmission> Emissions)
{
    /// <summary>
    /// log p(events of one step | s = k) for each state k, exact up to a term that is the same for every state:
    /// N log(λ_k ρ) − λ_k ρ W + Σ_i log p_k(kind_i) + Σ_answers [log p_k(error) + log LN(latency; μ_k + log κ, σ)] + Σ_scrolls log LN(v; μ_k, σ).
    /// </summary>
    public double[] LogEmission(IReadOnlyList<InteractionEvent> events, double seconds)
    {
        ArgumentNullException.ThrowIfNull(events);
        if (!(seconds > 0)) throw new ArgumentException($"the window must last a positive time, got {seconds} s.", nameof(seconds));
        var result = new double[Emissions.Count];
        for (int k = 0; k < Emissions.Count; k++)
        {
            var e = Emissions[k];
            double rate = e.Rate * RateFactor;
            double log = events.Count * Math.Log(rate) - rate * seconds;                          // Poisson process: N log λ − λW
            foreach (var ev in events)
            {
                log += Math.Log(e.KindProbabilities[(int)ev.Kind]);                               // log p_k(kind)
                if (ev.Kind == EventKind.Answer)
                    log += Math.Log(ev.Error ? e.ErrorRate : 1 - e.ErrorRate)                     // Bernoulli error
                         + LogNormal.PDFLn(e.LatencyLogMean + Math.Log(LatencyFactor), e.LatencyLogSd, ev.Value);
                else if (ev.Kind == EventKind.Scroll)
                    log += LogNormal.PDFLn(e.ScrollLogMean, e.ScrollLogSd, ev.Value);
            }
            result[k] = log;
        }
        return result;
    }
}

/// <summary>A simulated learner: true parameters and one event stream (session) per day.</summary>
public sealed record SimulatedLearner(LearnerParameters Parameters, IReadOnlyList<EventStream> Sessions);

/// <summary>
/// The spec's event-level simulator: a 4-state HMM per learner (one step per 30-s window, a fresh session each day from
/// π₀), Poisson-process events with state-dependent kinds and log-normal marks, and learner random effects.
/// </summary>
public static class BehaviourSimulator
{
    /// <summary>Seconds per HMM step (the paper's 30-s window).</summary>
    public const double StepSeconds = 30;

    /// <summary>Number of states.</summary>
    public const int StateCount = 4;

    /// <summary>π₀: a session starts mostly focused, never fatigued.</summary>
    public static double[] InitialDistribution => [0.80, 0.12, 0.08, 0.0];

    /// <summary>The profile's transition matrix (rows: from Focused, Drifting, Hyperfocused, Fatigued).</summary>
    public static double[,] ProfileTransition(LearnerProfile profile) => profile switch
    {
        LearnerProfile.Typical => new[,]
        {
            { 0.88, 0.06, 0.03, 0.03 },
            { 0.15, 0.79, 0.02, 0.04 },
            { 0.10, 0.02, 0.86, 0.02 },
            { 0.06, 0.05, 0.01, 0.88 },
        },
        LearnerProfile.AdhdLike => new[,]
        {
            { 0.76, 0.16, 0.05, 0.03 },
            { 0.24, 0.70, 0.03, 0.03 },
            { 0.03, 0.01, 0.95, 0.01 },
            { 0.08, 0.10, 0.01, 0.81 },
        },
        _ => throw new ArgumentException($"unknown profile {(int)profile}.", nameof(profile)),
    };

    /// <summary>Per-state emissions (kinds: click, scroll, key, back-navigation, tab switch, answer).</summary>
    public static IReadOnlyList<StateEmission> DefaultEmissions { get; } =
    [
        new(0.40, [0.28, 0.22, 0.26, 0.06, 0.05, 0.13], 0.18, Math.Log(9), 0.5, Math.Log(350), 0.6),    // Focused
        new(0.28, [0.26, 0.30, 0.12, 0.11, 0.12, 0.09], 0.30, Math.Log(13), 0.6, Math.Log(550), 0.7),   // Drifting
        new(0.60, [0.26, 0.18, 0.34, 0.05, 0.04, 0.13], 0.14, Math.Log(7), 0.5, Math.Log(300), 0.6),    // Hyperfocused
        new(0.22, [0.30, 0.24, 0.16, 0.08, 0.08, 0.14], 0.32, Math.Log(15), 0.6, Math.Log(320), 0.6),   // Fatigued
    ];

    /// <summary>Sizes and random-effect spreads of one simulated cohort.</summary>
    /// <param name="Learners">Learners (half typical, half ADHD-like, alternating).</param>
    /// <param name="Days">Sessions per learner.</param>
    /// <param name="StepsPerDay">30-s steps per session.</param>
    /// <param name="RateSd">sd of log ρ.</param>
    /// <param name="LatencySd">sd of log κ.</param>
    /// <param name="TransitionConcentration">Dirichlet concentration of each learner's transition rows around the profile's (∞ = none).</param>
    /// <param name="Seed">Seed of the cohort.</param>
    public sealed record Options(int Learners, int Days, int StepsPerDay, double RateSd = 0.35, double LatencySd = 0.25,
        double TransitionConcentration = 60, int Seed = 0);

    /// <summary>Simulates a cohort.</summary>
    public static IReadOnlyList<SimulatedLearner> Simulate(Options options, IReadOnlyList<StateEmission>? emissions = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Learners <= 0) throw new ArgumentException($"learners must be positive, got {options.Learners}.", nameof(options));
        if (options.Days <= 0) throw new ArgumentException($"days must be positive, got {options.Days}.", nameof(options));
        if (options.StepsPerDay <= 0) throw new ArgumentException($"steps per day must be positive, got {options.StepsPerDay}.", nameof(options));
        if (!(options.RateSd >= 0) || !(options.LatencySd >= 0) || !(options.TransitionConcentration > 0))
            throw new ArgumentException("spreads must be non-negative and the concentration positive (no NaN).", nameof(options));
        emissions ??= DefaultEmissions;
        if (emissions.Count != StateCount)
            throw new ArgumentException($"the simulator has {StateCount} states but {emissions.Count} emission records were given.", nameof(emissions));
        var rng = new Random(options.Seed);
        var learners = new List<SimulatedLearner>(options.Learners);
        for (int id = 0; id < options.Learners; id++)
        {
            var profile = (LearnerProfile)(id % 2);
            var parameters = new LearnerParameters(id, profile,
                RateFactor: Math.Exp(options.RateSd * Normal.Sample(rng, 0, 1)),
                LatencyFactor: Math.Exp(options.LatencySd * Normal.Sample(rng, 0, 1)),
                Model: new Hmm(InitialDistribution, PerturbedTransition(ProfileTransition(profile), options.TransitionConcentration, rng)),
                Emissions: emissions);
            var sessions = Enumerable.Range(0, options.Days).Select(day => SimulateSession(parameters, day, options.StepsPerDay, rng)).ToList();
            learners.Add(new SimulatedLearner(parameters, sessions));
        }
        return learners;
    }

    /// <summary>One session of <paramref name="steps"/> 30-s steps from the learner's HMM.</summary>
    public static EventStream SimulateSession(LearnerParameters learner, int day, int steps, Random rng)
    {
        ArgumentNullException.ThrowIfNull(learner);
        ArgumentNullException.ThrowIfNull(rng);
        if (steps <= 0) throw new ArgumentException($"steps must be positive, got {steps}.", nameof(steps));
        var states = new AttentionState[steps];
        var events = new List<InteractionEvent>();
        int state = Categorical.Sample(rng, learner.Model.Initial);                                  // s_1 ~ π₀
        for (int t = 0; t < steps; t++)
        {
            if (t > 0) state = Categorical.Sample(rng, Row(learner.Model.Transition, state));        // s_t ~ A[s_{t−1}, ·]
            states[t] = (AttentionState)state;
            var e = learner.Emissions[state];
            int count = Poisson.Sample(rng, e.Rate * learner.RateFactor * StepSeconds);              // N ~ Poisson(λρW)
            var times = Enumerable.Range(0, count).Select(_ => (t + rng.NextDouble()) * StepSeconds).Order().ToArray();   // uniform given N
            foreach (double time in times)
            {
                var kind = (EventKind)Categorical.Sample(rng, e.KindProbabilities);
                events.Add(kind switch
                {
                    EventKind.Answer => new InteractionEvent(time, kind,
                        LogNormal.Sample(rng, e.LatencyLogMean + Math.Log(learner.LatencyFactor), e.LatencyLogSd), rng.NextDouble() < e.ErrorRate),
                    EventKind.Scroll => new InteractionEvent(time, kind, LogNormal.Sample(rng, e.ScrollLogMean, e.ScrollLogSd)),
                    _ => new InteractionEvent(time, kind),
                });
            }
        }
        return new EventStream(learner.Learner, day, steps * StepSeconds, events, states);
    }

    /// <summary>States only (no events) of one session of <paramref name="steps"/> steps: s_1 ~ π, s_t ~ A[s_{t−1}, ·].</summary>
    public static AttentionState[] SimulateStates(Hmm model, int steps, Random rng)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(rng);
        if (steps <= 0) throw new ArgumentException($"steps must be positive, got {steps}.", nameof(steps));
        var states = new AttentionState[steps];
        int state = Categorical.Sample(rng, model.Initial);
        for (int t = 0; t < steps; t++)
        {
            if (t > 0) state = Categorical.Sample(rng, Row(model.Transition, state));
            states[t] = (AttentionState)state;
        }
        return states;
    }

    /// <summary>The events of step <paramref name="step"/> (times in [step·W, (step+1)·W)).</summary>
    public static IReadOnlyList<InteractionEvent> EventsOfStep(EventStream stream, int step, double seconds = StepSeconds)
    {
        ArgumentNullException.ThrowIfNull(stream);
        double start = step * seconds, end = start + seconds;
        return stream.Events.Where(e => e.Time >= start && e.Time < end).ToList();
    }

    static double[] Row(double[,] a, int i) => Enumerable.Range(0, a.GetLength(1)).Select(j => a[i, j]).ToArray();

    static double[,] PerturbedTransition(double[,] profile, double concentration, Random rng)
    {
        int k = profile.GetLength(0);
        if (double.IsPositiveInfinity(concentration)) return (double[,])profile.Clone();                   // no learner effect
        var result = new double[k, k];
        for (int i = 0; i < k; i++)
        {
            // Row ~ Dirichlet(c · A_profile[i]); zero entries stay zero (a tiny floor keeps the Dirichlet proper).
            var row = Row(profile, i);
            var draw = new Dirichlet(row.Select(p => Math.Max(p * concentration, 1e-3)).ToArray(), rng).Sample();
            double sum = 0;
            for (int j = 0; j < k; j++) sum += draw[j];
            for (int j = 0; j < k; j++) result[i, j] = draw[j] / sum;
        }
        return result;
    }
}
