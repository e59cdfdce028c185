using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.Dha;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>P14 DHA: the search and L_fuse against their naive twins, the spec's §6 identities, budgets, KV bytes, bad input, the claims.</summary>
public class DhaTests(ITestOutputHelper output)
{
    static TinyGpt Toy(int seed, int layers = 2, int d = 24, int heads = 6)
    {
        torch.manual_seed(seed);
        var model = new TinyGpt(new TinyGptConfig(layers, d, heads, 4, Positions: PositionKind.Rope, VocabSize: 11, MaxLength: 16));
        model.to(float64);
        using (torch.no_grad())
            foreach (var b in model.Blocks) { var q = ((AttentionMixer)b.Mixer).Qkv.bias!; q.copy_(torch.randn_like(q) * 0.3); }
        return model;
    }

    [Fact]
    public void ExactnessPhaseHoldsEveryCheck()
    {
        var ex = DhaExperiment.Exactness(torch.CPU);
        output.WriteLine(ex.ToString());
        Assert.True(ex.IdentityPlanVsMha <= 1e-10 && ex.IdentityPlanIsIdentity, $"identity plan {ex.IdentityPlanVsMha}");
        Assert.True(ex.DecoupledVsMha <= 1e-10, $"decoupled {ex.DecoupledVsMha}");
        Assert.True(ex.GqaGroupSizeOneVsMha <= 1e-10, $"GQA G = H {ex.GqaGroupSizeOneVsMha}");
        Assert.True(ex.IdenticalCollapseVsModel <= 1e-10, $"identical heads {ex.IdenticalCollapseVsModel}");
        Assert.True(ex.IdenticalSearchCost <= 1e-20, $"identical search cost {ex.IdenticalSearchCost}");
        Assert.True(ex.SearchMatchesNaive && ex.SearchCostRelGap <= 1e-10);
        Assert.True(ex.FusionLossRelGap <= 1e-10 && ex.FusionGradMaxAbs <= 1e-10, $"L_fuse {ex.FusionLossRelGap}, grad {ex.FusionGradMaxAbs}");
        Assert.All(ex.Budgets, b => Assert.Equal(b.Target, b.Total));
        Assert.Equal(ex.KvFormula, ex.KvCounted);
        Assert.Equal(ex.DecodeExpected, ex.DecodeBytes);
    }

    [Theory]
    [InlineData(1, 2, 4, 0.25)]
    [InlineData(2, 3, 6, 1.0 / 3)]
    [InlineData(3, 1, 5, 0.7)]
    [InlineData(4, 2, 8, 0.125)]
    public void SearchEqualsTheNaiveSearchAndMeetsTheBudget(int seed, int layers, int heads, double ratio)
    {
        using var model = Toy(seed, layers, heads * 4, heads);
        var fast = DhaConverter.Search(model, ratio);
        var slow = DhaNaive.Search(model, ratio);
        Assert.Equal(DhaConverter.Target(layers, heads, ratio), fast.TotalGroups);
        for (int l = 0; l < layers; l++)
        {
            Assert.Equal(slow.KeyGroups[l], fast.KeyGroups[l]);
            Assert.Equal(slow.ValueGroups[l], fast.ValueGroups[l]);
        }
        Assert.True(Math.Abs(fast.Cost - slow.Cost) <= 1e-10 * slow.Cost, $"cost {fast.Cost} vs {slow.Cost}");
    }

