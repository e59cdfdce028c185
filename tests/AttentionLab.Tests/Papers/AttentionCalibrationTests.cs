using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.AttentionCalibration;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>P26 ACT: the operator against its naive twin over shapes, the spec's §6 identities, the guard, bad input, the hook, the search.</summary>
public class AttentionCalibrationTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", AttentionCalibrationExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", AttentionCalibrationExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (AttentionCalibrationExperiment.Config.Smoke with { Steps = 1, Size = "custom" }).Size);
    }

    static Tensor Pattern(long[] shape, bool causal, int seed, double boost = 2.5)
    {
        var gen = new torch.Generator((ulong)seed);
        var s = torch.randn(shape, ScalarType.Float64, generator: gen) * 1.5;
        long tq = shape[^2], tk = shape[^1];
        s.select(-1, 0).add_(boost);
        if (tk > 3) s.select(-1, tk / 2).add_(boost);                                     // a mid-sequence sink
        if (causal)
        {
            var hidden = torch.ones(tq, tk).triu(tk - tq + 1).@bool();
            s = s.masked_fill(hidden, double.NegativeInfinity);
        }
        return s.softmax(-1);
    }

    public static IEnumerable<object[]> Shapes() => new[]
    {
        new object[] { new long[] { 1, 1 }, true }, new object[] { new long[] { 3, 9, 9 }, true }, new object[] { new long[] { 2, 1, 9 }, true },
        new object[] { new long[] { 2, 3, 7 }, true }, new object[] { new long[] { 2, 3, 6, 6 }, true }, new object[] { new long[] { 2, 5, 5 }, false },
        new object[] { new long[] { 4, 13, 13 }, false }, new object[] { new long[] { 17, 17 }, true },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FastEqualsNaiveInFloat64(long[] shape, bool causal)
    {
        using var scope = NewDisposeScope();
        foreach (var (alpha, beta, drop) in new[] { (0.1, 0.4, true), (0.05, 0.0, false), (0.2, 0.7, true) })
        {
            var a = Pattern(shape, causal, (int)shape.Sum());
            var fast = AttentionCalibrationOps.Act(a, alpha, beta, drop, causal);
            var naive = AttentionCalibrationNaive.Act(a, alpha, beta, drop, causal);
            Assert.True((fast - naive).abs().max().item<double>() <= 1e-12, $"{Guard.ShapeText(a)} α {alpha} β {beta}");
            Assert.True((fast.sum(-1) - 1).abs().max().item<double>() <= 1e-12);
        }
    }

    [Fact]
    public void SpecIdentitiesHoldOnTheToyPatterns()
    {
        var e = ActChecks.Toy(0.1, 0.4, torch.CPU);
        Assert.True(e.NaiveMaxAbs <= 1e-6, $"naive {e.NaiveMaxAbs}");
        Assert.True(e.RowSumMaxDev <= 1e-6);
        Assert.True(e.BetaOneMaxAbs <= 1e-6);
        Assert.True(e.ToySinks > 0);
        Assert.True(e.SinkMassMaxDev <= 1e-6);
        Assert.True(e.RatioSpread <= 1e-5, $"spread {e.RatioSpread}");
        Assert.True(e.FirstExempt);
        Assert.True(e.NoSinkUnchanged);
    }

    [Fact]
    public void TheFirstDetectedIndexIsDroppedEvenWhenItIsNotBos()
    {
        using var scope = NewDisposeScope();
        // encoder rows that put little on key 0 and much on keys 2 and 4: S without dropping = {2, 4}; ACT drops 2, not 0.
        var a = torch.tensor(new double[] { 0.02, 0.08, 0.5, 0.0, 0.4 }).expand(5, 5).contiguous();
        var all = AttentionCalibrationOps.SinkSet(a, 0.1, dropFirst: false, causal: false).data<bool>().ToArray();
        var kept = AttentionCalibrationOps.SinkSet(a, 0.1, dropFirst: true, causal: false).data<bool>().ToArray();
        Assert.Equal(new[] { false, false, true, false, true }, all);
        Assert.Equal(new[] { false, false, false, false, true }, kept);
        var act = AttentionCalibrationOps.Act(a, 0.1, 0.4, causal: false);
        Assert.Equal(0.4 * 0.4, act[0, 4].item<double>(), 12);
        Assert.Equal(0.5 * (1 + 0.6 * 0.4 / 0.6), act[0, 2].item<double>(), 12);   // the exempt index receives in proportion
    }

    [Fact]
    public void DecodeRowsUseTheVisibleRowsNotTheQueryLength()
    {
        using var scope = NewDisposeScope();
        var a = Pattern(new long[] { 2, 9, 9 }, causal: true, seed: 5);
        var last = a.narrow(1, 8, 1);                                                    // q_len = 1, kv_len = 9
        var mass = AttentionCalibrationOps.ReceivedMass(last);
        Assert.True((mass - last.squeeze(1)).abs().max().item<double>() < 1e-15);       // each key seen once: ā_j = A_8j
        var prefill = AttentionCalibrationOps.ReceivedMass(a);
        var expected = a.sum(1) / torch.arange(9, 0, -1, ScalarType.Float64);            // T − j
        Assert.True((prefill - expected).abs().max().item<double>() < 1e-15);
    }

    [Fact]
    public void RowsWhoseMassLiesAllInTheSinkSetAreLeftAsTheyAre()
    {
        using var scope = NewDisposeScope();
        var a = torch.tensor(new double[] { 0, 0.5, 0.5 }).expand(3, 3).contiguous();
        var act = AttentionCalibrationOps.Act(a, 0.1, 0.4, dropFirst: false, causal: false);
        Assert.False(act.isnan().any().item<bool>());
        Assert.True(ActChecks.Bitwise(act, a));
        Assert.True(ActChecks.Bitwise(AttentionCalibrationNaive.Act(a, 0.1, 0.4, dropFirst: false, causal: false), a));
    }

    [Fact]
    public void NanInGivesNanOut()
    {
        using var scope = NewDisposeScope();
        var a = Pattern(new long[] { 6, 6 }, causal: true, seed: 2);
        a[3, 1] = double.NaN;
        Assert.True(AttentionCalibrationOps.Act(a).isnan().any().item<bool>());
        Assert.True(AttentionCalibrationNaive.Act(a).isnan().any().item<bool>());
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        var a = Pattern(new long[] { 4, 4 }, causal: true, seed: 1);
        Assert.Equal("alpha", Assert.Throws<ArgumentException>(() => AttentionCalibrationOps.Act(a, alpha: -1)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentException>(() => AttentionCalibrationOps.Act(a, alpha: double.NaN)).ParamName);
        Assert.Equal("beta", Assert.Throws<ArgumentException>(() => AttentionCalibrationOps.Act(a, beta: 1.5)).ParamName);
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => AttentionCalibrationOps.Act(torch.ones(4))).ParamName);
        var ints = torch.ones(new long[] { 4, 4 }, ScalarType.Int64);
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => AttentionCalibrationOps.Act(ints)).ParamName);
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => AttentionCalibrationOps.Act(torch.ones(5, 3))).ParamName);
        Assert.Equal("pattern", Assert.Throws<ArgumentException>(() => AttentionCalibrationNaive.Act(torch.ones(4))).ParamName);
        using var model = new TinyGpt(new TinyGptConfig(2, 16, 4, Positions: PositionKind.Learned, VocabSize: 8, MaxLength: 8));
        Assert.Equal("layer", Assert.ThrowsAny<ArgumentException>(() => ActHook.On(model, new[] { (5, 0) })).ParamName);
        Assert.Equal("beta", Assert.Throws<ArgumentException>(() => ActHook.On(model, new[] { (0, 0) }, beta: -0.1)).ParamName);
    }

    [Fact]
    public void TheHookIsBitwiseEmptyAndFeedsTheCalibratedPatternIntoAv()
    {
        torch.manual_seed(3);
        using var model = new TinyGpt(new TinyGptConfig(2, 32, 4, Positions: PositionKind.Learned, VocabSize: 12, MaxLength: 16));
        model.eval();
        using var tokens = torch.randint(0, 12, new long[] { 3, 16 });
        var h = ActChecks.Hooked(model, tokens, 0.1, 0.4);
        Assert.True(h.EmptyBitwise);
        Assert.True(h.PatternMaxAbs <= 1e-5, $"pattern {h.PatternMaxAbs}");
        Assert.True(h.ZMaxAbs <= 1e-5, $"z {h.ZMaxAbs}");
        Assert.True(h.LogitsChange > 0);
        Assert.All(model.HookPoints.Values, p => Assert.Equal(0, p.HookCount));
    }

    [Fact]
    public void TheSearchKeepsTheHeadsThatRaiseTheScore()
    {
        using var model = new TinyGpt(new TinyGptConfig(2, 16, 4, Positions: PositionKind.Learned, VocabSize: 8, MaxLength: 8));
        var layer0 = model.HookPoints["blocks.0.attn.hook_pattern"];
        var layer1 = model.HookPoints["blocks.1.attn.hook_pattern"];
        double Score() => 0.5 + 0.1 * layer0.HookCount - 0.05 * layer1.HookCount;       // a stand-in accuracy that sees the hooks
        var candidates = new[] { (0, 0), (0, 3), (1, 1) };
        var result = ActSearch.Run(model, Score, candidates);
        Assert.Equal(0.5, result.Baseline);
        Assert.Equal(new[] { (0, 0), (0, 3) }, result.Kept);
        Assert.Equal(0.1, result.BestGain, 12);
        Assert.Equal(-0.05, result.Candidates[2].Gain, 12);
        Assert.Equal(0, layer0.HookCount);
    }

    [Fact]
    public void TheTaskPutsLabelsAfterArrowsAndTheQueryLast()
    {
        var task = new ActTask(Demos: 3, Content: 8);
        using var batch = task.Generate(50, seed: 4);
        Assert.Equal(task.Length, batch.Length);
        var tokens = batch.Tokens.data<long>().ToArray();
        var labels = batch.Labels.data<long>().ToArray();
        for (int n = 0; n < 50; n++)
            for (int p = 0; p < task.Length; p++)
            {
                long tok = tokens[n * task.Length + p], lab = labels[n * task.Length + p];
                Assert.Equal(tok == ActTask.Arrow, lab != AttentionLab.Data.TokenBatch.Ignore);
                if (tok == ActTask.Arrow && p + 1 < task.Length) Assert.Equal(lab, tokens[n * task.Length + p + 1]);
            }
        Assert.Equal(ActTask.Arrow, tokens[task.Length - 1]);
    }

    [Fact]
    public void AReducedRunHasEveryClaimAndNoFailure()
    {
        var config = AttentionCalibrationExperiment.Config.Smoke with
        {
            Steps = 20, CalibCount = 24, TestCount = 24, UseMiniLm = false, TimingRepeats = 1, Size = "custom",
        };
        var result = AttentionCalibrationExperiment.Run(config, torch.CPU);
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.All(claims.Where(c => c.Kind == ClaimKind.Exactness), c => Assert.Equal(ClaimStatus.Holds, c.Status));
        Assert.Contains(claims, c => c.Id == "search-gain-carries" && !c.Asserted);
        Assert.Equal(8, result.First.Search.Candidates.Count);
        Assert.Equal(8, result.ToDataFrame().Rows.Count);
        Assert.Equal(2, result.GainGrid.Length);
        Assert.NotNull(result.First.Picture);
        Assert.NotEmpty(claims.Findings().Lines());
    }

    [Fact]
    public void MiniLmHookIsExactAndTheClassifierRuns()
    {
        using var model = MiniLm.LoadPretrained();
        var (texts, labels) = ActSentences.Generate(24, seed: 7);
        using var set = new MiniLmPrototypes(model, texts, labels, ActSentences.Prototypes);
        double baseline = set.Accuracy();
        Assert.InRange(baseline, 0.5, 1.0);
        using (ActHook.On(model, Array.Empty<(int, int)>(), causal: false)) Assert.Equal(baseline, set.Accuracy());
        using var enc = model.Tokenize(new[] { texts[0] });
        var h = ActChecks.Hooked(model, enc.InputIds, 0.1, 0.4, causal: false);
        Assert.True(h.EmptyBitwise);
        Assert.True(h.ZMaxAbs <= 1e-5, $"z {h.ZMaxAbs}");
    }
}
