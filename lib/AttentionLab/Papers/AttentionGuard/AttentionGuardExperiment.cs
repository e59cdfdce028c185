using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionGuard;

/// <summary>
/// P30 AttentionGuard on honest synthetic data (spec §4): an event-level simulator with known states → 30-s windows →
/// features → a one-vs-rest FastForest under learner-grouped cross-validation, beside the Bayes-optimal ceiling from the
/// true HMM; then the aggregation sweep (30 s … a whole day), the leakage demos (random split, rule-derived labels).
/// </summary>
public sealed class AttentionGuardExperiment : IPaperExperiment<AttentionGuardExperiment.Config, AttentionGuardResult>
{
    AttentionGuardExperiment() { }

    /// <summary>P30 in the catalogue (notebook notebooks/30-attention-guard.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(30, "AttentionGuard: learner attention states", "attention-guard");

    /// <summary>Sizes of one run.</summary>
    /// <param name="Learners">Simulated learners (half typical, half ADHD-like).</param>
    /// <param name="Days">Sessions per learner.</param>
    /// <param name="StepsPerDay">30-s windows per session.</param>
    /// <param name="Trees">Trees per one-vs-rest forest.</param>
    /// <param name="Folds">Grouped (and random) cross-validation folds.</param>
    /// <param name="WindowSteps">Aggregation sweep: window lengths in 30-s steps (a whole day is always added).</param>
    /// <param name="Seed">Seed of the cohort, the folds and the forests.</param>
    public sealed record Config(int Learners, int Days, int StepsPerDay, int Trees, int Folds, int[] WindowSteps, int Seed) : IPaperConfig<Config>
    {
        /// <summary>Spec §4 smoke: 200 learners × 60 windows (4 sessions of 15), 50 trees; 3 folds to fit the notebook's minute.</summary>
        public static Config Smoke => new(Learners: 200, Days: 4, StepsPerDay: 15, Trees: 50, Folds: 3, WindowSteps: [1, 2, 5], Seed: 0) { Size = "smoke" };
        /// <summary>Spec §4 full: 5k learners; 8 sessions of 30 windows; ≈ 200 trees (CPU is enough).</summary>
        public static Config Full => new(Learners: 5000, Days: 8, StepsPerDay: 30, Trees: 200, Folds: 5, WindowSteps: [1, 2, 4, 10], Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
    }

    /// <summary>Runs everything (CPU only: no tensors; <paramref name="device"/> is accepted for the contract).</summary>
    public static AttentionGuardResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.Folds < 2) throw new ArgumentException($"folds must be at least 2, got {config.Folds}.", nameof(config));
        if (config.WindowSteps is null || config.WindowSteps.Length == 0 || config.WindowSteps.Any(m => m <= 0))
            throw new ArgumentException("window steps must be positive multiples of 30 s.", nameof(config));
        var clock = new PhaseClock();
        int k = BehaviourSimulator.StateCount;
        var learners = BehaviourSimulator.Simulate(new BehaviourSimulator.Options(config.Learners, config.Days, config.StepsPerDay, Seed: config.Seed));
        progress?.Report($"simulated {config.Learners} learners × {config.Days} sessions × {config.StepsPerDay} windows of 30 s " +
                         $"({learners.Sum(l => l.Sessions.Sum(s => s.Events.Count)):N0} events)");
        clock.Lap("simulate");

