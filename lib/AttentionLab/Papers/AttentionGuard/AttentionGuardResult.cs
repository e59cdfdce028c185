using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.AttentionGuard;

/// <summary>Everything <see cref="AttentionGuardExperiment.Run"/> measured, its tables, plot series and claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Truth">True state per 30-s window (learner, session, step order).</param>
/// <param name="ForestGrouped">Forest predictions, out of fold, folds grouped by learner.</param>
/// <param name="ForestRandom">Forest predictions, out of fold, folds drawn at random over windows (leaky).</param>
/// <param name="Majority">The training folds' majority class, grouped folds.</param>
/// <param name="BayesSequence">Arg-max of the true HMM's forward–backward posterior over the whole session.</param>
/// <param name="BayesWindow">Arg-max of the true HMM's one-window posterior p(s_t | o_t).</param>
/// <param name="Profiles">Each window's learner profile.</param>
/// <param name="Sweep">Forest accuracy vs window length on one grouped hold-out fold (the last entry is the whole day).</param>
/// <param name="OuladDailyAccuracy">The same hold-out with OULAD's daily clicks per activity type as the only features.</param>
/// <param name="MajorityHoldout">Majority class on that hold-out.</param>
/// <param name="ForestOnRules">Forest accuracy at recovering rule-derived labels (grouped hold-out).</param>
/// <param name="RulesVsTruth">Agreement of the rule-derived labels with the true states.</param>
/// <param name="RuleConfusion">Rule label vs true state counts [true, rule].</param>
/// <param name="Exactness">The identities.</param>
/// <param name="Timeline">One session: true, forest and Bayes states.</param>
/// <param name="OuladSample">studentVle rows of the first learners (OULAD's schema).</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record AttentionGuardResult(AttentionGuardExperiment.Config Config, int[] Truth, int[] ForestGrouped, int[] ForestRandom, int[] Majority,
    int[] BayesSequence, int[] BayesWindow, LearnerProfile[] Profiles, IReadOnlyList<WindowAccuracy> Sweep, double OuladDailyAccuracy,
    double MajorityHoldout, double ForestOnRules, double RulesVsTruth, double[,] RuleConfusion, AttentionGuardExactness Exactness, Timeline Timeline,
    DataFrame OuladSample, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Spec §6: the forest may exceed the Bayes accuracy by at most this (sampling noise).</summary>
    public const double CeilingSlack = 0.02;
    /// <summary>Spec §6: rule-derived labels are recovered at least this well.</summary>
    public const double RuleRecovery = 0.95;
    /// <summary>Spec §6: simulated occupancy within this of the chain's marginals.</summary>
    public const double OccupancyTolerance = 0.02;

    /// <summary>State names in index order.</summary>
    public static IReadOnlyList<string> StateNames { get; } = Enum.GetNames<AttentionState>();

    public double ForestGroupedAccuracy => AttentionGuardExperiment.Accuracy(ForestGrouped, Truth);
    public double ForestRandomAccuracy => AttentionGuardExperiment.Accuracy(ForestRandom, Truth);
    public double MajorityAccuracy => AttentionGuardExperiment.Accuracy(Majority, Truth);
    public double BayesSequenceAccuracy => AttentionGuardExperiment.Accuracy(BayesSequence, Truth);
    public double BayesWindowAccuracy => AttentionGuardExperiment.Accuracy(BayesWindow, Truth);
    /// <summary>Cohen's κ of the forest (grouped) against the true state.</summary>
    public double ForestKappa => AttentionGuardExperiment.Kappa(AttentionGuardExperiment.Confusion(ForestGrouped, Truth, StateNames.Count));
    /// <summary>The 30-s entry of the sweep.</summary>
    public WindowAccuracy ThirtySeconds => Sweep.First(w => !w.IsDay && Math.Abs(w.Seconds - 30) < 1e-9);
    /// <summary>The whole-day entry of the sweep.</summary>
    public WindowAccuracy Day => Sweep.Last(w => w.IsDay);

    /// <summary>Confusion matrix of <paramref name="predicted"/>, each row normalised to the share of that true state.</summary>
    public double[][] ConfusionRows(int[] predicted)
    {
        var c = AttentionGuardExperiment.Confusion(predicted, Truth, StateNames.Count);
        return Enumerable.Range(0, StateNames.Count).Select(i =>
        {
            double total = Enumerable.Range(0, StateNames.Count).Sum(j => c[i, j]);
            return Enumerable.Range(0, StateNames.Count).Select(j => total > 0 ? c[i, j] / total : double.NaN).ToArray();
        }).ToArray();
    }

    /// <summary>Confusion counts as a DataFrame: one row per true state, one column per predicted state.</summary>
    public DataFrame ConfusionFrame(int[] predicted)
    {
        var c = AttentionGuardExperiment.Confusion(predicted, Truth, StateNames.Count);
        var columns = new List<DataFrameColumn> { new StringDataFrameColumn("true \\ predicted", StateNames) };
        for (int j = 0; j < StateNames.Count; j++)
            columns.Add(new Int32DataFrameColumn(StateNames[j], Enumerable.Range(0, StateNames.Count).Select(i => (int)c[i, j])));
        return new DataFrame(columns);
    }

    /// <summary>Minimum dwell of the hysteresis policy in the flicker table.</summary>
    public const int PolicyDwell = 2;

    /// <summary>
    /// The adaptation policy on each session's forest predictions: UI pattern changes per session without hysteresis and
    /// with a <see cref="PolicyDwell"/>-window minimum dwell, beside the changes the true states would cause, and the
    /// share of windows whose shown pattern matches the true state's.
    /// </summary>
    public DataFrame PolicyFrame()
    {
        int steps = Config.StepsPerDay, sessions = Truth.Length / steps;
        var rows = new (string Name, int[] States, int Dwell)[]
            { ("true states", Truth, 1), ("forest, no hysteresis", ForestGrouped, 1), ($"forest, dwell {PolicyDwell}", ForestGrouped, PolicyDwell) };
        var switches = new List<double>();
        var match = new List<double>();
        foreach (var (_, states, dwell) in rows)
        {
            var policy = new AdaptationPolicy(dwell);
            double total = 0, right = 0;
            for (int s = 0; s < sessions; s++)
            {
                var shown = policy.Apply(states.Skip(s * steps).Take(steps).Select(x => (AttentionState)x).ToArray());
                total += AdaptationPolicy.Switches(shown);
                right += shown.Where((p, t) => p == AdaptationPolicy.PatternOf((AttentionState)Truth[s * steps + t])).Count();
            }
            switches.Add(Math.Round(total / sessions, 3));
            match.Add(Math.Round(right / Truth.Length, 4));
        }
        return new DataFrame(
            new StringDataFrameColumn("pattern from", rows.Select(r => r.Name)),
            new DoubleDataFrameColumn("UI switches per session", switches),
            new DoubleDataFrameColumn("windows with the true state's pattern", match));
    }

    /// <summary>Metrics: model, split, accuracy, κ (spec §5 bars: forest / HMM-Bayes / majority under random vs grouped splits).</summary>
    public DataFrame ToDataFrame()
    {
        var rows = new (string Model, string Split, int[] Predicted)[]
        {
            ("forest", "grouped by learner", ForestGrouped), ("forest", "random windows", ForestRandom), ("majority class", "grouped by learner", Majority),
            ("Bayes, one window (true HMM)", "no training", BayesWindow), ("Bayes, whole session (true HMM)", "no training", BayesSequence),
        };
        return new DataFrame(
            new StringDataFrameColumn("model", rows.Select(r => r.Model)),
            new StringDataFrameColumn("split", rows.Select(r => r.Split)),
            new DoubleDataFrameColumn("accuracy", rows.Select(r => Math.Round(AttentionGuardExperiment.Accuracy(r.Predicted, Truth), 4))),
            new DoubleDataFrameColumn("kappa", rows.Select(r => Math.Round(
                AttentionGuardExperiment.Kappa(AttentionGuardExperiment.Confusion(r.Predicted, Truth, StateNames.Count)), 4))));
    }

    /// <summary>Per-profile accuracy of the forest (grouped) and of the Bayes ceilings, with the profile's state shares.</summary>
    public DataFrame ProfileFrame()
    {
        var profiles = Enum.GetValues<LearnerProfile>();
        double Acc(int[] p, LearnerProfile profile)
        {
            var idx = Enumerable.Range(0, Truth.Length).Where(i => Profiles[i] == profile).ToArray();
            return Math.Round(idx.Count(i => p[i] == Truth[i]) / (double)idx.Length, 4);
        }
        var frame = new DataFrame(
            new StringDataFrameColumn("profile", profiles.Select(p => p.ToString())),
            new DoubleDataFrameColumn("forest (grouped)", profiles.Select(p => Acc(ForestGrouped, p))),
            new DoubleDataFrameColumn("Bayes one window", profiles.Select(p => Acc(BayesWindow, p))),
            new DoubleDataFrameColumn("Bayes whole session", profiles.Select(p => Acc(BayesSequence, p))));
        for (int s = 0; s < StateNames.Count; s++)
        {
            int state = s;
            frame.Columns.Add(new DoubleDataFrameColumn($"share {StateNames[s]}", profiles.Select(p =>
            {
                var idx = Enumerable.Range(0, Truth.Length).Where(i => Profiles[i] == p).ToArray();
                return Math.Round(idx.Count(i => Truth[i] == state) / (double)idx.Length, 4);
            })));
        }
        return frame;
    }

    /// <summary>The aggregation sweep: window, seconds, forest accuracy (hold-out), plus OULAD's daily clicks and the majority class.</summary>
    public DataFrame SweepFrame() => new(
        new StringDataFrameColumn("features from", Sweep.Select(w => w.Window).Append("OULAD daily clicks per activity").Append("majority class")),
        new DoubleDataFrameColumn("window seconds", Sweep.Select(w => w.Seconds).Append(Day.Seconds).Append(double.NaN)),
        new DoubleDataFrameColumn("forest accuracy", Sweep.Select(w => Math.Round(w.Accuracy, 4)).Append(Math.Round(OuladDailyAccuracy, 4))
            .Append(Math.Round(MajorityHoldout, 4))));

    /// <summary>
    /// The claims: the HMM identities and its brute-force twin; the forest's gap to the Bayes ceiling; grouped vs random
    /// split; aggregation toward chance; rule-derived labels; the paper's numbers as not reproducible offline.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(AttentionGuardExperiment.Paper.Number, Config.Size);
        var x = Exactness;
        claims.Exactness("posteriors-sum-to-one", "forward–backward posteriors sum to 1 at every window",
            $"max |Σ_k γ_t(k) − 1| = {x.PosteriorSumError:E1}", "≤ 1e-12 (spec §6)", x.PosteriorSumError <= 1e-12);
        claims.Exactness("forward-backward-twin", "scaled forward–backward equals brute-force enumeration over all state paths",
            $"{x.TwinSteps} windows (4^{x.TwinSteps} paths): max |Δγ| = {x.TwinPosteriorError:E1}, |Δ log p(o)| = {x.TwinLogLikelihoodError:E1}",
            "both ≤ 1e-9", x.TwinPosteriorError <= 1e-9 && x.TwinLogLikelihoodError <= 1e-9);
        claims.Exactness("grouped-folds-disjoint", "grouped folds never share a learner",
            x.FoldsShareLearner ? "a learner sits in a training and a test fold" : $"{Config.Folds} folds, no learner in both", "no shared learner (spec §6)",
            !x.FoldsShareLearner);
        claims.Exactness("forest-argmax", "our arg-max over the one-vs-rest scores equals ML.NET's PredictedLabel",
            $"{x.ArgMaxAgreement:P2} of windows agree", "100 %", x.ArgMaxAgreement == 1, "—");
        claims.Claim("occupancy-matches-chain", "simulated state occupancy matches the HMM's state distribution",
            "—", $"max over windows and states |empirical − π₀Aᵗ| = {x.OccupancyError:F4} " +
            $"({AttentionGuardExperiment.OccupancySessions} state-only sessions per learner)", $"≤ {OccupancyTolerance} (spec §6)",
            x.OccupancyError <= OccupancyTolerance, asserted: true,
            deviation: "sessions start from π₀, so the reference is the chain's marginal at each window (π₀Aᵗ, averaged over learners) rather than " +
                       "the stationary distribution; the stationary one is checked in the unit tests on long sequences");

        double gap = BayesWindowAccuracy - ForestGroupedAccuracy;
        claims.Claim("forest-below-bayes-ceiling", "a random forest on 30-s features classifies the four attention states (toy: its gap to the Bayes ceiling)",
            "87.3 % on OULAD (abstract)", $"forest {ForestGroupedAccuracy:P1} (κ {ForestKappa:F2}); Bayes ceiling {BayesWindowAccuracy:P1} one window, " +
            $"{BayesSequenceAccuracy:P1} whole session; gap {gap * 100:F1} points; majority {MajorityAccuracy:P1}",
            $"forest ≤ Bayes (one window) + {CeilingSlack} (spec §6)", ForestGroupedAccuracy <= BayesWindowAccuracy + CeilingSlack, asserted: true,
            note: "accuracy is a property of the simulator's state overlap: the ceiling, not 87 %, is what a classifier can reach here");
        double leak = ForestRandomAccuracy - ForestGroupedAccuracy;
        claims.Claim("random-split-leaks", "random window splits overstate accuracy against learner-grouped splits",
            "— (the paper's split is not reported)",
            $"random {ForestRandomAccuracy:P1} vs grouped {ForestGroupedAccuracy:P1}: gap {leak * 100:+0.0;-0.0} points",
            "random > grouped (spec §4c)", leak > 0, asserted: false,
            note: "the gap comes from learner random effects the forest can memorise across folds; its size depends on the seed");
        double toward = (ThirtySeconds.Accuracy - Day.Accuracy) / Math.Max(ThirtySeconds.Accuracy - MajorityHoldout, 1e-12);
        claims.Claim("daily-aggregation-toward-chance", "daily aggregates (OULAD's granularity) cannot carry 30-s attention states",
            "87.3 % claimed from OULAD's daily click sums", $"30 s {ThirtySeconds.Accuracy:P1} → whole day {Day.Accuracy:P1} " +
            $"(OULAD daily clicks {OuladDailyAccuracy:P1}); majority {MajorityHoldout:P1}; {toward:P0} of the way to the majority class",
            "daily-aggregate accuracy < window accuracy (spec §6)", Day.Accuracy < ThirtySeconds.Accuracy && OuladDailyAccuracy < ThirtySeconds.Accuracy,
            asserted: true);
        claims.Claim("rule-labels-circular", "labels derived by rules from the forest's own features are recovered almost perfectly (circular accuracy)",
            "87.3 % on rule-derived OULAD labels", $"forest recovers the rule {ForestOnRules:P1}; the rule matches the true state {RulesVsTruth:P1}",
            $"forest on rule labels ≥ {RuleRecovery} (spec §6)", ForestOnRules >= RuleRecovery, asserted: true);
        const string offline = "needs labelled attention data or human participants; nothing offline can reproduce it";
        claims.NotShown("hyperaktiv-auc", "state classification on HYPERAKTIV", "AUC 0.81, r = 0.47 (secondary summaries)", "—", "—", offline);
        claims.NotShown("wizard-agreement", "agreement with a Wizard-of-Oz observer", "84 % agreement, κ = 0.71",
            $"our forest's κ vs the simulator: {ForestKappa:F2} " +
            "(not comparable)", "—", offline);
        claims.NotShown("user-study", "adaptive UI lowers workload and raises comprehension",
            "NASA-TLX 47.2 vs 62.8 (d = 1.21); comprehension 78.4 % vs 61.2 %", "—", "—", offline);
        claims.Reported("run-time", "run time of the whole experiment", "—", $"{Seconds:F1} s", "< 60 s at smoke (notebook budget)", Seconds < 60);

        claims.Saw($"On {Truth.Length:N0} simulated 30-s windows the forest reached {ForestGroupedAccuracy:P1} under learner-grouped folds, " +
                   $"{gap * 100:F1} points below the one-window Bayes ceiling ({BayesWindowAccuracy:P1}); using the whole session the true HMM reaches " +
                   $"{BayesSequenceAccuracy:P1}. The majority class gets {MajorityAccuracy:P1}.");
        claims.Saw($"Random window splits gave {ForestRandomAccuracy:P1}, {leak * 100:+0.0;-0.0} points against grouped splits.");
        claims.Saw($"Describing each window by its whole day's features gave {Day.Accuracy:P1}, OULAD's daily clicks {OuladDailyAccuracy:P1}, " +
                   $"against {ThirtySeconds.Accuracy:P1} from 30-s windows and {MajorityHoldout:P1} for the majority class.");
        var policy = PolicyFrame();
        claims.Saw($"The interface would switch {policy["UI switches per session"][1]:F1} times per session on raw forest predictions, " +
                   $"{policy["UI switches per session"][2]:F1} with a {PolicyDwell}-window minimum dwell, against {policy["UI switches per session"][0]:F1} " +
                   "for the true states.");
        claims.Saw($"Rule-derived labels were recovered {ForestOnRules:P1} of the time, although the rule agrees with the true state only " +
                   $"{RulesVsTruth:P1} of the time.");
        return claims;
    }
}
