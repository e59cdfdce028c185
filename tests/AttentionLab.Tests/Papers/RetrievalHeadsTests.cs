using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Papers.RetrievalHeads;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P12 Retrieval heads: the score against its naive twin and hand-built cases, the mask against 1/(i+1) and the mean of v,
/// the NIAH task's layout, bad input, and a reduced experiment (the smoke run belongs to the notebook).
/// </summary>
public class RetrievalHeadsTests(ITestOutputHelper output)
{
    static RetrievalHeadsExperiment.Config Reduced => RetrievalHeadsExperiment.Config.Smoke with
    {
        Haystacks = [12, 36], Depths = [0, 1], DetectPerCell = 2, EvalPerCell = 4, MaxK = 2, RandomDraws = 2, Size = "custom",
    };

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", RetrievalHeadsExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", RetrievalHeadsExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (RetrievalHeadsExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
        Assert.True(RetrievalHeadsExperiment.Config.Smoke.UsesCheckpoint);
        Assert.False(RetrievalHeadsExperiment.Config.Full.UsesCheckpoint);
        Assert.True(RetrievalHeadsExperiment.Config.Full.Task.MaxLength <= RetrievalHeadsExperiment.Config.Full.Model.MaxLength);
    }

    [Fact]
    public void ExactnessChecksHoldOnTheCheckpoint()
    {
        using var model = RetrievalHeadsCheckpoint.Load();
        var ex = RetrievalHeadsChecks.Run(model, RetrievalHeadsCheckpoint.Task, seed: 0);
        Assert.Equal(3.0 / 7, ex.HandExpected, 12);
        Assert.Equal(ex.HandExpected, ex.HandScore, 12);
        Assert.Equal(ex.HandExpected, ex.HandNaiveScore, 12);
        Assert.Equal(0, ex.HandOthersMax);
        Assert.Equal(0, ex.TwinMaxAbs);
        Assert.True(ex.MaskedRowMaxAbs <= 1e-6, $"masked row {ex.MaskedRowMaxAbs}");
        Assert.True(ex.MaskedZMaxAbs <= 1e-5, $"masked z {ex.MaskedZMaxAbs}");
        Assert.True(ex.NoMaskBitwise);
    }

