using AttentionLab.Bench;
using AttentionLab.Papers.Based;
using AttentionLab.Papers.Flowformer;
using AttentionLab.Papers.LightningAttention;

namespace AttentionLab.Tests.Bench;

public class ParityTests
{
    /// <summary>Every parity case's library call and bare ops agree (the benchmark checks this before it times), forward and backward rows.</summary>
    [Fact]
    public void EveryCaseAgreesWithItsBareOpsAndReportsBothPasses()
    {
        var cases = Parity.Cases(heads: 2, dim: 8).Concat(LightningParity.Cases(heads: 2, dim: 8)).Concat(BasedParity.Cases(heads: 2, dim: 8))
            .Concat(FlowParity.Cases(heads: 2, dim: 8)).ToList();
        int[] lengths = [33, 128, 130];   // 130: two full chunks of 64 and a tail
        var rows = Parity.Run(cases, lengths, backward: true, warmup: 0, repeats: 1);
        Assert.Equal(cases.Sum(c => lengths.Count(t => t <= c.MaxLength && t % c.MinMultiple == 0)) * 2, rows.Count);
        Assert.All(cases, c => Assert.Contains(rows, r => r.Method == c.Method));
        foreach (var r in rows)
        {
            Assert.True(r.MaxAbsDiff < 1e-5, $"{r.Method}: library and bare ops differ by {r.MaxAbsDiff:E2}");
            Assert.True(r.LibraryMs > 0 && r.BareMs > 0 && double.IsFinite(r.Ratio), $"{r.Method}: timings");
        }
        Assert.Equal(["forward", "forward + backward"], rows.Select(r => r.Pass).Distinct().ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => Parity.Run(cases, [8], repeats: 0));
    }
}
