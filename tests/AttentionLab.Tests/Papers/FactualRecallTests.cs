using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.FactualRecall;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P08 factual recall: the linearised MLP decomposition against its loop twin and against the MLP itself, erf against
/// torch's gelu, the prompt set, bad input, and the experiment's claims at a reduced size.
/// </summary>
public class FactualRecallTests(ITestOutputHelper output)
{
    static TinyGpt RandomModel(int layers, int d, int heads, double ratio, int vocab, int maxLength, int seed)
    {
        torch.manual_seed(seed);
        var model = new TinyGpt(new TinyGptConfig(layers, d, heads, ratio, Positions: PositionKind.Learned, VocabSize: vocab, MaxLength: maxLength));
        using (torch.no_grad())
            foreach (var p in model.parameters()) p.add_(torch.randn_like(p) * 0.3);
        return model;
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", FactualRecallExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", FactualRecallExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (FactualRecallExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
        var full = FactualRecallExperiment.Config.Full.Kb();                                  // the shipped facts hold enough countries
        Assert.Equal(2 * FactualRecallExperiment.Config.Full.Subjects, full.All.Count);
        Assert.Equal(32, full.SeqLen);
    }

    [Fact]
    public void ErfGeluMatchesTorchInFloat64()
    {
        var u = Enumerable.Range(-800, 1601).Select(i => i / 100.0).ToArray();
        using var t = torch.tensor(u, dtype: float64);
        var expected = nn.functional.gelu(t).data<double>().ToArray();
        double gap = u.Zip(expected).Max(p => Math.Abs(FactualRecallNaive.Gelu(p.First) - p.Second));
        Assert.True(gap <= 1e-14, $"max |Δ| {gap}");
        Assert.True(double.IsNaN(FactualRecallNaive.Erf(double.NaN)));
    }

    [Theory]
    [InlineData(1, 1, 5, 1, 1.0)]        // T = 1, one head, hidden width 5
    [InlineData(2, 3, 7, 3, 2.5)]        // odd d, hidden not a multiple of d
    [InlineData(3, 6, 8, 2, 4.0)]
    public void FastDecompositionEqualsTheLoopTwinInFloat64(int layers, int t, int d, int heads, double ratio)
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel(layers, d * heads, heads, ratio, 11, 8, seed: t + d);
        model.to(float64);
        var tokens = torch.randint(0, 11, new long[] { 2, t });
        var (_, cache) = model.RunWithCache(tokens);
        using (cache)
            for (int l = 0; l < layers; l++)
                for (int p = 0; p < t; p++)
                {
                    using var dec = MlpDecomposer.Linearize(model, cache, l, p);
                    Assert.Equal(1 + 1 + (l + 1) * (heads + 1) + l, dec.Labels.Count);   // embed, pos, heads + b_O per block ≤ ℓ, MLPs < ℓ
                    var sumGap = (dec.Sum() - dec.Output).abs().max().item<double>();
                    Assert.True(sumGap <= 1e-12, $"Σ m_c + bias vs MLP(x): {sumGap}");
                    for (int b = 0; b < 2; b++)
                    {
                        var r = Enumerable.Range(0, (int)dec.Inputs.shape[0]).Select(c => dec.Inputs[c, b].data<double>().ToArray()).ToArray();
                        var naive = FactualRecallNaive.Linearize(model, l, r);
                        for (int c = 0; c < r.Length; c++)
                            Assert.True(MaxAbs(dec.Components[c, b].data<double>().ToArray(), naive.Components[c]) <= 1e-10, $"m_{c}, layer {l}, pos {p}");
                        Assert.True(MaxAbs(dec.Bias[b].data<double>().ToArray(), naive.Bias) <= 1e-10);
                        Assert.True(MaxAbs(dec.Output[b].data<double>().ToArray(), naive.Output) <= 1e-10);
                        Assert.True(MaxAbs(dec.Gates[b].data<double>().ToArray(), naive.Gates) <= 1e-10);
                    }
                }
    }

    [Fact]
    public void NaiveSharesSumToTheMlpOutput()
    {
        var rng = new Random(3);
        double[] V(int n) => Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        double[][] M(int r, int c) => Enumerable.Range(0, r).Select(_ => V(c)).ToArray();
        var r = M(4, 6);
        var naive = FactualRecallNaive.Linearize(r, V(6), V(6), 1e-5, M(9, 6), V(9), M(6, 9), V(6));
        for (int i = 0; i < 6; i++)
            Assert.Equal(naive.Output[i], naive.Components.Sum(m => m[i]) + naive.Bias[i], 12);
    }

    [Fact]
    public void ActivationRatioIsTheProjectionOfTheShareOnItsInput()
    {
        using var scope = NewDisposeScope();
        var inputs = torch.tensor(new double[] { 1, 0, 0, 2 }, dtype: float64).view(2, 1, 2);
        var shares = torch.tensor(new double[] { 3, 5, 0, -4 }, dtype: float64).view(2, 1, 2);
        using var d = new MlpDecomposition(shares.clone(), inputs.clone(), torch.zeros(1, 2, dtype: float64), torch.zeros(1, 3, dtype: float64),
            torch.zeros(1, 2, dtype: float64), ["a", "b"], 0);
        var rho = d.ActivationRatio().data<double>().ToArray();
        Assert.Equal(3.0, rho[0], 12);                                                     // ⟨(3,5),(1,0)⟩ / 1
        Assert.Equal(-2.0, rho[1], 12);                                                    // ⟨(0,−4),(0,2)⟩ / 4
    }