    [Fact]
    public void NaiveMaskIsUniformOverThePrefix()
    {
        var a = RetrievalHeadsNaive.ZeroLogitPattern(5);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) Assert.Equal(j <= i ? 1.0 / (i + 1) : 0, a[i, j], 15);
        var z = RetrievalHeadsNaive.MaskedHeadOutput(new double[,] { { 1, 0 }, { 3, 2 }, { 5, -2 } });
        Assert.Equal(new[] { 1.0, 2, 3 }, new[] { z[0, 0], z[1, 0], z[2, 0] });
        Assert.Equal(0, z[2, 1], 15);
    }

    [Fact]
    public void ScoreCountsTopOneOnlyAndNeedsTheSameToken()
    {
        long[] ctx = [0, 7, 8, 9, 7];
        var scores = new double[1, 2];
        // head 0: 0.6 on position 1 (token 7, needle) → counts; head 1: 0.4 on position 1 but 0.6 on position 4 (token 7, outside) → not.
        RetrievalHeadsNaive.ScoreStep([[[0, 0.6, 0.2, 0.2, 0], [0, 0.4, 0, 0, 0.6]]], 7, ctx, 1, 4, scores);
        Assert.Equal(1.0 / 3, scores[0, 0], 15);
        Assert.Equal(0, scores[0, 1]);
        var fast = new double[1, 2];
        RetrievalScore.AddStep([torch.tensor(new double[] { 0, 0.6, 0.2, 0.2, 0, 0, 0.4, 0, 0, 0.6 }).view(2, 5)], 7, ctx, 1, 4, fast);
        Assert.Equal(scores, fast);
    }

    [Fact]
    public void NiahPromptHoldsTheAnswerAtTheNeedleSpan()
    {
        var task = new NiahTask();
        var rng = new Random(3);
        foreach (var (hay, depth) in new[] { (0, 0.0), (12, 0.0), (12, 1.0), (25, 0.4) })
        {
            var p = task.Prompt(hay, depth, rng);
            Assert.Equal(task.PromptLength(hay), p.Tokens.Length);
            Assert.Equal(p.Answer, p.Tokens[p.NeedleStart..p.NeedleEnd]);
            Assert.Equal(NiahTask.Val, p.Tokens[^1]);
            Assert.Equal(NiahTask.Bos, p.Tokens[0]);
            Assert.Equal(1 + (int)Math.Round(depth * hay) + 2 + task.KeyLength, p.NeedleStart);
            foreach (var v in p.Answer) Assert.Equal(1, p.Tokens.Count(t => t == v));       // needle tokens occur once
        }
        var multi = new NiahTask(Distractors: 2);
        foreach (var depth in new[] { 0.0, 0.3, 1.0 })
        {
            var p = multi.Prompt(20, depth, rng);
            Assert.Equal(multi.PromptLength(20), p.Tokens.Length);
            Assert.Equal(p.Answer, p.Tokens[p.NeedleStart..p.NeedleEnd]);
            Assert.Equal(3, p.Tokens.Count(t => t == NiahTask.Val) - 1);                      // three needles, one question
            Assert.Equal(p.Tokens[(p.NeedleStart - 3)..p.NeedleStart], p.Tokens[^3..]);      // the question's keys are the needle's
            foreach (var v in p.Answer) Assert.Equal(1, p.Tokens.Count(t => t == v));
        }
        var (x, y) = task.Batch(4, seed: 5);
        using (x) using (y)
        {
            Assert.Equal(x.shape, y.shape);
            Assert.Equal(4 * task.ValueLength, y.ne(-100).sum().item<long>());
            Assert.True(y[.., ^1].eq(-100).all().item<bool>());
        }
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        var task = new NiahTask();
        Assert.Equal("haystack", Assert.Throws<ArgumentException>(() => task.Prompt(-1, 0.5, new Random(0))).ParamName);
        Assert.Equal("depth", Assert.Throws<ArgumentException>(() => task.Prompt(4, 1.5, new Random(0))).ParamName);
        Assert.Equal("depth", Assert.Throws<ArgumentException>(() => task.Prompt(4, double.NaN, new Random(0))).ParamName);
        Assert.Equal("needleStart", Assert.Throws<ArgumentException>(
            () => RetrievalHeadsNaive.ScoreStep([[[1.0, 0]]], 0, [0L, 1], 1, 1, new double[1, 1])).ParamName);
        Assert.Equal("length", Assert.Throws<ArgumentException>(() => RetrievalHeadsNaive.ZeroLogitPattern(0)).ParamName);
        using var model = RetrievalHeadsCheckpoint.Load();
        Assert.Equal("meanZ", Assert.Throws<ArgumentException>(() => HeadMask.Hooks(model, [(0, 0)], MaskKind.Mean)).ParamName);
        var prompts = new[] { task.Prompt(4, 0, new Random(1)), task.Prompt(5, 0, new Random(1)) };
        Assert.Equal("prompts", Assert.Throws<ArgumentException>(() => Niah.Decode(model, prompts, 3)).ParamName);
    }

    /// <summary>The batched greedy decode of the evaluation equals the detector's one-sequence decode, masked or not.</summary>
    [Fact]
    public void BatchedDecodeEqualsTheDetectorsDecode()
    {
        using var model = RetrievalHeadsCheckpoint.Load();
        var task = RetrievalHeadsCheckpoint.Task;
        var prompts = new NiahGrid([20], [0, 0.5, 1], PerCell: 3).Cell(task, 0, 1, seed: 9);
        foreach (var mask in new[] { Array.Empty<(int, int)>(), new[] { (1, 0), (0, 2) } })
        {
            var hooks = HeadMask.Hooks(model, mask);
            var batched = Niah.Decode(model, prompts, task.ValueLength, hooks);
            for (int b = 0; b < prompts.Count; b++)
            {
                var p = prompts[b];
                var run = RetrievalScore.Detect(model, p.Tokens, p.NeedleStart, p.NeedleEnd, p.Answer, task.ValueLength, hooks);
                Assert.Equal(run.Generated, batched[b]);
                Assert.Equal(run.AnswerRecall, Niah.Recall(batched[b], p.Answer));
            }
        }
    }

    /// <summary>The shipped file is in the manifest with the recipe's command and steps, and data/README.md lists it.</summary>
    [Fact]
    public void ShippedCheckpointIsListed()
    {
        var entry = AttentionLab.Train.CheckpointStore.Default().Find(RetrievalHeadsCheckpoint.Name);
        Assert.NotNull(entry);
        string readme = File.ReadAllText(Path.Combine(RepositoryData.Folder(), "README.md"));
        Assert.Contains($"`{entry!.Sha256}`", readme);
        Assert.Contains($"`{entry.Command}`", readme);
        Assert.Equal(RetrievalHeadsCheckpoint.Command, entry.Command);
        Assert.Equal(RetrievalHeadsCheckpoint.Steps, entry.Steps);
    }

    [Fact]
    public void RankPutsHighScoresFirstAndNaNLast()
    {
        var ranking = RetrievalHeadsExperiment.Rank(new double[,] { { 0.2, double.NaN }, { 0.9, 0.2 } });
        Assert.Equal(new[] { (1, 0), (0, 0), (1, 1), (0, 1) }, ranking);
    }

    [Fact]
    public void ReducedRunFindsRetrievalHeadsAndHoldsItsExactness()
    {
        var result = RetrievalHeadsExperiment.Run(Reduced, torch.CPU, new InlineProgress<string>(output.WriteLine));
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        Assert.Empty(claims.Failures);
        Assert.All(claims.Where(c => c.Kind == ClaimKind.Exactness), c => Assert.Equal(ClaimStatus.Holds, c.Status));
        Assert.True(result.TopAccuracy[0] >= 0.9, $"unmasked {result.TopAccuracy[0]}");     // the checkpoint retrieves the needles unmasked
        Assert.Equal(8, result.ToDataFrame().Rows.Count);                       // 2 × 4 heads, fewer than 10
        Assert.Equal(3, result.AccuracyFrame().Rows.Count);
        Assert.All(result.RandomHeads, d => Assert.DoesNotContain(d.Heads, h => result.Ranking.Take(d.K).Contains(h)));   // spec §9 fixed
    }

    [Fact]
    public void TrainedRunTakesTheFullPath()
    {
        var config = Reduced with { TrainSteps = 3, BatchSize = 4, Haystacks = [8], Depths = [0.5], MaxK = 1, ClaimK = 1, RandomDraws = 1 };
        var result = RetrievalHeadsExperiment.Run(config, torch.CPU);
        Assert.Equal(4, result.Layers);
        Assert.Equal(8, result.Heads);
        Assert.DoesNotContain(result.Claims(), c => c.Kind == ClaimKind.Exactness && c.Status != ClaimStatus.Holds);
        Assert.Equal(ClaimKind.Claim, result.Claims()["sparse"].Kind);
    }
}
