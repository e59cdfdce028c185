using AttentionLab.Core;
using Microsoft.FSharp.Core;
using Plotly.NET;
using Plotly.NET.CSharp;
using static TorchSharp.torch;
using CsChart = Plotly.NET.CSharp.Chart;

namespace AttentionLab.Plots;

/// <summary>A named line: x and y values of equal length.</summary>
public sealed record Series(string Name, IReadOnlyList<double> X, IReadOnlyList<double> Y)
{
    public static Series Of(string name, IEnumerable<double> y)
    {
        var ys = y.ToArray();
        return new(name, Enumerable.Range(0, ys.Length).Select(i => (double)i).ToArray(), ys);
    }
}

/// <summary>The library's chart vocabulary (Plotly.NET): heatmaps with token labels, lines, bars.</summary>
public static class Charts
{
    /// <summary>A 2-D tensor (rows = queries, columns = keys) as a heatmap; labels default to indices.</summary>
    public static GenericChart Heatmap(Tensor matrix, string title, IReadOnlyList<string>? xLabels = null, IReadOnlyList<string>? yLabels = null,
        string xTitle = "key", string yTitle = "query")
    {
        Guard.Rank(matrix, 2, nameof(matrix), "rows, columns");
        long rows = matrix.shape[0], cols = matrix.shape[1];
        var values = matrix.detach().to(ScalarType.Float64, CPU).data<double>().ToArray();
        var z = Enumerable.Range(0, (int)rows).Select(r => values.Skip(r * (int)cols).Take((int)cols).ToArray()).ToArray();
        return Heatmap(z, title, xLabels, yLabels, xTitle, yTitle);
    }

    /// <summary>Rows of equal length as a heatmap (row 0 at the top); labels default to indices.</summary>
    public static GenericChart Heatmap(IReadOnlyList<double[]> rows, string title, IReadOnlyList<string>? xLabels = null, IReadOnlyList<string>? yLabels = null,
        string xTitle = "key", string yTitle = "query")
    {
        if (rows.Count == 0) throw new ArgumentException("no rows to plot.", nameof(rows));
        int cols = rows[0].Length;
        if (rows.Any(r => r.Length != cols)) throw new ArgumentException("rows differ in length.", nameof(rows));
        var x = Labels(xLabels, cols, nameof(xLabels));
        var y = Labels(yLabels, rows.Count, nameof(yLabels));
        var chart = CsChart.Heatmap<double, string, string, string>(zData: rows, X: x, Y: y, ColorScale: StyleParam.Colorscale.Viridis, ReverseYAxis: true);
        return Finish(chart, title, xTitle, yTitle, StyleParam.AxisType.Category, StyleParam.AxisType.Category);
    }

    /// <summary>Several lines on one set of axes; optional log axes.</summary>
    public static GenericChart Lines(IEnumerable<Series> series, string title, string xTitle, string yTitle, bool logX = false, bool logY = false,
        bool markers = true)
    {
        var charts = series.Select(s =>
        {
            if (s.X.Count != s.Y.Count) throw new ArgumentException($"series '{s.Name}' has {s.X.Count} x and {s.Y.Count} y values.", nameof(series));
            return CsChart.Line<double, double, string>(x: s.X.ToArray(), y: s.Y.ToArray(), Name: s.Name, ShowMarkers: markers);
        }).ToList();
        if (charts.Count == 0) throw new ArgumentException("no series to plot.", nameof(series));
        var chart = CsChart.Combine(charts);
        return Finish(chart, title, xTitle, yTitle, AxisOf(logX), AxisOf(logY));
    }

    /// <summary>One bar per name.</summary>
    public static GenericChart Bars(IReadOnlyList<string> names, IReadOnlyList<double> values, string title, string yTitle, bool logY = false)
    {
        if (names.Count != values.Count) throw new ArgumentException($"{names.Count} names but {values.Count} values.", nameof(values));
        var chart = CsChart.Column<double, string, string>(values: values.ToArray(), Keys: names.ToArray());
        return Finish(chart, title, "", yTitle, StyleParam.AxisType.Category, AxisOf(logY));
    }

    static StyleParam.AxisType AxisOf(bool log) => log ? StyleParam.AxisType.Log : StyleParam.AxisType.Linear;

    static GenericChart Finish(GenericChart chart, string title, string xTitle, string yTitle, StyleParam.AxisType xAxis, StyleParam.AxisType yAxis)
    {
        chart = chart.WithXAxisStyle<double, double, string>(TitleText: xTitle, AxisType: xAxis)
                     .WithYAxisStyle<double, double, string>(TitleText: yTitle, AxisType: yAxis);
        return Plotly.NET.Chart.withTitle(title, FSharpOption<Font>.None).Invoke(chart);
    }

    static string[] Labels(IReadOnlyList<string>? labels, long n, string name)
    {
        if (labels is null) return Enumerable.Range(0, (int)n).Select(i => i.ToString()).ToArray();
        if (labels.Count != n) throw new ArgumentException($"{name} has {labels.Count} labels for {n} entries.", name);
        // Plotly merges equal category labels: make repeated tokens unique without hiding them.
        var seen = new Dictionary<string, int>();
        var result = new string[labels.Count];
        for (int i = 0; i < labels.Count; i++)
        {
            seen[labels[i]] = seen.TryGetValue(labels[i], out int c) ? c + 1 : 1;
            result[i] = seen[labels[i]] == 1 ? labels[i] : $"{labels[i]} ({seen[labels[i]]})";
        }
        return result;
    }
}
