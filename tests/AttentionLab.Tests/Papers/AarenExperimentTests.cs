using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.Aaren;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: the claim at seed 0 and the shape of everything the notebook plots.</summary>
public class AarenExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaimAtSeed0()
    {
        var config = AarenExperiment.Config.Smoke;
        var result = AarenExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));

        // the claims: every exactness check and asserted claim holds (their statuses are compared with
        // tests/expected-claims.csv by the notebook test)
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal(ClaimStatus.Holds, claims["forecast-comparable"].Status);
        Assert.Equal(6, result.Exactness.Forms.Count);

        // the table and the series
        var df = result.ToDataFrame();
        Assert.Equal(new[] { "model", "task", "metric", "value", "params", "state_bytes_at_N" }, df.Columns.Select(c => c.Name));
        Assert.Equal(config.Epochs, result.AarenTestMse.Count);
        Assert.Equal(config.Epochs, result.TransformerTestMse.Count);
        Assert.Equal(config.Epochs * config.StepsPerEpoch, result.AarenTrainLoss.Count);

        // streaming: Aaren's state is constant, the KV cache grows linearly; Step reproduces Forward
        var aaren = result.Streaming.Where(p => p.Model == AarenExperiment.AarenName).ToList();
        var kv = result.Streaming.Where(p => p.Model == AarenExperiment.TransformerName).ToList();
        Assert.Equal(config.StreamLength, aaren.Count);
        Assert.Single(aaren.Select(p => p.StateBytes).Distinct());
        Assert.Equal(kv[0].StateBytes * config.StreamLength, kv[^1].StateBytes);
        Assert.True(result.StepVsForwardMaxAbs < 1e-4, $"Step vs Forward {result.StepVsForwardMaxAbs}");
        var curve = result.StreamingCurve(AarenExperiment.TransformerName, points: 16);
        Assert.Equal(16, curve.T.Length);
        Assert.Equal(config.StreamLength, curve.T[^1]);
        Assert.True(curve.StateBytes.Zip(curve.StateBytes.Skip(1)).All(p => p.First < p.Second));

        // forms vs length: every form at every length; query weights sum to 1 per row
        Assert.Equal(4 * config.ScalingLengths.Length, result.Scaling.Count);
        Assert.Equal(config.Layers * config.Heads, result.QueryWeights.Weights.Count);
        Assert.All(result.QueryWeights.Weights, row => Assert.Equal(1.0, row.Sum(), 5));
        Assert.Equal(config.SeqLen, result.QueryWeights.Sample.Length);
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var forms = new[] { new FormError("scan", "float64", new ErrorStats(1e-15, 1e-15, 10)),
            new FormError("scan", "float32", new ErrorStats(1e-7, 1e-7, 10)) };
        var exact = new AarenExactness(forms, new ErrorStats(1e-6, 1e-6, 5), false);
        var stream = Enumerable.Range(1, 20).SelectMany(t => new[]
        {
            new StreamPoint(AarenExperiment.AarenName, t, 0.1, 100), new StreamPoint(AarenExperiment.TransformerName, t, 0.1 * t, 64L * t),
        }).ToArray();
        var metrics = new[]
        {
            new MetricRow(AarenExperiment.AarenName, "classify", "acc", 0.8, 1, 1),
            new MetricRow(AarenExperiment.TransformerName, "classify", "acc", 0.8, 1, 1),
            new MetricRow(AarenExperiment.MajorityName, "classify", "acc", 0.25, 0, 0),
        };
        var good = new AarenResult(AarenExperiment.Config.Smoke, exact, metrics, new[] { 0.15 }, new[] { 0.1 }, 1.0,
            Array.Empty<double>(), Array.Empty<double>(), stream, Array.Empty<ScalingPoint>(),
            new QueryWeightMap(Array.Empty<string>(), Array.Empty<double[]>(), Array.Empty<double>()), 1e-7, 0, new Dictionary<string, double>());
        Assert.Empty(good.Claims().Failures);
        Assert.Equal("smoke", good.Claims().Size);

        // more than 2× the Transformer: the asserted claim fails and Check names it
        var worse = good with { AarenTestMse = new[] { 0.3 } };
        var e = Assert.Throws<ClaimCheckException>(() => worse.Claims().Check());
        Assert.Contains("forecast-comparable", e.Message);
        // a form off by more than the spec's float32 tolerance, and NaN in the large-score scan, fail the exactness checks
        var off = good with { Exactness = exact with { Forms = new[] { forms[0], forms[1] with { Error = new ErrorStats(2e-5, 1e-5, 10) } } } };
        Assert.Equal(ClaimStatus.DoesNotHold, off.Claims()["forms-equal-naive-float32"].Status);
        var nan = good with { Exactness = exact with { LargeScores = new ErrorStats(double.NaN, double.NaN, 5), LargeScoresNaN = true } };
        Assert.Contains(nan.Claims().Failures, f => f.Id == "large-scores-finite");
        Assert.Contains((good with { StepVsForwardMaxAbs = double.NaN }).Claims().Failures, f => f.Id == "step-equals-forward");
        // the latency claim is reported: a growing Aaren latency changes its status but never fails the check
        var slow = good with { Streaming = stream.Select(p => p.Model == AarenExperiment.AarenName ? p with { LatencyMs = p.T } : p).ToArray() };
        Assert.Equal(ClaimStatus.DoesNotHold, slow.Claims()["constant-step-latency"].Status);
        Assert.Empty(slow.Claims().Failures);
    }
}
