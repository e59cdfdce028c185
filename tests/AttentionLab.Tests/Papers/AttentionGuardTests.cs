using AttentionLab.Core;
using AttentionLab.Papers.AttentionGuard;
using MathNet.Numerics.LinearAlgebra;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>P30 AttentionGuard: features and the HMM on hand-worked cases, forward–backward vs brute force, the forest, bad input, the smoke run.</summary>
public class AttentionGuardTests(ITestOutputHelper output)
{
    [Fact]
    public void FastForestNativeLoadsAndLearnsFourClasses()
    {
        Assert.True(System.Runtime.InteropServices.NativeLibrary.TryLoad("FastTreeNative",
            typeof(Microsoft.ML.Trainers.FastTree.FastForestBinaryTrainer).Assembly, null, out var handle), "libFastTreeNative did not load");
        Assert.NotEqual(IntPtr.Zero, handle);
        var rng = new Random(1);
        var x = Enumerable.Range(0, 400).Select(i => new[] { (i % 4) * 2.0 + rng.NextDouble(), rng.NextDouble() }).ToArray();
        var y = Enumerable.Range(0, 400).Select(i => i % 4).ToArray();
        var forest = ForestClassifier.Fit(x, y, 4, new ForestClassifier.Options(Trees: 20));
        var test = Enumerable.Range(0, 400).Select(i => new[] { (i % 4) * 2.0 + rng.NextDouble(), rng.NextDouble() }).ToArray();
        var predicted = forest.Predict(test);
        Assert.Equal(forest.PredictedByMlNet(test), predicted);                   // our arg-max = ML.NET's PredictedLabel
        Assert.True(predicted.Where((p, i) => p == y[i]).Count() >= 380, $"{predicted.Where((p, i) => p == y[i]).Count()} / 400 right");
        Assert.All(Enumerable.Range(0, 4), c => Assert.Contains(c, predicted));  // every class's forest was trained
    }

    static EventStream HandStream() => new(0, 0, 30,
    [
        new(1, EventKind.Click), new(2, EventKind.Scroll, 100), new(10, EventKind.Scroll, 300), new(20, EventKind.TabSwitch),
        new(21, EventKind.Answer, 4, Error: true), new(22, EventKind.Answer, 6),
    ], []);

