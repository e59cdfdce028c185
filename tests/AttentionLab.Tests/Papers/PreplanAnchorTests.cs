using AttentionLab.Core;
using AttentionLab.Papers.PreplanAnchor;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>P10: WAAD, FAI, critical tokens and GRPO credit against loop twins and hand-worked cases; the trace task; a tiny run.</summary>
public class PreplanAnchorTests
{
    static Tensor RandomCausal(long[] batch, int t, int seed)
    {
        var gen = new Generator((ulong)seed);
        var shape = batch.Append(t).Append(t).ToArray();
        var logits = torch.randn(shape, generator: gen, dtype: float64);
        return logits.masked_fill(torch.ones(t, t, dtype: ScalarType.Bool).tril().logical_not(), double.NegativeInfinity).softmax(-1);
    }

    static double[,] Slice(Tensor a)
    {
        int t = (int)a.size(-1);
        var d = a.contiguous().data<double>().ToArray();
        var m = new double[t, t];
        for (int i = 0; i < t; i++) for (int j = 0; j < t; j++) m[i, j] = d[i * t + j];
        return m;
    }

    [Theory]
    [InlineData(1, 3)]
    [InlineData(2, 1)]
    [InlineData(7, 3)]
    [InlineData(13, 10)]
    public void WaadAndFaiMatchTheirLoopsOverBatchedShapes(int t, int window)
    {
        var a = RandomCausal([2, 3], t, seed: t);
        var waad = AttentionRhythm.Waad(a, window);
        var faiOff = AttentionRhythm.Fai(a, excludeFirst: false);
        var faiOn = AttentionRhythm.Fai(a, excludeFirst: true);
        Assert.Equal(new long[] { 2, 3, t }, waad.shape);
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 3; h++)
            {
                var m = Slice(a[b, h]);
                AssertClose(PreplanAnchorNaive.Waad(m, window), waad[b, h].data<double>().ToArray());
                AssertClose(PreplanAnchorNaive.Fai(m, false), faiOff[b, h].data<double>().ToArray());
                AssertClose(PreplanAnchorNaive.Fai(m, true), faiOn[b, h].data<double>().ToArray());
            }
    }

    static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(double.IsNaN(expected[i]), double.IsNaN(actual[i]));
            if (!double.IsNaN(expected[i])) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-12, $"at {i}: {expected[i]} vs {actual[i]}");
        }
    }

    [Fact]
    public void TheSpecsIdentitiesHold()
    {
        var e = PreplanAnchorExperiment.Exactness(seed: 3);
        Assert.True(e.Max <= PreplanAnchorResult.Float32Tolerance, $"largest deviation {e.Max}");
        Assert.True(new[] { e.WaadTwin, e.FaiTwin, e.SelfOnlyWaad, e.ShiftWaad, e.ConstantColumnFai }.Max() <= PreplanAnchorResult.TwinTolerance);
    }

    [Fact]
    public void FaiDropsTheSinkColumnAndRenormalisesRows()
    {
        // Rows 1 and 2 put half their mass on the sink: removing it doubles what key 1 receives from row 2.
        var a = torch.tensor(new[,] { { 1.0, 0, 0 }, { 0.5, 0.5, 0 }, { 0.5, 0.25, 0.25 } });
        var fai = AttentionRhythm.Fai(a).data<double>().ToArray();
        Assert.True(double.IsNaN(fai[0]) && double.IsNaN(fai[2]));
        Assert.Equal(0.5, fai[1], 12);
        Assert.Equal(0.25, AttentionRhythm.Fai(a, excludeFirst: false).data<double>().ToArray()[1], 12);
        // A later row whose whole mass is on the sink contributes nothing (no division by zero): FAI_1 = (0 + 0.5/0.5) / 2.
        var allSink = torch.tensor(new[,] { { 1.0, 0, 0, 0 }, { 1.0, 0, 0, 0 }, { 1.0, 0, 0, 0 }, { 0.5, 0.5, 0, 0 } });
        Assert.Equal(0.5, AttentionRhythm.Fai(allSink).data<double>().ToArray()[1], 12);
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        var a = RandomCausal([], 5, seed: 1);
        a[3, 1] = torch.tensor(double.NaN);
        Assert.True(double.IsNaN(AttentionRhythm.Waad(a, 4)[3].item<double>()));
        Assert.True(double.IsNaN(AttentionRhythm.Fai(a)[1].item<double>()));
    }

    [Fact]
    public void CriticalTokensFollowTheirDefinitions()
    {
        // Response from position 2 (8 positions): WAAD jumps at 3 and 6; FAI largest at 4 then 7.
        var waad = torch.tensor(new[] { 0.0, 5, 1, 3, 3.5, 0, 2.5, 2 });
        var fai = torch.tensor(new[] { double.NaN, 0.9, 0.1, 0.2, 0.6, 0.1, 0.3, double.NaN });
        var set = AttentionRhythm.Critical(waad, fai, responseStart: 2, topQ: 0.3, waadJump: 1.0);
        Assert.Equal(new[] { 3, 6 }, Indices(set.Preplan));                                 // position 1's jump is in the prompt
        Assert.Equal(new[] { 4, 6 }, Indices(set.Anchor));                                  // ⌈0.3 · 6⌉ = 2 of the finite response FAIs
        Assert.Equal(new[] { 3, 4, 6 }, Indices(set.Coupled));                              // 3 → 4 (next is an anchor); 6 is both
        Assert.Empty(Indices(set.For(CreditStrategy.Uniform)));
    }

    static int[] Indices(bool[] flags) => flags.Select((f, i) => (f, i)).Where(x => x.f).Select(x => x.i).ToArray();

    [Fact]
    public void GrpoCreditWorksOnHandNumbers()
    {
        // One group of four: rewards 1, 0, 0, 1 → mean 0.5, std (n − 1) = 0.577…; equal rewards give zero advantages.
        var adv = Grpo.SequenceAdvantages(torch.tensor(new[] { 1f, 0, 0, 1, 1, 1, 1, 1 }), 4).data<float>().ToArray();
        double s = Math.Sqrt(1.0 / 3);
        Assert.Equal(0.5 / (s + Grpo.Epsilon), adv[0], 5);
        Assert.Equal(-0.5 / (s + Grpo.Epsilon), adv[1], 5);
        Assert.All(adv.Skip(4), x => Assert.Equal(0f, x));
        // Weights: flags on 1 of 4 tokens with γ = 1 → (2, 1, 1, 1) / 1.25.
        var w = Grpo.TokenWeights(torch.tensor(new[,] { { true, false, false, false } }), 1.0).data<float>().ToArray();
        Assert.Equal(new[] { 1.6f, 0.8f, 0.8f, 0.8f }, w.Select(x => MathF.Round(x, 5)).ToArray());
    }

    [Fact]
    public void TheLossGradientIsReinforceWithTokenAdvantagesAtRatioOne()
    {
        var logp = torch.tensor(new[,] { { -1.0, -2.0, -0.5 }, { -0.3, -1.2, -2.2 } }, requires_grad: true);
        var adv = torch.tensor(new[,] { { 0.7, -0.2, 1.1 }, { -0.4, 0.9, 0.3 } });
        var loss = Grpo.Loss(logp, logp.detach(), adv);
        loss.backward();
        var expected = adv.neg().div(6).data<double>().ToArray();                          // −Â_{i,t} / (N · n)
        var grad = logp.grad!.data<double>().ToArray();
        for (int i = 0; i < 6; i++) Assert.Equal(expected[i], grad[i], 12);
        Assert.Equal(-adv.mean().item<double>(), loss.item<double>(), 12);
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => AttentionRhythm.Waad(torch.zeros(3, 4), 2)).ParamName);
        Assert.Equal("window", Assert.ThrowsAny<ArgumentException>(() => AttentionRhythm.Waad(torch.zeros(3, 3), 0)).ParamName);
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => AttentionRhythm.Fai(torch.zeros(3))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => AttentionRhythm.ClassifyHeads(torch.zeros(1, 2), 2)).ParamName);
        var w = torch.zeros(5);
        Assert.Equal("responseStart", Assert.ThrowsAny<ArgumentException>(() => AttentionRhythm.Critical(w, w, 5, 0.1, 1)).ParamName);
        Assert.Equal("topQ", Assert.Throws<ArgumentException>(() => AttentionRhythm.Critical(w, w, 2, 0, 1)).ParamName);
        Assert.Equal("fai", Assert.Throws<ArgumentException>(() => AttentionRhythm.Critical(w, torch.zeros(4), 2, 0.1, 1)).ParamName);
        Assert.Equal("groupSize", Assert.Throws<ArgumentException>(() => Grpo.SequenceAdvantages(torch.zeros(6), 4)).ParamName);
        Assert.Equal("gamma", Assert.Throws<ArgumentException>(() => Grpo.TokenWeights(torch.zeros(2, 3), -1)).ParamName);
        Assert.Equal("tokenAdvantages", Assert.Throws<ArgumentException>(() => Grpo.Loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2))).ParamName);
        Assert.Equal("Numbers", Assert.Throws<ArgumentException>(() => new CountdownTrace(1).Validate()).ParamName);
        var smoke = PreplanAnchorExperiment.Config.Smoke;
        Assert.Equal("Strategies", Assert.Throws<ArgumentException>(() => (smoke with { Strategies = [CreditStrategy.Anchor] }).Validate()).ParamName);
        Assert.Equal("GroupSize", Assert.Throws<ArgumentException>(() => (smoke with { GroupSize = 1 }).Validate()).ParamName);
    }

    [Fact]
    public void TheTraceWritesEveryStepAndTheRewardReadsTheAnswer()
    {
        var task = new CountdownTrace(4);
        var trace = task.Trace(new[] { 3, 5, 7, 1 });
        long P = CountdownTrace.Plus, E = CountdownTrace.EqualsSign, S = CountdownTrace.Semicolon;
        Assert.Equal(new long[] { CountdownTrace.Bos, CountdownTrace.Question, 3, 5, 7, 1, CountdownTrace.Solve,
            3, P, 5, E, 8, S, 8, P, 7, E, 5, S, 5, P, 1, E, 6, S, CountdownTrace.Answer, 6 }, trace);
        Assert.Equal(task.Length, trace.Length);
        Assert.Equal(task.ResponseLength, task.Roles.Count);
        Assert.Equal(TraceRole.Result, task.Roles[4]);
        Assert.Equal(TraceRole.Plus, task.Roles[7]);
        var response = trace.Skip(task.PromptLength).ToArray();
        Assert.Equal(1.0, task.Reward(response, new[] { 3, 5, 7, 1 }));
        response[^1] = 7;
        Assert.Equal(0.0, task.Reward(response, new[] { 3, 5, 7, 1 }));
    }

    [Fact]
    public void ATinyRunProducesEveryClaimAndEveryChart()
    {
        var config = PreplanAnchorExperiment.Config.Smoke with
        {
            SftSteps = 30, AnalysisTraces = 4, Seeds = 1, GrpoSteps = 2, PromptsPerStep = 2, GroupSize = 4, EvalQuestions = 16, EvalEvery = 1,
            Strategies = [CreditStrategy.Uniform, CreditStrategy.Anchor], Size = "test",
        };
        var result = PreplanAnchorExperiment.Run(config, torch.CPU);
        Assert.Equal(2, result.Runs.Count);
        Assert.All(result.Runs, r => Assert.Equal(new[] { 0, 1, 2 }, r.EvalSteps));
        Assert.Equal(0.0, result.Runs[0].CriticalShare);                                  // uniform credit flags nothing
        Assert.InRange(result.Runs[1].CriticalShare, 0.01, 0.5);
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(new[] { "waad-fai-match-loops", "grpo-credit-matches-loops", "rollout-logprobs-are-the-policys",
            "anchors-are-intermediate-results", "preplan-precedes-long-lookback",
            "sft-headroom", "anchor-credit-no-slower", "critical-token-overhead" }, claims.Select(c => c.Id));
        Assert.Equal(config.Task.ResponseLength, result.RhythmTable().Rows.Count);
        Assert.NotNull(result.AccuracyCurves());
        Assert.NotNull(result.PatternHeatmap(local: false));
    }
}
