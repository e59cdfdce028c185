using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.SecondarySinks;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>P25 Secondary sinks: window, detector, labels, sink score and steering against their twins; the injection hook; bad input; a reduced run.</summary>
public class SecondarySinksTests(ITestOutputHelper output)
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", SecondarySinksExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", SecondarySinksExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (SecondarySinksExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
        Assert.Equal(new[] { 0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2 }, SecondarySinksExperiment.Config.Smoke.AlphaFactors);
    }

    [Fact]
    public void WindowOfTheSpecCurveIsTwoToFive()
    {
        using var n = torch.tensor(SecondarySinksChecks.SpecCurve, dtype: float64);
        Assert.Equal((2, 5), SinkDetector.PrimaryWindow(n));
        Assert.Equal((2, 5), SecondarySinksNaive.PrimaryWindow(SecondarySinksChecks.SpecCurve));
    }

    [Fact]
    public void WindowEdgeCases()
    {
        Assert.Equal((1, 2), SinkDetector.PrimaryWindow(torch.tensor(new[] { 1.0, 5 })));          // one Δ: the spike at the end, window to the end
        Assert.Equal((1, 2), SecondarySinksNaive.PrimaryWindow(new[] { 1.0, 5 }));
        Assert.Equal((1, 2), SinkDetector.PrimaryWindow(torch.tensor(new[] { 3.0, 3, 3 })));      // flat: first argmax and argmin
        Assert.Equal((1, 2), SecondarySinksNaive.PrimaryWindow(new[] { 3.0, 3, 3 }));
        Assert.Throws<ArgumentException>("bosNorms", () => SinkDetector.PrimaryWindow(torch.tensor(new[] { 1.0 })));
        Assert.Throws<ArgumentException>("bosNorms", () => SinkDetector.PrimaryWindow(torch.tensor(new[] { 1.0, double.NaN })));
        Assert.Throws<ArgumentException>("bosNorms", () => SinkDetector.PrimaryWindow(torch.ones(2, 2)));
    }

    [Fact]
    public void ToyChecksAllPass()
    {
        var ex = SecondarySinksChecks.Toy(0);
        output.WriteLine(ex.ToString());
        Assert.Equal((2, 5), ex.WindowOnSpec);
        Assert.Equal(0, ex.WindowTwinMismatches);
        Assert.True(ex.ConstructedOk, ex.ConstructedFound);
        Assert.Equal(0, ex.DetectorTwinMismatches);
        Assert.True(ex.LabelsOk);
        Assert.True(ex.SinkScoreTwinMaxAbs <= 1e-12, $"{ex.SinkScoreTwinMaxAbs}");
        Assert.True(ex.RescaleTwinMaxAbs <= 1e-12, $"{ex.RescaleTwinMaxAbs}");
        Assert.Equal(2, ex.RescaleMarked);
    }

    [Fact]
    public void DetectorUsesTheSameLayersBosState()
    {
        // token 1 equals the BOS state of the PREVIOUS layer: not a sink (the cosine is with the same layer's BOS)
        var h = torch.zeros(3, 2, 3, dtype: float64);
        h[0, 0, 0] = 1; h[1, 0, 1] = 1; h[2, 0, 2] = 1;
        h[1, 1, 0] = 1; h[2, 1, 1] = 1;
        h[0, 1, 2] = 1;
        var map = SinkDetector.Detect(h, 0, window: (0, 3));
        Assert.Empty(map.Layers);
        h[2, 1] = h[2, 0] * 5;
        map = SinkDetector.Detect(h, 0, window: (0, 3));
        Assert.Equal(new[] { 2 }, map.Layers[1]);
        Assert.Equal(1, map.Lifetime(1));
        Assert.Equal(0, map.Lifetime(0));
    }

    [Fact]
    public void NaNStatesAreNeverSinks()
    {
        var h = torch.randn(4, 3, 2, dtype: float64);
        h[.., 2] = h[.., 0];
        h[1, 1] = torch.full(2, double.NaN, dtype: float64);
        var cos = SinkDetector.CosineToBos(h, 0);
        Assert.True(double.IsNaN(cos[1, 1].item<double>()));
        var map = SinkDetector.Detect(h, 0, window: (0, 4));
        Assert.False(map.Layers.ContainsKey(1) && map.Layers[1].Contains(1));
        Assert.Equal(new[] { 0, 1, 2, 3 }, map.Layers[2]);
    }

    [Fact]
    public void LabelsFollowTheThresholds()
    {
        var map = new SinkMap(0, 0, 36, new Dictionary<int, int[]>
        {
            [1] = Enumerable.Range(0, 25).ToArray(), [2] = Enumerable.Range(0, 10).ToArray(), [3] = Enumerable.Range(0, 4).ToArray(),
        });
        var labels = SinkDetector.Label(map, 36, LabelThresholds.Paper(36));
        Assert.Equal(new[] { SinkLabel.Primary, SinkLabel.Secondary, SinkLabel.Noise }, labels.Select(l => l.Label));
        Assert.Equal(LabelThresholds.Paper(36), LabelThresholds.Rescaled(36) with { });
        var toy = SinkDetector.Label(new SinkMap(0, 1, 4, new Dictionary<int, int[]> { [1] = new[] { 1 }, [2] = new[] { 1, 2 } }), 3);
        Assert.Equal(new[] { SinkLabel.Secondary, SinkLabel.Primary }, toy.Select(l => l.Label));
    }

    [Fact]
    public void SinkScoreOfAllOnBosIsOneAndKeepsTheDiagonal()
    {
        // every query on key 0: a_0 = 1, a_j = 0 for j > 0; the identity pattern gives a_j = 1/(T − j) (query j itself counts)
        const int T = 5;
        var onBos = torch.zeros(new long[] { 1, 1, 1, T, T }, dtype: float64);
        onBos[.., .., .., .., 0] = 1;
        var s = SinkScores.PerToken(onBos);
        Assert.Equal(1.0, s[0, 0].item<double>(), 12);
        Assert.Equal(0.0, s[0, 3].item<double>(), 12);
        var eye = torch.eye(T, dtype: float64).view(1, 1, 1, T, T);
        var d = SinkScores.PerToken(eye).data<double>().ToArray();
        for (int j = 0; j < T; j++) Assert.Equal(1.0 / (T - j), d[j], 12);
        var naive = SecondarySinksNaive.PerToken(eye);
        for (int j = 0; j < T; j++) Assert.Equal(d[j], naive[0][j], 12);
        Assert.True(double.IsNaN(SinkScores.PerToken(torch.full(new long[] { 1, 1, 1, 2, 2 }, double.NaN, dtype: float64))[0, 0].item<double>()));
    }

    [Fact]
    public void InjectionAtZeroIsBitwiseAndAddsAlphaU()
    {
        torch.manual_seed(1);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 3, DModel: 16, Heads: 2, Positions: PositionKind.Learned, VocabSize: 11, MaxLength: 8));
        model.eval();
        using var noGrad = torch.no_grad();
        var tokens = torch.randint(0, 11, new long[] { 2, 8 });
        var (clean, cache) = model.RunWithCache(tokens, n => n.EndsWith("resid_post"));
        var dir = torch.randn(16);
        using (model.Hooks(SinkScores.InjectDirection(model, 1, 4, dir, 0)))
            Assert.True(model.call(tokens).eq(clean).all().item<bool>());
        Tensor after;
        using (model.Hooks(SinkScores.InjectDirection(model, 1, 4, dir, 3.0)))
        {
            var (_, c2) = model.RunWithCache(tokens, n => n.EndsWith("resid_post"));
            after = c2["resid_post", 1].clone();
            c2.Dispose();
        }
        var delta = after - cache["resid_post", 1];
        var expected = dir / dir.norm() * 3.0;
        Assert.True((delta[.., 4] - expected).abs().max().item<float>() < 1e-5);
        delta[.., 4] = 0;
        Assert.Equal(0f, delta.abs().max().item<float>());
        cache.Dispose();
        Assert.Throws<ArgumentException>("direction", () => SinkScores.InjectDirection(model, 1, 4, torch.zeros(16), 1));
        Assert.Throws<ArgumentException>("norm", () => SinkScores.InjectDirection(model, 1, 4, dir, double.NaN));
    }

    [Fact]
    public void BosByNormPicksTheLargestMeanNorm()
    {
        var h = torch.ones(3, 4, 2, dtype: float64);
        h[.., 2] *= 10;
        Assert.Equal(2, SinkDetector.BosByNorm(h, new[] { 0, 2, 3 }));
        Assert.Equal(0, SinkDetector.BosByNorm(h, new[] { 0, 3 }));
        Assert.Throws<ArgumentException>("candidates", () => SinkDetector.BosByNorm(h, new[] { 7 }));
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        var h = torch.randn(3, 4, 2);
        Assert.Throws<ArgumentException>("hidden", () => SinkDetector.Detect(torch.randn(3, 4), 0));
        Assert.Throws<ArgumentException>("bos", () => SinkDetector.Detect(h, 4));
        Assert.Throws<ArgumentException>("cos", () => SinkDetector.Detect(h, 0, cos: 1.5));
        Assert.Throws<ArgumentException>("window", () => SinkDetector.Detect(h, 0, window: (2, 9)));
        Assert.Throws<ArgumentException>("hidden", () => SinkDetector.Detect(torch.ones(3, 4, 2, dtype: ScalarType.Int64), 0));
        Assert.Throws<ArgumentException>("patterns", () => SinkScores.PerToken(torch.rand(2, 3, 3)));
        Assert.Throws<ArgumentException>("direction", () => SinkScores.RescaleAligned(torch.randn(1, 4, 3), torch.randn(2)));
        Assert.ThrowsAny<ArgumentException>(() => LabelThresholds.Rescaled(0));
        Assert.Throws<ArgumentException>("InjectLayer", () => (SecondarySinksExperiment.Config.Smoke with { InjectLayer = 2 }).Validate());
        Assert.Throws<ArgumentException>("InjectPosition", () => (SecondarySinksExperiment.Config.Smoke with { InjectPosition = 0 }).Validate());
    }

    [Fact]
    public void ReducedRunReportsItsClaims()
    {
        var config = SecondarySinksExperiment.Config.Smoke with { Steps = 40, EvalBatch = 8, Sentences = Array.Empty<string>(), Size = "custom" };
        var result = SecondarySinksExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        Assert.All(claims.Where(c => c.Kind == ClaimKind.Exactness), c => Assert.Equal(ClaimStatus.Holds, c.Status));
        Assert.Equal(SecondarySinksExperiment.Paper.Number, claims.Paper);
        Assert.Equal(9, result.Injection.Count);
        Assert.Equal(9, result.ToDataFrame().Rows.Count);
        Assert.NotNull(result.SinkMapFrame());
    }
}
