using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>Receptive field of one window kind at one grid: keys per query (min, mean, max; the corner and centre query) vs all tokens.</summary>
public sealed record MaskRow(string Kind, int Factor, int Height, int Width, int MinKeys, double MeanKeys, int MaxKeys, int CornerKeys, int CentreKeys,
    int Tokens);

/// <summary>Mean self-attention row entropy (nats) of one variant at one grid factor, beside ln N (a uniform row).</summary>
public sealed record EntropyRow(string Variant, int Factor, int Tokens, double Entropy, double LogTokens);

/// <summary>
/// One sampling method at one factor: mean connected components per image, share with more than one component,
/// shape-test agreement with the label, mean edge sharpness, ms per denoising step (CFG included), guide steps (dual path).
/// </summary>
public sealed record SampleRow(string Method, int Factor, int GridSide, double Components, double Repeated, double Agreement, double Sharpness,
    double MsPerStep, int GuideSteps);

/// <summary>The images [B, 3, S, S] (in [−1, 1]) a method produced at a factor, with their labels.</summary>
public sealed record MethodImages(string Method, int Factor, Tensor Images, long[] Labels);

/// <summary>Every image's scores for one method at one factor (image i of every method shares its native sample and noise).</summary>
public sealed record ImageScores(string Method, int Factor, double[] Components, double[] Agreement, double[] Sharpness)
{
    /// <summary>Extra objects per image: max(0, components − 1) (0 = one object or none).</summary>
    public double[] Duplicates => Components.Select(c => Math.Max(0, c - 1)).ToArray();
}

/// <summary>
/// The exactness phase (<see cref="FreeSwimExperiment.Exactness"/>): gather window vs dense twin (float64, float32) and its
/// keys per query on the toy grid (expected T·(2d_h+1)(2d_w+1)); the dual path's identities as max |Δ| (float64).
/// </summary>
public sealed record FreeSwimExactness(ErrorStats Gather64, ErrorStats Gather32, int ToyMinKeys, int ToyMaxKeys, int ToyExpectedKeys,
    double FullBranchVsBaseline, double CacheOnVsOff, double OverrideOffVsWindow)
{
    /// <summary>The largest of the dual path's three differences.</summary>
    public double DualWorst => new[] { FullBranchVsBaseline, CacheOnVsOff, OverrideOffVsWindow }.Any(double.IsNaN) ? double.NaN
        : Math.Max(FullBranchVsBaseline, Math.Max(CacheOnVsOff, OverrideOffVsWindow));

    /// <summary>Columns: check, max_abs, criterion.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("check", new[] { "gather window vs dense masked twin (float64)", "gather window vs dense masked twin (float32)",
            "dual path: override off + full branch vs full-attention sampling", "dual path: cache on vs off (cache_steps 1)",
            "dual path: override off vs window-only sampling" }),
        new DoubleDataFrameColumn("max_abs", new[] { Gather64.MaxAbs, Gather32.MaxAbs, FullBranchVsBaseline, CacheOnVsOff, OverrideOffVsWindow }),
        new StringDataFrameColumn("criterion", new[] { "≤ 1e-10", "≤ 1e-5", "≤ 1e-10", "= 0", "≤ 1e-10" }));
}

/// <summary>
/// A paired comparison over images: mean of (a_i − b_i) oriented so that positive favours the claim, its standard error,
/// and the reading: "holds" when the mean exceeds 2 standard errors, "does not hold" when it is below −2, else not resolved.
/// </summary>
public sealed record PairedDifference(int Count, double Mean, double StandardError)
{
    /// <summary>Paired differences favour − other, element by element.</summary>
    public static PairedDifference Of(IReadOnlyList<double> favoured, IReadOnlyList<double> other)
    {
        ArgumentNullException.ThrowIfNull(favoured);
        ArgumentNullException.ThrowIfNull(other);
        if (favoured.Count != other.Count) throw new ArgumentException($"paired lists differ in length ({favoured.Count} vs {other.Count}).", nameof(other));
        int n = favoured.Count;
        if (n == 0) return new PairedDifference(0, double.NaN, double.NaN);
        var d = favoured.Zip(other, (a, b) => a - b).ToArray();
        double mean = d.Average();
        double sd = n > 1 ? Math.Sqrt(d.Sum(x => (x - mean) * (x - mean)) / (n - 1)) : double.NaN;
        return new PairedDifference(n, mean, sd / Math.Sqrt(n));
    }

    /// <summary>Mean &gt; 2 SE (or every difference equal and positive).</summary>
    public bool Favours => Mean > 0 && (Mean > 2 * StandardError || StandardError == 0);
    /// <summary>Mean &lt; −2 SE (or every difference equal and negative).</summary>
    public bool Opposes => Mean < 0 && (-Mean > 2 * StandardError || StandardError == 0);
    /// <summary>Neither: the difference is within two standard errors (or undefined).</summary>
    public bool Unresolved => !Favours && !Opposes;

