using AttentionLab.Data;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>Receptive field of one window kind at one grid: keys per query (min, mean, max; the corner and centre query) vs all tokens.</summary>
public sealed record MaskRow(string Kind, int Factor, int Height, int Width, int MinKeys, double MeanKeys, int MaxKeys, int CornerKeys, int CentreKeys, int Tokens);

/// <summary>Mean self-attention row entropy (nats) of one variant at one grid factor, beside ln N (a uniform row).</summary>
public sealed record EntropyRow(string Variant, int Factor, int Tokens, double Entropy, double LogTokens);

/// <summary>
/// One sampling method at one factor: mean connected components per image, share with more than one component,
/// shape-test agreement with the label, mean edge sharpness, ms per denoising step (CFG included), guide steps (dual path).
/// </summary>
public sealed record SampleRow(string Method, int Factor, int GridSide, double Components, double Repeated, double Agreement, double Sharpness, double MsPerStep, int GuideSteps);

/// <summary>The images [B, 3, S, S] (in [−1, 1]) a method produced at a factor, with their labels.</summary>
public sealed record MethodImages(string Method, int Factor, Tensor Images, long[] Labels);

/// <summary>Everything the P45 notebook shows.</summary>
public sealed record FreeSwimResult(FreeSwimExperiment.Config Config, IReadOnlyList<MaskRow> Masks, IReadOnlyList<EntropyRow> Entropy,
    IReadOnlyList<SampleRow> Rows, IReadOnlyList<MethodImages> Images, TimeSpan Elapsed)
{
    /// <summary>Columns: method, resolution (token grid), components, repeated, agreement, sharpness, ms_per_step, guide_steps.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("method", Rows.Select(r => r.Method)),
        new StringDataFrameColumn("resolution", Rows.Select(r => $"{r.GridSide}×{r.GridSide} ({r.Factor}×)")),
        new DoubleDataFrameColumn("components", Rows.Select(r => r.Components)),
        new DoubleDataFrameColumn("repeated", Rows.Select(r => r.Repeated)),
        new DoubleDataFrameColumn("agreement", Rows.Select(r => r.Agreement)),
        new DoubleDataFrameColumn("sharpness", Rows.Select(r => r.Sharpness)),
        new DoubleDataFrameColumn("ms_per_step", Rows.Select(r => r.MsPerStep)),
        new Int32DataFrameColumn("guide_steps", Rows.Select(r => r.GuideSteps)));

    /// <summary>Columns: kind, factor, grid, min_keys, mean_keys, max_keys, corner_keys, centre_keys, tokens.</summary>
    public DataFrame MaskFrame() => new(
        new StringDataFrameColumn("kind", Masks.Select(r => r.Kind)),
        new Int32DataFrameColumn("factor", Masks.Select(r => r.Factor)),
        new StringDataFrameColumn("grid", Masks.Select(r => $"{r.Height}×{r.Width}")),
        new Int32DataFrameColumn("min_keys", Masks.Select(r => r.MinKeys)),
        new DoubleDataFrameColumn("mean_keys", Masks.Select(r => r.MeanKeys)),
        new Int32DataFrameColumn("max_keys", Masks.Select(r => r.MaxKeys)),
        new Int32DataFrameColumn("corner_keys", Masks.Select(r => r.CornerKeys)),
        new Int32DataFrameColumn("centre_keys", Masks.Select(r => r.CentreKeys)),
        new Int32DataFrameColumn("tokens", Masks.Select(r => r.Tokens)));

    /// <summary>The row of a method at a factor.</summary>
    public SampleRow Row(string method, int factor) => Rows.Single(r => r.Method == method && r.Factor == factor);

    /// <summary>Mask row of a kind at a factor.</summary>
    public MaskRow Mask(string kind, int factor) => Masks.Single(r => r.Kind == kind && r.Factor == factor);

    /// <summary>Entropy of a variant at a factor.</summary>
    public double EntropyOf(string variant, int factor) => Entropy.Single(r => r.Variant == variant && r.Factor == factor).Entropy;

    /// <summary>
    /// The claim asserted at this size — the exact mask facts and the entropy trend, not sample quality: at every factor
    /// ≥ 2 every inward query sees (2d+1)² keys while the clipped corner query sees (d+1)²; at 1× the inward window is
    /// full attention; full-attention entropy grows by ≥ 1 nat from 1× to the largest factor while the inward window's
    /// grows by at most ln((2d+1)²/N_native) + 0.1 nats (its key count grows from N_native = 64 to (2d+1)² = 81 once the
    /// grid outgrows the window, which bounds the growth of a uniform row by ln(81/64) ≈ 0.24).
    /// </summary>
    public (bool Holds, string Line) Claim()
    {
        int d = FreeSwimExperiment.HalfWindow, win = (2 * d + 1) * (2 * d + 1), corner = (d + 1) * (d + 1);
        var big = Config.MaskFactors.Where(f => f >= 2).ToArray();
        bool inwardExact = big.All(f => Mask("inward", f).MinKeys == win && Mask("inward", f).MaxKeys == win);
        bool clippedShrinks = big.All(f => Mask("clipped", f).CornerKeys == corner && Mask("clipped", f).MinKeys < Mask("inward", f).MinKeys);
        bool nativeFull = !Config.MaskFactors.Contains(1) || Mask("inward", 1).MinKeys == Mask("inward", 1).Tokens;
        int lo = Config.MaskFactors.Min(), hi = Config.MaskFactors.Max();
        double fullGrowth = EntropyOf("full 1/√d", hi) - EntropyOf("full 1/√d", lo);
        double inwardDrift = Math.Abs(EntropyOf("inward, FreeSwim scale", hi) - EntropyOf("inward, FreeSwim scale", lo));
        int nativeTokens = FreeSwimExperiment.NativeGrid * FreeSwimExperiment.NativeGrid;
        double drift = Math.Log(win / (double)Math.Min(win, nativeTokens)) + 0.1;
        bool holds = inwardExact && clippedShrinks && nativeFull && fullGrowth >= 1.0 && inwardDrift <= drift;
        return (holds, $"inward keys/query {win} at every factor ≥ 2: {inwardExact}; clipped corner {corner} keys: {clippedShrinks}; inward = full at 1×: {nativeFull}; " +
                       $"full-attention entropy {lo}×→{hi}×: +{fullGrowth:F2} nats (need ≥ 1.00); inward window drift {inwardDrift:F2} nats (need ≤ {drift:F2})");
    }

    /// <summary>Sample grid: one row per method (at <paramref name="factor"/>, native first), one column per image; channel mean as grey.</summary>
    public GenericChart SampleGrid(int factor, int perMethod = 6)
    {
        var picks = Images.Where(m => m.Factor == factor || m.Method == "native").ToList();
        var tiles = new List<Tensor>(); var titles = new List<string>();
        int n = (int)Math.Min(perMethod, picks[0].Images.shape[0]);
        foreach (var m in picks)
            for (int i = 0; i < n; i++)
            {
                tiles.Add(m.Images[i].mean(new long[] { 0 }));
                titles.Add($"{m.Method} · {(ShapeKind)m.Labels[i]}".ToLowerInvariant());
            }
        return AnalysisCharts.ImageGrid(tiles, titles, n);
    }

    /// <summary>Entropy vs grid tokens per variant, with ln N (uniform attention) for reference.</summary>
    public GenericChart EntropyChart()
    {
        var series = Entropy.GroupBy(e => e.Variant).Select(g => new Series(g.Key, g.Select(e => (double)e.Tokens).ToArray(), g.Select(e => e.Entropy).ToArray())).ToList();
        var first = Entropy.Where(e => e.Variant == Entropy[0].Variant).ToList();
        series.Add(new Series("ln N (uniform)", first.Select(e => (double)e.Tokens).ToArray(), first.Select(e => e.LogTokens).ToArray()));
        return Charts.Lines(series, "self-attention row entropy of the trained tiny DiT vs tokens per image", "tokens N (log)", "entropy (nats)", logX: true);
    }

    /// <summary>Bars of a per-method quantity at <paramref name="factor"/> ("components", "agreement", "sharpness", "ms").</summary>
    public GenericChart MethodBars(string quantity, int factor)
    {
        var rows = Rows.Where(r => r.Factor == factor).ToList();
        Func<SampleRow, double> pick = quantity switch
        {
            "components" => r => r.Components,
            "agreement" => r => r.Agreement,
            "sharpness" => r => r.Sharpness,
            "ms" => r => r.MsPerStep,
            _ => throw new ArgumentException($"unknown quantity '{quantity}'.", nameof(quantity)),
        };
        return Charts.Bars(rows.Select(r => r.Method).ToList(), rows.Select(pick).ToList(), $"{quantity} per method at {factor}× ({rows[0].GridSide}×{rows[0].GridSide} tokens)", quantity);
    }

    /// <summary>The windows of a corner and a centre query under the clipped and the inward mask at <paramref name="factor"/> (1 = key).</summary>
    public static GenericChart WindowMaps(int factor)
    {
        int g = FreeSwimExperiment.NativeGrid * factor, d = FreeSwimExperiment.HalfWindow;
        var tiles = new List<Tensor>(); var titles = new List<string>();
        foreach (var kind in new[] { WindowKind.Clipped, WindowKind.Inward })
        {
            using var w = WindowMasks.Of(kind, 1, g, g, d, d);
            foreach (var (name, q) in new[] { ("corner", 0), ("edge", g / 2), ("centre", (g / 2) * g + g / 2) })
            {
                tiles.Add(w.QueryMap(q));
                titles.Add($"{kind.ToString().ToLowerInvariant()} · {name} ({w.KeysPerQuery[q]} keys)");
            }
        }
        return AnalysisCharts.ImageGrid(tiles, titles, 3);
    }
}
