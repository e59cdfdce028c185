using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>TinyGpt's optional FFN factory: the default model is unchanged (same parameters, names, bits), and a given FFN is used.</summary>
public class TinyGptFfnTests
{
    static readonly TinyGptConfig Config = new(Layers: 2, DModel: 16, Heads: 2, Positions: PositionKind.Learned, VocabSize: 11, MaxLength: 12);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheDefaultModelIsBitIdenticalToAnExplicitTinyMlpFactory(bool parallel)
    {
        var config = Config with { ParallelBlock = parallel };
        torch.manual_seed(7);
        using var plain = new TinyGpt(config);
        torch.manual_seed(7);
        using var explicitFfn = new TinyGpt(config, ffns: _ => new TinyMlp(config.DModel, config.MlpDim));
        var a = plain.named_parameters().ToList();
        var b = explicitFfn.named_parameters().ToList();
        Assert.Equal(a.Select(p => p.name), b.Select(p => p.name));
        Assert.Contains("blocks.1.mlp.fc_in.weight", a.Select(p => p.name));               // the names checkpoints use are kept
        foreach (var ((name, x), (_, y)) in a.Zip(b)) Assert.True(x.eq(y).all().item<bool>(), name);
        using var ids = torch.randint(0, 11, new long[] { 2, 9 }, generator: new Generator(1));
        using var ya = plain.call(ids);
        using var yb = explicitFfn.call(ids);
        Assert.True(ya.eq(yb).all().item<bool>());
        Assert.NotNull(plain.Blocks[0].Mlp);
        Assert.Same(plain.Blocks[0].Mlp, plain.Blocks[0].Ffn);
    }

    [Fact]
    public void TheRandomStreamAfterTheModelIsUnchanged()
    {
        // the block draws its default MLP after the mixer, as before the factory existed: the next draw is the same either way
        torch.manual_seed(3);
        using (new TinyGpt(Config)) { }
        using var after = torch.rand(4);
        torch.manual_seed(3);
        using (new TinyGpt(Config, ffns: _ => new TinyMlp(Config.DModel, Config.MlpDim))) { }
        using var again = torch.rand(4);
        Assert.True(after.eq(again).all().item<bool>());
    }

    [Fact]
    public void AGivenFfnIsUsedAndHooksStillFire()
    {
        torch.manual_seed(2);
        using var model = new TinyGpt(Config, ffns: _ => Upcycling.FromDense(new TinyMlp(Config.DModel, Config.MlpDim), 3, 2));
        Assert.IsType<MixtureOfExperts>(model.Blocks[0].Ffn);
        Assert.Null(model.Blocks[0].Mlp);
        Assert.Contains("blocks.0.hook_mlp_out", model.HookPoints.Keys);
        int fired = 0;
        using (model.HookPoints["blocks.0.hook_mlp_out"].AddHook((t, _) => { fired++; return null; }))
        using (var y = model.call(torch.randint(0, 11, new long[] { 1, 5 }))) Assert.Equal(new long[] { 1, 5, 11 }, y.shape);
        Assert.Equal(1, fired);
        Assert.Equal("ffns", Assert.Throws<ArgumentException>(() => new TinyGpt(Config with { Mlp = false }, ffns: _ => new TinyMlp(16, 16))).ParamName);
    }
}
