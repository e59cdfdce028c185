using AttentionLab.Attention;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Papers.AttentionSinks;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>The P47 experiment plumbing: streaming evaluation, the measurements per variant, a tiny end-to-end run.</summary>
public class SinkExperimentTests
{
    static readonly TextCorpus Corpus = TextCorpus.MobyDick();

    static TinyGpt Model(AttentionKind kind = AttentionKind.Softmax, int seed = 70)
    {
        torch.manual_seed(seed);
        return new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, MlpRatio: 2, Positions: PositionKind.Rope, VocabSize: Corpus.VocabSize, MaxLength: 64, Attention: kind));
    }

    [Fact]
    public void StreamingLossEqualsTheForwardLossWhileTheCacheHoldsEverything()
    {
        using var scope = NewDisposeScope();
        using var model = Model();
        using var stream = Corpus.Contiguous(24, CorpusSplit.Validation);
        double forward;
        using (torch.no_grad()) forward = stream.Loss(model.call(stream.Tokens)).item<float>();
        var dense = StreamingEval.PolicyLoss(model, stream, chunk: 24);
        var recompute = StreamingEval.RecomputeWindowLoss(model, stream, chunk: 24, window: 24);
        var roomy = StreamingEval.PolicyLoss(model, stream, chunk: 24, _ => KvPolicy.SinkWindow(window: 20, nSink: 4));
        Assert.Equal(forward, dense[0], 1e-5);
        Assert.Equal(forward, recompute[0], 1e-5);
        Assert.Equal(dense[0], roomy[0], 12);
        var chunks = StreamingEval.PolicyLoss(model, stream, chunk: 10);
        Assert.Equal(3, chunks.Length);                                                        // 10 + 10 + 4: the short last chunk is kept
        Assert.Equal(forward, (chunks[0] * 10 + chunks[1] * 10 + chunks[2] * 4) / 24, 1e-5);
    }

    [Fact]
    public void RecomputedWindowSeesOnlyTheLastWTokens()
    {
        using var scope = NewDisposeScope();
        using var model = Model();
        using var stream = Corpus.Contiguous(20, CorpusSplit.Validation);
        var perToken = StreamingEval.RecomputeWindowLoss(model, stream, chunk: 1, window: 5);
        using var tail = new TokenBatch(stream.Tokens.narrow(1, 11, 5), stream.Labels.narrow(1, 11, 5));   // tokens 11 … 15
        using (torch.no_grad())
        {
            var logits = model.call(tail.Tokens);
            double expected = nn.functional.cross_entropy(logits.select(1, 4), tail.Labels.select(1, 4)).item<float>();
            Assert.Equal(expected, perToken[15], 5);                                           // position 15 read tokens 11 … 15 only
        }
    }

    [Fact]
    public void MeasurementsSeeEachVariantsNoOpChannel()
    {
        using var scope = NewDisposeScope();
        using var eval = Corpus.Sample(4, 32, seed: 1, CorpusSplit.Validation);
        using var softmax = Model(AttentionKind.Softmax);
        using var off1 = Model(AttentionKind.Softmax1);
        using var gated = Model(AttentionKind.GatedG1);
        var s = SinkExperiment.Measure(softmax, eval);
        var o = SinkExperiment.Measure(off1, eval);
        var g = SinkExperiment.Measure(gated, eval);
        Assert.True(Math.Abs(s.AttendNowhere) < 1e-6, $"softmax rows sum to 1, nowhere {s.AttendNowhere}");
        Assert.True(o.AttendNowhere > 0.01, $"softmax₁ sends mass nowhere: {o.AttendNowhere}");
        Assert.True(double.IsNaN(s.GateClosed));
        Assert.InRange(g.GateClosed, 0.05, 0.95);
        Assert.Equal(2, s.SinkScores.Length);
        Assert.Equal(s.SinkScores.SelectMany(r => r).Max(), s.MaxSinkScore, 12);
        Assert.Equal(s.SinkScores.SelectMany(r => r).Count(x => x > 0.3) / 4.0, s.SinkRate, 12);
        Assert.Equal(32, s.StrongestPattern.Length);
    }

    [Fact]
    public void ATinyRunProducesEveryTableAndChart()
    {
        var config = SinkExperiment.Config.Smoke with
        {
            DModel = 16, Heads = 2, Layers = 1, SeqLen = 16, BatchSize = 4, Steps = 6, WarmupSteps = 2, EvalEvery = 3, EvalBatch = 2,
            Variants = new[] { AttentionKind.Softmax, AttentionKind.Register }, StreamFactor = 2, SweepBudgets = new[] { 6, 12 },
        };
        var result = SinkExperiment.Run(config, Corpus, CPU);
        Assert.Equal(2, result.Runs.Count);
        Assert.Equal(new[] { 3, 6 }, result.Runs[0].Curve.Select(p => p.Step));
        Assert.All(result.Runs, r => Assert.Equal(4, r.Streaming.Count));
        Assert.All(result.Runs, r => Assert.Equal(4, r.Streaming[SinkExperiment.SinkWindow].Length));   // 32 tokens in chunks of 8
        Assert.Equal(4, result.Runs[0].Sweep.Count);
        Assert.Empty(result.Runs[1].Sweep);
        Assert.Equal(2, result.ToDataFrame().Rows.Count);
        Assert.NotNull(result.SinkScoreGrid());
        Assert.NotNull(result.SinkRateCurves());
        Assert.NotNull(result.CacheSweepChart());
        Assert.NotNull(result.StreamingChart(AttentionKind.Register));
        Assert.True(Corpus.UnigramLoss() is > 2.5 and < 3.5);
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        using var model = Model();
        using var two = Corpus.Sample(2, 8, seed: 0);
        Assert.Equal("stream", Assert.Throws<ArgumentException>(() => StreamingEval.PolicyLoss(model, two, 4)).ParamName);
        using var one = Corpus.Contiguous(8);
        Assert.Equal("chunk", Assert.Throws<ArgumentOutOfRangeException>(() => StreamingEval.PolicyLoss(model, one, 0)).ParamName);
        Assert.Equal("window", Assert.Throws<ArgumentOutOfRangeException>(() => StreamingEval.RecomputeWindowLoss(model, one, 4, 0)).ParamName);
        Assert.Equal("SweepBudgets", Assert.Throws<ArgumentException>(() => (SinkExperiment.Config.Smoke with { SweepBudgets = new[] { 2 } }).Validate()).ParamName);
    }
}