    [Fact]
    public void WardGrowthEqualsTheDefinition()
    {
        var rng = new Random(3);
        var v = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, 7).Select(_ => rng.NextDouble()).ToArray()).ToArray();
        int[] a = [0, 3], b = [1, 2, 4];
        double growth = DhaNaive.GroupCost(v, a.Concat(b).ToArray()) - DhaNaive.GroupCost(v, a) - DhaNaive.GroupCost(v, b);
        double d2 = 0;
        for (int i = 0; i < 7; i++)
        {
            double ma = a.Average(h => v[h][i]), mb = b.Average(h => v[h][i]);
            d2 += (ma - mb) * (ma - mb);
        }
        Assert.Equal(growth, 2.0 * 3 / 5 * d2, 12);
    }

    [Fact]
    public void CopiedHeadsAreMergedFirst()
    {
        using var model = Toy(5, layers: 1, d: 16, heads: 4);
        var m = (AttentionMixer)model.Blocks[0].Mixer;
        using (torch.no_grad()) { m.W_K[3].copy_(m.W_K[1]); DhaConverter.HeadBias(m, HeadKind.Key)![3].copy_(DhaConverter.HeadBias(m, HeadKind.Key)![1]); }
        var plan = DhaConverter.Search(model, 7.0 / 8);                                   // one merge
        Assert.Equal(new[] { 0, 1, 2, 1 }, plan.KeyGroups[0]);
        Assert.Equal(new[] { 0, 1, 2, 3 }, plan.ValueGroups[0]);
        Assert.True(plan.Cost <= 1e-20, $"cost {plan.Cost}");
    }

    [Fact]
    public void FusionTrainingMovesOnlyOmegaAndShrinksTheFusionLoss()
    {
        using var model = Toy(6);
        var plan = DhaConverter.Search(model, 0.5);
        using var decoupled = DhaConverter.Decouple(model, plan);
        var before = decoupled.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var x = torch.randint(0, 11, new long[] { 4, 9 }, generator: new Generator(7));
        var history = DhaConverter.FusionTrain(decoupled, plan, 40, new LagrangeSchedule(0.1, 0.5, 0.05),
            _ => nn.functional.cross_entropy(decoupled.call(x).reshape(-1, 11), x.roll(-1, 1).reshape(-1)));
        Assert.Equal(40, history.Relative.Count);
        Assert.True(history.EndRelative < 0.5, $"L_fuse left {history.EndRelative}");
        Assert.True(history.Lambdas[^1] > history.Lambdas[0], "λ rises");
        foreach (var (name, p) in decoupled.named_parameters())
        {
            bool fusion = name.Contains("fusion_", StringComparison.Ordinal);
            double moved = p.detach().sub(before[name]).abs().max().item<double>();
            Assert.True(fusion ? moved > 0 : moved == 0, $"{name} moved {moved}");
            Assert.True(p.requires_grad, $"{name} is trainable again after the stage");
        }
        using var collapsed = DhaConverter.Collapse(decoupled, plan);
        Assert.Equal(plan.TotalGroups * 4 * 8L, DhaConverter.KvBytesPerToken(collapsed, ScalarType.Float64));
        Assert.All(collapsed.parameters().Where(p => !p.requires_grad), p => Assert.Equal(2, p.dim()));   // F fixed after the collapse
    }

    [Fact]
    public void CollapseTakesTheMeanOfTheFusedHeads()
    {
        using var model = Toy(8);
        var plan = DhaConverter.Search(model, 0.5);
        using var decoupled = DhaConverter.Decouple(model, plan);
        using (torch.no_grad())
            foreach (var b in decoupled.Blocks) { var g = (GroupedKvAttention)b.Mixer; g.KeyFusion.add_(torch.rand_like(g.KeyFusion) * 0.3); }
        using var collapsed = DhaConverter.Collapse(decoupled, plan);
        for (int l = 0; l < plan.Layers; l++)
        {
            var d = (GroupedKvAttention)decoupled.Blocks[l].Mixer;
            var c = (GroupedKvAttention)collapsed.Blocks[l].Mixer;
            var groups = plan.KeyGroups[l];
            var fused = d.FusedKeyWeights();                                              // W̃_i [H, d, D]
            var cached = c.FusedKeyWeights();                                             // [g_K, d, D]
            for (int g = 0; g <= groups.Max(); g++)
            {
                var members = Enumerable.Range(0, groups.Length).Where(h => groups[h] == g).Select(h => (long)h).ToArray();
                AssertClose.Tensors(cached[g], fused.index_select(0, torch.tensor(members)).mean(new long[] { 0 }), 1e-12, 1e-12, $"layer {l} group {g}");
            }
        }
    }

    [Fact]
    public void KvBytesFollowTheFormula()
    {
        using var model = Toy(9);
        Assert.Equal(DhaConverter.KvBytesFormula(2 * 2 * 6, 4, ScalarType.Float64), DhaConverter.KvBytesPerToken(model, ScalarType.Float64));
        using var gqa = DhaConverter.GqaMeanPool(model, 2);
        Assert.Equal(2L * 2 * 2 * 4 * 4, DhaConverter.KvBytesPerToken(gqa));              // L·(G_K + G_V)·d_h·4 bytes
        Assert.Equal(16L * 16 * 32 * 2, DhaConverter.KvBytesFormula(16 * 16, 32, ScalarType.Float16));
    }

    [Fact]
    public void SimilarityIsCosineWithUnitDiagonal()
    {
        using var model = Toy(10);
        using var sim = HeadSimilarity.Compute(model, HeadKind.Value);
        Assert.Equal(new long[] { 2, 6, 6 }, sim.shape);
        AssertClose.Tensors(sim.diagonal(0, 1, 2), torch.ones(2, 6, dtype: float64), 1e-12, 1e-12, "diagonal");
        AssertClose.Tensors(sim, sim.transpose(1, 2), 1e-15, 1e-15, "symmetric");
    }

    [Fact]
    public void BadInputNamesItsArgument()
    {
        using var model = Toy(11);
        Assert.Equal("ratio", Assert.Throws<ArgumentException>(() => DhaConverter.Search(model, 0)).ParamName);
        Assert.Equal("ratio", Assert.Throws<ArgumentException>(() => DhaConverter.Search(model, 1.5)).ParamName);
        Assert.Equal("ratio", Assert.Throws<ArgumentException>(() => DhaConverter.Search(model, 0.05)).ParamName);  // < one group per partition
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => DhaConverter.Decouple(model, DhaPlan.Identity(3, 6))).ParamName);
        Assert.Equal("decoupled", Assert.Throws<ArgumentException>(() => DhaConverter.FusionLoss(model, DhaPlan.Identity(2, 6))).ParamName);
        Assert.Equal("steps", Assert.Throws<ArgumentException>(
            () => DhaConverter.FusionTrain(model, DhaPlan.Identity(2, 6), -1, new LagrangeSchedule(0, 0, 0.1), _ => torch.zeros(1))).ParamName);
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", DhaExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", DhaExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (DhaExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunHoldsItsClaims()
    {
        var config = DhaExperiment.Config.Smoke;
        var result = DhaExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.PlanFrame().ToString());
        output.WriteLine(result.FusionFrame().ToString());
        output.WriteLine(result.KvFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        foreach (var s in claims.Observations) output.WriteLine(s);
        Assert.Empty(claims.Failures);
        Assert.Equal(DhaExperiment.Paper.Number, claims.Paper);
        Assert.Equal(1 + 2 * config.Ratios.Length, result.Curves.Count);
        Assert.All(result.Curves, c => Assert.Equal(config.ContinueSteps / config.EvalEvery + 1, c.ValLoss.Count));
        Assert.All(result.Plans, p => Assert.Equal(p.Target, p.TotalGroups));
        Assert.Equal(config.Layers, result.KeySimilarity.Length);
        Assert.Equal(config.Ratios.Length, result.Fusions.Count);
    }
    static DhaResult HandMade(double dha25At0 = 2.8, double dha25End = 2.15, double identityGap = 0, bool searchSame = true, int kvFormula = 384)
    {
        var config = DhaExperiment.Config.Smoke;
        var ex = new DhaExactness(identityGap, true, 0, 0, 1e-16, 0, searchSame, 1e-16, 1e-16, 1e-16, [(0.25, 6, 6)], 384, kvFormula, 6912, 6912);
        int[] steps = [0, 50, 100, 150];
        DhaCurve C(string m, double r, int heads, double[] loss) => new(m, r, heads, heads * 8 * 4L, steps, loss, [2.0]);
        var curves = new[]
        {
            C(DhaExperiment.MhaName, 1, 32, [2.1, 2.08, 2.05, 2.03]),
            C(DhaExperiment.GqaName, 0.25, 8, [3.2, 2.3, 2.2, 2.17]),
            C(DhaExperiment.DhaName, 0.25, 8, [dha25At0, 2.25, dha25End + 0.01, dha25End]),
            C(DhaExperiment.GqaName, 0.5, 16, [2.6, 2.2, 2.15, 2.12]),
            C(DhaExperiment.DhaName, 0.5, 16, [2.4, 2.15, 2.1, 2.08]),
        };
        int[][] g2 = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]];
        var plans = new[] { new DhaPlan(0.25, 8, g2, g2, 1), 
            new DhaPlan(0.5, 16, [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 1, 2, 2, 3, 3]], [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 1, 2, 2, 3, 3]], 1) };
        var fusions = new[] { new DhaFusion(0.25, 2.1, 2.9, 2.7, 10, 0.01, [1.0], [1.0]), new DhaFusion(0.5, 2.1, 2.6, 2.4, 10, 0.01, [1.0], [1.0]) };
        var kv = new[] { new DhaKvRow("this run", 2, 64, 8, DhaExperiment.MhaName, 1, 32, 1024, 512),
            new DhaKvRow("this run", 2, 64, 8, DhaExperiment.GqaName, 0.25, 8, 256, 128),
            new DhaKvRow("this run", 2, 64, 8, DhaExperiment.DhaName, 0.25, 8, 256, 128) };
        var sim = new[] { new[] { new double[8] } };
        return new DhaResult(config, ex, "hand-made", [], sim, sim, plans, fusions, curves, kv, 1, new Dictionary<string, double>());
    }

    [Fact]
    public void EachClaimFollowsItsMeasurement()
    {
        var good = HandMade().Claims();
        foreach (var r in good) output.WriteLine($"{r.Id}: {ClaimRecord.StatusText(r.Status)}");
        Assert.Empty(good.Failures);
        Assert.Equal(ClaimStatus.Holds, good["smaller-gap-after-conversion-25"].Status);
        Assert.Equal(ClaimStatus.Holds, good["recovers-faster"].Status);
        Assert.Equal(ClaimStatus.Holds, good["kv-bytes-per-token"].Status);
        var worse = HandMade(dha25At0: 3.3).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, worse["smaller-gap-after-conversion-25"].Status);
        Assert.Contains(worse.Failures, r => r.Id == "smaller-gap-after-conversion-25");
        var slow = HandMade(dha25End: 2.19).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, slow["recovers-faster"].Status);
        Assert.Empty(slow.Failures);                                                     // recorded, not asserted, at this size
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(identityGap: 1e-3).Claims()["identity-grouping-is-mha"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(searchSame: false).Claims()["search-equals-naive"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(kvFormula: 400).Claims()["kv-bytes-formula"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(dha25End: 2.3).Claims()["performance-kept"].Status);
        Assert.Equal(ClaimStatus.Holds, HandMade(dha25End: 2.05).Claims()["performance-kept"].Status);
    }
}
