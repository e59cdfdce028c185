using AttentionLab.Attention;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>P12's retrieval score on hand-built attention rows (spec §6) and the detection run's plumbing on a random TinyGpt.</summary>
public class RetrievalScoreTests
{
    // context: BOS f f KEY v1 v2 v3 f — the needle is [3, 7) (KEY v1 v2 v3), e − s = 4
    static readonly long[] Context = [0, 9, 9, 5, 11, 12, 13, 9];

    static Tensor Row(int heads, params int[] topKeyPerHead)
    {
        var row = torch.zeros(heads, Context.Length, dtype: ScalarType.Float64);
        for (int h = 0; h < heads; h++) row[h, topKeyPerHead[h]] = 1;
        return row;
    }

    [Fact]
    public void AHeadCopyingTheNeedleScoresAnswerTokensOverNeedleLength()
    {
        var scores = new double[1, 3];
        // three steps emit v1, v2, v3; head 0 looks at them, head 1 at BOS, head 2 at the needle's KEY (a different token)
        foreach (var (emitted, position) in new[] { (11L, 4), (12L, 5), (13L, 6) })
            RetrievalScore.AddStep([Row(3, position, 0, 3)], emitted, Context, 3, 7, scores);
        Assert.Equal(3 / 4.0, scores[0, 0], 12);                                              // #answer tokens / (e − s)
        Assert.Equal(0, scores[0, 1]);                                                        // all mass on BOS: nothing
        Assert.Equal(0, scores[0, 2]);                                                        // on the needle, but not the emitted token
        // the same token outside the needle does not count (position 2 holds f = 9, emitted 9)
        var outside = new double[1, 1];
        RetrievalScore.AddStep([Row(1, 2)], 9, Context, 3, 7, outside);
        Assert.Equal(0, outside[0, 0]);
    }

    [Fact]
    public void OnlyRetrievedRunsAreAveraged()
    {
        var hit = new RetrievalRun(new double[,] { { 1.0, 0.25 } }, [11, 12, 13], AnswerRecall: 1);
        var miss = new RetrievalRun(new double[,] { { 0.0, 0.75 } }, [9, 9, 9], AnswerRecall: 0.5);   // recall must exceed 0.5
        var mean = RetrievalScore.Average([hit, miss], 1, 2);
        Assert.Equal(1.0, mean[0, 0]);
        Assert.Equal(0.25, mean[0, 1]);
        Assert.True(double.IsNaN(RetrievalScore.Average([miss], 1, 2)[0, 0]));
    }

    [Fact]
    public void DetectionDecodesGreedilyAndReadsEachHeadsRow()
    {
        torch.manual_seed(3);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, MlpRatio: 2, VocabSize: 16, MaxLength: 32,
            Positions: PositionKind.Learned));
        using var scope = NewDisposeScope();
        long[] prompt = [0, 9, 9, 5, 11, 12, 13, 9, 5];
        // head (1, 0) forced onto BOS and head (1, 1) forced uniform (argmax: the first key, BOS): neither can score
        var bos = Interventions.OverridePattern(model, 1, 0, p => torch.zeros_like(p).index_fill_(-1, torch.tensor(new long[] { 0 }), 1.0));
        var uniform = Interventions.UniformAttention(model, 1, 1);
        var run = RetrievalScore.Detect(model, prompt, 3, 7, answer: [11, 12, 13], maxNewTokens: 5, bos, uniform);
        Assert.Equal((0.0, 0.0), (run.Scores[1, 0], run.Scores[1, 1]));
        Assert.All(Enumerable.Range(0, 2), h => Assert.InRange(run.Scores[0, h], 0, 5 / 4.0));
        // the continuation is the greedy one (checked against the library's sampler, with the same masks)
        using (model.Hooks(bos, uniform))
        using (var greedy = Sampling.Generate(model, torch.tensor(prompt).unsqueeze(0), 5, temperature: 0))
            Assert.Equal(greedy.Tokens[0].narrow(0, prompt.Length, 5).data<long>().ToArray(), run.Generated);
        Assert.InRange(run.AnswerRecall, 0, 1);
        Assert.Equal("needleStart", Assert.Throws<ArgumentException>(() => RetrievalScore.Detect(model, prompt, 7, 7, [11], 2)).ParamName);
        Assert.Equal("answer", Assert.Throws<ArgumentException>(() => RetrievalScore.Detect(model, prompt, 3, 7, [], 2)).ParamName);
    }
}
