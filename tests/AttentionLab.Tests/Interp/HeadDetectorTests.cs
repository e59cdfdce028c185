using AttentionLab.Attention;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>HeadDetector and per-head scores, on patterns fed into a TinyGpt through hook_pattern.</summary>
public class HeadDetectorTests
{
    const int L = 8, T = 2 * L + 1;                                                // [BOS] S S

    /// <summary>Two sequences [0, S, S] with distinct S from 1 … 12.</summary>
    static Tensor RepeatedTokens()
    {
        var rows = new[] { new long[] { 3, 7, 1, 12, 5, 9, 2, 11 }, new long[] { 10, 4, 8, 6, 1, 3, 12, 2 } };
        return torch.tensor(rows.SelectMany(s => new long[] { 0 }.Concat(s).Concat(s)).ToArray(), new long[] { 2, T });
    }

    /// <summary>Row i attends to i − 1 (row 0 to itself).</summary>
    static Tensor PreviousTokenPattern()
    {
        var p = torch.zeros(T, T);
        p[0, 0].fill_(1);
        for (int i = 1; i < T; i++) p[i, i - 1].fill_(1);
        return p;
    }

    /// <summary>Second-copy rows attend to the token after the earlier copy (i − L + 1); every other row to BOS.</summary>
    static Tensor InductionPattern()
    {
        var p = torch.zeros(T, T);
        for (int i = 0; i < T; i++) p[i, i >= 1 + L ? i - L + 1 : 0].fill_(1);
        return p;
    }

    static (string, Func<Tensor, HookPoint, Tensor?>) Put(int layer, int head, Tensor pattern) =>
        ($"blocks.{layer}.attn.hook_pattern", (a, _) =>
        {
            var edited = a.clone();
            edited.select(1, head).copy_(pattern.expand(a.shape[0], T, T));
            return edited;
        });

    [Fact]
    public void DetectionPatternsMatchTheirDefinitions()
    {
        using var scope = NewDisposeScope();
        var x = torch.tensor(new long[] { 5, 7, 5, 7, 9, 5 }).unsqueeze(0);
        var xs = new long[] { 5, 7, 5, 7, 9, 5 };
        var prev = HeadDetector.DetectionPattern(x, HeadPattern.PreviousToken)[0];
        var dup = HeadDetector.DetectionPattern(x, HeadPattern.DuplicateToken)[0];
        var ind = HeadDetector.DetectionPattern(x, HeadPattern.Induction)[0];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
            {
                Assert.Equal(j == i - 1 ? 1f : 0f, prev[i, j].item<float>());
                Assert.Equal(j < i && xs[j] == xs[i] ? 1f : 0f, dup[i, j].item<float>());
                Assert.Equal(j >= 1 && j <= i && xs[j - 1] == xs[i] ? 1f : 0f, ind[i, j].item<float>());
            }
    }

    [Fact]
    public void DetectFindsHandBuiltPreviousTokenAndInductionHeads()
    {
        using var model = HookTests.Model(PositionKind.Learned, seed: 70);
        using var scope = NewDisposeScope();
        var x = RepeatedTokens();
        using var hooks = model.Hooks(Put(0, 1, PreviousTokenPattern()), Put(1, 2, InductionPattern()));
        var prev = HeadDetector.Detect(model, x, HeadPattern.PreviousToken);
        var induction = HeadDetector.Detect(model, x, HeadPattern.Induction);
        Assert.Equal(new long[] { 2, 4 }, prev.shape);
        Assert.Equal(1L, prev.argmax().item<long>());                                     // (layer 0, head 1)
        Assert.Equal((T - 1.0) / T, prev[0, 1].item<float>(), 5);                         // all mass on the pattern except row 0's
        Assert.Equal(1 * 4 + 2, induction.argmax().item<long>());                          // (layer 1, head 2)
        Assert.Equal((double)L / T, induction[1, 2].item<float>(), 5);                     // the L second-copy rows
        var noBos = HeadDetector.Detect(model, x, HeadPattern.Induction, excludeBos: true);
        Assert.Equal(1.0, noBos[1, 2].item<float>(), 5);                                  // BOS rows no longer count
        var custom = HeadDetector.Detect(model, x, HeadDetector.DetectionPattern(x, HeadPattern.PreviousToken)[0]);
        Assert.True(TensorBits.Same(custom, prev), "a custom [T, T] pattern gives the built-in scores");
        var abs = HeadDetector.Detect(model, x, HeadPattern.PreviousToken, DetectionMetric.Abs);
        Assert.Equal(1 - 1.0 / T, abs[0, 1].item<float>(), 5);                            // |A − P| = 1 only at (0, 0)
        Assert.True(abs[0, 1].item<float>() > abs[0, 0].item<float>());
    }

