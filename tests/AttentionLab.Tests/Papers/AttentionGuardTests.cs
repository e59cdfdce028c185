using AttentionLab.Core;
using AttentionLab.Papers.AttentionGuard;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

public class AttentionGuardTests(ITestOutputHelper output)
{
    [Fact]
    public void FastForestNativeLoadsAndSeparatesTwoBlobs()
    {
        Assert.True(System.Runtime.InteropServices.NativeLibrary.TryLoad("FastTreeNative", typeof(Microsoft.ML.Trainers.FastTree.FastForestBinaryTrainer).Assembly,
            null, out var handle), "libFastTreeNative did not load");
        Assert.NotEqual(IntPtr.Zero, handle);
        var rng = new Random(1);
        var x = Enumerable.Range(0, 300).Select(i => new[] { (i % 3) * 2.0 + rng.NextDouble(), rng.NextDouble() }).ToArray();
        var y = Enumerable.Range(0, 300).Select(i => i % 3).ToArray();
        var forest = ForestClassifier.Fit(x, y, 3, new ForestClassifier.Options(Trees: 10));
        Assert.Equal(y, forest.PredictedByMlNet(x));
        Assert.Equal(y, forest.Predict(x));
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = AttentionGuardExperiment.Run(AttentionGuardExperiment.Config.Smoke, torch.CPU, new Progress<string>(output.WriteLine));
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        foreach (var p in result.PhaseSeconds) output.WriteLine($"{p.Key}: {p.Value:F2} s");
        Assert.Empty(claims.Failures);
    }
}
