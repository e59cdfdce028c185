using AttentionLab.Core;
using AttentionLab.Papers.Moh;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>P21 MoH: the mixer against its naive twin over the awkward-shape grid, the spec's identities, bad input, the task, the claims.</summary>
public class MohTests(ITestOutputHelper output)
{
    /// <summary>(shared, topK) as functions of H: one shared + top-1, two shared + top-2, routed only, every routed head chosen.</summary>
    public static readonly string[] Layouts = ["s1k1", "s2k2", "s0k1", "s1kE"];

    static (int Heads, int Shared, int TopK) Layout(Shape s, string layout)
    {
        int h = s.H + 2;
        return layout switch
        {
            "s1k1" => (h, 1, 1),
            "s2k2" => (h, 2, Math.Min(2, h - 2)),
            "s0k1" => (h, 0, 1),
            _ => (h, 1, h - 1),
        };
    }

    public static IEnumerable<object[]> GridLayouts() => Conformance.ShapesWithEach(Layouts.Cast<object>().ToArray());

    [Theory]
    [MemberData(nameof(GridLayouts))]
    public void BothPathsEqualTheNaiveTwinInFloat64(Shape shape, string layout)
    {
        var (h, hs, k) = Layout(shape, layout);
        int d = shape.D + shape.Dv + 1;
        foreach (var path in new[] { MohPath.Gather, MohPath.Masked })
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(shape.T * 31 + h);
            using var mixer = new MixtureOfHeadAttention(d, h, hs, k, path, shape.D, shape.Dv);
            mixer.to(float64);
            var gen = new Generator(7);
            var x = torch.randn(new long[] { shape.B, shape.T, d }, generator: gen, dtype: float64).requires_grad_();
            double err = MohChecks.TwinGap(mixer, x, gen);
            Assert.True(err <= 1e-10, $"{path} {layout} {shape}: max |Δ| {err}");
            double aux = Math.Abs(mixer.Route(x.detach()).AuxLoss.item<double>() - MohNaive.LoadBalance(mixer, x.detach()));
            Assert.True(aux <= 1e-10, $"L_b {layout} {shape}: |Δ| {aux}");
        }
    }

    [Fact]
    public void AllSharedWithZeroGateWeightsIsMha() => Assert.True(MohChecks.AllSharedIsMha(torch.CPU) <= 1e-12);

    [Fact]
    public void GatesSumAsTheSpecSays()
    {
        var (bad, routed, shared) = MohChecks.GateSums(torch.CPU);
        Assert.Equal(0, bad);
        Assert.True(routed <= 1e-12 && shared <= 1e-12, $"routed {routed}, shared {shared}");
    }

    [Fact]
    public void UniformRoutingGivesLoadBalanceK() => Assert.True(MohChecks.UniformBalanceMinusK(torch.CPU) <= 1e-12);

    [Fact]
    public void StepReproducesForward() => Assert.True(MohChecks.StepVsForward(torch.CPU) <= 1e-10);

    [Fact]
    public void ListeningOnThePatternTakesTheDensePathWithTheSameOutput()
    {
        torch.manual_seed(3);
        using var mixer = new MixtureOfHeadAttention(16, 4, 1, 2);
        mixer.to(float64);
        using var x = torch.randn(2, 9, 16, dtype: float64);
        using var plain = mixer.call(x);
        Tensor? seen = null;
        using (Hook(mixer, "hook_pattern").AddHook((p, _) => { seen = p.detach().clone().DetachFromDisposeScope(); return null; }))
        {
            using var hooked = mixer.call(x);
            Assert.True((hooked - plain).abs().max().item<double>() <= 1e-12);
        }
        Assert.NotNull(seen);
        Assert.Equal(new long[] { 2, 4, 9, 9 }, seen!.shape);
        seen.Dispose();
    }

    static AttentionLab.Interp.HookPoint Hook(MixtureOfHeadAttention m, string name) =>
        m.named_modules().First(p => p.name == name).module as AttentionLab.Interp.HookPoint ?? throw new InvalidOperationException(name);

    [Fact]
    public void UnchosenRoutedHeadsAreZeroInHookZ()
    {
        torch.manual_seed(4);
        using var mixer = new MixtureOfHeadAttention(18, 6, 2, 1);
        using var x = torch.randn(2, 8, 18);
        Tensor? z = null;
        using (Hook(mixer, "hook_z").AddHook((t, _) => { z = t.detach().clone().DetachFromDisposeScope(); return null; }))
            mixer.call(x).Dispose();
        using var r = mixer.Route(x).Active;
        using var zeroHeads = z!.abs().sum(-1).eq(0);                                   // [B, T, H]
        Assert.True(zeroHeads.eq(r.eq(0)).all().item<bool>());
        z.Dispose();
    }

    [Fact]
    public void RecordsTheRoutingOfTheLastForward()
    {
        torch.manual_seed(5);
        using var mixer = new MixtureOfHeadAttention(16, 4, 2, 1);
        using (var scope = NewDisposeScope()) mixer.call(torch.randn(3, 5, 16));
        var r = mixer.LastRouting!;                                                     // owned by the mixer: alive after the caller's scope
        Assert.Equal(new long[] { 3, 5, 4 }, r.Gates.shape);
        Assert.Equal(new long[] { 15, 2 }, r.Probabilities.shape);
        Assert.Equal(0.75, mixer.ActiveRatio);
        Assert.True(r.AuxLoss.item<float>() >= 1 - 1e-6);                               // E·Σ f P ≥ K·… with E = 2, K = 1: ≥ 1 (Cauchy–Schwarz)
    }

    [Theory]
    [InlineData(4, 5, 0, "shared")]
    [InlineData(4, -1, 1, "shared")]
    [InlineData(4, 2, 3, "topK")]
    [InlineData(4, 2, 0, "topK")]
    [InlineData(4, 4, 1, "topK")]
    public void BadLayoutsNameTheirArgument(int heads, int shared, int topK, string name)
    {
        var e = Assert.Throws<ArgumentException>(() => new MixtureOfHeadAttention(8, heads, shared, topK));
        Assert.Equal(name, e.ParamName);
    }

    [Fact]
    public void BadInputNamesX()
    {
        using var mixer = new MixtureOfHeadAttention(8, 4, 2, 1);
        using var wide = torch.randn(1, 3, 9);
        using var flat = torch.randn(3, 8);
        using var ints = torch.ones(1, 3, 8, dtype: int64);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mixer.call(wide)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mixer.call(flat)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mixer.call(ints)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mixer.Route(wide)).ParamName);
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        torch.manual_seed(6);
        foreach (var path in new[] { MohPath.Gather, MohPath.Masked })
        {
            using var mixer = new MixtureOfHeadAttention(12, 4, 1, 2, path);
            using var x = torch.randn(1, 6, 12);
            x[0, 2, 0] = torch.tensor(float.NaN);
            using var y = mixer.call(x);
            Assert.True(y[0, 2].isnan().all().item<bool>(), $"{path}: the NaN token's output");
        }
    }

    [Fact]
    public void TaskFollowsItsRules()
    {
        var task = new MohTask(Length: 64, Symbols: 16);
        using var a = task.Generate(8, seed: 3);
        using var b = task.Generate(8, seed: 3);
        Assert.True(a.Tokens.eq(b.Tokens).all().item<bool>());
        var tokens = a.Tokens.data<long>().ToArray();
        var ops = a.Opcodes.data<long>().ToArray();
        var det = a.Determined.data<bool>().ToArray();
        var labels = a.Labels.data<long>().ToArray();
        var perm = task.Permutation();
        int checkedRules = 0;
        for (int n = 0; n < 8; n++)
            for (int t = 0; t < 63; t++)
            {
                int i = n * 64 + t;
                Assert.Equal(tokens[i + 1], labels[i]);
                if (!det[i]) continue;
                long next = tokens[i + 1] - MohTask.Opcodes;
                switch ((MohOpcode)ops[i + 1])
                {
                    case MohOpcode.Copy2: Assert.Equal(tokens[i - 1], tokens[i + 1]); break;
                    case MohOpcode.Copy3: Assert.Equal(tokens[i - 2], tokens[i + 1]); break;
                    case MohOpcode.Bigram: Assert.Equal(perm[tokens[i] - MohTask.Opcodes], next); break;
                    case MohOpcode.Induction:
                        int earlier = Enumerable.Range(0, t).Last(j => tokens[n * 64 + j] == tokens[i]);
                        Assert.Equal(tokens[n * 64 + earlier + 1], tokens[i + 1]);
                        break;
                }
                checkedRules++;
            }
        Assert.True(checkedRules > 200, $"only {checkedRules} determined labels");
        Assert.Equal(-100, labels[63]);
    }

    [Fact]
    public void MutualInformationIsZeroForIndependentAndFullForCopiedLabels()
    {
        var a = Enumerable.Range(0, 400).Select(i => i % 4).ToArray();
        Assert.Equal(2.0, RoutingMap.Information(a, a), 10);
        var b = Enumerable.Range(0, 400).Select(i => (i / 4) % 2).ToArray();      // independent of i % 4 by construction
        Assert.Equal(0.0, RoutingMap.Information(a, b), 10);
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", MohExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", MohExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (MohExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunHoldsItsClaims()
    {
        var config = MohExperiment.Config.Smoke;
        var result = MohExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.RoutingFrame().ToString());
        output.WriteLine(result.TimingFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal(MohExperiment.Paper.Number, claims.Paper);
        Assert.Equal(config.Variants.Length, result.Runs.Count);
        Assert.All(result.Runs, r => Assert.Equal(config.Steps, r.TrainLoss.Count));
        int mohModels = config.Variants.Count(v => !v.Dense);
        Assert.Equal(mohModels * config.Layers, result.Routing.Count);
        Assert.All(result.Routing, m => Assert.Equal(MohTask.Opcodes, m.Frequency.Count));
        Assert.Equal(3, result.Timings.Count);
        Assert.Equal(mohModels, result.Gates.Count);
    }

    static MohResult HandMade(double mohLoss, double mi, double gatherMs, double gatherErr = 1e-15)
    {
        var config = MohExperiment.Config.Smoke;
        var ex = new MohExactness(gatherErr, 1e-15, 1e-16, 1e-16, 0, 1e-16, 1e-16, 0, 1e-16);
        var runs = new[]
        {
            new MohRun(MohExperiment.DenseName, 1, 100, 1.0, 0.9, new double[4], new double[] { 2, 1 }, 1),
            new MohRun(MohExperiment.Moh75Name, 0.75, 101, mohLoss, 0.9, new double[4], new double[] { 2, 1 }, 1),
            new MohRun(MohExperiment.Moh50Name, 0.5, 101, 1.01, 0.9, new double[4], new double[] { 2, 1 }, 1),
        };
        var maps = new[] { new RoutingMap(MohExperiment.Moh75Name, 0, 4, Enumerable.Range(0, 4).Select(_ => new double[4]).ToList(), mi, 0.01) };
        var timings = new[]
        {
            new MohTiming("dense MHA", 512, 1, 10), new MohTiming("MoH-75% gather", 512, 0.75, gatherMs), new MohTiming("MoH-75% masked", 512, 0.75, 11),
        };
        return new MohResult(config, ex, runs, maps, [], timings, 1, new Dictionary<string, double>());
    }

    [Fact]
    public void EachClaimFollowsItsMeasurement()
    {
        var good = HandMade(1.01, 0.3, 8).Claims();
        Assert.Empty(good.Failures);
        Assert.Equal(ClaimStatus.Holds, good["parity-at-75"].Status);
        Assert.Equal(ClaimStatus.Holds, good["head-specialisation"].Status);
        Assert.Equal(ClaimStatus.Holds, good["sparse-heads-cost"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(1.03, 0.3, 8).Claims()["parity-at-75"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(1.01, 0.005, 8).Claims()["head-specialisation"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(1.01, 0.3, 12).Claims()["sparse-heads-cost"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(1.01, 0.3, 8, gatherErr: 1e-8).Claims()["gather-equals-naive"].Status);
        Assert.Empty(HandMade(1.03, 0.3, 8).Claims().Failures);                       // parity is recorded, not asserted, at this size
        Assert.Contains(HandMade(1.01, 0.005, 8).Claims().Failures, r => r.Id == "head-specialisation");
    }
}
