using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.RoutingTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>Sampling decode: greedy equals an argmax rollout by full forward passes (streamed and not), the returned
/// log-probabilities equal the forward pass's, seeds reproduce, top-1 is greedy, and the recomputed log-probabilities carry gradient.</summary>
public class SamplingTests
{
    const int D = 16, H = 2, Vocab = 13;

    static TinyGpt Model(bool streams)
    {
        torch.manual_seed(41);
        var config = new TinyGptConfig(Layers: 2, DModel: D, Heads: H, MlpRatio: 2, VocabSize: Vocab, MaxLength: 24, Positions: PositionKind.Learned);
        var model = streams ? new TinyGpt(config)
            : new TinyGpt(config, _ => new RoutingAttention(D, H, clusters: 2, window: 4, balanced: false));   // no streaming Step
        model.to(ScalarType.Float64);
        return model;
    }

    static Tensor Prompt() => torch.randint(0, Vocab, new long[] { 3, 4 }, generator: new Generator(5));

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void GreedyIsTheArgmaxRollout(bool streams)
    {
        using var model = Model(streams);
        using var scope = NewDisposeScope();
        using var sample = Sampling.Generate(model, Prompt(), newTokens: 6, temperature: 0);
        var rollout = Prompt();
        for (int i = 0; i < 6; i++) rollout = torch.cat(new[] { rollout, model.call(rollout).select(1, -1).argmax(-1).unsqueeze(1) }, 1);
        Assert.Equal(rollout.data<long>().ToArray(), sample.Tokens.data<long>().ToArray());      // greedy = the argmax rollout
        AssertClose.Tensors(sample.LogProbs, Sampling.TokenLogProbs(model, sample.Tokens, 4).detach(), atol: 1e-10, rtol: 1e-10,
            what: "returned log-probabilities vs one forward pass");
    }

    [Fact]
    public void SeedsReproduceAndTopOneIsGreedy()
    {
        using var model = Model(streams: true);
        using var scope = NewDisposeScope();
        using var a = Sampling.Generate(model, Prompt(), 8, temperature: 1.5, generator: new Generator(3));
        using var b = Sampling.Generate(model, Prompt(), 8, temperature: 1.5, generator: new Generator(3));
        Assert.True(a.Tokens.eq(b.Tokens).all().item<bool>());
        using var top1 = Sampling.Generate(model, Prompt(), 8, temperature: 2, topK: 1, generator: new Generator(4));
        using var greedy = Sampling.Generate(model, Prompt(), 8, temperature: 0);
        Assert.True(top1.Tokens.eq(greedy.Tokens).all().item<bool>(), "top-1 sampling is not greedy");
        Assert.True((a.LogProbs <= 0).all().item<bool>());
        var lp = Sampling.TokenLogProbs(model, a.Tokens, 4);
        lp.sum().backward();
        Assert.True(model.parameters().Any(p => p.grad is { } g && g.abs().sum().item<double>() > 0), "no gradient reached the model");
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        using var model = Model(streams: true);
        Assert.Equal("newTokens", Assert.ThrowsAny<ArgumentException>(() => Sampling.Generate(model, Prompt(), 0)).ParamName);
        Assert.Equal("newTokens", Assert.Throws<ArgumentException>(() => Sampling.Generate(model, Prompt(), 21)).ParamName);   // 4 + 21 > 24
        Assert.Equal("temperature", Assert.Throws<ArgumentException>(() => Sampling.Generate(model, Prompt(), 2, temperature: -1)).ParamName);
        Assert.Equal("topK", Assert.Throws<ArgumentException>(() => Sampling.Generate(model, Prompt(), 2, topK: Vocab + 1)).ParamName);
        Assert.Equal("promptLength", Assert.Throws<ArgumentOutOfRangeException>(() => Sampling.TokenLogProbs(model, Prompt(), 4)).ParamName);
    }
}