        // The Bayes-optimal ceiling from the true HMM (each learner's own parameters): per session, forward–backward over
        // the whole sequence, and the one-window posterior p(s_t | o_t) ∝ p(s_t) p(o_t | s_t).
        var truth = new List<int>();
        var bayesSequence = new List<int>();
        var bayesWindow = new List<int>();
        double posteriorSumError = 0;
        foreach (var learner in learners)
            foreach (var session in learner.Sessions)
            {
                var logEmissions = Enumerable.Range(0, config.StepsPerDay)
                    .Select(t => learner.Parameters.LogEmission(BehaviourSimulator.EventsOfStep(session, t), BehaviourSimulator.StepSeconds)).ToList();
                var (gamma, _) = learner.Parameters.Model.Posteriors(logEmissions);
                posteriorSumError = Math.Max(posteriorSumError, gamma.Max(row => Math.Abs(row.Sum() - 1)));
                bayesSequence.AddRange(gamma.Select(ForestClassifier.ArgMax));
                bayesWindow.AddRange(learner.Parameters.Model.SingleStepPosteriors(logEmissions).Select(ForestClassifier.ArgMax));
                truth.AddRange(session.States.Select(s => (int)s));
            }
        var twin = TwinCheck(learners[0]);
        var occupancy = OccupancyError(learners, config.StepsPerDay, OccupancySessions, config.Seed);
        progress?.Report($"Bayes ceiling: {Accuracy(bayesSequence, truth):P1} (whole sequence), {Accuracy(bayesWindow, truth):P1} (one window)");
        clock.Lap("bayes ceiling");

        // 30-s windows → raw features + per-learner z-scores; grouped K-fold by learner.
        var rows = BuildRows(learners, 1, config.StepsPerDay);
        var groups = rows.Select(r => r.Learner).ToArray();
        var labels = rows.Select(r => r.State).ToArray();
        var forestOptions = new ForestClassifier.Options(Trees: config.Trees, Seed: config.Seed);
        var grouped = GroupKFold.Assign(groups, config.Folds, config.Seed);
        bool foldsShareLearner = Enumerable.Range(0, config.Folds).Any(f =>
            groups.Where((_, i) => grouped[i] == f).Intersect(groups.Where((_, i) => grouped[i] != f)).Any());
        var (forestGrouped, argMaxAgreement) =
            CrossValidate(rows.Select(r => r.Features).ToArray(), labels, grouped, config.Folds, k, forestOptions, progress, "grouped");
        var majorityGrouped = MajorityBaseline(labels, grouped, config.Folds, k);
        clock.Lap("forest, grouped folds");

        var random = GroupKFold.AssignRandom(rows.Length, config.Folds, config.Seed);
        var (forestRandom, _) = CrossValidate(rows.Select(r => r.Features).ToArray(), labels, random, config.Folds, k, forestOptions, progress, "random");
        clock.Lap("forest, random folds");

        // Aggregation sweep: each 30-s window gets the features of the longer window (or day) that contains it; one grouped
        // hold-out fold (fold 0) per length, the same learners every time.
        var sweep = new List<WindowAccuracy>();
        var lengths = config.WindowSteps.Distinct().Order().Where(m => m < config.StepsPerDay).Append(config.StepsPerDay).ToArray();
        var holdout = grouped.Select(f => f == 0).ToArray();
        foreach (int m in lengths)
        {
            if (m == 1)                                                                    // = grouped fold 0 above (same fit)
            {
                var fold0 = Enumerable.Range(0, labels.Length).Where(i => holdout[i]).ToArray();
                sweep.Add(new WindowAccuracy("30 s", 30, fold0.Count(i => forestGrouped[i] == labels[i]) / (double)fold0.Length, m == config.StepsPerDay));
                continue;
            }
            var coarse = BuildRows(learners, m, config.StepsPerDay);
            var predicted = HoldOut(coarse.Select(r => r.Features).ToArray(), labels, holdout, k, forestOptions);
            var test = Enumerable.Range(0, labels.Length).Where(i => holdout[i]).ToArray();
            double accuracy = test.Count(i => predicted[i] == labels[i]) / (double)test.Length;
            string name = m == config.StepsPerDay ? $"day ({m * BehaviourSimulator.StepSeconds / 60:0.#} min)" : $"{m * BehaviourSimulator.StepSeconds:0} s";
            sweep.Add(new WindowAccuracy(name, m * BehaviourSimulator.StepSeconds, accuracy, m == config.StepsPerDay));
            progress?.Report($"window {name}: forest {accuracy:P1} on held-out learners");
        }
        // OULAD itself carries daily clicks per activity type only: the same hold-out on those six counts.
        var daily = learners.SelectMany(l => l.Sessions.SelectMany(s => Enumerable.Repeat(OuladLikeGenerator.DailyClicks(s), config.StepsPerDay))).ToArray();
        var dailyPredicted = HoldOut(daily, labels, holdout, k, forestOptions);
        var held = Enumerable.Range(0, labels.Length).Where(i => holdout[i]).ToArray();
        double ouladAccuracy = held.Count(i => dailyPredicted[i] == labels[i]) / (double)held.Length;
        double majorityHoldout = MajorityBaseline(labels, grouped.Select(f => f == 0 ? 0 : 1).ToArray(), 1, k)
            .Where((_, i) => holdout[i]).Zip(held.Select(i => labels[i])).Count(p => p.First == p.Second) / (double)held.Length;
        progress?.Report($"OULAD daily clicks: forest {ouladAccuracy:P1}; majority {majorityHoldout:P1}");
        clock.Lap("aggregation sweep");

