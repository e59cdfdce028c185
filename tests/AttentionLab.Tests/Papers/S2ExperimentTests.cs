using AttentionLab.Core;
using AttentionLab.Papers.S2Attention;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: its claims at seed 0 and the shape of everything the notebook plots; and the
/// claims built by hand, each flipping when its measurement crosses the criterion.</summary>
public class S2ExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsItsAssertedClaims()
    {
        var c = S2Experiment.Config.Smoke;
        var r = S2Experiment.Run(c, CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(string.Join(", ", r.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = r.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);

        // the probe: every variant at every (length, depth); the structure of the patterns
        Assert.Equal(S2Experiment.Variants.Length * c.Lengths.Length, r.ToDataFrame().Rows.Count);
        Assert.Equal(S2Experiment.Variants.Length * c.Lengths.Length * c.Depths.Length, r.Cells.Count);
        var het = r.Rows.Where(x => x.Variant == "heterogeneous").ToArray();
        Assert.All(het, x => Assert.Equal(1.0, x.Coverage));
        Assert.All(het, x => Assert.True(x.Density < 0.7, $"density {x.Density} at n = {x.Length}"));
        Assert.True(r.OffStrideAccuracy("homogeneous") < 0.5, $"homogeneous reads off-stride needles: {r.OffStrideAccuracy("homogeneous"):P1}");
        Assert.Equal(4, r.Exactness.Forms.Count);

        // decode: the pruned per-head cache equals the full-cache decode, holds exactly the pattern's keys, and is smaller
        Assert.Equal(c.Lengths.Max(), r.Decode.Length);
        Assert.Equal(0, r.Decode.HeldMismatches);
        Assert.Equal(r.Decode.FormulaAtEnd, r.Decode.HeldAtEnd);
        Assert.True(r.Decode.MaxAbsVsFull <= 1e-5, $"pruned vs full {r.Decode.MaxAbsVsFull}");
        var last = r.Decode.Rows[^1];
        Assert.Equal(c.Lengths.Max(), last.FullTokens);
        Assert.Equal(2L * c.Heads * c.HeadDim * sizeof(float) * last.FullTokens, last.FullKvBytes);
        Assert.Equal((long)Math.Round(last.HeldPerHead * c.Heads) * 2 * c.HeadDim * sizeof(float), last.KvBytes);
        Assert.True(last.KvBytes < last.FullKvBytes / 2);

        // the trained needle test: one row per variant, accuracies per depth
        Assert.Equal(c.NeedleVariants, r.Trained.Select(t => t.Variant));
        Assert.All(r.Trained, t => Assert.Equal(c.Needle.TestDepths, t.DepthAccuracy.Length));
        Assert.Equal(3, r.TrainedFrame().Rows.Count);
        Assert.NotNull(r.TrainedHeatmap());
        Assert.NotNull(r.DecodeChart());
        Assert.NotEmpty(claims.Observations);
    }

    [Fact]
    public void BadConfigNamesTheField()
    {
        Assert.Equal("Lengths", Assert.Throws<ArgumentException>(() => (S2Experiment.Config.Smoke with { Lengths = Array.Empty<int>() }).Validate()).ParamName);
        Assert.Equal("Depths", Assert.Throws<ArgumentException>(() => (S2Experiment.Config.Smoke with { Depths = new[] { 1.0 } }).Validate()).ParamName);
        Assert.Equal("NeedleVariants", Assert.Throws<ArgumentException>(
            () => (S2Experiment.Config.Smoke with { NeedleVariants = new[] { "dense" } }).Validate()).ParamName);
        Assert.Equal("Steps", Assert.ThrowsAny<ArgumentException>(
            () => (S2Experiment.Config.Smoke with { Needle = S2Experiment.Config.Smoke.Needle with { Steps = 0 } }).Validate()).ParamName);
        Assert.Equal("full", S2Experiment.Config.For(RunSize.Full).Size);
    }

    /// <summary>A result built by hand: every claim holds; then each measurement is pushed across its criterion.</summary>
    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var c = S2Experiment.Config.Smoke with { Lengths = new[] { 256 }, Depths = new[] { 0.0, 0.5 } };
        var forms = new[] { new S2FormError("gather", "float64", 1e-15), new S2FormError("gather", "float32", 1e-7) };
        var coverage = new[] { new CoverageRow(256, 1.0, 0.4, 0.3, 0.0) };
        var exact = new S2Exactness(forms, 1e-15, coverage);
        // depth 0 → block 0 (on residue 0: the homogeneous stride reads it); depth 0.5 → position 127, block 7: off-stride
        NeedleCell Cell(string v, double d, double acc) => new(v, 256, d, S2Experiment.NeedlePosition(d, 256), acc);
        var cells = S2Experiment.Variants.SelectMany(v => new[] { Cell(v, 0.0, 1.0), Cell(v, 0.5, v == "homogeneous" ? 0.0 : 1.0) }).ToArray();
        var rows = S2Experiment.Variants.Select(v => new VariantRow(v, 256, 1, v == "dense" ? 1 : 0.4, 100, 1, v == "dense" ? 2.0 : 1.0)).ToArray();
        var decode = new S2DecodeCheck(512, 1e-7, 1e-7, 0, Array.Empty<DecodeRow>(), new long[] { 176, 160, 160, 160 }, new long[] { 176, 160, 160, 160 },
            84_992, 262_144);
        var trained = new[]
        {
            new TrainedNeedle("dense", new[] { 1.0 }, 1.0, 1.0, 0.01, 1, 1), new TrainedNeedle("homogeneous", new[] { 0.4 }, 0.4, 0.03, 2, 1, 1),
            new TrainedNeedle("heterogeneous", new[] { 1.0 }, 1.0, 1.0, 0.01, 1, 1),
        };
        var good = new S2Result(c, exact, cells, rows, decode, trained, new Dictionary<string, BlockMask>(), 0, new Dictionary<string, double>());
        Assert.True(
            new S2Result(c, exact, cells, rows, decode, trained, new Dictionary<string, BlockMask>(), 0, new Dictionary<string, double>()).OffStride(cells[3]));
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.All(claims.Where(x => x.Kind != ClaimKind.Reported), x => Assert.Equal(ClaimStatus.Holds, x.Status));
        Assert.Equal(ClaimStatus.Holds, claims["speed"].Status);

        ClaimStatus Status(S2Result r, string id) => r.Claims()[id].Status;
        // exactness: a form off by more than 1e-5, the LSE merge off, an uncovered block pair, a pruned decode off or holding a wrong key
        Assert.Contains((good with { Exactness = exact with { Forms = new[] { forms[0], forms[1] with { MaxAbs = 2e-5 } } } }).Claims().Failures,
            f => f.Id == "forms-equal-naive-float32");
        Assert.Contains((good with { Exactness = exact with { LseMergeMaxAbs = double.NaN } }).Claims().Failures, f => f.Id == "lse-merge");
        Assert.Contains((good with { Exactness = exact with { Coverage = new[] { coverage[0] with { HeterogeneousCoverage = 0.99 } } } }).Claims().Failures,
            f => f.Id == "union-coverage");
        Assert.Contains((good with { Exactness = exact with { Coverage = new[] { coverage[0] with { HomogeneousCycleDeviation = 0.01 } } } }).Claims().Failures,
            f => f.Id == "union-coverage");
        Assert.Contains((good with { Decode = decode with { MaxAbsVsFull = 1e-3 } }).Claims().Failures, f => f.Id == "pruned-decode-equals-full");
        Assert.Contains((good with { Decode = decode with { HeldMismatches = 1 } }).Claims().Failures, f => f.Id == "pruned-decode-equals-full");
        // the measured cache: a head holding more than n/s + ℓ·b = 128 + 64 tokens breaks the KV claim
        Assert.Equal(192, good.KvFormulaTokens);
        Assert.Equal(ClaimStatus.DoesNotHold, Status(good with { Decode = decode with { HeldAtEnd = new long[] { 193, 160, 160, 160 } } },
            "kv-tokens-per-head"));
        // probe: heterogeneous 10 points below dense; homogeneous reading its off-stride needles
        var worseProbe = good with { Cells = cells.Select(x => x.Variant == "heterogeneous" && x.Depth == 0.5 ? x with { Accuracy = 0.8 } : x).ToArray() };
        Assert.Equal(ClaimStatus.DoesNotHold, Status(worseProbe, "probe-heterogeneous-near-dense"));
        Assert.DoesNotContain(worseProbe.Claims().Failures, f => f.Id == "probe-heterogeneous-near-dense");   // not held: recorded, not asserted
        var seeing = good with { Cells = cells.Select(x => x with { Accuracy = 1.0 }).ToArray() };
        Assert.Equal(ClaimStatus.DoesNotHold, Status(seeing, "probe-homogeneous-blind"));
        Assert.Contains(seeing.Claims().Failures, f => f.Id == "probe-homogeneous-blind");
        // trained: heterogeneous 10 points below dense; homogeneous reading off-stride needles; dense not learning → not shown
        var worseTrained = good with { Trained = trained.Select(t => t.Variant == "heterogeneous" ? t with { Accuracy = 0.9 } : t).ToArray() };
        Assert.Equal(ClaimStatus.DoesNotHold, Status(worseTrained, "trained-heterogeneous-near-dense"));
        Assert.Contains(worseTrained.Claims().Failures, f => f.Id == "trained-heterogeneous-near-dense");       // asserted: the check names it
        Assert.Equal(ClaimStatus.DoesNotHold, Status(good with { Trained = trained.Select(t => t with { OffStrideAccuracy = 0.9 }).ToArray() },
            "trained-homogeneous-blind"));
        var unlearned = good with { Trained = trained.Select(t => t with { Accuracy = 0.1 }).ToArray() };
        Assert.Equal(ClaimStatus.NotShown, Status(unlearned, "trained-heterogeneous-near-dense"));
        Assert.Equal(ClaimStatus.NotShown, Status(unlearned, "trained-homogeneous-blind"));
        Assert.Empty(unlearned.Claims().Failures);
        // speed is reported: a slower sparse forward changes the status, never the check
        var slow = good with { Rows = rows.Select(x => x with { Ms = x.Variant == "dense" ? 1.0 : 3.0 }).ToArray() };
        Assert.Equal(ClaimStatus.DoesNotHold, Status(slow, "speed"));
        Assert.Empty(slow.Claims().Failures);
    }
}
