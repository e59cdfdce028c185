using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using TorchSharp;
using static TorchSharp.torch;
using CsChart = Plotly.NET.CSharp.Chart;
using Plotly.NET.CSharp;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>One (γ, τ) point: density shared by every variant, relative L2 error and cosine per variant (order of
/// <see cref="RectifiedExperiment.Variants"/>), share of dropped block pairs GAPR calls beneficial, and the mean
/// (estimated − true) mass of the critical blocks (negative = the pooled estimate under-weights what was kept).</summary>
public sealed record RectifiedRow(double Locality, double Tau, double Density, double SelectedFraction, double[] Error, double[] Cosine,
    double FractionBeneficial, double SelectedMassBias);

/// <summary>Batch 0, head 0 at (moderate γ, fixed τ): estimated vs true block mass [nb, nc] and the critical sets [nb, nb];
/// plus every (estimated, true) visual pair of all heads for the scatter.</summary>
public sealed record MassSnapshot(double Locality, double Tau, double[][] Estimated, double[][] True, double[][] Selected, double[] AllEstimated, double[] AllTrue)
{
    internal static MassSnapshot Of(RectifyDiagnostics d, double gamma, double tau)
    {
        using var scope = NewDisposeScope();
        int nb = d.VisualBlocks;
        double[][] Rows(Tensor m)
        {
            var x = m.to(ScalarType.Float64).cpu().contiguous();
            var a = x.data<double>().ToArray();
            int cols = (int)x.shape[1];
            return Enumerable.Range(0, (int)x.shape[0]).Select(r => a.Skip(r * cols).Take(cols).ToArray()).ToArray();
        }
        double[] Flat(Tensor m) => m.narrow(-1, 0, nb).to(ScalarType.Float64).cpu().contiguous().view(-1).data<double>().ToArray();
        return new MassSnapshot(gamma, tau, Rows(d.EstimatedMass[0, 0]), Rows(d.TrueMass![0, 0]), Rows(d.Selected[0, 0].to(ScalarType.Float64)),
            Flat(d.EstimatedMass), Flat(d.TrueMass!));
    }
}

/// <summary>Everything the P33 notebook shows.</summary>
public sealed record RectifiedResult(RectifiedExperiment.Config Config, IReadOnlyList<RectifiedRow> Rows, MassSnapshot Snapshot, TimeSpan Elapsed)
{
    static readonly string[] Short = { "plain", "scale", "comp", "gapr" };

    /// <summary>Columns: gamma, tau, density, selected_fraction, err_* and cos_* per variant (plain, scale, comp, gapr), frac_beneficial, selected_mass_bias.</summary>
    public DataFrame ToDataFrame()
    {
        var cols = new List<DataFrameColumn>
        {
            new DoubleDataFrameColumn("gamma", Rows.Select(r => r.Locality)),
            new DoubleDataFrameColumn("tau", Rows.Select(r => r.Tau)),
            new DoubleDataFrameColumn("density", Rows.Select(r => r.Density)),
            new DoubleDataFrameColumn("selected_fraction", Rows.Select(r => r.SelectedFraction)),
        };
        for (int m = 0; m < Short.Length; m++) cols.Add(new DoubleDataFrameColumn("err_" + Short[m], Rows.Select(r => r.Error[m])));
        for (int m = 0; m < Short.Length; m++) cols.Add(new DoubleDataFrameColumn("cos_" + Short[m], Rows.Select(r => r.Cosine[m])));
        cols.Add(new DoubleDataFrameColumn("frac_beneficial", Rows.Select(r => r.FractionBeneficial)));
        cols.Add(new DoubleDataFrameColumn("selected_mass_bias", Rows.Select(r => r.SelectedMassBias)));
        return new DataFrame(cols);
    }

    /// <summary>The row at (γ, τ).</summary>
    public RectifiedRow At(double gamma, double tau) => Rows.First(r => r.Locality == gamma && r.Tau == tau);

    /// <summary>Error of a variant (index into <see cref="RectifiedExperiment.Variants"/>) at (γ, τ).</summary>
    public double Error(double gamma, double tau, int variant) => At(gamma, tau).Error[variant];

    /// <summary>
    /// The claim at this size, at the fixed τ and the same density per γ: moderate γ — IPAR + compensation beats plain
    /// top-p by ≥ 10 %; peaked γ — ungated compensation is worse than plain top-p (the pooled estimate is biased low) and
    /// GAPR beats it by ≥ 10 %.
    /// </summary>
    public (bool Holds, string Line) Claim()
    {
        double tau = Config.FixedTau, gm = Config.ModerateLocality, gp = Config.PeakedLocality;
        var mod = At(gm, tau); var peak = At(gp, tau);
        bool holds = mod.Error[2] < 0.9 * mod.Error[0] && peak.Error[2] > peak.Error[0] && peak.Error[3] < 0.9 * peak.Error[2];
        return (holds, $"τ = {tau}: moderate γ = {gm} (density {mod.Density:P1}): plain {mod.Error[0]:F3}, scale {mod.Error[1]:F3}, comp {mod.Error[2]:F3}, GAPR {mod.Error[3]:F3}; " +
                       $"peaked γ = {gp} (density {peak.Density:P1}): plain {peak.Error[0]:F3}, scale {peak.Error[1]:F3}, comp {peak.Error[2]:F3}, GAPR {peak.Error[3]:F3}");
    }

    /// <summary>Head 0, query block × key block: estimated mass P, true mass, critical set (moderate γ, fixed τ).</summary>
    public GenericChart MassHeatmaps()
    {
        int nb = Snapshot.Selected.Length;
        var est = torch.tensor(Snapshot.Estimated.SelectMany(r => r.Take(nb)).ToArray(), new long[] { nb, nb });
        var tru = torch.tensor(Snapshot.True.SelectMany(r => r.Take(nb)).ToArray(), new long[] { nb, nb });
        var sel = torch.tensor(Snapshot.Selected.SelectMany(r => r).ToArray(), new long[] { nb, nb });
        var chart = AnalysisCharts.ImageGrid(new[] { est, tru, sel },
            new[] { $"estimated P (IPAR), γ = {Snapshot.Locality}", "true block mass", $"critical set S (τ = {Snapshot.Tau})" }, columns: 3);
        est.Dispose(); tru.Dispose(); sel.Dispose();
        return chart;
    }

    /// <summary>Every (estimated, true) visual block mass of all heads at (moderate γ, fixed τ), with the diagonal.</summary>
    public GenericChart MassScatter()
    {
        double top = Math.Max(Snapshot.AllEstimated.Max(), Snapshot.AllTrue.Max());
        var points = CsChart.Point<double, double, string>(x: Snapshot.AllTrue, y: Snapshot.AllEstimated, Name: "block pairs");
        var diag = CsChart.Line<double, double, string>(x: new[] { 0.0, top }, y: new[] { 0.0, top }, Name: "estimate = truth", ShowMarkers: false);
        var chart = CsChart.Combine(new[] { points, diag })
            .WithXAxisStyle<double, double, string>(TitleText: "true block mass")
            .WithYAxisStyle<double, double, string>(TitleText: "IPAR estimate P");
        return Plotly.NET.Chart.withTitle($"estimated vs true block mass (γ = {Snapshot.Locality}): peaked blocks fall below the diagonal (Jensen)",
            Microsoft.FSharp.Core.FSharpOption<Font>.None).Invoke(chart);
    }

    /// <summary>Relative L2 error vs density per variant, one panel per γ (one colour per variant, one legend).</summary>
    public GenericChart ErrorVsDensity()
    {
        string[] colours = { "#636efa", "#ef553b", "#00cc96", "#ab63fa" };
        var panels = Config.Localities.Select((g, gi) =>
        {
            var rows = Rows.Where(r => r.Locality == g).OrderBy(r => r.Density).ToArray();
            var lines = RectifiedExperiment.Variants.Select((name, m) => CsChart.Line<double, double, string>(
                x: rows.Select(r => r.Density).ToArray(), y: rows.Select(r => r.Error[m]).ToArray(), Name: name, ShowMarkers: true,
                ShowLegend: gi == 0, LineColor: Color.fromString(colours[m]), MarkerColor: Color.fromString(colours[m]))).ToList();
            return CsChart.Combine(lines).WithXAxisStyle<double, double, string>(TitleText: "density")
                .WithYAxisStyle<double, double, string>(TitleText: gi == 0 ? "relative L2 error" : "");
        }).ToList();
        var grid = CsChart.Grid(panels, 1, panels.Count, SubPlotTitles: Config.Localities.Select(g => $"γ = {g}").ToArray());
        return Plotly.NET.Chart.withTitle("error vs full attention at matched density, per locality γ", Microsoft.FSharp.Core.FSharpOption<Font>.None).Invoke(grid);
    }

    /// <summary>Bars: error per variant at the fixed τ, for the moderate and the peaked γ.</summary>
    public GenericChart ErrorBars()
    {
        var names = new List<string>(); var values = new List<double>();
        foreach (double g in new[] { Config.ModerateLocality, Config.PeakedLocality })
        {
            var r = At(g, Config.FixedTau);
            for (int m = 0; m < Short.Length; m++) { names.Add($"γ={g} {RectifiedExperiment.Variants[m]}"); values.Add(r.Error[m]); }
        }
        return Charts.Bars(names, values, $"relative L2 error vs full attention at τ = {Config.FixedTau} (same density per γ)", "relative L2 error");
    }
}
