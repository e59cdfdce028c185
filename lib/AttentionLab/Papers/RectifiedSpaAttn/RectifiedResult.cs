using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using Plotly.NET.CSharp;
using TorchSharp;
using static TorchSharp.torch;
using CsChart = Plotly.NET.CSharp.Chart;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>One (γ, τ) point: density shared by every variant, relative L2 error and cosine per variant (order of
/// <see cref="RectifiedExperiment.Variants"/>), share of dropped block pairs GAPR calls beneficial, and the mean
/// (estimated − true) mass of the critical blocks (negative = the pooled estimate under-weights what was kept).</summary>
public sealed record RectifiedRow(double Locality, double Tau, double Density, double SelectedFraction, double[] Error, double[] Cosine,
    double FractionBeneficial, double SelectedMassBias);

/// <summary>Batch 0, head 0 at (moderate γ, fixed τ): estimated vs true block mass [nb, nc] and the critical sets [nb, nb];
/// plus every (estimated, true) visual pair of all heads for the scatter.</summary>
public sealed record MassSnapshot(double Locality, double Tau, double[][] Estimated, double[][] True, double[][] Selected, double[] AllEstimated,
    double[] AllTrue)
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

/// <summary>
/// The exactness phase (<see cref="RectifiedExperiment.Exactness"/>): fast vs naive twin, R + compensation weights − 1,
/// the constant-block case (rectified and plain sparse vs full attention, GAPR's verdicts, the density), and τ = 1.
/// </summary>
public sealed record RectifiedExactness(ErrorStats FastVsNaive, double WeightSumGap, ErrorStats ConstantBlocks, ErrorStats PlainConstantBlocks,
    bool ConstantAllBeneficial, double ConstantDensity, ErrorStats TauOne, double TauOneRGap)
{
    /// <summary>Columns: check, max_abs, tolerance.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("check", new[] { "fast vs naive twin (τ = 0.5)", "|R + Σ comp. weights − 1|", "constant blocks: rectified vs full",
            "constant blocks: plain sparse vs full", "τ = 1: output vs full", "τ = 1: |R − 1|" }),
        new DoubleDataFrameColumn("max_abs", new[] { FastVsNaive.MaxAbs, WeightSumGap, ConstantBlocks.MaxAbs, PlainConstantBlocks.MaxAbs, TauOne.MaxAbs,
            TauOneRGap }),
        new StringDataFrameColumn("criterion", new[] { "≤ 1e-10", "≤ 1e-6", "≤ 1e-6", "> 1e-2 (not exact)", "≤ 1e-6", "≤ 1e-12" }));
}

/// <summary>One method of the timing phase: tokens, density, median and min ms of one forward over the interleaved repeats.</summary>
public sealed record RectifiedTiming(string Method, int Tokens, double Density, double MedianMs, double MinMs, int Repeats);

