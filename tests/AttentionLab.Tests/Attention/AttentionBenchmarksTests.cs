using AttentionLab.Attention;
using AttentionLab.Core;

namespace AttentionLab.Tests.Attention;

public class AttentionBenchmarksTests
{
    /// <summary>The table's shape and the two methods' agreement; never the timings.</summary>
    [Fact]
    public void ReferenceVsSdpaReturnsOneRowPerLengthAndMethod()
    {
        var rows = new List<AttentionBenchRow>();
        var df = AttentionBenchmarks.ReferenceVsSdpa(new[] { 8, 24 }, heads: 2, headDim: 8, warmup: 0, repeats: 1,
            progress: new InlineProgress<AttentionBenchRow>(rows.Add));
        Assert.Equal(4, df.Rows.Count);
        Assert.Equal(4, rows.Count);
        Assert.Equal(new[] { "reference", "sdpa", "reference", "sdpa" }, df["method"].Cast<string>());
        Assert.Equal(new[] { 8, 8, 24, 24 }, df["seq_len"].Cast<int>());
        Assert.All(rows, r => Assert.True(r.MaxAbsVsReference < 1e-5, $"{r.Method} at T = {r.SeqLen}: {r.MaxAbsVsReference}"));
        Assert.Throws<ArgumentException>(() => AttentionBenchmarks.ReferenceVsSdpa(Array.Empty<int>()));
    }
}