    [Fact]
    public void FeaturesMatchAHandWorkedWindow()
    {
        var f = WindowFeaturizer.Featurize(HandStream(), TimeSpan.FromSeconds(30));
        Assert.Single(f);
        double[] gaps = [1, 1, 8, 10, 1, 1, 8];                                   // 0 → 1 → 2 → 10 → 20 → 21 → 22 → 30
        double mean = 30.0 / 7, sd = Math.Sqrt(gaps.Sum(g => (g - mean) * (g - mean)) / 7);
        double[] expected = [6 / 30.0, mean, sd / mean, 26 / 30.0, 200, 10_000, 0, 2, 20, 5, 0.5, 4, 0];
        Assert.Equal(WindowFeaturizer.Names.Count, f[0].Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - f[0][i]) < 1e-12, $"{WindowFeaturizer.Names[i]}: {f[0][i]} ≠ {expected[i]}");
    }

    [Fact]
    public void ShortLastWindowKeepsItsTrueLength()
    {
        var f = WindowFeaturizer.Featurize(HandStream(), TimeSpan.FromSeconds(20));
        Assert.Equal(2, f.Length);
        // [20, 30): tab switch at 20, answers at 21 and 22 → 3 events over 10 s; gaps 0, 1, 1, 8; dwell 10 s after the switch.
        Assert.Equal(0.3, f[1][0], 12);
        Assert.Equal(0.8, f[1][3], 12);
        Assert.Equal(10, f[1][8], 12);
        Assert.Equal(6, f[1][7], 12);                                            // 1 switch in 1/6 min
        Assert.Equal(20, f[1][WindowFeaturizer.TimeOnTask], 12);
        // An empty window: one gap of the whole window, all idle, dwell = window.
        var empty = WindowFeaturizer.Featurize(new EventStream(0, 0, 30, [], []), TimeSpan.FromSeconds(30))[0];
        Assert.Equal([0, 30, 0, 1, 0, 0, 0, 0, 30, 0, 0, 0, 0], empty);
    }

    [Fact]
    public void LearnerZScoresHaveZeroMeanUnitSdAndSkipTimeOnTask()
    {
        var windows = new[] { new double[] { 1, 5, 0 }, [3, 5, 30], [5, 5, 60] };
        var z = WindowFeaturizer.LearnerZScores(windows.Select(w => w.Concat(new double[10]).ToArray()).Select(w =>
        {
            var full = new double[WindowFeaturizer.Names.Count];
            full[0] = w[0]; full[1] = w[1]; full[WindowFeaturizer.TimeOnTask] = w[2];
            return full;
        }).ToList());
        double s = Math.Sqrt(8.0 / 3);
        Assert.Equal([-2 / s, 0, 2 / s], z.Select(r => r[0]).ToArray(), (a, b) => Math.Abs(a - b) < 1e-12);
        Assert.All(z, r => Assert.Equal(0, r[1]));                                 // constant feature → 0, not NaN
        Assert.All(z, r => Assert.Equal(WindowFeaturizer.Names.Count - 1, r.Length));
    }

    [Fact]
    public void ForwardBackwardMatchesAHandWorkedTwoStepCase()
    {
        var hmm = new Hmm([0.5, 0.5], new[,] { { 0.9, 0.1 }, { 0.2, 0.8 } });
        var log = new[] { new[] { Math.Log(0.6), Math.Log(0.2) }, new[] { Math.Log(0.3), Math.Log(0.7) } };
        var (gamma, logLik) = hmm.Posteriors(log);
        // p(o) = .5·.6·(.9·.3 + .1·.7) + .5·.2·(.2·.3 + .8·.7) = .102 + .062 = .164
        Assert.Equal(Math.Log(0.164), logLik, 12);
        Assert.Equal(0.102 / 0.164, gamma[0][0], 12);
        Assert.Equal((0.081 + 0.006) / 0.164, gamma[1][0], 12);                   // paths ending in state 0
        var single = hmm.SingleStepPosteriors(log);
        Assert.Equal(0.5 * 0.6 / (0.5 * 0.6 + 0.5 * 0.2), single[0][0], 12);
        Assert.Equal(0.55 * 0.3 / (0.55 * 0.3 + 0.45 * 0.7), single[1][0], 12);    // p(s_2) = π A = [.55, .45]
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 6)]
    [InlineData(2, 1)]
    [InlineData(3, 7)]
    [InlineData(4, 5)]
    [InlineData(5, 4)]
    public void ForwardBackwardMatchesBruteForceOverAwkwardShapes(int states, int steps)
    {
        var rng = new Random(states * 31 + steps);
        for (int trial = 0; trial < 5; trial++)
        {
            var initial = RandomDistribution(states, rng, allowZero: trial % 2 == 0);
            var a = new double[states, states];
            for (int i = 0; i < states; i++) { var row = RandomDistribution(states, rng, allowZero: true); for (int j = 0; j < states; j++) a[i, j] = row[j]; }
            var hmm = new Hmm(initial, a);
            var log = Enumerable.Range(0, steps).Select(_ => Enumerable.Range(0, states)
                .Select(_ => rng.NextDouble() < 0.1 ? -800 - 50 * rng.NextDouble() : -60 * rng.NextDouble()).ToArray()).ToList();
            double[][] fast; double fastLik;
            try { (fast, fastLik) = hmm.Posteriors(log); }
            catch (ArgumentException) { Assert.Throws<ArgumentException>(() => HmmNaive.Posteriors(hmm, log)); continue; }
            var (slow, slowLik) = HmmNaive.Posteriors(hmm, log);
            Assert.True(Math.Abs(fastLik - slowLik) < 1e-9 * Math.Max(1, Math.Abs(slowLik)), $"log-likelihood {fastLik} vs {slowLik}");
            for (int t = 0; t < steps; t++)
            {
                Assert.Equal(1, fast[t].Sum(), 12);
                for (int k = 0; k < states; k++) Assert.True(Math.Abs(fast[t][k] - slow[t][k]) < 1e-9, $"γ[{t}][{k}] {fast[t][k]} vs {slow[t][k]}");
            }
        }
    }

    static double[] RandomDistribution(int n, Random rng, bool allowZero)
    {
        var p = Enumerable.Range(0, n).Select(_ => allowZero && n > 1 && rng.NextDouble() < 0.25 ? 0 : rng.NextDouble() + 0.01).ToArray();
        if (p.Sum() == 0) p[0] = 1;
        double s = p.Sum();
        return p.Select(x => x / s).ToArray();
    }

    [Fact]
    public void MarginalsAndStationaryAgreeWithMathNet()
    {
        var a = BehaviourSimulator.ProfileTransition(LearnerProfile.AdhdLike);
        var hmm = new Hmm(BehaviourSimulator.InitialDistribution, a);
        var m = Matrix<double>.Build.DenseOfArray(a);
        var pi = Vector<double>.Build.DenseOfArray(BehaviourSimulator.InitialDistribution);
        var marginals = hmm.Marginals(9);
        Assert.Equal((pi * m.Power(8)).ToArray(), marginals[8], (x, y) => Math.Abs(x - y) < 1e-12);
        var evd = m.Transpose().Evd();                                              // left eigenvector for eigenvalue 1
        int one = Enumerable.Range(0, 4).MinBy(i => (evd.EigenValues[i] - 1).Magnitude);
        var v = evd.EigenVectors.Column(one);
        v /= v.Sum();
        Assert.Equal(v.ToArray(), hmm.Stationary(), (x, y) => Math.Abs(x - y) < 1e-9);
    }

    [Fact]
    public void SimulatedOccupancyMatchesTheStationaryDistribution()
    {
        foreach (var profile in Enum.GetValues<LearnerProfile>())
        {
            var hmm = new Hmm(BehaviourSimulator.InitialDistribution, BehaviourSimulator.ProfileTransition(profile));
            var rng = new Random(5);
            var counts = new double[4];
            int total = 0;
            for (int s = 0; s < 100; s++)
                foreach (var state in BehaviourSimulator.SimulateStates(hmm, 10_000, rng).Skip(200)) { counts[(int)state]++; total++; }
            var stationary = hmm.Stationary();
            for (int k = 0; k < 4; k++)
                Assert.True(Math.Abs(counts[k] / total - stationary[k]) < 0.02, $"{profile} state {k}: {counts[k] / total} vs {stationary[k]}");
        }
    }

    [Fact]
    public void EmissionLikelihoodMatchesAHandWorkedWindow()
    {
        var learner = BehaviourSimulator.Simulate(new BehaviourSimulator.Options(1, 1, 2, Seed: 3))[0].Parameters;
        var e = BehaviourSimulator.DefaultEmissions;
        double rho = learner.RateFactor;
        var empty = learner.LogEmission([], 30);
        for (int k = 0; k < 4; k++) Assert.Equal(-e[k].Rate * rho * 30, empty[k], 12);                      // p(N = 0) = e^{−λρW}
        var click = learner.LogEmission([new InteractionEvent(3, EventKind.Click)], 30);
        for (int k = 0; k < 4; k++) Assert.Equal(Math.Log(e[k].Rate * rho) - e[k].Rate * rho * 30 + Math.Log(e[k].KindProbabilities[0]), click[k], 12);
        var answer = learner.LogEmission([new InteractionEvent(3, EventKind.Answer, 8, Error: true)], 30);
        for (int k = 0; k < 4; k++)
        {
            double mu = e[k].LatencyLogMean + Math.Log(learner.LatencyFactor), sigma = e[k].LatencyLogSd;
            double logNormal = -Math.Log(8 * sigma * Math.Sqrt(2 * Math.PI)) - Math.Pow(Math.Log(8) - mu, 2) / (2 * sigma * sigma);
            Assert.Equal(Math.Log(e[k].Rate * rho) - e[k].Rate * rho * 30 + Math.Log(e[k].KindProbabilities[5]) + Math.Log(e[k].ErrorRate) + logNormal,
                answer[k], 10);
        }
    }

    [Fact]
    public void GroupedFoldsNeverShareALearnerAndCoverEveryRow()
    {
        var groups = Enumerable.Range(0, 1000).Select(i => (i * 7) % 37).ToArray();
        var fold = GroupKFold.Assign(groups, 5, 3);
        foreach (var g in groups.Distinct()) Assert.Single(groups.Select((x, i) => (x, i)).Where(p => p.x == g).Select(p => fold[p.i]).Distinct());
        Assert.Equal(5, fold.Distinct().Count());
        var random = GroupKFold.AssignRandom(1000, 5, 3);
        Assert.All(Enumerable.Range(0, 5), f => Assert.Equal(200, random.Count(x => x == f)));
        Assert.Contains(groups.Distinct(), g => groups.Select((x, i) => (x, i)).Where(p => p.x == g).Select(p => random[p.i]).Distinct().Count() > 1);
    }

    [Fact]
    public void RulesAndKappaOnHandCases()
    {
        var f = new double[WindowFeaturizer.Names.Count];
        f[0] = 0.6; f[8] = 30;
        Assert.Equal(AttentionState.Hyperfocused, RuleLabeler.Label(f, 30));
        f[7] = 6;
        Assert.Equal(AttentionState.Drifting, RuleLabeler.Label(f, 30));
        f[7] = 0; f[0] = 0.1; f[WindowFeaturizer.TimeOnTask] = 300;
        Assert.Equal(AttentionState.Fatigued, RuleLabeler.Label(f, 30));
        f[WindowFeaturizer.TimeOnTask] = 0;
        Assert.Equal(AttentionState.Focused, RuleLabeler.Label(f, 30));
        // κ: p_o = .7, p_e = (25·30 + 25·20) / 50² = .5 → κ = .4
        Assert.Equal(0.4, AttentionGuardExperiment.Kappa(new double[,] { { 20, 5 }, { 10, 15 } }), 12);
    }

    [Fact]
    public void AdaptationPolicyWaitsForTheMinimumDwell()
    {
        AttentionState F = AttentionState.Focused, D = AttentionState.Drifting, T = AttentionState.Fatigued;
        AttentionState[] predicted = [F, F, D, F, F, D, D, D, T, D];
        var raw = new AdaptationPolicy(1).Apply(predicted);
        Assert.Equal(predicted.Select(AdaptationPolicy.PatternOf), raw);
        var held = new AdaptationPolicy(2).Apply(predicted);
        // The lone D at 2 is ignored; the D run from 5 switches at 6; the lone T at 8 is ignored.
        var s = UiPattern.Standard; var m = UiPattern.MoreStimulation;
        Assert.Equal([s, s, s, s, s, s, m, m, m, m], held);
        Assert.Equal(1, AdaptationPolicy.Switches(held));
        Assert.Equal(5, AdaptationPolicy.Switches(raw));                         // F→D, D→F, F→D, D→T, T→D
        Assert.Equal("minimumDwell", Assert.Throws<ArgumentException>(() => new AdaptationPolicy(0)).ParamName);
        Assert.Equal("predicted", Assert.Throws<ArgumentException>(() => new AdaptationPolicy(2).Apply([])).ParamName);
    }

    [Fact]
    public void BadInputFailsWithArgumentExceptions()
    {
        var hmm = new Hmm([0.5, 0.5], new[,] { { 0.9, 0.1 }, { 0.2, 0.8 } });
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => hmm.Posteriors([])).Message);
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => hmm.Posteriors([[double.NaN, 0]])).Message);
        Assert.Contains("3 emission", Assert.Throws<ArgumentException>(() => hmm.Posteriors([[0, 0, 0]])).Message);
        Assert.Throws<ArgumentException>(() => hmm.SingleStepPosteriors([]));
        Assert.Throws<ArgumentException>(() => hmm.Posteriors([[double.NegativeInfinity, double.NegativeInfinity]]));
        Assert.Equal("transition", Assert.Throws<ArgumentException>(() => new Hmm([0.5, 0.5], new double[3, 3])).ParamName);
        Assert.Equal("initial", Assert.Throws<ArgumentException>(() => new Hmm([], new double[0, 0])).ParamName);
        Assert.Equal("initial", Assert.Throws<ArgumentException>(() => new Hmm([0.5, double.NaN], new[,] { { 1.0, 0 }, { 0, 1 } })).ParamName);
        Assert.Throws<ArgumentException>(() => new Hmm([0.5, 0.5], new[,] { { 0.5, 0.4 }, { 0, 1 } }));
        Assert.Throws<ArgumentException>(() => HmmNaive.Posteriors(hmm, Enumerable.Repeat(new double[2], 11).ToList()));
        Assert.Throws<ArgumentException>(() => hmm.Marginals(0));

        Assert.Equal("window", Assert.Throws<ArgumentException>(() => WindowFeaturizer.Featurize(HandStream(), TimeSpan.Zero)).ParamName);
        Assert.Equal("window", Assert.Throws<ArgumentException>(() => WindowFeaturizer.Featurize(HandStream(), TimeSpan.FromSeconds(-5))).ParamName);
        Assert.Equal("stream", Assert.Throws<ArgumentException>(() =>
            WindowFeaturizer.Featurize(new EventStream(0, 0, 30, [new(double.NaN, EventKind.Click)], []), TimeSpan.FromSeconds(30))).ParamName);
        Assert.Throws<ArgumentException>(() => WindowFeaturizer.Featurize(new EventStream(0, 0, 30, [new(5, EventKind.Click), new(2, EventKind.Key)], []),
            TimeSpan.FromSeconds(30)));
        Assert.Throws<ArgumentException>(() => WindowFeaturizer.Featurize(new EventStream(0, 0, 30, [new(5, EventKind.Scroll, double.NaN)], []),
            TimeSpan.FromSeconds(30)));
        Assert.Throws<ArgumentException>(() => WindowFeaturizer.Featurize(new EventStream(0, 0, double.NaN, [], []), TimeSpan.FromSeconds(30)));
        Assert.Throws<ArgumentException>(() => WindowFeaturizer.LearnerZScores([]));
        Assert.Throws<ArgumentException>(() => WindowFeaturizer.LearnerZScores([[1, double.NaN]]));

        Assert.Equal("options", Assert.Throws<ArgumentException>(() => BehaviourSimulator.Simulate(new BehaviourSimulator.Options(0, 1, 1))).ParamName);
        Assert.Equal("emissions", Assert.Throws<ArgumentException>(() =>
            BehaviourSimulator.Simulate(new BehaviourSimulator.Options(1, 1, 1), BehaviourSimulator.DefaultEmissions.Take(3).ToList())).ParamName);
        var learner = BehaviourSimulator.Simulate(new BehaviourSimulator.Options(1, 1, 1))[0].Parameters;
        Assert.Equal("seconds", Assert.Throws<ArgumentException>(() => learner.LogEmission([], 0)).ParamName);

        double[][] x = [[0, 1], [1, 0]];
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => ForestClassifier.Fit([[0, double.NaN], [1, 0]], [0, 1], 2)).ParamName);
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => ForestClassifier.Fit(x, [0, 2], 2)).ParamName);
        Assert.Equal("classes", Assert.Throws<ArgumentException>(() => ForestClassifier.Fit(x, [0, 0], 1)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => ForestClassifier.Fit([], [], 2)).ParamName);
        Assert.Equal("folds", Assert.Throws<ArgumentException>(() => GroupKFold.Assign([1, 2, 3], 4, 0)).ParamName);
        Assert.Equal("groups", Assert.Throws<ArgumentException>(() => GroupKFold.Assign([], 2, 0)).ParamName);
        Assert.Equal("features", Assert.Throws<ArgumentException>(() => RuleLabeler.Label([double.NaN], 30)).ParamName);
        Assert.Equal("windowSeconds", Assert.Throws<ArgumentException>(() => RuleLabeler.Label(new double[13], 0)).ParamName);
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", AttentionGuardExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", AttentionGuardExperiment.Config.For(RunSize.Full).Size);
    }

    [Fact]
    public void SmokeRunHoldsItsAssertedClaims()
    {
        var result = AttentionGuardExperiment.Run(AttentionGuardExperiment.Config.Smoke, torch.CPU, new Progress<string>(output.WriteLine));
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        foreach (var p in result.PhaseSeconds) output.WriteLine($"{p.Key}: {p.Value:F2} s");
        Assert.Empty(claims.Failures);
        Assert.True(result.ForestGroupedAccuracy <= result.BayesSequenceAccuracy, "the whole-session Bayes ceiling must beat the forest");
        Assert.True(result.ForestGroupedAccuracy > result.MajorityAccuracy + 0.05, "the forest must beat the majority class");
        Assert.Equal(4, result.ConfusionFrame(result.ForestGrouped).Rows.Count);
        var policy = result.PolicyFrame();
        Assert.True((double)policy["UI switches per session"][2] <= (double)policy["UI switches per session"][1], "hysteresis cannot add switches");
        Assert.All(result.ConfusionRows(result.BayesSequence), row => Assert.Equal(1, row.Sum(), 9));
    }
}