        // Rule-derived labels from the same features: the forest recovers the rule, not attention.
        var ruleLabels = rows.Select(r => (int)RuleLabeler.Label(r.Raw, BehaviourSimulator.StepSeconds)).ToArray();
        var rulePredicted = HoldOut(rows.Select(r => r.Features).ToArray(), ruleLabels, holdout, k, forestOptions);
        double forestOnRules = held.Count(i => rulePredicted[i] == ruleLabels[i]) / (double)held.Length;
        double rulesVsTruth = Accuracy(ruleLabels, labels);
        progress?.Report($"rule labels: forest recovers the rule {forestOnRules:P1}; the rule matches the true state {rulesVsTruth:P1}");
        clock.Lap("rule labels");

        var timeline = new Timeline(truth.Take(config.StepsPerDay).ToArray(), forestGrouped.Take(config.StepsPerDay).ToArray(),
            bayesSequence.Take(config.StepsPerDay).ToArray());
        var profiles = rows.Select(r => r.Profile).ToArray();
        return new AttentionGuardResult(config, truth.ToArray(), forestGrouped, forestRandom, majorityGrouped, bayesSequence.ToArray(), bayesWindow.ToArray(),
            profiles, sweep, ouladAccuracy, majorityHoldout, forestOnRules, rulesVsTruth, Confusion(ruleLabels, labels, k),
            new AttentionGuardExactness(posteriorSumError, twin.MaxPosteriorError, twin.LogLikelihoodError, twin.Steps, occupancy, foldsShareLearner,
                argMaxAgreement),
            timeline, OuladLikeGenerator.StudentVle(learners.Take(3).ToList()), clock.Seconds, clock.Phases);
    }

    /// <summary>One row per 30-s window: learner, profile, true state, raw 30-s features and the model's features.</summary>
    internal sealed record WindowRow(int Learner, LearnerProfile Profile, int State, double[] Raw, double[] Features);

    /// <summary>
    /// Rows for every 30-s window; the features are those of the window of <paramref name="steps"/> × 30 s containing it
    /// (raw and per-learner z-scores over the learner's windows of that length).
    /// </summary>
    internal static WindowRow[] BuildRows(IReadOnlyList<SimulatedLearner> learners, int steps, int stepsPerDay)
    {
        var window = TimeSpan.FromSeconds(steps * BehaviourSimulator.StepSeconds);
        var rows = new List<WindowRow>();
        foreach (var learner in learners)
        {
            var perSession = learner.Sessions.Select(s => WindowFeaturizer.Featurize(s, window)).ToList();
            var z = WindowFeaturizer.LearnerZScores(perSession.SelectMany(w => w).ToList());
            var step = TimeSpan.FromSeconds(BehaviourSimulator.StepSeconds);
            var fine = steps == 1 ? perSession : learner.Sessions.Select(s => WindowFeaturizer.Featurize(s, step)).ToList();
            int offset = 0;
            for (int d = 0; d < learner.Sessions.Count; d++)
            {
                for (int t = 0; t < stepsPerDay; t++)
                {
                    int w = t / steps;
                    rows.Add(new WindowRow(learner.Parameters.Learner, learner.Parameters.Profile, (int)learner.Sessions[d].States[t], fine[d][t],
                        [.. perSession[d][w], .. z[offset + w]]));
                }
                offset += perSession[d].Length;
            }
        }
        return rows.ToArray();
    }

    /// <summary>Out-of-fold predictions of the forest over <paramref name="folds"/> folds, and the share of rows where our arg-max equals ML.NET's.</summary>
    static (int[] Predicted, double ArgMaxAgreement) CrossValidate(double[][] x, int[] y, int[] fold, int folds, int classes, ForestClassifier.Options options,
        IProgress<string>? progress, string what)
    {
        var predicted = new int[y.Length];
        int agree = 0;
        for (int f = 0; f < folds; f++)
        {
            var train = Enumerable.Range(0, y.Length).Where(i => fold[i] != f).ToArray();
            var test = Enumerable.Range(0, y.Length).Where(i => fold[i] == f).ToArray();
            var forest = ForestClassifier.Fit(train.Select(i => x[i]).ToArray(), train.Select(i => y[i]).ToArray(), classes,
                options with { Seed = options.Seed + f });
            var testX = test.Select(i => x[i]).ToArray();
            var ours = forest.Predict(testX);
            var theirs = forest.PredictedByMlNet(testX);
            for (int j = 0; j < test.Length; j++) predicted[test[j]] = ours[j];
            agree += ours.Zip(theirs).Count(p => p.First == p.Second);
            progress?.Report($"{what} fold {f + 1}/{folds}: accuracy {test.Count(i => predicted[i] == y[i]) / (double)test.Length:P1}");
        }
        return (predicted, agree / (double)y.Length);
    }

    /// <summary>Predictions for the rows marked <paramref name="test"/> from a forest fitted on the rest (other rows: −1).</summary>
    static int[] HoldOut(double[][] x, int[] y, bool[] test, int classes, ForestClassifier.Options options)
    {
        var train = Enumerable.Range(0, y.Length).Where(i => !test[i]).ToArray();
        var held = Enumerable.Range(0, y.Length).Where(i => test[i]).ToArray();
        var forest = ForestClassifier.Fit(train.Select(i => x[i]).ToArray(), train.Select(i => y[i]).ToArray(), classes, options);
        var predicted = Enumerable.Repeat(-1, y.Length).ToArray();
        var p = forest.Predict(held.Select(i => x[i]).ToArray());
        for (int j = 0; j < held.Length; j++) predicted[held[j]] = p[j];
        return predicted;
    }

    /// <summary>Each fold's rows predicted as the most frequent class of the other folds (for one fold: of the rows outside fold 0).</summary>
    static int[] MajorityBaseline(int[] y, int[] fold, int folds, int classes)
    {
        var predicted = new int[y.Length];
        for (int f = 0; f < folds; f++)
        {
            var counts = new double[classes];
            for (int i = 0; i < y.Length; i++) if (fold[i] != f) counts[y[i]]++;
            int majority = ForestClassifier.ArgMax(counts);
            for (int i = 0; i < y.Length; i++) if (fold[i] == f) predicted[i] = majority;
        }
        return predicted;
    }

    /// <summary>Share of equal entries.</summary>
    public static double Accuracy(IReadOnlyList<int> predicted, IReadOnlyList<int> truth)
    {
        ArgumentNullException.ThrowIfNull(predicted);
        ArgumentNullException.ThrowIfNull(truth);
        if (predicted.Count != truth.Count || truth.Count == 0)
            throw new ArgumentException($"{predicted.Count} predictions for {truth.Count} labels.", nameof(predicted));
        return Enumerable.Range(0, truth.Count).Count(i => predicted[i] == truth[i]) / (double)truth.Count;
    }

    /// <summary>Confusion counts [true, predicted].</summary>
    public static double[,] Confusion(IReadOnlyList<int> predicted, IReadOnlyList<int> truth, int classes)
    {
        if (predicted.Count != truth.Count) throw new ArgumentException($"{predicted.Count} predictions for {truth.Count} labels.", nameof(predicted));
        var c = new double[classes, classes];
        for (int i = 0; i < truth.Count; i++) c[truth[i], predicted[i]]++;
        return c;
    }

    /// <summary>Cohen's κ = (p_o − p_e) / (1 − p_e) from a confusion matrix.</summary>
    public static double Kappa(double[,] confusion)
    {
        int k = confusion.GetLength(0);
        double n = 0, agree = 0, expected = 0;
        for (int i = 0; i < k; i++) for (int j = 0; j < k; j++) n += confusion[i, j];
        for (int i = 0; i < k; i++)
        {
            agree += confusion[i, i];
            double row = 0, col = 0;
            for (int j = 0; j < k; j++) { row += confusion[i, j]; col += confusion[j, i]; }
            expected += row * col;
        }
        double po = agree / n, pe = expected / (n * n);
        return (po - pe) / (1 - pe);
    }

    /// <summary>Forward–backward vs brute-force enumeration on the first steps of the learner's first session (real simulated emissions).</summary>
    static (double MaxPosteriorError, double LogLikelihoodError, int Steps) TwinCheck(SimulatedLearner learner)
    {
        int steps = Math.Min(7, learner.Sessions[0].States.Count);
        var log = Enumerable.Range(0, steps)
            .Select(t => learner.Parameters.LogEmission(BehaviourSimulator.EventsOfStep(learner.Sessions[0], t), BehaviourSimulator.StepSeconds)).ToList();
        var (fast, fastLik) = learner.Parameters.Model.Posteriors(log);
        var (slow, slowLik) = HmmNaive.Posteriors(learner.Parameters.Model, log);
        double err = fast.Zip(slow).Max(p => p.First.Zip(p.Second).Max(q => Math.Abs(q.First - q.Second)));
        return (err, Math.Abs(fastLik - slowLik), steps);
    }

    /// <summary>Sessions of states simulated per learner for the occupancy check (states only: cheap).</summary>
    public const int OccupancySessions = 100;

    /// <summary>
    /// max_{t,k} |empirical occupancy of state k at step t − mean over learners of their marginal p(s_t = k) = π₀Aᵗ⁻¹|, over
    /// <paramref name="sessionsPerLearner"/> fresh state-only sessions of each learner's chain.
    /// </summary>
    static double OccupancyError(IReadOnlyList<SimulatedLearner> learners, int steps, int sessionsPerLearner, int seed)
    {
        int k = BehaviourSimulator.StateCount;
        var expected = new double[steps, k];
        var observed = new double[steps, k];
        var rng = new Random(seed + 7919);
        foreach (var l in learners)
        {
            var marginal = l.Parameters.Model.Marginals(steps);
            for (int s = 0; s < sessionsPerLearner; s++)
            {
                var states = BehaviourSimulator.SimulateStates(l.Parameters.Model, steps, rng);
                for (int t = 0; t < steps; t++)
                {
                    observed[t, (int)states[t]]++;
                    for (int j = 0; j < k; j++) expected[t, j] += marginal[t][j];
                }
            }
        }
        double sessions = learners.Count * (double)sessionsPerLearner, worst = 0;
        for (int t = 0; t < steps; t++) for (int j = 0; j < k; j++) worst = Math.Max(worst, Math.Abs(observed[t, j] - expected[t, j]) / sessions);
        return worst;
    }
}

/// <summary>Forest accuracy when each 30-s window is described by the features of a longer window (or the whole day).</summary>
public sealed record WindowAccuracy(string Window, double Seconds, double Accuracy, bool IsDay);

/// <summary>One session's true state, the forest's (grouped out-of-fold) prediction and the Bayes (sequence) prediction per window.</summary>
public sealed record Timeline(int[] Truth, int[] Forest, int[] Bayes);

/// <summary>The method's identities: posteriors sum to 1, forward–backward = brute force, occupancy = the chain's marginals, folds disjoint.</summary>
public sealed record AttentionGuardExactness(double PosteriorSumError, double TwinPosteriorError, double TwinLogLikelihoodError, int TwinSteps,
    double OccupancyError, bool FoldsShareLearner, double ArgMaxAgreement);
