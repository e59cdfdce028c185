using AttentionLab.Models;
using AttentionLab.Papers.Delta;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class DeltaExperimentTests
{
    static readonly DeltaExperiment.Config Tiny = DeltaExperiment.Config.Smoke with { Sequences = 4, BudgetPages = new[] { 5 } };

    [Fact]
    public void ExperimentReportsEveryPolicyWithTheirAttendedTokens()
    {
        torch.manual_seed(0);
        using var model = new TinyGpt(DeltaCheckpoint.Config);
        var result = DeltaExperiment.Run(Tiny, model, torch.CPU);
        Assert.Equal(new[] { "full", "DELTA", DeltaExperiment.PerLayerName, DeltaExperiment.QuestName, "StreamingLLM", "H2O" }, result.Rows.Select(r => r.Policy));
        Assert.Equal(1.0, result.Get(DeltaExperiment.FullName, 0).AttendedRatio, 12);
        var delta = result.Get(DeltaExperiment.DeltaName, 5);
        Assert.InRange(delta.AttendedRatio, 0.3, 0.95);                                      // layers 0, 1 full; 2, 3 at ≤ 20 tokens
        Assert.True(delta.KvBytesRead < result.Get(DeltaExperiment.FullName, 0).KvBytesRead);
        Assert.Equal(result.Get(DeltaExperiment.FullName, 0).KvBytesHeld, delta.KvBytesHeld, 6);   // DELTA never evicts
        Assert.All(new[] { DeltaExperiment.StreamingName, DeltaExperiment.H2OName }, p => Assert.True(result.Get(p, 5).AttendedPerToken <= 20));
        var quest = result.Get(DeltaExperiment.QuestName, 5);                               // layer 0 full, layers 1–3 at ≤ 5 pages × 4
        Assert.InRange(quest.AttendedRatio, 0.3, delta.AttendedRatio);                        // reads no more than DELTA (whose layer 1 is full)
        Assert.Equal(result.Get(DeltaExperiment.FullName, 0).KvBytesHeld, quest.KvBytesHeld, 6);   // Quest never evicts
        Assert.Equal(8, result.ToDataFrame().Columns.Count);
        Assert.Equal(DeltaCheckpoint.Task.Length - 1, result.ScoreRows.Count);                // one row per decode step
        Assert.Equal(new[] { 2, 3 }, result.SparseRecall.Keys.OrderBy(k => k));
        Assert.All(result.Overlap, row => Assert.All(row, v => Assert.InRange(v, 0, 1 + 1e-9)));
        Assert.Equal(1.0, result.Overlap[2][2], 9);
    }

    [Fact]
    public void ConfigRejectsBadSizes()
    {
        Assert.Equal("BudgetPages", Assert.ThrowsAny<ArgumentException>(() => (Tiny with { BudgetPages = new[] { 1 } }).Validate()).ParamName);
        Assert.Equal("HeadlineBudget", Assert.ThrowsAny<ArgumentException>(() => (Tiny with { HeadlineBudget = 7 }).Validate()).ParamName);
        Assert.Equal("DeltaLayers", Assert.ThrowsAny<ArgumentException>(() => (Tiny with { DeltaLayers = new[] { 2 } }).Validate()).ParamName);
    }
}

public class DeltaClaimTests
{
    [Fact]
    public void SmokeRunOnTheShippedCheckpointHoldsTheClaim()
    {
        var result = DeltaExperiment.Run(DeltaExperiment.Config.Smoke, torch.CPU);
        var (holds, line) = result.Claim();
        Assert.True(holds, line);
        Assert.True(result.Get(DeltaExperiment.DeltaName, DeltaExperiment.Config.Smoke.HeadlineBudget).AttendedRatio < 1);
    }
}
