using AttentionLab.Core;
using AttentionLab.Papers.FreeSwim;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class FreeSwimExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void MaskAnalysisFacts()
    {
        var rows = FreeSwimExperiment.MaskRows(new[] { 1, 2, 3 });
        int d = FreeSwimExperiment.HalfWindow, win = (2 * d + 1) * (2 * d + 1);
        Assert.All(rows.Where(r => r.Kind == "full"), r => Assert.Equal(r.Tokens, r.MinKeys));
        var native = rows.Single(r => r.Kind == "inward" && r.Factor == 1);
        Assert.Equal(native.Tokens, native.MinKeys);                                               // inward = full at native
        foreach (int f in new[] { 2, 3 })
        {
            var inward = rows.Single(r => r.Kind == "inward" && r.Factor == f);
            var clipped = rows.Single(r => r.Kind == "clipped" && r.Factor == f);
            Assert.Equal(win, inward.MinKeys); Assert.Equal(win, inward.MaxKeys);
            Assert.Equal((d + 1) * (d + 1), clipped.CornerKeys);
            Assert.True(clipped.MeanKeys < inward.MeanKeys);
        }
    }

    [Fact]
    public void SmokeRunMeetsItsClaims()
    {
        if (!FreeSwimCheckpoint.Available()) throw new InvalidOperationException(
            $"checkpoint {FreeSwimCheckpoint.Name} missing; regenerate with: {FreeSwimCheckpoint.Command}");
        var c = FreeSwimExperiment.Config.Smoke;
        var r = FreeSwimExperiment.Run(c, CPU, new InlineProgress<string>(output.WriteLine));
        Assert.Equal(1 + c.SampleFactors.Length * (FreeSwimExperiment.Methods.Length - 1), r.ToDataFrame().Rows.Count);
        Assert.Equal(r.Rows.Count, r.Scores.Count);
        Assert.All(r.Scores, s => Assert.Equal(3 * c.SamplesPerClass, s.Components.Length));
        Assert.All(r.Rows, row => Assert.Equal(row.Components, r.ScoresOf(row.Method, row.Factor).Components.Average(), 12));
        Assert.Equal(3, r.Row("inward+dual", 2).GuideSteps);                                      // 7 steps, cache every 3: steps 0, 3, 6
        Assert.Equal(5, r.Exactness.ToDataFrame().Rows.Count);
        var claims = r.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        output.WriteLine(claims.Findings().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        Assert.Equal(ClaimStatus.Holds, claims["entropy-grows-full"].Status);
    }

    [Fact]
    public void ExactnessLeavesTheModelAsItWas()
    {
        if (!FreeSwimCheckpoint.Available()) throw new InvalidOperationException(
            $"checkpoint {FreeSwimCheckpoint.Name} missing; regenerate with: {FreeSwimCheckpoint.Command}");
        using var model = FreeSwimCheckpoint.Load();
        var before = model.parameters().Select(p => p.detach().clone()).ToList();
        var x = FreeSwimExperiment.Exactness(model, CPU);
        Assert.True(x.DualWorst <= 1e-10, $"{x.DualWorst}");
        Assert.All(model.parameters().Zip(before), p => Assert.True(p.First.dtype == ScalarType.Float32 && (p.First - p.Second).abs().max().item<float>() == 0,
            "weights changed"));
    }

    [Fact]
    public void PairedDifferenceReadsTwoStandardErrors()
    {
        var same = PairedDifference.Of(new double[] { 1, 2, 3 }, new double[] { 1, 2, 3 });
        Assert.Equal(0, same.Mean);
        Assert.True(same.Unresolved);
        var shift = PairedDifference.Of(new double[] { 2, 3, 4 }, new double[] { 1, 2, 3 });        // every difference +1: SE 0
        Assert.True(shift.Favours);
        Assert.True(PairedDifference.Of(new double[] { 1, 2, 3 }, new double[] { 2, 3, 4 }).Opposes);
        // differences 1, −1, 1, −1, 1, 1: mean 1/3, sd √(16/15), SE ≈ 0.42 — within 2 SE
        var noisy = PairedDifference.Of(new double[] { 1, -1, 1, -1, 1, 1 }, new double[6]);
        Assert.Equal(1.0 / 3, noisy.Mean, 12);
        Assert.Equal(Math.Sqrt(16.0 / 15 / 6), noisy.StandardError, 12);
        Assert.True(noisy.Unresolved);
        Assert.True(PairedDifference.Of(new double[] { 1 }, new double[] { 0 }).Unresolved);     // one pair: no standard error
        Assert.Equal("other", Assert.Throws<ArgumentException>(() => PairedDifference.Of(new double[2], new double[3])).ParamName);
    }

    /// <summary>A result built by hand: masks from the analysis (no model), chosen entropies, per-image scores and rows.</summary>
    static FreeSwimResult ByHand(double nativeAgreement, Func<string, double[]> components, Func<string, double[]> agreement, Func<string, double[]> sharpness,
        double fullGrowth = 1.9, double inwardDrift = 0.2)
    {
        var c = FreeSwimExperiment.Config.Smoke;
        var masks = FreeSwimExperiment.MaskRows(c.MaskFactors);
        var entropy = c.MaskFactors.SelectMany(f => new[]
        {
            new EntropyRow("full 1/√d", f, 64 * f * f, 3.5 + fullGrowth * (f - 1) / 2.0, Math.Log(64 * f * f)),
            new EntropyRow("inward, FreeSwim scale", f, 64 * f * f, 3.45 + inwardDrift * (f - 1) / 2.0, Math.Log(64 * f * f)),
        }).ToList();
        var scores = new List<ImageScores> { new("native", 1, Enumerable.Repeat(1.0, 6).ToArray(),
            Enumerable.Range(0, 6).Select(i => i < nativeAgreement * 6 ? 1.0 : 0).ToArray(), Enumerable.Repeat(1.0, 6).ToArray()) };
        scores.AddRange(FreeSwimExperiment.Methods.Skip(1).Select(m => new ImageScores(m, 2, components(m), agreement(m), sharpness(m))));
        var rows = scores.Select(s => new SampleRow(s.Method, s.Factor, 8 * s.Factor, s.Components.Average(), s.Components.Count(x => x > 1) / 6.0,
            s.Agreement.Average(), s.Sharpness.Average(), s.Method == "full" ? 10 : 12, s.Method == "inward+dual" ? 3 : 0)).ToList();
        var ok = new ErrorStats(1e-15, 1e-15, 10);
        var exact = new FreeSwimExactness(ok, new ErrorStats(1e-7, 1e-7, 10), 30, 30, 30, 1e-15, 0, 1e-15);
        return new FreeSwimResult(c, masks, entropy, rows, Array.Empty<MethodImages>(), TimeSpan.Zero) { Exactness = exact, Scores = scores };
    }

    static double[] Const(double v) => Enumerable.Repeat(v, 6).ToArray();

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        // a clear picture: one object with the dual path, two with the window alone, three with clipping; FreeSwim sharper and right
        var clear = ByHand(1.0,
            m => m switch { "clipped" => Const(3), "inward" => Const(2), _ => Const(1) },
            m => m == "inward+dual" ? Const(1) : new double[] { 1, 0, 0, 0, 0, 0 },
            m => m == "full" ? new double[] { 1.0, 1.1, 0.9, 1.0, 1.1, 0.9 } : new double[] { 2.0, 2.1, 1.9, 2.0, 2.1, 1.9 });
        var claims = clear.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Equal(new[] { "gather-equals-dense", "receptive-field", "dual-path-identities", "entropy-grows-full", "window-keeps-entropy",
            "dual-fewer-duplicates", "sharper-than-full", "inward-less-debris-than-clipped", "class-fidelity", "ms-per-step" }, claims.Select(x => x.Id));
        Assert.Empty(claims.Failures);
        foreach (var id in new[] { "dual-fewer-duplicates", "sharper-than-full", "inward-less-debris-than-clipped", "class-fidelity" })
            Assert.Equal(ClaimStatus.Holds, claims[id].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, claims["ms-per-step"].Status);                     // 12 ms vs 10 ms

        // the opposite picture: each sample claim does not hold (recorded, not asserted)
        var opposite = ByHand(1.0,
            m => m switch { "clipped" => Const(1), "inward" => Const(1), "inward+dual" => Const(3), _ => Const(1) },
            m => m == "full" ? Const(1) : Const(0),
            m => m == "full" ? Const(3) : Const(1));
        var o = opposite.Claims();
        foreach (var id in new[] { "dual-fewer-duplicates", "sharper-than-full", "class-fidelity" })
            Assert.Equal(ClaimStatus.DoesNotHold, o[id].Status);
        Assert.Empty(o.Failures);

        // noise within two standard errors: not shown; a denoiser that cannot draw the class natively: fidelity not shown
        var noisy = ByHand(0.5,
            m => m == "inward" ? new double[] { 2, 1, 2, 1, 1, 1 } : new double[] { 1, 2, 1, 1, 2, 1 },
            m => m == "inward+dual" ? Const(1) : Const(0),
            m => m == "full" ? new double[] { 1, 2, 1, 2, 1, 2 } : new double[] { 2, 1, 2, 1, 2, 1 });
        var n = noisy.Claims();
        Assert.Equal(ClaimStatus.NotShown, n["dual-fewer-duplicates"].Status);
        Assert.Equal(ClaimStatus.NotShown, n["sharper-than-full"].Status);
        Assert.Equal(ClaimStatus.NotShown, n["class-fidelity"].Status);
        Assert.Contains("50 %", n["class-fidelity"].Note);

        // the entropy claims are asserted: too little growth, or a drifting window, fails the check
        Assert.Contains(ByHand(1.0, _ => Const(1), _ => Const(1), _ => Const(1), fullGrowth: 0.5).Claims().Failures, f => f.Id == "entropy-grows-full");
        Assert.Contains(ByHand(1.0, _ => Const(1), _ => Const(1), _ => Const(1), inwardDrift: 0.6).Claims().Failures, f => f.Id == "window-keeps-entropy");
        // exactness: a gather off by 1e-4 in float32, a cache that changes the sample
        var x = clear.Exactness;
        Assert.Contains((clear with { Exactness = x with { Gather32 = new ErrorStats(1e-4, 1e-4, 10) } }).Claims().Failures,
            f => f.Id == "gather-equals-dense");
        Assert.Contains((clear with { Exactness = x with { CacheOnVsOff = 1e-9 } }).Claims().Failures, f => f.Id == "dual-path-identities");
        Assert.Contains((clear with { Exactness = x with { OverrideOffVsWindow = double.NaN } }).Claims().Failures, f => f.Id == "dual-path-identities");
        Assert.Contains((clear with { Exactness = x with { ToyMaxKeys = 31 } }).Claims().Failures, f => f.Id == "receptive-field");
    }

    [Fact]
    public void BadConfigNamesTheField()
    {
        Assert.Equal("SampleFactors", Assert.Throws<ArgumentException>(
            () => (FreeSwimExperiment.Config.Smoke with { SampleFactors = new[] { 1 } }).Validate()).ParamName);
        Assert.Equal("Strength", Assert.Throws<ArgumentException>(() => (FreeSwimExperiment.Config.Smoke with { Strength = 0 }).Validate()).ParamName);
    }
}
