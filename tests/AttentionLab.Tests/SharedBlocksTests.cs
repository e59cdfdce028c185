using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

/// <summary>The backbone, KV cache, data, trainer and bench blocks added with Aaren.</summary>
public class SharedBlocksTests
{
    [Theory]
    [InlineData(PositionKind.None)]
    [InlineData(PositionKind.Sinusoidal)]
    public void TinyGptStepWithKvCacheReproducesForward(PositionKind positions)
    {
        torch.manual_seed(13);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 12, Heads: 3, MlpRatio: 2, InputFeatures: 2, OutputFeatures: 3,
            Positions: positions));
        var x = torch.randn(2, 21, 2);                                          // 21 > the cache's first capacity
        using var _ = torch.no_grad();
        var full = model.call(x);
        using var state = model.NewState(2);
        var steps = Enumerable.Range(0, 21).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-5, rtol: 1e-5, what: "KV-cache decode vs forward");
        Assert.Equal(2L * 21 * 2 * 2 * 12 * 4, state.Bytes);                   // layers · t · (k + v) · B · d · 4 bytes
    }

    [Fact]
    public void TinyGptIsCausalAndRejectsBadInput()
    {
        torch.manual_seed(14);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(new TinyGptConfig(DModel: 8, Heads: 2, InputFeatures: 1, OutputFeatures: 1));
        var x = torch.randn(1, 6, 1);
        var y = x.clone(); y[0, 4, 0] = torch.tensor(5f);
        using var _ = torch.no_grad();
        AssertClose.Tensors(model.call(y).narrow(1, 0, 4), model.call(x).narrow(1, 0, 4), atol: 0, rtol: 0, what: "past outputs");
        var e = Assert.Throws<ArgumentException>(() => model.call(torch.randn(1, 6, 3)));
        Assert.Equal("x", e.ParamName);
        Assert.Contains("[1, 6, 3]", e.Message);
        Assert.Equal("Heads", Assert.Throws<ArgumentException>(() => new TinyGptConfig(DModel: 10, Heads: 4).Validate()).ParamName);
    }

    [Fact]
    public void SinusoidDataIsDeterministicAndTargetsAreTheNextValues()
    {
        var task = new SinusoidTask(Length: 16, Horizon: 4);
        using var a = task.Generate(5, seed: 3);
        using var b = task.Generate(5, seed: 3);
        using var c = task.Generate(5, seed: 4);
        Assert.True(a.Series.eq(b.Series).all().item<bool>());
        Assert.False(a.Series.eq(c.Series).all().item<bool>());
        Assert.Equal(new long[] { 5, 16, 4 }, a.Targets.shape);
        using var scope = NewDisposeScope();
        AssertClose.Tensors(a.Targets[.., 3, 2], a.Series[.., 6], atol: 0, rtol: 0, what: "target t=3, h=2 is x_6");
        Assert.True(a.Labels.ge(0).all().item<bool>() && a.Labels.lt(task.Buckets).all().item<bool>());
        using var lagged = task.Generate(5, seed: 3).WithLags(3);
        AssertClose.Tensors(lagged.Inputs[.., 5], a.Series[.., TensorIndex.Slice(3, 6)].flip(-1), atol: 0, rtol: 0, what: "lags x_5, x_4, x_3");
        Assert.Equal(0f, lagged.Inputs[0, 0, 1].item<float>());
    }

    [Fact]
    public void TrainerFollowsTheScheduleAndLowersTheLoss()
    {
        var o = new TrainOptions(Steps: 100, LearningRate: 1e-2, WarmupSteps: 10, MinLearningRateRatio: 0.1);
        Assert.Equal(1e-3, Trainer.LearningRateAt(0, o), 12);                 // warm-up from lr/10
        Assert.Equal(1e-2, Trainer.LearningRateAt(10, o), 12);                // peak after warm-up
        Assert.Equal(1e-3, Trainer.LearningRateAt(99, o), 12);                // cosine floor at the end

        torch.manual_seed(15);
        using var model = nn.Linear(3, 1);
        using var x = torch.randn(64, 3);
        using var y = x.matmul(torch.tensor(new[] { 1f, -2f, 0.5f }).unsqueeze(1));
        int reports = 0;
        var history = Trainer.Fit(model, _ => nn.functional.mse_loss(model.call(x), y), o with { LearningRate = 0.1, StepsPerEpoch = 25, ReportEvery = 50 },
            new InlineProgress<TrainProgress>(_ => reports++), epoch => new Dictionary<string, double> { ["epoch"] = epoch });
        Assert.Equal(100, history.Losses.Count);
        Assert.Equal(4, history.Epochs.Count);
        Assert.Equal(2, reports);
        Assert.True(history.Losses[^1] < 0.1 * history.Losses[0], $"loss {history.Losses[0]} → {history.Losses[^1]}");
    }

    [Fact]
    public void TrainerLeavesNoTensorsBehind()
    {
        torch.manual_seed(16);
        using var model = nn.Linear(3, 1);
        using var x = torch.randn(8, 3);
        Trainer.Fit(model, _ => model.call(x).square().mean(), new TrainOptions(Steps: 2));
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Trainer.Fit(model, _ => model.call(x).square().mean(), new TrainOptions(Steps: 5), evaluate: _ => new Dictionary<string, double>());
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void KvCacheGrowsAndKeepsWhatWasAppended()
    {
        using var scope = NewDisposeScope();
        using var cache = new KvCache(1, 2, 3, 4, initialCapacity: 2);
        var k = torch.randn(1, 5, 2, 3);
        var v = torch.randn(1, 5, 2, 4);
        cache.Append(k.narrow(1, 0, 1), v.narrow(1, 0, 1));
        cache.Append(k.narrow(1, 1, 4), v.narrow(1, 1, 4));
        Assert.Equal(5, cache.Length);
        AssertClose.Tensors(cache.Keys, k, atol: 0, rtol: 0, what: "keys");
        AssertClose.Tensors(cache.Values, v, atol: 0, rtol: 0, what: "values");
        Assert.Equal(5 * 2 * (3 + 4) * 4, cache.Bytes);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => cache.Append(k, torch.randn(1, 5, 2, 5))).ParamName);
    }

    [Theory]
    [InlineData(0, 3)]    // from the front
    [InlineData(2, 3)]    // overlapping move: the tail is longer than the gap
    [InlineData(5, 2)]    // up to the end: nothing moves
    [InlineData(3, 0)]    // nothing removed
    public void KvCacheRemoveRangeClosesTheGap(long start, long count)
    {
        using var scope = NewDisposeScope();
        using var cache = new KvCache(2, 1, 3, 2, initialCapacity: 4);
        var k = torch.randn(2, 7, 1, 3);
        var v = torch.randn(2, 7, 1, 2);
        cache.Append(k, v);
        cache.RemoveRange(start, count);
        var kept = torch.tensor(Enumerable.Range(0, 7).Where(i => i < start || i >= start + count).Select(i => (long)i).ToArray());
        Assert.Equal(7 - count, cache.Length);
        AssertClose.Tensors(cache.Keys, k.index_select(1, kept), atol: 0, rtol: 0, what: "keys after the removal");
        AssertClose.Tensors(cache.Values, v.index_select(1, kept), atol: 0, rtol: 0, what: "values after the removal");
        cache.Append(k.narrow(1, 0, 1), v.narrow(1, 0, 1));                                      // appends land after the kept tokens
        AssertClose.Tensors(cache.Keys.narrow(1, 7 - count, 1), k.narrow(1, 0, 1), atol: 0, rtol: 0, what: "append after removal");
        Assert.Equal("count", Assert.Throws<ArgumentException>(() => cache.RemoveRange(start, 9)).ParamName);
        Assert.Equal("start", Assert.Throws<ArgumentException>(() => cache.RemoveRange(-1, 1)).ParamName);
    }
}