    [Fact]
    public void ScoreIsTheMassOnThePatternOverTheTotalMassAveragedOverTheBatch()
    {
        torch.manual_seed(71);
        using var scope = NewDisposeScope();
        var a = torch.softmax(torch.randn(3, 2, 5, 5), -1);
        var p = torch.randint(0, 2, new long[] { 3, 5, 5 }).to(float32);
        var score = HeadDetector.Score(a, p);
        for (int h = 0; h < 2; h++)
        {
            double expected = Enumerable.Range(0, 3).Average(b => (a[b, h] * p[b]).sum().item<float>() / a[b, h].sum().item<float>());
            Assert.Equal(expected, score[h].item<float>(), 5);
        }
        Assert.Equal("detectionPattern", Assert.Throws<ArgumentException>(() => HeadDetector.Score(a, torch.zeros(4, 4))).ParamName);
        Assert.Equal("patterns", Assert.Throws<ArgumentException>(() => HeadDetector.Score(a[0], p)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(
            () => HeadDetector.DetectionPattern(torch.zeros(1, 1, 3, dtype: int64), HeadPattern.Induction)).ParamName);
    }

    [Fact]
    public void PerHeadScoresUseTheCausalSinkRuleEntropyAndDistance()
    {
        using var model = HookTests.Model(PositionKind.Rope, seed: 72);
        using var scope = NewDisposeScope();
        var x = RepeatedTokens();
        var bos = torch.zeros(T, T); bos.select(1, 0).fill_(1);
        var visible = ReferenceAttention.CausalKeepMask(T, T).to(float32);
        var uniform = visible / visible.sum(-1, keepdim: true);
        using var hooks = model.Hooks(Put(0, 3, bos), Put(1, 0, uniform));
        var (_, cache) = model.RunWithCache(x);
        using var _ = cache;
        var sink = HeadScores.SinkScore(cache);
        Assert.Equal(new long[] { 2, 4 }, sink.shape);
        Assert.Equal(1.0, sink[0, 3].item<float>(), 6);
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 4; h++)
            {
                var a = cache["pattern", l];
                double expected = Enumerable.Range(0, 2).Average(b => Enumerable.Range(1, T - 1).Average(i => a[b, h, i, 0].item<float>()));   // i ≥ 1
                Assert.Equal(expected, sink[l, h].item<float>(), 5);
            }
        var key3 = HeadScores.SinkScore(cache, key: 3);
        Assert.Equal(Enumerable.Range(3, T - 3).Average(i => 1.0 / (i + 1)), key3[1, 0].item<float>(), 5);   // uniform: 1/(i+1) for i ≥ 3
        Assert.Equal(0.25, HeadScores.SinkRate(torch.tensor(new[] { 0.1f, 0.31f, 0.2f, 0.3f, 0.9f, 0f, 0f, 0f }).view(2, 4)), 12);
        Assert.Equal(Enumerable.Range(0, T).Average(i => Math.Log(i + 1)), HeadScores.Entropy(cache)[1, 0].item<float>(), 4);
        Assert.Equal(0.0, HeadScores.Entropy(cache)[0, 3].item<float>(), 6);
        Assert.Equal(Enumerable.Range(0, T).Average(i => i / 2.0), HeadScores.MeanDistance(cache)[1, 0].item<float>(), 4);
        Assert.Equal(Enumerable.Range(0, T).Average(i => (double)i), HeadScores.MeanDistance(cache)[0, 3].item<float>(), 4);
        Assert.Equal(new long[] { 2, 2, 4, T, T }, HeadScores.Patterns(cache).shape);
        Assert.Equal("key", Assert.Throws<ArgumentOutOfRangeException>(() => AttentionStats.SinkScore(uniform, key: T)).ParamName);
    }
}
