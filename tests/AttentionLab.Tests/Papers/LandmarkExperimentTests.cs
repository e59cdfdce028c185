using AttentionLab.Core;
using AttentionLab.Papers.LandmarkAttention;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: the claims on the shipped checkpoint and the shape of what the notebook shows.</summary>
public class LandmarkExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaims()
    {
        var c = LandmarkExperiment.Config.Smoke;
        using var r = LandmarkExperiment.Run(c, CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(r.ToDataFrame().ToString());
        var claims = r.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        foreach (var id in new[] { "passkey-4x", "passkey-8x" })
            Assert.Equal(ClaimStatus.Holds, claims[id].Status);
        Assert.Equal(7, r.Exactness.TwinCases.Count);
        Assert.Contains(r.Exactness.TwinCases, x => x.Memory.TopK > 0 && x.Memory.TopK < 8);      // k < S is among the twin cases

        Assert.Equal(c.EvalLengths.Length * (2 + c.TopKs.Length + 1), r.ToDataFrame().Rows.Count);
        int n = c.EvalLengths.Max();
        var landmark = r.Rows.Single(x => x.N == n && x.Method == LandmarkMethod.Landmark);
        var full = r.Rows.Single(x => x.N == n && x.Method == LandmarkMethod.FullAttention);
        Assert.True(landmark.AttendedTokens < full.AttendedTokens / 2, $"landmark attends {landmark.AttendedTokens} of {full.AttendedTokens}");
        Assert.True(landmark.KvBytesPerStep < full.KvBytesPerStep);
        Assert.True(r.Accuracy(c.TrainLength, LandmarkMethod.FullAttention) >= 0.9, "the checkpoint does not solve passkey at its training length");
        Assert.Equal(c.Model.Layers, r.Retrieval.PerLayer.Count);
        Assert.NotEmpty(claims.Findings().Lines());
    }

    /// <summary>A result built by hand: every claim follows its measurement across its criterion.</summary>
    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var c = LandmarkExperiment.Config.Smoke;
        var exact = new LandmarkExactness(1e-16, 2e-16, 2e-16, 0, new[] { new MemoryCase("k = 1", new LandmarkMemory(1), 1e-15) },
            new[] { new MemoryCase("k = S", new LandmarkMemory(8), 1e-15) }, "toy");
        var rows = new List<LandmarkRow>();
        foreach (int n in c.EvalLengths)
        {
            long inserted = LandmarkTokens.InsertedLength(n, c.Model.BlockSize);
            var cost = LandmarkCost.At(n, c.Model.BlockSize, 2, c.Model.Heads, c.Model.DModel / c.Model.Heads);
            rows.Add(new LandmarkRow(n, 0, LandmarkMethod.FullAttention, n == 64 ? 1.0 : 0.4, inserted, 2 * cost.FullKvBytes, inserted));
            rows.Add(new LandmarkRow(n, 0, LandmarkMethod.Window, n == 64 ? 1.0 : 0.2, 72, 1000, inserted,
                n == 64 ? new[] { 1.0, 1, 1, 1, 1 } : new[] { 0.03, 0.04, 0.02, 0.03, 1.0 }));
            rows.Add(new LandmarkRow(n, 2, LandmarkMethod.Landmark, 1.0, cost.LandmarkTokens, 2 * cost.LandmarkKvBytes, inserted));
            rows.Add(new LandmarkRow(n, 2, LandmarkMethod.LandmarkNoRemap, 0.5, cost.LandmarkTokens, 2 * cost.LandmarkKvBytes, inserted));
        }
        var demo = new LandmarkRetrievalDemo(512, 0.3, 2, new[] { new[] { 0.5, 0.5 }, new[] { 0.9, 0.1 } }, new[] { 0 });
        using var weights = zeros(3, 3);
        var good = new LandmarkResult(c, exact, rows, demo, weights, 0, 1.0);
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.All(claims, x => Assert.Equal(ClaimStatus.Holds, x.Status));
        Assert.Equal(new[] { "grouped-softmax-equals-naive", "rows-sum-to-one", "memory-equals-loop-twin", "all-blocks-equals-training-form",
            "passkey-4x", "passkey-8x", "window-lower-bound", "remap-needed", "keys-per-query" }, claims.Select(x => x.Id));
        Assert.False(LandmarkExperiment.NeedleInWindow(c, 512, 0.1));
        Assert.True(LandmarkExperiment.NeedleInWindow(c, 512, 0.9));                                    // the last depth sits in the last 64 tokens

        LandmarkResult With(int n, LandmarkMethod method, double accuracy) =>
            good with { Rows = rows.Select(x => x.N == n && x.Method == method ? x with { Accuracy = accuracy } : x).ToList() };
        // landmark below the spec's 0.8, and full attention above landmark: the asserted claim fails and Check names it
        var weak = With(512, LandmarkMethod.Landmark, 0.79);
        Assert.Contains("passkey-8x", Assert.Throws<ClaimCheckException>(() => weak.Claims().Check()).Message);
        Assert.Contains(With(256, LandmarkMethod.FullAttention, 1.0 + 1e-9).Claims().Failures, f => f.Id == "passkey-4x");
        Assert.Contains(With(512, LandmarkMethod.Landmark, double.NaN).Claims().Failures, f => f.Id == "passkey-8x");
        // exactness: off by more than 1e-12, or NaN
        Assert.Contains(
            (good with { Exactness = exact with { TwinCases = new[] { new MemoryCase("k = 1", new LandmarkMemory(1), 2e-12) } } }).Claims().Failures,
            f => f.Id == "memory-equals-loop-twin");
        Assert.Contains(
            (good with { Exactness = exact with { AllBlocksCases = new[] { new MemoryCase("k = S", new LandmarkMemory(8), double.NaN) } } }).Claims().Failures,
            f => f.Id == "all-blocks-equals-training-form");
        Assert.Contains((good with { Exactness = exact with { GroupedMaxAbs = 1e-9 } }).Claims().Failures, f => f.Id == "grouped-softmax-equals-naive");
        Assert.Contains((good with { Exactness = exact with { LandmarkColumnMaxAbs = 1e-30 } }).Claims().Failures, f => f.Id == "rows-sum-to-one");
        // reported records change status but never fail the check
        var windowUp = good with { Rows = rows.Select(x => x.N == 256 && x.Method == LandmarkMethod.Window
            ? x with { DepthAccuracy = new[] { 0.3, 0.04, 0.02, 0.03, 1.0 } } : x).ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, windowUp.Claims()["window-lower-bound"].Status);
        Assert.Empty(windowUp.Claims().Failures);
        Assert.Equal(ClaimStatus.DoesNotHold, With(512, LandmarkMethod.LandmarkNoRemap, 1.0).Claims()["remap-needed"].Status);
        var miscounted = good with { Rows = rows.Select(x => x.N == 512 && x.Method == LandmarkMethod.Landmark
            ? x with { AttendedTokens = x.AttendedTokens + 1 } : x).ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, miscounted.Claims()["keys-per-query"].Status);
        Assert.Empty(miscounted.Claims().Failures);
    }
}
