using AttentionLab.Core;
using AttentionLab.Plots;
using Plotly.NET;
using TorchSharp;

namespace AttentionLab.Tests.Core;

public class NumericsAndAnalysisChartsTests
{
    [Fact]
    public void LogLogFitRecoversAPowerLaw()
    {
        var x = new[] { 256.0, 512, 1024, 2048, 4096 };
        var rng = new Random(3);
        var y = x.Select(v => 3e-4 * Math.Pow(v, 1.5) * (1 + 0.01 * (rng.NextDouble() - 0.5))).ToArray();
        var (slope, _, r2) = Numerics.LogLogFit(x, y);
        Assert.InRange(slope, 1.49, 1.51);
        Assert.True(r2 > 0.999);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => Numerics.LogLogFit(new[] { 1.0 }, new[] { 1.0 })).ParamName);
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => Numerics.LogLogFit(new[] { 1.0, 2 }, new[] { 1.0, -2 })).ParamName);
    }

    [Fact]
    public void ParetoFrontMatchesBruteForce()
    {
        var rng = new Random(5);
        var x = Enumerable.Range(0, 40).Select(_ => Math.Round(rng.NextDouble() * 10, 1)).ToArray();
        var y = Enumerable.Range(0, 40).Select(_ => Math.Round(rng.NextDouble(), 2)).ToArray();
        bool Dominated(int i) => Enumerable.Range(0, x.Length).Any(j => j != i && x[j] <= x[i] && y[j] >= y[i] && (x[j] < x[i] || y[j] > y[i]));
        var expected = Enumerable.Range(0, x.Length).Where(i => !Dominated(i)).Select(i => (x[i], y[i])).Distinct().OrderBy(p => p.Item1).ToList();
        var front = Numerics.ParetoFront(x, y).Select(i => (x[i], y[i])).ToList();
        Assert.Equal(expected, front);
    }

    [Fact]
    public void AnalysisChartsRenderTheirTraces()
    {
        using var scores = torch.rand(2, 3);
        string grid = NotebookDisplay.ChartHtml(AnalysisCharts.HeadGrid(scores, "grid"));
        Assert.Contains("\"heatmap\"", grid);
        Assert.Contains("\"L1\"", grid);
        Assert.Contains("L1H2", NotebookDisplay.ChartHtml(AnalysisCharts.HeadBars(scores, "bars", "score")));

        var (chart, slopes) = AnalysisCharts.LogLogWithSlopes(new[] { new Series("quadratic", new[] { 1.0, 2, 4 }, new[] { 1.0, 4, 16 }) }, "t", "x", "y");
        Assert.Equal(2.0, slopes["quadratic"], 9);
        Assert.Contains("slope 2.00", NotebookDisplay.ChartHtml(chart));

        var pareto = AnalysisCharts.Pareto(new[] { new LabeledPoint("a", 1, 0.5), new LabeledPoint("b", 2, 0.4), new LabeledPoint("c", 3, 0.9) }, "p", "state",
            "recall");
        Assert.Contains("Pareto front", NotebookDisplay.ChartHtml(pareto));

        using var img = torch.rand(4, 5);
        string images = NotebookDisplay.ChartHtml(AnalysisCharts.ImageGrid(new[] { img, img }, new[] { "one", "two" }, columns: 2));
        Assert.Contains("\"two\"", images);
        Assert.Throws<ArgumentException>(() => AnalysisCharts.ImageGrid(new[] { img }, new[] { "a", "b" }));
    }
}
