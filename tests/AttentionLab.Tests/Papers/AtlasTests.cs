using AttentionLab.Atlas;
using AttentionLab.Core;
using AttentionLab.Papers.S2Attention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The atlas plumbing on a tiny run (one point per mixer, streaming state where it exists, tables, charts, claims),
/// the smoke run's claims, and claims built by hand that flip when a measurement crosses its criterion.</summary>
public class AtlasTests(ITestOutputHelper output)
{
    [Fact]
    public void ATinyAtlasMeasuresEveryMixer()
    {
        var config = MixerAtlas.Config.Smoke with
        {
            Steps = 4, BatchSize = 4, TestCount = 8, TimingRepeats = 1,
            Mixers = new[] { AtlasMixers.Softmax, AtlasMixers.Based(4), AtlasMixers.Flowformer, AtlasMixers.Routing(), AtlasMixers.S2() },
        };
        var result = MixerAtlas.Run(config, torch.CPU);
        Assert.Equal(5, result.Points.Count);
        var softmax = result.Points[0];
        var based = result.Points[1];
        Assert.NotNull(softmax.StateBytes);
        Assert.True(softmax.StepVsForwardMaxAbs < 1e-3, $"softmax Step vs forward {softmax.StepVsForwardMaxAbs}");
        Assert.True(based.StepVsForwardMaxAbs < 1e-3, $"BASED Step vs forward {based.StepVsForwardMaxAbs}");
        Assert.True(result.Points[2].StepVsForwardMaxAbs < 1e-3, $"Flowformer Step vs forward {result.Points[2].StepVsForwardMaxAbs}");
        Assert.Null(result.Points[3].StateBytes);                                 // Routing cannot stream
        Assert.All(result.Points, p => Assert.InRange(p.Recall, 0, 1));
        Assert.Equal(5, result.ToDataFrame().Rows.Count);
        Assert.NotNull(result.RecallVsState());
        Assert.NotNull(result.RecallVsSpeed());
        Assert.NotEmpty(result.StateFront());

        // S2 streams with its pruned per-head cache: conv + Σ_h held_h(T) × 2·d_h·4 B, below softmax's full cache
        var s2 = result.Points[4];
        Assert.True(s2.StepVsForwardMaxAbs < 1e-3, $"S2 Step vs forward {s2.StepVsForwardMaxAbs}");
        using var probe = new S2SelfAttention(config.DModel, config.Heads, 4, 2, 2);
        long held = Enumerable.Range(0, config.Heads).Sum(h => probe.HeldTokens(h, config.SeqLen));
        Assert.Equal(2L * config.DModel * sizeof(float) + held * 2 * (config.DModel / config.Heads) * sizeof(float), s2.StateBytes);
        Assert.Equal(s2.FormulaStateBytes, s2.StateBytes);
        Assert.True(s2.StateBytes < softmax.StateBytes, $"S2 {s2.StateBytes} B vs softmax {softmax.StateBytes} B");
        Assert.True(held < (long)config.Heads * config.SeqLen);

        // four steps do not solve MQAR: the asserted attention claim does not hold and the check names it
        var claims = result.Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, claims["attention-solves-mqar"].Status);
        Assert.Contains("attention-solves-mqar", Assert.Throws<ClaimCheckException>(() => claims.Check()).Message);
        Assert.Equal(ClaimStatus.Holds, claims["step-equals-forward"].Status);
        Assert.Equal(ClaimStatus.Holds, claims["s2-b-4-l-2-s-2-state-is-pruned-cache"].Status);
    }

    /// <summary>
    /// The head variants (P04, P14, P18, P21, P24, P31) stream like the others, and those whose paper states their cache hold
    /// exactly that: BAM's mixture E caches (2 × softmax's mixer state), GQA G = 1 one head of K and V (½ × at H = 2).
    /// </summary>
    [Fact]
    public void HeadVariantsStreamAndHoldTheirPapersCache()
    {
        var config = MixerAtlas.Config.Smoke with
        {
            Steps = 4, BatchSize = 4, TestCount = 8, TimingRepeats = 1,
            Mixers = new[] { AtlasMixers.Softmax, AtlasMixers.Bam(2), AtlasMixers.Gqa(1), AtlasMixers.Moh, AtlasMixers.Rcmha, AtlasMixers.AffineScaled,
                AtlasMixers.Deconstructed(AttentionLab.Papers.DeconstructingAttention.MixerKind.ReluNorm) },
        };
        var result = MixerAtlas.Run(config, torch.CPU);
        Assert.All(result.Points, p => Assert.True(p.StepVsForwardMaxAbs < 1e-3, $"{p.Name}: Step vs forward {p.StepVsForwardMaxAbs}"));
        long conv = 2L * config.DModel * sizeof(float);                                 // BaseConv keeps k − 1 = 2 inputs
        long softmaxMixer = result.Points[0].StateBytes!.Value - conv;
        Assert.Equal(2L * config.SeqLen * config.DModel * sizeof(float), softmaxMixer);  // T · 2d · 4 B
        Assert.Equal(conv + 2 * softmaxMixer, result.Points[1].StateBytes);               // BAM: E = 2 experts' caches
        Assert.Equal(conv + softmaxMixer / config.Heads, result.Points[2].StateBytes);    // GQA G = 1 of H = 2
        Assert.Equal(result.Points[1].FormulaStateBytes, result.Points[1].StateBytes);
        Assert.Equal(result.Points[2].FormulaStateBytes, result.Points[2].StateBytes);
        Assert.Null(result.Points[3].FormulaStateBytes);
        var claims = result.Claims();
        Assert.Equal(ClaimStatus.Holds, claims["bam-mixture-e-2-state-is-e-caches"].Status);
        Assert.Equal(ClaimStatus.Holds, claims["gqa-g-1-state-is-grouped-cache"].Status);
        Assert.Equal(ClaimStatus.Holds, claims["step-equals-forward"].Status);
        // every head variant keeps a KV cache: none is a fixed state, so the fixed-state comparison has nothing to fail on
        Assert.Equal(ClaimStatus.Holds, claims["state-bytes"].Status);
        Assert.Equal("kind", Assert.Throws<ArgumentException>(
            () => AtlasMixers.Deconstructed(AttentionLab.Papers.DeconstructingAttention.MixerKind.DecoupledQK)).ParamName);
    }

    /// <summary>MoH trains with its load-balance loss: the atlas adds β·L_b, which reaches the router's weights.</summary>
    [Fact]
    public void MohTrainsWithItsBalanceLoss()
    {
        using var scope = torch.NewDisposeScope();
        var mixer = AtlasMixers.Moh.Build(16, 2);
        var moh = Assert.IsType<AttentionLab.Papers.Moh.MixtureOfHeadAttention>(mixer);
        Assert.Equal((4, 1, 2), (moh.Heads, moh.Shared, moh.TopK));                      // 2H heads, (1 + 2)/4 = 75 % active
        Assert.Null(AtlasMixers.Moh.AuxLoss!(mixer));                                    // no forward yet
        mixer.call(torch.randn(2, 5, 16));
        var aux = AtlasMixers.Moh.AuxLoss!(mixer)!;
        aux.backward();
        var router = moh.named_parameters().Where(p => p.name.StartsWith("w_r")).Select(p => p.parameter).ToList();
        Assert.NotEmpty(router);
        Assert.True(router.All(p => p.grad is { } g && g.abs().sum().item<float>() > 0), "β·L_b does not reach W_r");
    }

    [Fact]
    public void SmokeRunHoldsItsAssertedClaims()
    {
        var result = MixerAtlas.Run(MixerAtlas.Config.Smoke, torch.CPU, new InlineProgress<string>(output.WriteLine));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        Assert.Equal(AtlasMixers.Smoke.Count, result.Points.Count);
        Assert.Equal(ClaimStatus.Holds, claims["attention-solves-mqar"].Status);
        // one learn record per mixer other than softmax, with unique ids
        Assert.Equal(AtlasMixers.Smoke.Count - 1, claims.Count(c => c.Id.StartsWith("learns-")));
    }

    /// <summary>
    /// Landmark Attention joins with landmark tokens inserted and its state counted (landmark keys + k blocks + current block), not streamed.
    /// </summary>
    [Fact]
    public void LandmarkJoinsWithCountedState()
    {
        var config = MixerAtlas.Config.Smoke with { Steps = 4, BatchSize = 4, TestCount = 8, TimingRepeats = 1, Mixers = new[] { AtlasMixers.Landmark(8, 2) } };
        var result = MixerAtlas.Run(config, torch.CPU);
        var p = Assert.Single(result.Points);
        Assert.True(p.StateCounted);
        Assert.InRange(p.Recall, 0, 1);
        var cost = AttentionLab.Papers.LandmarkAttention.LandmarkCost.At(config.SeqLen, 8, 2, config.Heads, config.DModel / config.Heads);
        Assert.Equal(2L * config.DModel * sizeof(float) + cost.LandmarkKvBytes, p.StateBytes);   // BaseConv (k − 1 = 2 inputs) + landmark working set
        Assert.Equal("counted", result.ToDataFrame()["state_kind"][0]);
        var claims = result.Claims();
        Assert.Equal(ClaimStatus.Holds, claims["step-equals-forward"].Status);              // counted state: nothing streamed to compare
        Assert.Equal(ClaimStatus.NotShown, claims["attention-solves-mqar"].Status);         // no softmax in this run
    }

    /// <summary>A result built by hand: the asserted claims hold; then each measurement is pushed across its criterion.</summary>
    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var config = MixerAtlas.Config.Smoke;
        var points = new[]
        {
            new AtlasPoint(AtlasMixers.Softmax.Name, "full attention", 0.99, 8448, 1e5, 1, 1e-6, 1),
            new AtlasPoint("BASED d′=4", "BASED", 0.77, 2296, 2e5, 1, 1e-6, 1),
            new AtlasPoint("Routing C=4", "Routing", 0.04, null, 1e5, 1, double.NaN, 1),
            new AtlasPoint("S2 b=4 ℓ=2 s=2", "S2", 0.25, 5056, 1e5, 1, 1e-6, 1, FormulaStateBytes: 5056),
        };
        var good = new AtlasResult(config, points, 1);
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(new[] { "step-equals-forward", "s2-b-4-l-2-s-2-state-is-pruned-cache", "attention-solves-mqar", "learns-based-d-4", "learns-routing-c-4",
            "learns-s2-b-4-l-2-s-2", "state-bytes", "time-per-token" }, claims.Select(c => c.Id));
        // a mixer near chance is recorded as not holding, not asserted
        Assert.Equal(ClaimStatus.DoesNotHold, claims["learns-routing-c-4"].Status);
        Assert.False(claims["learns-routing-c-4"].Asserted);
        Assert.Equal(ClaimStatus.Holds, claims["learns-based-d-4"].Status);

        AtlasResult With(int i, AtlasPoint p) => good with { Points = points.Select((q, j) => j == i ? p : q).ToArray() };
        Assert.Contains(With(0, points[0] with { Recall = 0.85 }).Claims().Failures, f => f.Id == "attention-solves-mqar");
        Assert.Contains(With(1, points[1] with { StepVsForwardMaxAbs = 2e-3 }).Claims().Failures, f => f.Id == "step-equals-forward");
        Assert.Contains(With(1, points[1] with { StepVsForwardMaxAbs = double.NaN }).Claims().Failures, f => f.Id == "step-equals-forward");
        Assert.Contains(With(3, points[3] with { StateBytes = 8448 + 16, FormulaStateBytes = 8448 + 16 }).Claims().Failures,
            f => f.Id == "s2-b-4-l-2-s-2-state-is-pruned-cache");
        Assert.Contains(With(3, points[3] with { StateBytes = 8448 }).Claims().Failures, f => f.Id == "s2-b-4-l-2-s-2-state-is-pruned-cache");
        Assert.Equal(ClaimStatus.DoesNotHold, With(1, points[1] with { Recall = 0.05 }).Claims()["learns-based-d-4"].Status);
        // reported: a fixed state above the KV cache, a linear mixer slower than softmax — statuses change, the check does not fail
        var big = With(1, points[1] with { StateBytes = 21_000 });
        Assert.Equal(ClaimStatus.DoesNotHold, big.Claims()["state-bytes"].Status);
        Assert.Empty(big.Claims().Failures);
        var slow = With(1, points[1] with { TokensPerSecond = 5e4 });
        Assert.Equal(ClaimStatus.DoesNotHold, slow.Claims()["time-per-token"].Status);
        Assert.Empty(slow.Claims().Failures);
        Assert.Equal(ClaimStatus.Holds, claims["time-per-token"].Status);
    }

    [Fact]
    public void SlugsAreClaimIds()
    {
        Assert.Equal("sliding-window-w-8", AtlasResult.Slug("sliding window w=8"));
        Assert.Equal("sigma-linear-attention", AtlasResult.Slug("σ-linear attention"));
        Assert.Equal("landmark-l-b-4-k-2", AtlasResult.Slug("Landmark ℓ_b=4 k=2"));
        Assert.Equal("based-d-16", AtlasResult.Slug("BASED d′=16"));
        Assert.Equal(AtlasMixers.Smoke.Count, AtlasMixers.Smoke.Select(m => AtlasResult.Slug(m.Name)).Distinct().Count());
    }

    [Fact]
    public void BadConfigIsNamed()
    {
        Assert.Equal("Mixers", Assert.Throws<ArgumentException>(
            () => (MixerAtlas.Config.Smoke with { Mixers = Array.Empty<AtlasMixer>() }).Validate()).ParamName);
        Assert.Equal("Heads", Assert.Throws<ArgumentException>(() => (MixerAtlas.Config.Smoke with { Heads = 3 }).Validate()).ParamName);
        Assert.Equal("full", MixerAtlas.Config.For(RunSize.Full).Size);
        Assert.Equal(90, MixerAtlas.Paper.Number);
    }
}
