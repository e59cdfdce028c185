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

        // the claim: Aaren < last value, and ≤ 2 × Transformer (CheckClaim throws otherwise)
        Assert.True(result.AarenMse < result.LastValueMse, $"Aaren {result.AarenMse} vs last value {result.LastValueMse}");
        Assert.True(result.AarenMse <= 2 * result.TransformerMse, $"Aaren {result.AarenMse} vs Transformer {result.TransformerMse}");
        output.WriteLine(result.CheckClaim());

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
    public void ClaimCheckThrowsAReadableMessage()
    {
        var good = new AarenResult(AarenExperiment.Config.Smoke, Array.Empty<MetricRow>(), new[] { 0.3 }, new[] { 0.1 }, 1.0,
            Array.Empty<double>(), Array.Empty<double>(), Array.Empty<StreamPoint>(), Array.Empty<ScalingPoint>(),
            new QueryWeightMap(Array.Empty<string>(), Array.Empty<double[]>(), Array.Empty<double>()), 0, 0, new Dictionary<string, double>());
        var e = Assert.Throws<InvalidOperationException>(() => good.CheckClaim());
        Assert.Contains("more than 2× the Transformer", e.Message);
        Assert.Contains("last-value", Assert.Throws<InvalidOperationException>(() => (good with { AarenTestMse = new[] { 1.5 } }).CheckClaim(factor: 100)).Message);
        Assert.StartsWith("Claim holds", (good with { AarenTestMse = new[] { 0.15 } }).CheckClaim());
    }
}
