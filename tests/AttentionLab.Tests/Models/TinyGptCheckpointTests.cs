using AttentionLab.Models;

namespace AttentionLab.Tests.Models;

/// <summary>Loading a shipped plain TinyGpt from its manifest entry alone.</summary>
public class TinyGptCheckpointTests
{
    [Fact]
    public void ItReadsTopLevelAndNestedConfigs()
    {
        var induction = TinyGptCheckpoint.ConfigOf("induction-2l-attn-only");          // config at the top level
        Assert.Equal((2, 64, 4, 16, false), (induction.Layers, induction.DModel, induction.Heads, induction.VocabSize, induction.Mlp));
        var sinklora = TinyGptCheckpoint.ConfigOf("sinklora-base");                                // config under "Model"
        Assert.Equal((2, 64, 64, true), (sinklora.Layers, sinklora.DModel, sinklora.VocabSize, sinklora.Mlp));
    }

    [Fact]
    public void ALoadedModelIsInEvalModeAndPredicts()
    {
        using var model = TinyGptCheckpoint.Load("induction-2l-attn-only");
        Assert.False(model.training);
        using var logits = model.call(TorchSharp.torch.tensor(new long[] { 0, 3, 5, 7, 3, 5 }).unsqueeze(0));
        Assert.Equal(new long[] { 1, 6, 16 }, logits.shape);
    }

    [Fact]
    public void ModelsOfOtherTypesOrConfigsAreRefusedByName()
    {
        var bam = Assert.Throws<ArgumentException>(() => TinyGptCheckpoint.ConfigOf("bam-seed-branches"));
        Assert.Equal("name", bam.ParamName);
        Assert.Contains("not a TinyGpt", bam.Message);
        var hcam = Assert.Throws<ArgumentException>(() => TinyGptCheckpoint.ConfigOf("hcam-recall-full"));
        Assert.Contains("paper's own record", hcam.Message);
        Assert.Equal("name", Assert.Throws<ArgumentException>(() => TinyGptCheckpoint.ConfigOf("no-such-model")).ParamName);
    }
}
