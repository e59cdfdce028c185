using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using TorchSharp;

namespace AttentionLab.Papers.S2Attention;

/// <summary>Needle retrieval of one variant at one (length, depth): accuracy over trials.</summary>
public sealed record NeedleCell(string Variant, int Length, double Depth, int Position, double Accuracy);

/// <summary>One variant at one length: mean accuracy over depths, token density (FLOP fraction vs dense causal),
/// KV tokens per head, union coverage of causal block pairs, ms of one forward (median).</summary>
public sealed record VariantRow(string Variant, int Length, double Accuracy, double Density, double KvTokensPerHead, double Coverage, double Ms);

/// <summary>One decode step: keys attended per head (mean) vs full t + 1, and KV bytes held (all heads) vs full.</summary>
public sealed record DecodeRow(int Step, double AttendedPerHead, long FullTokens, long KvBytes, long FullKvBytes);

/// <summary>Everything the P22 notebook shows.</summary>
public sealed record S2Result(S2Experiment.Config Config, IReadOnlyList<NeedleCell> Cells, IReadOnlyList<VariantRow> Rows,
    IReadOnlyList<DecodeRow> Decode, IReadOnlyDictionary<string, BlockMask> Masks, TimeSpan Elapsed)
{
    /// <summary>Columns: variant, n, accuracy, density, kv_tokens_per_head, coverage, ms.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("variant", Rows.Select(r => r.Variant)),
        new Int32DataFrameColumn("n", Rows.Select(r => r.Length)),
        new DoubleDataFrameColumn("accuracy", Rows.Select(r => r.Accuracy)),
        new DoubleDataFrameColumn("density", Rows.Select(r => r.Density)),
        new DoubleDataFrameColumn("kv_tokens_per_head", Rows.Select(r => r.KvTokensPerHead)),
        new DoubleDataFrameColumn("coverage", Rows.Select(r => r.Coverage)),
        new DoubleDataFrameColumn("ms", Rows.Select(r => r.Ms)));

    /// <summary>Columns: step, attended_per_head, full_tokens, kv_bytes, full_kv_bytes.</summary>
    public DataFrame DecodeFrame() => new(
        new Int32DataFrameColumn("step", Decode.Select(r => r.Step)),
        new DoubleDataFrameColumn("attended_per_head", Decode.Select(r => r.AttendedPerHead)),
        new Int64DataFrameColumn("full_tokens", Decode.Select(r => r.FullTokens)),
        new Int64DataFrameColumn("kv_bytes", Decode.Select(r => r.KvBytes)),
        new Int64DataFrameColumn("full_kv_bytes", Decode.Select(r => r.FullKvBytes)));

    /// <summary>Mean accuracy of a variant over every length and depth.</summary>
    public double Accuracy(string variant) => Cells.Where(c => c.Variant == variant).Average(c => c.Accuracy);

    /// <summary>
    /// Accuracy of a variant at the needles the homogeneous pattern cannot read: outside the last query's local window
    /// and off the shared stride (key block j with j mod s ≠ r₀).
    /// </summary>
    public double OffStrideAccuracy(string variant)
    {
        var cells = Cells.Where(c => c.Variant == variant && OffStride(c)).ToArray();
        return cells.Length == 0 ? double.NaN : cells.Average(c => c.Accuracy);
    }

    /// <summary>True when the homogeneous pattern cannot see this needle from the last query.</summary>
    public bool OffStride(NeedleCell c)
    {
        int b = Config.Block, jb = c.Position / b, ib = (c.Length - 1) / b;
        int r0 = S2Pattern.Residues(Config.Heads, Config.VertStride, homoHead: true)[0]!.Value;
        return ib - jb >= Config.LocalBlocks && jb % Config.VertStride != r0;
    }

    /// <summary>
    /// The claim at this size: heterogeneous accuracy ≥ dense − 5 pts and ≥ 90 % on the needles the homogeneous pattern
    /// cannot read, where homogeneous stays &lt; 50 %; heterogeneous union coverage 1.0 at density &lt; 1.
    /// </summary>
    public (bool Holds, string Line) Claim()
    {
        double dense = Accuracy("dense"), het = Accuracy("heterogeneous"), homoOff = OffStrideAccuracy("homogeneous"), hetOff = OffStrideAccuracy("heterogeneous");
        var rows = Rows.Where(r => r.Variant == "heterogeneous").ToArray();
        bool holds = het >= dense - 0.05 && hetOff >= 0.9 && homoOff < 0.5 && rows.All(r => r.Coverage == 1.0 && r.Density < 1);
        return (holds, $"accuracy: dense {dense:P1}, heterogeneous {het:P1} (off-stride needles {hetOff:P1}), homogeneous off-stride {homoOff:P1}; " +
                       $"heterogeneous density {string.Join(" / ", rows.Select(r => $"{r.Density:P1} at n = {r.Length}"))}, coverage {rows.Min(r => r.Coverage):P0}");
    }

    /// <summary>Per-head block masks of a variant plus their union (share of heads reading the block), at the shortest length.</summary>
    public GenericChart MaskHeatmaps(string variant) => MaskChart(Masks[variant], variant);

    /// <summary>Per-head block masks of a pattern plus their union (share of heads reading each block).</summary>
    public static GenericChart MaskChart(BlockMask m, string variant)
    {
        ArgumentNullException.ThrowIfNull(m);
        var images = Enumerable.Range(0, m.Heads + 1).Select(h => torch.tensor(
            Enumerable.Range(0, m.Blocks * m.Blocks).Select(x => (x / m.Blocks, x % m.Blocks)).Select(ij => h < m.Heads
                ? (m.Allows(h, ij.Item1, ij.Item2) ? 1.0 : 0.0)
                : Enumerable.Range(0, m.Heads).Count(g => m.Allows(g, ij.Item1, ij.Item2)) / (double)m.Heads).ToArray(),
            new long[] { m.Blocks, m.Blocks })).ToArray();
        var titles = Enumerable.Range(0, m.Heads).Select(h => $"{variant} head {h}").Append($"union (coverage {m.Coverage():P0})").ToArray();
        var chart = AnalysisCharts.ImageGrid(images, titles, columns: m.Heads + 1);
        foreach (var t in images) t.Dispose();
        return chart;
    }

    /// <summary>Needle accuracy heatmap (depth × length) of a variant.</summary>
    public GenericChart NeedleHeatmap(string variant)
    {
        var rows = Config.Depths.Select(d => Config.Lengths.Select(n => Cells.First(c => c.Variant == variant && c.Length == n && c.Depth == d).Accuracy).ToArray()).ToArray();
        return Charts.Heatmap(rows, $"needle retrieval: {variant}", Config.Lengths.Select(n => n.ToString()).ToArray(), Config.Depths.Select(d => d.ToString("F2")).ToArray());
    }

    /// <summary>Bars: attention FLOP fraction (density) and KV tokens per head / n, per variant at the longest length.</summary>
    public GenericChart CostBars()
    {
        int n = Config.Lengths.Max();
        var rows = Rows.Where(r => r.Length == n).ToArray();
        return Charts.Bars(rows.Select(r => r.Variant + " FLOP").Concat(rows.Select(r => r.Variant + " KV")).ToArray(),
            rows.Select(r => r.Density).Concat(rows.Select(r => r.KvTokensPerHead / n)).ToArray(),
            $"attention FLOP fraction and KV tokens per head / n at n = {n}", "fraction of dense");
    }

    /// <summary>Decode: KV bytes held per step, pattern vs full.</summary>
    public GenericChart DecodeChart() => Charts.Lines(new[]
    {
        new Series("full", Decode.Select(r => (double)r.Step).ToArray(), Decode.Select(r => r.FullKvBytes / 1024.0).ToArray()),
        new Series("heterogeneous S2", Decode.Select(r => (double)r.Step).ToArray(), Decode.Select(r => r.KvBytes / 1024.0).ToArray()),
    }, "decode: KV cache held per step (one layer, all heads)", "step", "KiB");
}
