using AttentionLab.Core;
using Plotly.NET;
using Plotly.NET.CSharp;
using static TorchSharp.torch;
using CsChart = Plotly.NET.CSharp.Chart;

namespace AttentionLab.Plots;

/// <summary>A named point for scatter plots (e.g. one model's state size and recall).</summary>
public sealed record LabeledPoint(string Label, double X, double Y);

/// <summary>Charts for analyses: per-head grids, log-log scaling with fitted slopes, Pareto fronts, image grids.</summary>
public static class AnalysisCharts
{
    /// <summary>Scores [L, H] as a layer × head heatmap (rows L0…, columns H0…).</summary>
    public static GenericChart HeadGrid(Tensor scores, string title)
    {
        Guard.Rank(scores, 2, nameof(scores), "layers, heads");
        long layers = scores.shape[0], heads = scores.shape[1];
        return Charts.Heatmap(scores, title,
            xLabels: Enumerable.Range(0, (int)heads).Select(h => $"H{h}").ToArray(),
            yLabels: Enumerable.Range(0, (int)layers).Select(l => $"L{l}").ToArray(), xTitle: "head", yTitle: "layer");
    }

    /// <summary>Scores [L, H] as bars, one per head (labels "L0H1"), in layer order.</summary>
    public static GenericChart HeadBars(Tensor scores, string title, string yTitle)
    {
        Guard.Rank(scores, 2, nameof(scores), "layers, heads");
        var values = scores.detach().to(ScalarType.Float64, CPU).data<double>().ToArray();
        long heads = scores.shape[1];
        var names = Enumerable.Range(0, values.Length).Select(i => $"L{i / heads}H{i % heads}").ToArray();
        return Charts.Bars(names, values, title, yTitle);
    }

    /// <summary>
    /// Log-log lines with each series' fitted slope in its legend name ("name (slope 1.02)"); returns the slopes too.
    /// Series with fewer than two positive points are drawn without a slope.
    /// </summary>
    public static (GenericChart Chart, IReadOnlyDictionary<string, double> Slopes) LogLogWithSlopes(IEnumerable<Series> series, string title, string xTitle,
        string yTitle)
    {
        var slopes = new Dictionary<string, double>();
        var labelled = new List<Series>();
        foreach (var s in series)
        {
            var pts = s.X.Zip(s.Y).Where(p => p.First > 0 && p.Second > 0).ToList();
            if (pts.Count >= 2 && pts.Select(p => p.First).Distinct().Count() >= 2)
            {
                double slope = Numerics.LogLogFit(pts.Select(p => p.First).ToList(), pts.Select(p => p.Second).ToList()).Slope;
                slopes[s.Name] = slope;
                labelled.Add(s with { Name = $"{s.Name} (slope {slope:F2})" });
            }
            else labelled.Add(s);
        }
        return (Charts.Lines(labelled, title, xTitle, yTitle, logX: true, logY: true), slopes);
    }

    /// <summary>Every point (labelled) and the Pareto front (small x, large y) as a line through the optimal points.</summary>
    public static GenericChart Pareto(IReadOnlyList<LabeledPoint> points, string title, string xTitle, string yTitle, bool logX = false)
    {
        if (points.Count == 0) throw new ArgumentException("no points to plot.", nameof(points));
        var front = Numerics.ParetoFront(points.Select(p => p.X).ToList(), points.Select(p => p.Y).ToList());
        var all = CsChart.Point<double, double, string>(x: points.Select(p => p.X).ToArray(), y: points.Select(p => p.Y).ToArray(),
            Name: "methods", MultiText: points.Select(p => p.Label).ToArray(), TextPosition: StyleParam.TextPosition.TopCenter);
        var line = CsChart.Line<double, double, string>(x: front.Select(i => points[i].X).ToArray(), y: front.Select(i => points[i].Y).ToArray(),
            Name: "Pareto front", ShowMarkers: false);
        var chart = CsChart.Combine(new[] { all, line });
        chart = chart.WithXAxisStyle<double, double, string>(TitleText: xTitle, AxisType: logX ? StyleParam.AxisType.Log : StyleParam.AxisType.Linear)
                     .WithYAxisStyle<double, double, string>(TitleText: yTitle);
        return Plotly.NET.Chart.withTitle(title, Microsoft.FSharp.Core.FSharpOption<Font>.None).Invoke(chart);
    }

    /// <summary>Grayscale images [H, W] (or [1, H, W]) as a grid of heatmaps, <paramref name="columns"/> per row.</summary>
    public static GenericChart ImageGrid(IReadOnlyList<Tensor> images, IReadOnlyList<string> titles, int columns = 4)
    {
        if (images.Count == 0) throw new ArgumentException("no images to plot.", nameof(images));
        if (titles.Count != images.Count) throw new ArgumentException($"{titles.Count} titles for {images.Count} images.", nameof(titles));
        Guard.Positive(columns, nameof(columns));
        var charts = images.Select((img, i) =>
        {
            var m = img.dim() == 3 && img.shape[0] == 1 ? img[0] : img;
            Guard.Rank(m, 2, $"{nameof(images)}[{i}]", "height, width");
            var values = m.detach().to(ScalarType.Float64, CPU).data<double>().ToArray();
            int w = (int)m.shape[1];
            var z = Enumerable.Range(0, (int)m.shape[0]).Select(r => values.Skip(r * w).Take(w).ToArray()).ToArray();
            return CsChart.Heatmap<double, int, int, string>(zData: z, ColorScale: StyleParam.Colorscale.Greys, ShowScale: false, ReverseYAxis: true,
                Name: titles[i]);
        }).ToList();
        int rows = (images.Count + columns - 1) / columns;
        return CsChart.Grid(charts, rows, columns, SubPlotTitles: titles.ToArray());
    }
}
