using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Data;

/// <summary>The Bigram-Backcopy task: layout, the chain, determinism, the Bayes loss (against the Bayes predictor's cross-entropy), bad inputs.</summary>
public class BigramBackcopyTaskTests
{
    static long[][] Rows(Tensor t) => Enumerable.Range(0, (int)t.shape[0]).Select(n => t[n].data<long>().ToArray()).ToArray();

    [Fact]
    public void LayoutFollowsTheChain()
    {
        var task = new BigramBackcopyTask(VocabSize: 20, Length: 30, Triggers: 3, Branching: 4, TriggerRate: 0.25, ChainSeed: 5);
        var successors = task.Successors();
        Assert.Equal(task.OrdinaryCount, successors.Length);
        Assert.All(successors, s => { Assert.Equal(4, s.Distinct().Count()); Assert.All(s, x => Assert.InRange(x, 4, 19)); });
        using var batch = task.Generate(40, seed: 3);
        var tokens = Rows(batch.Tokens);
        var labels = Rows(batch.Labels);
        var copy = Enumerable.Range(0, 40).Select(n => batch.Copy[n].data<bool>().ToArray()).ToArray();
        int triggers = 0, ordinary = 0;
        for (int n = 0; n < 40; n++)
        {
            Assert.Equal(BigramBackcopyTask.BosToken, tokens[n][0]);
            Assert.DoesNotContain(BigramBackcopyTask.BosToken, tokens[n].Skip(1));                   // BOS at position 0 only
            Assert.False(task.IsTrigger(tokens[n][1]));                                               // x_1 is ordinary
            for (int t = 0; t < 30; t++)
            {
                if (t + 1 < 30) Assert.Equal(tokens[n][t + 1], labels[n][t]);                        // labels are the next token
                Assert.Equal(task.IsTrigger(tokens[n][t]), copy[n][t]);
                long x = tokens[n][t], next = labels[n][t];
                if (t == 0) { Assert.InRange(next, 4, 19); continue; }
                if (task.IsTrigger(x))
                {
                    triggers++;
                    Assert.False(task.IsTrigger(tokens[n][t - 1]));                                   // a trigger follows an ordinary token
                    Assert.Equal(tokens[n][t - 1], next);                                             // backcopy
                }
                else
                {
                    ordinary++;
                    Assert.True(task.IsTrigger(next) || successors[x - 4].Contains(next), $"{next} is not a successor of {x}");
                }
            }
        }
        double rate = (double)triggers / ordinary;                                                    // triggers per ordinary position ≈ p
        Assert.InRange(rate, 0.18, 0.32);
    }

    [Fact]
    public void SameSeedSameDataAndTheChainComesFromChainSeed()
    {
        var task = new BigramBackcopyTask(Branching: 2);
        using var a = task.Generate(5, seed: 1);
        using var b = task.Generate(5, seed: 1);
        using var c = task.Generate(5, seed: 2);
        Assert.True(TensorBits.Same(a.Tokens, b.Tokens) && TensorBits.Same(a.Labels, b.Labels) && TensorBits.Same(a.Copy, b.Copy));
        Assert.False(TensorBits.Same(a.Tokens, c.Tokens));
        Assert.Equal(task.Successors(), task.Successors());
        Assert.NotEqual(task.Successors(), (task with { ChainSeed = 1 }).Successors());
        Assert.Equal(ScalarType.Int64, a.Tokens.dtype);
        Assert.Equal(ScalarType.Bool, a.Copy.dtype);
    }

    [Fact]
    public void BayesLossIsTheEntropyOfTheBayesPredictor()
    {
        var task = new BigramBackcopyTask(VocabSize: 16, Length: 12, Triggers: 2, Branching: 3, TriggerRate: 0.3);
        const int N = 300;
        using var batch = task.Generate(N, seed: 9);
        var successors = task.Successors();
        var tokens = Rows(batch.Tokens);
        var probs = new double[N, 12, 16];                                                           // p(x_{t+1} | x_0 … x_t), built from the rules
        for (int n = 0; n < N; n++)
            for (int t = 0; t < 12; t++)
            {
                long x = tokens[n][t];
                if (x == BigramBackcopyTask.BosToken) for (int o = 3; o < 16; o++) probs[n, t, o] = 1.0 / task.OrdinaryCount;
                else if (task.IsTrigger(x)) probs[n, t, tokens[n][t - 1]] = 1;
                else
                {
                    for (int g = 1; g <= 2; g++) probs[n, t, g] += 0.3 / 2;
                    foreach (var s in successors[x - 3]) probs[n, t, s] += 0.7 / 3;
                }
            }
        var p = torch.tensor(probs.Cast<double>().ToArray(), new long[] { N, 12, 16 }, dtype: float64);
        var logits = p.clamp_min(1e-300).log();
        double entropy = (-(p * logits).sum(-1)).mean().item<double>();                             // mean_t H(p_t)
        Assert.Equal(entropy, task.BayesLoss(batch), 10);
        double crossEntropy = batch.Loss(logits).item<double>();                                     // its sample estimate on the drawn labels
        Assert.InRange(crossEntropy - task.BayesLoss(batch), -0.05, 0.05);
        double h = -0.3 * Math.Log(0.15) - 0.7 * Math.Log(0.7 / 3);
        Assert.Equal(h, task.OrdinaryEntropy, 12);
        Assert.Equal(1.0, batch.CopyAccuracy(logits), 12);                                            // the Bayes predictor copies every trigger
    }

    [Fact]
    public void UniformSuccessorsGiveAContextFreeOrdinaryStep()
    {
        var task = new BigramBackcopyTask(VocabSize: 32, Triggers: 3, Branching: 28, TriggerRate: 0.2);
        Assert.All(task.Successors(), s => Assert.Equal(Enumerable.Range(4, 28).Select(i => (long)i), s.OrderBy(x => x)));
        Assert.Equal(-0.2 * Math.Log(0.2 / 3) - 0.8 * Math.Log(0.8 / 28), task.OrdinaryEntropy, 12);
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        Assert.Equal("Triggers", Assert.Throws<ArgumentException>(() => new BigramBackcopyTask(Triggers: 0).Generate(1, 0)).ParamName);
        Assert.Equal("Branching", Assert.Throws<ArgumentException>(() => new BigramBackcopyTask(Branching: 0).Generate(1, 0)).ParamName);
        var tooFew = new BigramBackcopyTask(VocabSize: 8, Triggers: 3, Branching: 5);
        Assert.Equal("VocabSize", Assert.Throws<ArgumentException>(() => tooFew.Generate(1, 0)).ParamName);
        Assert.Equal("Length", Assert.Throws<ArgumentException>(() => new BigramBackcopyTask(Length: 1).Generate(1, 0)).ParamName);
        Assert.Equal("TriggerRate", Assert.Throws<ArgumentException>(() => new BigramBackcopyTask(TriggerRate: 1).Generate(1, 0)).ParamName);
        Assert.Equal("TriggerRate", Assert.Throws<ArgumentException>(() => new BigramBackcopyTask(TriggerRate: double.NaN).Generate(1, 0)).ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => new BigramBackcopyTask().Generate(0, 0)).ParamName);
    }
}