/// <summary>Everything the P33 notebook shows.</summary>
public sealed record RectifiedResult(RectifiedExperiment.Config Config, IReadOnlyList<RectifiedRow> Rows, MassSnapshot Snapshot, TimeSpan Elapsed)
    : IPaperResult
{
    static readonly string[] Short = { "plain", "scale", "comp", "gapr" };

    /// <summary>The exactness phase's measurements (toy tensors, float64).</summary>
    public RectifiedExactness Exactness { get; init; } = new(new ErrorStats(double.NaN, double.NaN, 0), double.NaN,
        new ErrorStats(double.NaN, double.NaN, 0), new ErrorStats(double.NaN, double.NaN, 0), false, double.NaN, new ErrorStats(double.NaN, double.NaN, 0),
        double.NaN);

    /// <summary>Forward timings on the moderate-γ inputs (empty when <c>TimingRepeats</c> = 0).</summary>
    public IReadOnlyList<RectifiedTiming> Timings { get; init; } = Array.Empty<RectifiedTiming>();

    /// <summary>Columns: method, tokens, density, median_ms, min_ms, repeats.</summary>
    public DataFrame TimingFrame() => Tables.From(Timings.Select(t => new { t.Method, t.Tokens, t.Density, t.MedianMs, t.MinMs, t.Repeats }));

    /// <summary>
    /// Columns: gamma, tau, density, selected_fraction, err_* and cos_* per variant (plain, scale, comp, gapr), frac_beneficial, selected_mass_bias.
    /// </summary>
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

    /// <summary>The spec's numpy prototype (§4 table: 32×32 grid, B = 64, τ = 0.8), relative L2 error per variant (plain, scale, comp, GAPR).</summary>
    public static readonly double[] PrototypeModerate = { 0.263, 0.187, 0.141, 0.206 }, PrototypePeaked = { 0.079, 0.130, 0.141, 0.070 };

    static string Errors(RectifiedRow r) => $"plain {r.Error[0]:F3}, scale {r.Error[1]:F3}, comp {r.Error[2]:F3}, GAPR {r.Error[3]:F3}";
    static string Prototype(double[] e, string regime) =>
        $"spec's numpy prototype, {regime}, τ = 0.8 (32×32, B = 64): plain {e[0]:F3}, scale {e[1]:F3}, comp {e[2]:F3}, GAPR {e[3]:F3}; the paper publishes " +
        "no error table";

    /// <summary>
    /// The claims: the spec's §6 identities (fast = naive twin, weights sum to 1, exact when pooling is exact, τ = 1 = full);
    /// the error regimes of the spec's §4 table at the fixed τ and equal density — moderate γ: compensation beats plain
    /// top-p (spec §6), scaling alone helps, GAPR lands between; peaked γ: ungated rectification hurts, GAPR is best —
    /// each against the spec's prototype figures; and the CPU forward timing against full attention (reported).
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(RectifiedExperiment.Paper.Number, Config.Size);
        var x = Exactness;
        claims.Exactness("fast-equals-naive", "the gathered rectified form equals the float64 loop twin written from the equations",
            $"max |Δ| {Num.Sci(x.FastVsNaive.MaxAbs)} (float64, T_v = 45, B = 8, 3 text tokens, d 7)", "≤ 1e-10 [ours: float64 round-off]",
            x.FastVsNaive.MaxAbs <= 1e-10);
        claims.Exactness("weights-sum-to-one", "R_I plus the compensation weights is 1 in every query block",
            $"max |R + Σ w − 1| {Num.Sci(x.WeightSumGap)}", "≤ 1e-6 (spec §6)", x.WeightSumGap <= 1e-6);
        claims.Exactness("exact-when-pooling-exact",
            "with q, k constant inside every block, GAPR accepts every block and rectified attention equals full attention; plain sparse does not",
            $"rectified vs full {Num.Sci(x.ConstantBlocks.MaxAbs)}, plain sparse vs full {x.PlainConstantBlocks.MaxAbs:G3}, all beneficial: " +
            $"{(x.ConstantAllBeneficial ? "yes" : "no")} (density {x.ConstantDensity:P0})",
            "rectified ≤ 1e-6, plain > 1e-2, every block beneficial (spec §6)",
            x.ConstantBlocks.MaxAbs <= 1e-6 && x.PlainConstantBlocks.MaxAbs > 1e-2 && x.ConstantAllBeneficial);
        claims.Exactness("tau-one-is-full", "τ = 1 keeps every block: R = 1, no compensation, full attention",
            $"output vs full {Num.Sci(x.TauOne.MaxAbs)}, |R − 1| {Num.Sci(x.TauOneRGap)}", "≤ 1e-6 (spec §6)", x.TauOne.MaxAbs <= 1e-6 && x.TauOneRGap <= 1e-6);

        double tau = Config.FixedTau, gm = Config.ModerateLocality, gp = Config.PeakedLocality;
        var mod = At(gm, tau);
        var peak = At(gp, tau);
        string atMod = $"γ = {gm}, τ = {tau}, density {mod.Density:P1} (every variant): ", atPeak = $"γ = {gp}, τ = {tau}, density {peak.Density:P1}: ";
        string? peakedDeviation = gp == 3 ? null
            : $"the peaked regime is γ = {gp} here (the prototype's γ = 3); our synthetic recipe's Jensen bias turns negative later (docs/decisions.md)";

        bool helps = mod.Error[2] < mod.Error[0];
        claims.Claim("moderate-rectification-helps",
            "moderate locality: IPAR scaling + compensation of the dropped blocks cuts the error of plain top-p at equal density",
            Prototype(PrototypeModerate, "γ = 2"), atMod + Errors(mod) + $" (comp/plain {mod.Error[2] / mod.Error[0]:F2})",
            "comp < plain (spec §6, seed 0)", helps, asserted: true);
        bool scaling = mod.Error[1] < mod.Error[0];
        claims.Claim("moderate-scaling-helps", "moderate locality: IPAR scaling alone (no compensation) already lowers the error",
            Prototype(PrototypeModerate, "γ = 2"), atMod + $"scale {mod.Error[1]:F3} vs plain {mod.Error[0]:F3}", "scale < plain (spec §4 table)", scaling,
            asserted: false, note: "a few per cent either way at this size: recorded, not asserted");
        bool conservative = mod.Error[2] < mod.Error[3] && mod.Error[3] < mod.Error[0];
        claims.Claim("moderate-gapr-conservative", "moderate locality: GAPR is conservative — better than plain top-p, not as good as compensating every block",
            Prototype(PrototypeModerate, "γ = 2"), atMod + $"comp {mod.Error[2]:F3}, GAPR {mod.Error[3]:F3}, plain {mod.Error[0]:F3}",
            "comp < GAPR < plain (spec §4)", conservative, asserted: false, note: "GAPR sits within about 10 % of plain top-p here: recorded, not asserted");

        bool hurts = peak.Error[1] > peak.Error[0] && peak.Error[2] > peak.Error[0];
        claims.Claim("peaked-ungated-hurts",
            "peaked attention: the pooled estimate is biased low, so ungated rectification (scaling, compensation of every block) is worse than plain top-p",
            Prototype(PrototypePeaked, "γ = 3"), atPeak + Errors(peak) + $"; mean selected-mass bias {peak.SelectedMassBias:F3}",
            "scale > plain and comp > plain (spec §4)", hurts, asserted: true, deviation: peakedDeviation);
        bool best = peak.Error[3] < peak.Error[0] && peak.Error[3] < peak.Error[1] && peak.Error[3] < peak.Error[2];
        claims.Claim("peaked-gapr-best", "peaked attention: GAPR gates out the untrustworthy blocks and is the best of the four",
            Prototype(PrototypePeaked, "γ = 3"), atPeak
                + $"GAPR {peak.Error[3]:F3} vs plain {peak.Error[0]:F3}, scale {peak.Error[1]:F3}, comp {peak.Error[2]:F3} (GAPR/comp " +
                $"{peak.Error[3] / peak.Error[2]:F2})" +
                (gp != 3 && Rows.Any(r => r.Locality == 3 && r.Tau == tau) ? $"; at the prototype's γ = 3: {Errors(At(3, tau))}" : ""),
            "GAPR below every other variant (spec §4)", best, asserted: false, deviation: peakedDeviation,
            note: "the prototype's margin is 0.009 (0.070 vs 0.079): too thin to assert at this size");

        var full = Timings.FirstOrDefault(t => t.Method == RectifiedExperiment.FullName);
        var rect = Timings.FirstOrDefault(t => t.Method == RectifiedExperiment.RectifiedName);
        var kernel = Timings.FirstOrDefault(t => t.Method == RectifiedExperiment.KernelName);
        var estimate = Timings.FirstOrDefault(t => t.Method == RectifiedExperiment.EstimateName);
        const string speedPaper = "up to 3.33× (HunyuanVideo) and 2.08× (Wan 2.1) end-to-end speed-up at maintained quality, Triton kernel on GPU (abstract)";
        if (full is null || rect is null || kernel is null || estimate is null)
            claims.NotShown("forward-speed", "rectified block-sparse attention is faster than full attention", speedPaper, "no timing phase",
                "rectified forward < full attention [ours]", "the timing phase was skipped (TimingRepeats = 0)", ClaimKind.Reported);
        else
            claims.Reported("forward-speed", "rectified block-sparse attention is faster than full attention",
                speedPaper, $"{full.Tokens} tokens, density {rect.Density:P0}: full {full.MedianMs:F2} ms, rectified {rect.MedianMs:F2} ms (kernel " +
                $"{kernel.MedianMs:F2}, estimate {estimate.MedianMs:F2}); speed-up {full.MedianMs / rect.MedianMs:F2}× (median of {full.Repeats}, interleaved)",
                "rectified forward faster than full attention [ours: the spec names no CPU target]", rect.MedianMs < full.MedianMs,
                note: "CPU timing of a gather kernel on a shared machine at smoke size (no Triton): reported, never asserted");

        claims.Saw($"At τ = {tau} and the same density per γ, moderate γ = {gm}: {Errors(mod)}; peaked γ = {gp}: {Errors(peak)}.");
        var lo = Rows.Where(r => r.Tau == tau).OrderBy(r => r.Locality).ToList();
        claims.Saw("Mean selected-mass bias (estimated − true mass of the kept blocks) by γ at τ = " + tau + ": " +
                   string.Join(", ", lo.Select(r => $"γ {r.Locality}: {r.SelectedMassBias:+0.000;−0.000}")) + " — negative is the Jensen under-estimate.");
        var winners = lo.Select(r => $"γ {r.Locality}: {Short[Array.IndexOf(r.Error, r.Error.Min())]}");
        claims.Saw("Lowest-error variant by γ at τ = " + tau + ": " + string.Join(", ", winners) + ".");
        if (full is not null && rect is not null)
            claims.Saw($"On this device, one rectified forward at {rect.Tokens} tokens takes {rect.MedianMs:F2} ms against {full.MedianMs:F2} ms for full " +
                "attention.");
        return claims;
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
        return Plotly.NET.Chart.withTitle("error vs full attention at matched density, per locality γ", Microsoft.FSharp.Core.FSharpOption<Font>.None).Invoke(
            grid);
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
