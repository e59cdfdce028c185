using AttentionLab.Papers.FreeSwim;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class FreeSwimExperimentTests
{
    [Fact]
    public void MaskAnalysisFacts()
    {
        var rows = FreeSwimExperiment.MaskRows(new[] { 1, 2, 3 });
        int d = FreeSwimExperiment.HalfWindow, win = (2 * d + 1) * (2 * d + 1);
        Assert.All(rows.Where(r => r.Kind == "full"), r => Assert.Equal(r.Tokens, r.MinKeys));
        var native = rows.Single(r => r.Kind == "inward" && r.Factor == 1);
        Assert.Equal(native.Tokens, native.MinKeys);                                               // inward = full at native
        foreach (int f in new[] { 2, 3 })
        {
            var inward = rows.Single(r => r.Kind == "inward" && r.Factor == f);
            var clipped = rows.Single(r => r.Kind == "clipped" && r.Factor == f);
            Assert.Equal(win, inward.MinKeys); Assert.Equal(win, inward.MaxKeys);
            Assert.Equal((d + 1) * (d + 1), clipped.CornerKeys);
            Assert.True(clipped.MeanKeys < inward.MeanKeys);
        }
    }

    [Fact]
    public void SmokeClaimHolds()
    {
        if (!FreeSwimCheckpoint.Available()) throw new InvalidOperationException($"checkpoint {FreeSwimCheckpoint.Name} missing; regenerate with: {FreeSwimCheckpoint.Command}");
        var c = FreeSwimExperiment.Config.Smoke with { SamplesPerClass = 1 };                     // the claim is the masks and entropy; fewer samples keep the test short
        var r = FreeSwimExperiment.Run(c, CPU);
        Assert.Equal(1 + c.SampleFactors.Length * (FreeSwimExperiment.Methods.Length - 1), r.ToDataFrame().Rows.Count);
        var (holds, line) = r.Claim();
        Assert.True(holds, line);
        Assert.Equal(3, r.Row("inward+dual", 2).GuideSteps);                                      // 7 steps, cache every 3: steps 0, 3, 6
    }

    [Fact]
    public void BadConfigNamesTheField()
    {
        Assert.Equal("SampleFactors", Assert.Throws<ArgumentException>(() => (FreeSwimExperiment.Config.Smoke with { SampleFactors = new[] { 1 } }).Validate()).ParamName);
        Assert.Equal("Strength", Assert.Throws<ArgumentException>(() => (FreeSwimExperiment.Config.Smoke with { Strength = 0 }).Validate()).ParamName);
    }
}
