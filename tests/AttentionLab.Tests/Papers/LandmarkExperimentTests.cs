using AttentionLab.Papers.LandmarkAttention;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class LandmarkExperimentTests
{
    /// <summary>The smoke run on the shipped checkpoint: at 4× the training length, landmark k = 2 beats the window by the configured margin.</summary>
    [Fact]
    public void SmokeClaimHolds()
    {
        var c = LandmarkExperiment.Config.Smoke;
        using var r = LandmarkExperiment.Run(c, CPU);
        Assert.Equal(c.EvalLengths.Length * (2 + c.TopKs.Length + 1), r.ToDataFrame().Rows.Count);
        r.Check();
        int n = c.EvalLengths.Max();
        var landmark = r.Rows.Single(x => x.N == n && x.Method == LandmarkMethod.Landmark);
        var full = r.Rows.Single(x => x.N == n && x.Method == LandmarkMethod.FullAttention);
        Assert.True(landmark.AttendedTokens < full.AttendedTokens / 2, $"landmark attends {landmark.AttendedTokens} of {full.AttendedTokens}");
        Assert.True(landmark.KvBytesPerStep < full.KvBytesPerStep);
        Assert.True(r.Accuracy(c.TrainLength, LandmarkMethod.FullAttention) >= 0.9, "the checkpoint does not solve passkey at its training length");
    }
}
