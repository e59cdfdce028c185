using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Tests.Core;

public class TablesTests
{
    enum Kind { Fast, Slow }

    sealed record Row(string Method, int SeqLen, long Bytes, double MedianMs, double? PeakMiB, bool Causal, Kind Kind,
        [property: Column("ms", Digits = 1)] double Raw, [property: Column(Skip = true)] double Hidden, double[] Series, float Ratio);

    static readonly Row[] Rows =
    [
        new("lightning", 1024, 10, 1.23456, 3.5, true, Kind.Fast, 1.26, 9, [1, 2], 0.5f),
        new("sdpa", 2048, 20, double.NaN, null, false, Kind.Slow, 2.04, 9, [], 1.5f),
    ];

    [Fact]
    public void ColumnsComeFromTheScalarPropertiesInOrder()
    {
        var df = Tables.From(Rows);
        Assert.Equal(["method", "seq_len", "bytes", "median_ms", "peak_mib", "causal", "kind", "ms", "ratio"], df.Columns.Select(c => c.Name));
        Assert.IsType<Int32DataFrameColumn>(df["seq_len"]);
        Assert.IsType<Int64DataFrameColumn>(df["bytes"]);
        Assert.IsType<SingleDataFrameColumn>(df["ratio"]);
        Assert.Equal("Slow", df["kind"][1]);
        Assert.Equal(1.3, df["ms"][0]);                  // rounded to one digit
        Assert.Null(df["peak_mib"][1]);                  // null stays null
        Assert.True(double.IsNaN((double)df["median_ms"][1]!));   // NaN stays NaN, never zero
        Assert.Equal(2, df.Rows.Count);
        Assert.Equal(Tables.ColumnNames<Row>(), df.Columns.Select(c => c.Name));
    }

    [Theory]
    [InlineData("MedianMs", "median_ms")]
    [InlineData("KvTokensPerHead", "kv_tokens_per_head")]
    [InlineData("PeakMiB", "peak_mib")]
    [InlineData("StateBytesAtN", "state_bytes_at_n")]
    [InlineData("Step", "step")]
    [InlineData("P50Ms", "p50_ms")]
    [InlineData("TTFT", "ttft")]
    public void NamesAreSnakeCase(string name, string snake) => Assert.Equal(snake, Tables.SnakeCase(name));

    [Fact]
    public void EmptyRowsGiveTheColumnsAndBadRowsAreRefused()
    {
        Assert.Equal(0, Tables.From(Array.Empty<Row>()).Rows.Count);
        Assert.Equal(9, Tables.From(Array.Empty<Row>()).Columns.Count);
        Assert.Throws<ArgumentException>(() => Tables.From(new Row?[] { null }));
        Assert.Throws<ArgumentException>(() => Tables.From(new[] { new { Values = new[] { 1 } } }));
    }
}
