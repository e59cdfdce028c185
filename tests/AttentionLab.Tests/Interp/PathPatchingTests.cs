using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>
/// Path patching against activation patching where they must agree, and against a brute-force run that adds a sender's
/// result difference to the stream by hand (float64, random weights; two mixers).
/// </summary>
public class PathPatchingTests
{
    const int D = 16, H = 4, Vocab = 11, T = 6;

    static TinyGpt Model(string mixer, bool mlp)
    {
        torch.manual_seed(21);
        var config = new TinyGptConfig(Layers: 2, DModel: D, Heads: H, MlpRatio: 2, VocabSize: Vocab, MaxLength: 16, Positions: PositionKind.Learned, Mlp: mlp);
        var model = mixer == "softmax" ? new TinyGpt(config) : new TinyGpt(config, _ => new SlidingWindowAttention(D, H, windowKeys: 3));
        model.to(ScalarType.Float64);
        return model;
    }

    static (Tensor Clean, Tensor Corrupt) Inputs()
    {
        var clean = torch.randint(0, Vocab, new long[] { 2, T }, generator: new Generator(8));
        var corrupt = clean.clone();
        corrupt[TensorIndex.Colon, 1] = (clean[TensorIndex.Colon, 1] + 3).remainder(Vocab);            // one token changed
        corrupt[TensorIndex.Colon, 3] = (clean[TensorIndex.Colon, 3] + 5).remainder(Vocab);
        return (clean, corrupt);
    }

    /// <summary>logit(2) − logit(7) at the last position, averaged over the batch.</summary>
    static double Metric(Tensor logits) =>
        (logits.select(1, -1).select(1, 2) - logits.select(1, -1).select(1, 7)).mean().item<double>();

    public static TheoryData<string, bool> Models() => new() { { "softmax", true }, { "softmax", false }, { "sliding window", true } };

    [Theory]
    [MemberData(nameof(Models))]
    public void WithoutFreezingItIsActivationPatching(string mixer, bool mlp)
    {
        using var model = Model(mixer, mlp);
        using var scope = NewDisposeScope();
        var (clean, corrupt) = Inputs();
        var activation = Patching.HeadOutputs(model, clean, corrupt, Metric);                   // [L, H]
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < H; h++)
            {
                double path = PathPatching.Run(model, clean, corrupt, Metric, [(l, h)], [PathReceiver.Residual(1)], freezeOtherHeads: false);
                Assert.Equal(activation[l, h].item<double>(), path, 10);
                if (l == 1)                                                                       // the last block: nothing to freeze downstream
                    Assert.Equal(activation[l, h].item<double>(),
                        PathPatching.Run(model, clean, corrupt, Metric, [(l, h)], [PathReceiver.Residual(1)]), 10);
            }
    }

    /// <summary>
    /// Attention-only: the path L0Hh → logits moves the final stream by the sender's result difference alone, and the path
    /// L0Hh → every layer-1 head (q, k, v) moves layer 1's input by it but not the stream that skips layer 1.
    /// </summary>
    [Theory]
    [InlineData("softmax")]
    [InlineData("sliding window")]
    public void PathsMatchHandAddedResultDifferences(string mixer)
    {
        using var model = Model(mixer, mlp: false);
        using var scope = NewDisposeScope();
        var (clean, corrupt) = Inputs();
        var (cleanLogits, cleanCache) = model.RunWithCache(clean);
        var (corruptLogits, corruptCache) = model.RunWithCache(corrupt);
        using (cleanCache)
        using (corruptCache)
        {
            double m0 = Metric(corruptLogits), m1 = Metric(cleanLogits);
            for (int h = 0; h < H; h++)
            {
                var delta = ResidualStream.HeadResults(model, cleanCache, 0).select(2, h) - ResidualStream.HeadResults(model, corruptCache, 0).select(2, h);
                double direct = Metric(model.RunWithHooks(corrupt, ("blocks.1.hook_resid_post", (x, _) => x + delta)));
                Assert.Equal(Patching.Normalise(direct, m1, m0),
                    PathPatching.Run(model, clean, corrupt, Metric, [(0, h)], [PathReceiver.Residual(1)]), 10);
                var receivers = Enumerable.Range(0, H).SelectMany(r => new[] { "q", "k", "v" }.Select(i => PathReceiver.HeadInput(1, r, i))).ToList();
                double viaLayer1 = Metric(model.RunWithHooks(corrupt, ("blocks.1.hook_resid_pre", (x, _) => x + delta),
                    ("blocks.1.hook_resid_post", (x, _) => x - delta)));
                Assert.Equal(Patching.Normalise(viaLayer1, m1, m0), PathPatching.Run(model, clean, corrupt, Metric, [(0, h)], receivers), 10);
            }
        }
    }

    [Fact]
    public void BadPathsAreNamed()
    {
        using var model = Model("softmax", mlp: true);
        var (clean, corrupt) = Inputs();
        Assert.Equal("senders", Assert.Throws<ArgumentException>(
            () => PathPatching.Run(model, clean, corrupt, Metric, [], [PathReceiver.Residual(1)])).ParamName);
        Assert.Equal("senders", Assert.Throws<ArgumentException>(
            () => PathPatching.Run(model, clean, corrupt, Metric, [(0, H)], [PathReceiver.Residual(1)])).ParamName);
        Assert.Equal("receivers", Assert.Throws<ArgumentException>(
            () => PathPatching.Run(model, clean, corrupt, Metric, [(0, 0)], [PathReceiver.Residual(2)])).ParamName);
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => PathReceiver.HeadInput(1, 0, "z")).ParamName);
        Assert.Equal("corruptTokens", Assert.Throws<ArgumentException>(
            () => PathPatching.Run(model, clean, corrupt.narrow(1, 0, 3), Metric, [(0, 0)], [PathReceiver.Residual(1)])).ParamName);
    }
}