    public override string ToString() => $"{Mean:+0.000;−0.000;0.000} ± {StandardError:0.000} (paired, n = {Count})";
}

/// <summary>Everything the P45 notebook shows.</summary>
public sealed record FreeSwimResult(FreeSwimExperiment.Config Config, IReadOnlyList<MaskRow> Masks, IReadOnlyList<EntropyRow> Entropy,
    IReadOnlyList<SampleRow> Rows, IReadOnlyList<MethodImages> Images, TimeSpan Elapsed) : IPaperResult
{
    /// <summary>The exactness phase's measurements.</summary>
    public FreeSwimExactness Exactness { get; init; } = new(new ErrorStats(double.NaN, double.NaN, 0), new ErrorStats(double.NaN, double.NaN, 0), 0, 0, 1,
        double.NaN, double.NaN, double.NaN);

    /// <summary>Every image's scores per (method, factor).</summary>
    public IReadOnlyList<ImageScores> Scores { get; init; } = Array.Empty<ImageScores>();

    /// <summary>The scores of a method at a factor.</summary>
    public ImageScores ScoresOf(string method, int factor) => Scores.Single(s => s.Method == method && s.Factor == factor);

    /// <summary>Columns: method, resolution (token grid), components, repeated, agreement, sharpness, ms_per_step, guide_steps.</summary>
    public DataFrame ToDataFrame() => Tables.From(Rows.Select(r => new
        {
            r.Method,
            Resolution = $"{r.GridSide}×{r.GridSide} ({r.Factor}×)",
            r.Components,
            r.Repeated,
            r.Agreement,
            r.Sharpness,
            r.MsPerStep,
            r.GuideSteps,
        }));

    /// <summary>Columns: kind, factor, grid, min_keys, mean_keys, max_keys, corner_keys, centre_keys, tokens.</summary>
    public DataFrame MaskFrame() => Tables.From(Masks.Select(r => new
        {
            r.Kind,
            r.Factor,
            Grid = $"{r.Height}×{r.Width}",
            r.MinKeys,
            r.MeanKeys,
            r.MaxKeys,
            r.CornerKeys,
            r.CentreKeys,
            r.Tokens,
        }));

    /// <summary>The row of a method at a factor.</summary>
    public SampleRow Row(string method, int factor) => Rows.Single(r => r.Method == method && r.Factor == factor);

    /// <summary>Mask row of a kind at a factor.</summary>
    public MaskRow Mask(string kind, int factor) => Masks.Single(r => r.Kind == kind && r.Factor == factor);

    /// <summary>Entropy of a variant at a factor.</summary>
    public double EntropyOf(string variant, int factor) => Entropy.Single(r => r.Variant == variant && r.Factor == factor).Entropy;

    /// <summary>Shape agreement at native resolution below which the samples cannot speak to class fidelity at 2×.</summary>
    public const double NativeAgreementGate = 0.8;

    /// <summary>
    /// The claims. Exactness: gather window = dense twin; the receptive field (inward: (2d+1)² keys per query at every factor
    /// ≥ 2, = full at 1×, time not windowed; clipped corner (d+1)²); the dual path's identities. Claims: full-attention
    /// entropy grows with the grid while the inward window keeps it (the paper's entropy argument); at the largest sampled
    /// factor, paired over images: the dual path has fewer duplicated objects than the window alone and is sharper than full
    /// attention (spec §7), the inward window leaves less debris than the clipped one, and FreeSwim keeps the class better
    /// than full attention — each "holds" only beyond two standard errors, "not shown" within them or when the denoiser
    /// cannot draw the class at its own resolution. Reported: ms per step.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(FreeSwimExperiment.Paper.Number, Config.Size);
        var x = Exactness;
        claims.Exactness("gather-equals-dense", "the inward window by gather equals dense masked reference attention",
            $"max |Δ| {Num.Sci(x.Gather64.MaxAbs)} (float64), {Num.Sci(x.Gather32.MaxAbs)} (float32); T = 2, 9×7 grid, d_h 2, d_w 1",
            "≤ 1e-10 (float64), ≤ 1e-5 (float32) [spec §6 names none]", x.Gather64.MaxAbs <= 1e-10 && x.Gather32.MaxAbs <= 1e-5);

        int d = FreeSwimExperiment.HalfWindow, win = (2 * d + 1) * (2 * d + 1), corner = (d + 1) * (d + 1);
        var big = Config.MaskFactors.Where(f => f >= 2).ToArray();
        bool inwardExact = big.All(f => Mask("inward", f).MinKeys == win && Mask("inward", f).MaxKeys == win);
        bool clippedShrinks = big.All(f => Mask("clipped", f).CornerKeys == corner && Mask("clipped", f).MinKeys < Mask("inward", f).MinKeys);
        bool nativeFull = !Config.MaskFactors.Contains(1) || Mask("inward", 1).MinKeys == Mask("inward", 1).Tokens;
        bool timeFull = x.ToyMinKeys == x.ToyExpectedKeys && x.ToyMaxKeys == x.ToyExpectedKeys;
        claims.Exactness("receptive-field",
            "every inward query keeps the training-size field T(2d_h+1)(2d_w+1) (full attention at native size, time never windowed); clipping shrinks " +
            "border fields",
            $"inward {win} keys/query at factors {string.Join(", ", big)}: {Yes(inwardExact)}; = full at 1×: {Yes(nativeFull)}; T = 2 toy " +
            $"{x.ToyMinKeys}–{x.ToyMaxKeys} keys (expect {x.ToyExpectedKeys}); clipped corner {corner}: {Yes(clippedShrinks)}",
            "exact counts (spec §6)", inwardExact && clippedShrinks && nativeFull && timeFull, "spec §2 (official init_mask_flex)");
        claims.Exactness("dual-path-identities",
            "dual path: override off + full branch = full-attention sampling; cache on = off at cache_steps 1; override off = window-only sampling",
            $"max |Δ| {Num.Sci(x.FullBranchVsBaseline)}, {Num.Sci(x.CacheOnVsOff)}, {Num.Sci(x.OverrideOffVsWindow)} (trained model run in float64, 3 " +
            "images, 3 steps)",
            "≤ 1e-10, = 0, ≤ 1e-10 (spec §6: 1e-5 and identical; read in float64)",
            x.FullBranchVsBaseline <= 1e-10 && x.CacheOnVsOff == 0 && x.OverrideOffVsWindow <= 1e-10);

        int lo = Config.MaskFactors.Min(), hi = Config.MaskFactors.Max();
        double fullGrowth = EntropyOf("full 1/√d", hi) - EntropyOf("full 1/√d", lo);
        double inwardDrift = Math.Abs(EntropyOf("inward, FreeSwim scale", hi) - EntropyOf("inward, FreeSwim scale", lo));
        int nativeTokens = FreeSwimExperiment.NativeGrid * FreeSwimExperiment.NativeGrid;
        double drift = Math.Log(win / (double)Math.Min(win, nativeTokens)) + 0.1;
        const string entropyPaper = "attention entropy grows with the token count at higher resolution, diluting attention; a training-size window keeps it " +
            "(paper §3)";
        claims.Claim("entropy-grows-full", "with full attention, the trained model's self-attention entropy grows as the grid outgrows the training size",
            entropyPaper,
            $"full attention at 1/√d: {string.Join(" → ", Config.MaskFactors.Select(f => $"{EntropyOf("full 1/√d", f):F2}"))} nats at " +
            $"{string.Join(", ", Config.MaskFactors.Select(f => $"{f}×"))} (+{fullGrowth:F2})",
            $"+≥ 1 nat from {lo}× to {hi}× [ours: the spec names no threshold]", fullGrowth >= 1.0, asserted: true);
        claims.Claim("window-keeps-entropy", "the inward window keeps the entropy at its training value (its key count grows only from N_native to (2d+1)²)",
            entropyPaper,
            $"inward window at the FreeSwim scale: {string.Join(" → ", Config.MaskFactors.Select(f => $"{EntropyOf("inward, FreeSwim scale", f):F2}"))} nats " +
            $"(drift {inwardDrift:F2})",
            $"drift ≤ ln({win}/{Math.Min(win, nativeTokens)}) + 0.1 = {drift:F2} nats [ours: the bound of a uniform row + 0.1]", inwardDrift <= drift,
            asserted: true);

        int f2 = Config.SampleFactors.Max();
        double nativeAgree = Row("native", 1).Agreement;
        int n = ScoresOf("native", 1).Agreement.Length;
        string where = $"{f2}× ({FreeSwimExperiment.NativeGrid * f2}×{FreeSwimExperiment.NativeGrid * f2} tokens), {n} images";
        const string qualityPaper = "training-free generation up to 4K with better VBench scores than training-based methods (abstract); spec §7 toy analogue";
        void Paired(string id, string statement, string measure, PairedDifference diff, string favoured, string other, string criterion, string? gate = null)
        {
            string ours = $"{measure} at {where}: {favoured} − {other} = {diff}";
            if (gate is not null)
                claims.NotShown(id, statement, qualityPaper, ours, criterion, gate);
            else if (diff.Unresolved)
                claims.NotShown(id, statement, qualityPaper, ours, criterion,
                    $"not shown at this size: the difference is within two standard errors over {diff.Count} images");
            else
                claims.Claim(id, statement, qualityPaper, ours, criterion, diff.Favours, asserted: false,
                    note: "sample quality of a 3000-step toy denoiser on few images: recorded, not asserted");
        }
        const string rule = "paired mean > 2 SE holds, < −2 SE does not, else not shown [ours]";
        Paired("dual-fewer-duplicates", "the dual path (global cross-attention) duplicates objects less than the inward window alone",
            "extra objects per image (components − 1, ≥ 0)", PairedDifference.Of(ScoresOf("inward", f2).Duplicates, ScoresOf("inward+dual", f2).Duplicates),
            "inward", "inward+dual", "fewer duplicates with the dual path (spec §7); " + rule);
        Paired("sharper-than-full", "FreeSwim (inward + dual path) keeps samples sharper than full attention at the higher resolution",
            "edge sharpness", PairedDifference.Of(ScoresOf("inward+dual", f2).Sharpness, ScoresOf("full", f2).Sharpness),
            "inward+dual", "full", "sharper than full attention (spec §7); " + rule);
        Paired("inward-less-debris-than-clipped", "sliding the window inward at borders avoids the clipped window's border artefacts",
            "connected components per image", PairedDifference.Of(ScoresOf("clipped", f2).Components, ScoresOf("inward", f2).Components),
            "clipped", "inward", "fewer components than the clipped window (spec §2 pitfall) ; " + rule);
        Paired("class-fidelity", "FreeSwim keeps the object's class at the higher resolution better than full attention",
            "shape-test agreement with the label", PairedDifference.Of(ScoresOf("inward+dual", f2).Agreement, ScoresOf("full", f2).Agreement),
            "inward+dual", "full", $"higher agreement than full attention, given native agreement ≥ {NativeAgreementGate:P0}; " + rule,
            nativeAgree < NativeAgreementGate
                ? $"not shown at this size: the denoiser draws the labelled shape in only {nativeAgree:P0} of its native samples (< {NativeAgreementGate:P0})"
                    : null);

        var full = Row("full", f2);
        var inward = Row("inward", f2);
        var dual = Row("inward+dual", f2);
        claims.Reported("ms-per-step", "the windowed passes cost no more per step than full attention",
            "> 2× speed-up from caching the full branch's cross-attention (README); FlexAttention block masks",
            $"ms per denoising step at {where}: full {full.MsPerStep:F1}, inward (gather) {inward.MsPerStep:F1}, inward+dual {dual.MsPerStep:F1} " +
            $"({dual.GuideSteps} guide steps of {(int)Math.Round(Config.Steps * Config.Strength)})",
            "inward+dual ≤ full per step [ours]", dual.MsPerStep <= full.MsPerStep,
            note: "a CPU gather is no FlexAttention kernel, on a shared machine: reported, never asserted");

        claims.Saw($"Native samples ({FreeSwimExperiment.NativeGrid}×{FreeSwimExperiment.NativeGrid} tokens): shape agreement {nativeAgree:P0}, " +
            $"{Row("native", 1).Components:F2} components per image.");
        claims.Saw($"At {where}: components per image " + string.Join(", ", FreeSwimExperiment.Methods.Skip(1).Select(m => $"{m} {Row(m, f2).Components:F2}")) +
                   "; shape agreement " + string.Join(", ", FreeSwimExperiment.Methods.Skip(1).Select(m => $"{m} {Row(m, f2).Agreement:P0}")) +
                   "; sharpness " + string.Join(", ", FreeSwimExperiment.Methods.Skip(1).Select(m => $"{m} {Row(m, f2).Sharpness:F2}")) + ".");
        claims.Saw($"Self-attention entropy (nats) from {lo}× to {hi}×: full attention {EntropyOf("full 1/√d", lo):F2} → {EntropyOf("full 1/√d", hi):F2} " +
            $"(uniform would be {Math.Log(Mask("full", lo).Tokens):F2} → {Math.Log(Mask("full", hi).Tokens):F2}); inward window " +
            $"{EntropyOf("inward, FreeSwim scale", lo):F2} → {EntropyOf("inward, FreeSwim scale", hi):F2}.");
        if (Config.MaskFactors.Contains(1))
            claims.Saw($"At 1× the clipped window already sees only {Mask("clipped", 1).MeanKeys:F1} of {Mask("clipped", 1).Tokens} keys on average, so " +
                "clipping changes the model even at its training resolution.");
        return claims;
    }

    static string Yes(bool b) => b ? "yes" : "no";

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
        var series = Entropy.GroupBy(e => e.Variant).Select(
            g => new Series(g.Key, g.Select(e => (double)e.Tokens).ToArray(), g.Select(e => e.Entropy).ToArray())).ToList();
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
        return Charts.Bars(rows.Select(r => r.Method).ToList(), rows.Select(pick).ToList(),
            $"{quantity} per method at {factor}× ({rows[0].GridSide}×{rows[0].GridSide} tokens)", quantity);
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
