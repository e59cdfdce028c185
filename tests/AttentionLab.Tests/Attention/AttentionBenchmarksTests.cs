using AttentionLab.Attention;
using AttentionLab.Bench;
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
        Assert.All(rows, r => Assert.Equal(2L * r.SeqLen * r.SeqLen * sizeof(float), r.ScoreMatrixBytes));
        Assert.Throws<ArgumentException>(() => AttentionBenchmarks.ReferenceVsSdpa(Array.Empty<int>()));

        var lines = MarkdownTable.From(df, new Dictionary<string, string> { ["max_abs_vs_reference"] = "0.0E+0" }).Split(Environment.NewLine);
        Assert.Equal(2 + 4, lines.Length);
        Assert.StartsWith("| seq_len | method | median_ms |", lines[0]);
        Assert.StartsWith("| 8 | reference | ", lines[2]);
        Assert.Matches(@"\| \d\.\dE[+-]\d+ \|", lines[3]);
    }
}