    [Fact]
    public void PromptsFollowTheTemplate()
    {
        var kb = new FactualKb(subjects: 10, maxPrefix: 3, seed: 1);
        Assert.Equal(8, kb.SeqLen);
        Assert.Equal(20, kb.All.Count);
        Assert.Equal(10, kb.All.Where(f => f.Relation == kb.RelationTokens[0]).Select(f => f.Object).Distinct().Count());   // distinct capitals
        using var p = kb.Prompts(kb.All.Take(4).ToList(), [0, 1, 2, 3], seed: 5);
        var tokens = p.Tokens.data<long>().ToArray();
        for (int i = 0; i < 4; i++)
        {
            long Tok(long pos) => tokens[i * kb.SeqLen + pos];
            Assert.Equal(i + 4, p.End[i]);
            Assert.Equal(kb.Is, Tok(p.End[i]));
            Assert.Equal(kb.All[i].Subject, Tok(p.SubjectPos[i]));
            Assert.Equal(kb.All[i].Relation, Tok(p.RelationPos[i]));
            Assert.Equal(kb.The, Tok(i));
            for (long q = p.End[i] + 1; q < kb.SeqLen; q++) Assert.Equal(0, Tok(q));      // padding after END
            for (int q = 0; q < i; q++) Assert.InRange(Tok(q), 1, FactualKb.Fillers.Length);
        }
        var corrupt = kb.Corrupt(kb.All, seed: 2);
        Assert.All(kb.All.Zip(corrupt), pair =>
        {
            Assert.Equal(pair.First.Relation, pair.Second.Relation);
            Assert.NotEqual(pair.First.Object, pair.Second.Object);
        });
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        Assert.Equal("subjects", Assert.Throws<ArgumentException>(() => new FactualKb(1, 3, 0)).ParamName);
        Assert.Equal("maxPrefix", Assert.Throws<ArgumentException>(() => new FactualKb(4, -1, 0)).ParamName);
        var kb = new FactualKb(4, 2, 0);
        Assert.Equal("prefix", Assert.Throws<ArgumentException>(() => kb.Prompts(kb.All.Take(2).ToList(), [0, 3], 0)).ParamName);
        Assert.Equal("prefix", Assert.Throws<ArgumentException>(() => kb.Prompts(kb.All.Take(2).ToList(), [0], 0)).ParamName);
        using var model = RandomModel(1, 8, 2, 2, 11, 8, 0);
        var (_, cache) = model.RunWithCache(torch.randint(0, 11, new long[] { 1, 3 }));
        using (cache)
        {
            Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => MlpDecomposer.Linearize(model, cache, 1, 0)).ParamName);
            Assert.Equal("position", Assert.Throws<ArgumentOutOfRangeException>(() => MlpDecomposer.Linearize(model, cache, 0, 3)).ParamName);
        }
    }

    [Fact]
    public void NanInGivesNanOut()
    {
        var r = new[] { new[] { double.NaN, 1.0 }, new[] { 0.5, 0.5 } };
        var naive = FactualRecallNaive.Linearize(r, [1, 1], [0, 0], 1e-5, [[1, 0], [0, 1]], [0, 0], [[1, 0], [0, 1]], [0, 0]);
        Assert.All(naive.Output, v => Assert.True(double.IsNaN(v)));
    }

    [Fact]
    public void ReducedRunHoldsItsIdentities()
    {
        var config = FactualRecallExperiment.Config.Smoke with { Subjects = 16, Steps = 60, Size = "test" };
        var result = FactualRecallExperiment.Run(config, torch.CPU);
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        Assert.All(claims.Where(c => c.Kind == ClaimKind.Exactness), c => Assert.Equal(ClaimStatus.Holds, c.Status));
        Assert.Equal(config.Layers * config.Heads, result.Heads.Count);
        Assert.Equal(config.Steps, result.TrainLoss.Count);
        Assert.NotEmpty(result.PictureRows);
        Assert.All(result.PictureRows, row => Assert.Equal(1.0, row.Sum(), 5));             // END's attention sums to 1
    }

    [Fact]
    public void NoTensorsLeakFromTheDecompositionAndItsChecks()
    {
        using var model = RandomModel(2, 8, 2, 2, 11, 8, 4);
        using var tokens = torch.randint(0, 11, new long[] { 2, 5 });
        using var answer = torch.tensor(new long[] { 3, 7 });
        void Round()
        {
            var (logits, cache) = model.RunWithCache(tokens);
            using (logits)
            using (cache)
            using (var d = MlpDecomposer.Linearize(model, cache, 1, -1))
            using (var share = MlpDecomposer.ShareLogitAttribution(model, cache, d, -1, answer))
            using (var rho = d.ActivationRatio())
            using (var sum = d.Sum())
                Assert.Equal(d.Components.shape[0], share.shape[0]);
            FactualRecallExperiment.TwinGap(torch.CPU);
        }
        Round();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 2; i++) Round();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    static double MaxAbs(double[] x, double[] y) => x.Zip(y).Max(p => Math.Abs(p.First - p.Second));
}
