using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using TorchSharp;

namespace AttentionLab.Tests.Core;

public class NotebookDisplayTests
{
    [Fact]
    public void ChartHtmlCarriesPlotlyJsOnceAndNeverACdn()
    {
        using var m = torch.rand(3, 4);
        var chart = Charts.Heatmap(m, "probe");
        string first = NotebookDisplay.ChartHtml(chart), second = NotebookDisplay.ChartHtml(chart);
        // No script is loaded from the network (plotly.js's own text mentions a CDN for map tiles; that is not a load).
        Assert.DoesNotMatch(@"<script[^>]*\bsrc\s*=", first + second);
        Assert.Contains("Plotly.newPlot", second);
        Assert.DoesNotContain(NotebookDisplay.PlotlyScriptId, second);
    }

    [Fact]
    public void DataFrameHtmlSaysHowManyRowsWereLeftOut()
    {
        var df = new DataFrame(new DoubleDataFrameColumn("x", Enumerable.Range(0, NotebookDisplay.MaxRows + 5).Select(i => (double)i)));
        string html = NotebookDisplay.DataFrameHtml(df);
        Assert.Contains($"{NotebookDisplay.MaxRows} of {NotebookDisplay.MaxRows + 5} rows shown", html);
        Assert.Equal(NotebookDisplay.MaxRows + 1, html.Split("<tr>").Length - 1);  // header + MaxRows rows
    }
}
