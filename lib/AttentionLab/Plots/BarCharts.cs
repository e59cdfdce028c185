using Microsoft.FSharp.Core;
using Plotly.NET;
using Plotly.NET.CSharp;
using CsChart = Plotly.NET.CSharp.Chart;

namespace AttentionLab.Plots;

/// <summary>A named bar segment: one value per category.</summary>
public sealed record BarSegment(string Name, IReadOnlyList<double> Values);

/// <summary>Bar charts with several values per category (stacked), e.g. a time breakdown per setup.</summary>
public static class BarCharts
{
    /// <summary>One column per category, its segments stacked in the order given (legend = segment names).</summary>
    public static GenericChart Stacked(IReadOnlyList<string> categories, IReadOnlyList<BarSegment> segments, string title, string yTitle, string xTitle = "")
    {
        ArgumentNullException.ThrowIfNull(categories);
        ArgumentNullException.ThrowIfNull(segments);
        if (categories.Count == 0) throw new ArgumentException("no categories to plot.", nameof(categories));
        if (segments.Count == 0) throw new ArgumentException("no segments to plot.", nameof(segments));
        foreach (var s in segments)
            if (s.Values.Count != categories.Count)
                throw new ArgumentException($"segment '{s.Name}' has {s.Values.Count} values for {categories.Count} categories.", nameof(segments));
        var charts = segments.Select(s => CsChart.StackedColumn<double, string, string>(values: s.Values.ToArray(), Keys: categories.ToArray(), Name: s.Name))
            .ToList();
        var chart = CsChart.Combine(charts)
            .WithXAxisStyle<double, double, string>(TitleText: xTitle, AxisType: StyleParam.AxisType.Category)
            .WithYAxisStyle<double, double, string>(TitleText: yTitle);
        return Plotly.NET.Chart.withTitle(title, FSharpOption<Font>.None).Invoke(chart);
    }
}
