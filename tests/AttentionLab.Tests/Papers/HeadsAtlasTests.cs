using AttentionLab.Atlas;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;

namespace AttentionLab.Tests.Papers;

/// <summary>The heads atlas (notebook 92): its chance levels, its inputs' checks and a run on one checkpoint.</summary>
public class HeadsAtlasTests
{
    [Fact]
    public void AUniformCausalHeadScoresTheMeanOfOneOverRowLength()
    {
        // Previous-token on T = 5: rows 1 … 4 put 1/(i+1) on i − 1, row 0 has no key; Σ A over all rows = T.
        var tokens = torch.arange(5).unsqueeze(0);
        double expected = (1.0 / 2 + 1.0 / 3 + 1.0 / 4 + 1.0 / 5) / 5;
        Assert.Equal(expected, HeadsAtlas.UniformScore(tokens, HeadPattern.PreviousToken, causal: true), 12);
        Assert.Equal(4.0 / 5 / 5, HeadsAtlas.UniformScore(tokens, HeadPattern.PreviousToken, causal: false), 12);
    }

    [Fact]
    public void BadModelsAndConfigsAreNamed()
    {
        Assert.Equal("High", Assert.Throws<ArgumentException>(() => new HeadAtlasModel("x", 0, 5, 5, 2, false).Validate()).ParamName);
        Assert.Equal("Segment", Assert.Throws<ArgumentException>(() => new HeadAtlasModel("x", 0, 1, 5, 5, false).Validate()).ParamName);
        var smoke = HeadsAtlas.Config.Smoke;
        Assert.Equal("RetrievalPrefix", Assert.Throws<ArgumentException>(() => (smoke with { RetrievalPrefix = 12 }).Validate()).ParamName);
        Assert.Equal("Batch", Assert.ThrowsAny<ArgumentException>(() => (smoke with { Batch = 0 }).Validate()).ParamName);
    }

    [Fact]
    public void OnTheInductionCheckpointItFindsTheDocumentedCircuit()
    {
        var config = HeadsAtlas.Config.Smoke with { Models = [HeadsAtlas.Config.Shipped[0]], MiniLm = false, Batch = 8, RetrievalRuns = 2 };
        var result = HeadsAtlas.Run(config, torch.CPU);
        var model = Assert.Single(result.Models);
        Assert.Equal((2, 4), (model.Layers, model.Heads));
        Assert.True(model.DetectorLoopGap <= HeadsAtlasResult.LoopTolerance, $"loop gap {model.DetectorLoopGap}");
        var claims = result.Claims();
        Assert.Equal(ClaimStatus.Holds, claims["detector-matches-loops"].Status);
        Assert.Equal(ClaimStatus.Holds, claims["two-layer-induction-circuit"].Status);
        // Every head's row in the table, with the roles column consistent with the thresholds.
        var frame = result.ToDataFrame();
        Assert.Equal(8, frame.Rows.Count);
        Assert.Equal(HeadsAtlas.Roles.Count + 4, frame.Columns.Count);
        Assert.NotNull(result.Heatmap(HeadsAtlas.Induction));
        Assert.Throws<ArgumentException>(() => result.Heatmap(HeadsAtlas.Successor));     // no character model in this run
    }
}
