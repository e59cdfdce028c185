using AttentionLab.Atlas;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>The atlas plumbing on a tiny run: one point per mixer, streaming state where it exists, tables, charts, checks.</summary>
public class AtlasTests
{
    [Fact]
    public void ATinyAtlasMeasuresEveryMixer()
    {
        var config = MixerAtlas.Config.Smoke with
        {
            Steps = 4, BatchSize = 4, TestCount = 8, TimingRepeats = 1,
            Mixers = new[] { AtlasMixers.Softmax, AtlasMixers.Based(4), AtlasMixers.Flowformer, AtlasMixers.Routing() },
        };
        var result = MixerAtlas.Run(config, torch.CPU);
        Assert.Equal(4, result.Points.Count);
        var softmax = result.Points[0];
        var based = result.Points[1];
        Assert.NotNull(softmax.StateBytes);
        Assert.True(softmax.StepVsForwardMaxAbs < 1e-3, $"softmax Step vs forward {softmax.StepVsForwardMaxAbs}");
        Assert.True(based.StepVsForwardMaxAbs < 1e-3, $"BASED Step vs forward {based.StepVsForwardMaxAbs}");
        Assert.True(result.Points[2].StepVsForwardMaxAbs < 1e-3, $"Flowformer Step vs forward {result.Points[2].StepVsForwardMaxAbs}");
        Assert.Null(result.Points[3].StateBytes);                                 // Routing cannot stream
        Assert.All(result.Points, p => Assert.InRange(p.Recall, 0, 1));
        Assert.Equal(4, result.ToDataFrame().Rows.Count);
        Assert.NotNull(result.RecallVsState());
        Assert.NotNull(result.RecallVsSpeed());
        Assert.NotEmpty(result.StateFront());
        // four steps do not solve MQAR: the check must say so
        Assert.Contains("softmax attention recall", Assert.Throws<InvalidOperationException>(() => result.CheckClaim()).Message);
    }

    /// <summary>Landmark Attention joins with landmark tokens inserted and its state counted (landmark keys + k blocks + current block), not streamed.</summary>
    [Fact]
    public void LandmarkJoinsWithCountedState()
    {
        var config = MixerAtlas.Config.Smoke with { Steps = 4, BatchSize = 4, TestCount = 8, TimingRepeats = 1, Mixers = new[] { AtlasMixers.Landmark(8, 2) } };
        var result = MixerAtlas.Run(config, torch.CPU);
        var p = Assert.Single(result.Points);
        Assert.True(p.StateCounted);
        Assert.InRange(p.Recall, 0, 1);
        var cost = AttentionLab.Papers.LandmarkAttention.LandmarkCost.At(config.SeqLen, 8, 2, config.Heads, config.DModel / config.Heads);
        Assert.Equal(2L * config.DModel * sizeof(float) + cost.LandmarkKvBytes, p.StateBytes);   // BaseConv (k − 1 = 2 inputs) + landmark working set
        Assert.Equal("counted", result.ToDataFrame()["state_kind"][0]);
        Assert.DoesNotContain("Step differs", Assert.Throws<InvalidOperationException>(() => result.CheckClaim()).Message);
    }

    [Fact]
    public void BadConfigIsNamed()
    {
        Assert.Equal("Mixers", Assert.Throws<ArgumentException>(() => (MixerAtlas.Config.Smoke with { Mixers = Array.Empty<AtlasMixer>() }).Validate()).ParamName);
        Assert.Equal("Heads", Assert.Throws<ArgumentException>(() => (MixerAtlas.Config.Smoke with { Heads = 3 }).Validate()).ParamName);
    }
}
