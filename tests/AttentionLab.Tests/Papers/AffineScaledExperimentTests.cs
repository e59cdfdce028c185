using AttentionLab.Core;
using AttentionLab.Papers.AffineScaled;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>P31: the notebook's smoke run once (claims, table, series), and claims built by hand that flip with their measurements.</summary>
public class AffineScaledExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", AffineScaledExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", AffineScaledExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (AffineScaledExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var config = AffineScaledExperiment.Config.Smoke;
        var result = AffineScaledExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal(AffineScaledExperiment.Paper.Number, claims.Paper);

        Assert.Equal(3, result.Live.Count);
        Assert.All(result.Live, r => Assert.Equal(config.LiveSteps, r.GradNorms.Length));
        Assert.All(result.Live, r => Assert.All(r.GradNorms, g => Assert.True(double.IsFinite(g) && g > 0)));
        Assert.Equal(3, result.Stats.Count);
        Assert.All(result.Stats, s => Assert.Equal(config.Layers, s.FirstTokenMass.Length));
        // softmax rows sum to 1, sink rows below 1, affine rows to α_ma of their head (mean over heads)
        Assert.All(result.StatsOf(AffineVariant.Softmax).RowMass, m => Assert.Equal(1.0, m, 5));
        Assert.All(result.StatsOf(AffineVariant.Sink).RowMass, m => Assert.True(m < 1));
        var affine = result.StatsOf(AffineVariant.Affine);
        for (int l = 0; l < config.Layers; l++) Assert.Equal(affine.AlphaMa[l].Average(), affine.RowMass[l], 5);
        Assert.Equal(config.Layers, affine.Alpha.Count);
        Assert.All(affine.Alpha, row => Assert.Equal(config.Heads, row.Length));
        Assert.Equal(3, result.ToDataFrame().Rows.Count);
        Assert.Equal(3 * config.Layers, result.LayerFrame().Rows.Count);
        var (centres, counts) = result.RowMassHistogram();
        Assert.All(counts, c => Assert.Equal(affine.RowMassSample.Length, c.Counts.Sum()));
        Assert.Equal(24, centres.Length);
    }

    static AffineScaledResult Good()
    {
        var exact = new AffineExactness(1e-15, 1e-15, 1e-15, 1e-16, 1e-16, 0, 0.1, 1e-17, 0, new[] { 0.0, 0.5, 1.0 }, 1e-15);
        double[] Norms(double spread) => Enumerable.Range(0, 40).Select(i => 1 + spread * ((i % 2) * 2 - 1)).ToArray();
        var live = new[]
        {
            new LiveRun(AffineVariant.Softmax, 1000, Enumerable.Repeat(2.0, 40).ToArray(), Norms(0.3), 80, 10),
            new LiveRun(AffineVariant.Sink, 1008, Enumerable.Repeat(2.0, 40).ToArray(), Norms(0.25), 80, 10),
            new LiveRun(AffineVariant.Affine, 1264, Enumerable.Repeat(2.0, 40).ToArray(), Norms(0.1), 85, 10),
        };
        VariantStats S(AffineVariant v, double loss, double first, double entropy) => new(v, "test", loss, new[] { first, first }, new[] { entropy, entropy },
            new[] { first, first }, new[] { 1.0, 1.0 }, new[] { 1.0, 0.9 }, Array.Empty<double[]>(), Array.Empty<double[]>());
        var stats = new[] { S(AffineVariant.Softmax, 1.6, 0.3, 2.0), S(AffineVariant.Sink, 1.6, 0.25, 2.1), S(AffineVariant.Affine, 1.55, 0.1, 2.5) };
        return new AffineScaledResult(AffineScaledExperiment.Config.Smoke, exact, live, stats, 1, new Dictionary<string, double>());
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var good = Good();
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.All(new[] { "first-token-mass", "entropy", "vs-sink", "grad-norm-variance", "loss", "overhead" },
            id => Assert.Equal(ClaimStatus.Holds, claims[id].Status));

        // each paper claim flips when its measurement crosses the criterion
        var stats = good.Stats.ToArray();
        VariantStats Affine(Func<VariantStats, VariantStats> f) => f(stats[2]);
        var more = good with { Stats = new[] { stats[0], stats[1], Affine(s => s with { FirstTokenMass = new[] { 0.4, 0.4 } }) } };
        Assert.Equal(ClaimStatus.DoesNotHold, more.Claims()["first-token-mass"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, more.Claims()["vs-sink"].Status);
        var flat = good with { Stats = new[] { stats[0], stats[1], Affine(s => s with { Entropy = new[] { 1.5, 1.5 } }) } };
        Assert.Equal(ClaimStatus.DoesNotHold, flat.Claims()["entropy"].Status);
        var worse = good with { Stats = new[] { stats[0], stats[1], Affine(s => s with { ValLoss = 1.61 }) } };
        Assert.Equal(ClaimStatus.DoesNotHold, worse.Claims()["loss"].Status);
        var live = good.Live.ToArray();
        var noisy = good with { Live = new[] { live[0], live[1], live[2] with { GradNorms = live[0].GradNorms.Select(g => 1 + 2 * (g - 1)).ToArray() } } };
        Assert.Equal(ClaimStatus.DoesNotHold, noisy.Claims()["grad-norm-variance"].Status);
        var slow = good with { Live = new[] { live[0], live[1], live[2] with { MsPerStep = 200 } } };
        Assert.Equal(ClaimStatus.DoesNotHold, slow.Claims()["overhead"].Status);
        // not asserted: none of them fails the check; entropy is asserted, so Check names it
        Assert.All(new[] { more, worse, noisy, slow }, r => Assert.Empty(r.Claims().Failures));
        Assert.Contains("entropy", Assert.Throws<ClaimCheckException>(() => flat.Claims().Check()).Message);

        // exactness: every check fails the notebook when its gap crosses the bound
        var ex = good.Exactness;
        Assert.Contains((good with { Exactness = ex with { ExplicitVsNaive = 1e-9 } }).Claims().Failures, f => f.Id == "explicit-equals-naive");
        Assert.Contains((good with { Exactness = ex with { DecomposedVsNaive = double.PositiveInfinity } }).Claims().Failures,
            f => f.Id == "decomposed-equals-naive");
        Assert.Contains((good with { Exactness = ex with { LayerVsNaive = 1e-9 } }).Claims().Failures, f => f.Id == "layer-equals-naive");
        Assert.Contains((good with { Exactness = ex with { RowMassGap = 1e-5 } }).Claims().Failures, f => f.Id == "row-mass-is-alpha-ma");
        Assert.Contains((good with { Exactness = ex with { UnitAlphaVsSoftmax = 1e-5 } }).Claims().Failures, f => f.Id == "unit-alpha-is-softmax");
        Assert.Contains((good with { Exactness = ex with { VisibleLeak = 1e-12 } }).Claims().Failures, f => f.Id == "causality-probe");
        Assert.Contains((good with { Exactness = ex with { FullLengthLeak = 0 } }).Claims().Failures, f => f.Id == "causality-probe");
        Assert.Contains((good with { Exactness = ex with { EmaEvalChange = 1e-9 } }).Claims().Failures, f => f.Id == "ema-train-only");
        Assert.Contains((good with { Exactness = ex with { Clipping = new[] { 0.0, 0.5, 0.9 } } }).Claims().Failures, f => f.Id == "linear-clipping");
        Assert.Contains((good with { Exactness = ex with { StepVsForward = double.NaN } }).Claims().Failures, f => f.Id == "step-equals-forward");
    }
}
