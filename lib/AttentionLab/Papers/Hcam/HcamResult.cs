using AttentionLab.Core;
using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;

namespace AttentionLab.Papers.Hcam;

/// <summary>One model at one number of distractor chunks: accuracy on the queries and (HCAM) the top-1 chunk hit rate.</summary>
public sealed record HcamRow(string Model, int Distractors, int Length, double DistractorRatio, double LengthRatio, double Accuracy, double? TopOneHit);

/// <summary>The last mixer's per-token forward time and its decode state bytes at one length (one sequence, float32).</summary>
public sealed record HcamTiming(string Model, int Length, double MicrosecondsPerToken, long StateBytes);

/// <summary>Coarse weights over the chunks for each query of one episode; Targets[i] = the chunk that holds query i's event.</summary>
public sealed record HcamHeatmap(int Distractors, IReadOnlyList<string> RowLabels, IReadOnlyList<double[]> Weights, IReadOnlyList<int> Targets);

/// <summary>The exactness phase (see <see cref="HcamExperiment.Exactness"/>).</summary>
public sealed record HcamExactness(double ReadMaxAbs, double GradMaxAbs, double SoftmaxMaxAbs, double WeightSumDeviation, long HiddenChosen,
    double PatternMaxAbs, double StopGradientLeak, double QueryGradient, string Shapes);

/// <summary>Everything <see cref="HcamExperiment.Run"/> measured, its tables and its claims.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Exactness">The exactness phase.</param>
/// <param name="Rows">Accuracy per model and D.</param>
/// <param name="TrainLoss">Training loss per step, per model.</param>
/// <param name="Heatmap">HCAM's coarse weights for one test episode.</param>
/// <param name="Timings">Per-token time and state bytes of each model's last mixer.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
/// <param name="Sources">Per model: the checkpoint it was loaded from or "trained here", with steps and final loss (empty when built by hand).</param>
public sealed record HcamResult(HcamExperiment.Config Config, HcamExactness Exactness, IReadOnlyList<HcamRow> Rows,
    IReadOnlyDictionary<string, IReadOnlyList<double>> TrainLoss, HcamHeatmap Heatmap, IReadOnlyList<HcamTiming> Timings, double Seconds,
    IReadOnlyDictionary<string, double> PhaseSeconds, IReadOnlyDictionary<string, string>? Sources = null) : IPaperResult
{
    /// <summary>Spec §6 tolerance for the checks on toy tensors (1e-6); the naive twin agreement is held to the project's 1e-10.</summary>
    public const double SpecTolerance = 1e-6, TwinTolerance = 1e-10;

    /// <summary>Spec §6: at 4× the training distractors HCAM beats both baselines by at least this (20 pp).</summary>
    public const double Margin = 0.20;

    /// <summary>Columns: model, distractors, length, distractor_ratio, length_ratio, accuracy, top_one_hit.</summary>
    public DataFrame ToDataFrame() => Tables.From(Rows);

    /// <summary>Columns: model, length, microseconds_per_token, state_bytes.</summary>
    public DataFrame TimingFrame() => Tables.From(Timings);

    /// <summary>Accuracy vs distractor chunks, one line per model (D_train is the first point).</summary>
    public GenericChart AccuracyChart() => Charts.Lines(Rows.GroupBy(r => r.Model).Select(g => new Series(g.Key,
            g.Select(r => (double)r.Distractors).ToArray(), g.Select(r => r.Accuracy).ToArray())),
        $"recall accuracy vs distractor chunks (trained at D = {Config.TrainDistractors})", "distractor chunks D", "accuracy", logX: true);

    /// <summary>HCAM's coarse weights over the chunks for each query of one episode (the queried event's chunk is named in the row label).</summary>
    public GenericChart WeightsHeatmap() => Charts.Heatmap(Heatmap.Weights, $"HCAM coarse weights over chunks, D = {Heatmap.Distractors}",
        Enumerable.Range(0, Heatmap.Weights[0].Length).Select(i => $"c{i}").ToList(),
        Heatmap.RowLabels.Select((l, i) => $"{l} → c{Heatmap.Targets[i]}").ToList(), "chunk", "query");

    /// <summary>Top-1 chunk hit rate of HCAM per D.</summary>
    public GenericChart HitChart()
    {
        var hits = Rows.Where(r => r.TopOneHit is not null).ToList();
        return Charts.Bars(hits.Select(r => $"D = {r.Distractors}").ToList(), hits.Select(r => r.TopOneHit!.Value).ToList(),
            "HCAM: heaviest chosen chunk = the queried event's", "hit rate");
    }

    /// <summary>Accuracy of <paramref name="model"/> at <paramref name="distractors"/>.</summary>
    public double Accuracy(string model, int distractors) =>
        Rows.FirstOrDefault(r => r.Model == model && r.Distractors == distractors)?.Accuracy
        ?? throw new ArgumentException($"no row for {model} at D = {distractors}.", nameof(model));

    /// <summary>In-distribution accuracy a model must reach before extrapolation can be judged (80 %).</summary>
    public const double LearnedThreshold = 0.8;

    /// <summary>True when HCAM or full attention reaches <see cref="LearnedThreshold"/> at D_train: only then can the run speak to extrapolation.</summary>
    public bool Learned => Math.Max(Accuracy(HcamExperiment.HcamName, Config.TrainDistractors), Accuracy(HcamExperiment.FullName, Config.TrainDistractors))
                           >= LearnedThreshold;

    string NotLearnedWhy => $"neither HCAM nor full attention reaches {LearnedThreshold:P0} at the training length (D = {Config.TrainDistractors}) " +
                            $"after {Config.Steps} steps ({Origin}): this budget does not train the task, so extrapolation cannot be judged";

    /// <summary>Where the models came from: the shipped checkpoints (smoke) or trained in this run.</summary>
    public string Origin => Config.FromCheckpoints ? "loaded from the shipped checkpoints" : "trained in this run";

    /// <summary>One line per model: the checkpoint it was loaded from, or "trained here", with steps and final loss.</summary>
    public string SourceText => Sources is null || Sources.Count == 0 ? Origin
        : string.Join("\n", Sources.Select(kv => $"{kv.Key}: {kv.Value}"));

    /// <summary>The D of the claim at ratio <paramref name="ratio"/> × D_train, if it was tested.</summary>
    int? At(int ratio) => Config.TestDistractors.Contains(ratio * Config.TrainDistractors) ? ratio * Config.TrainDistractors : null;

    /// <summary>
    /// Exactness (twin, C = 1 identity, weights, stop-gradient, pattern), the spec's §6 criterion at 4× and 8× the training
    /// distractors, full attention's degradation, the §7 "about 90 %", the top-1 chunk hit rate, per-token time and state bytes.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(HcamExperiment.Paper.Number, Config.Size);
        var e = Exactness;
        claims.Exactness("read-equals-naive", "the gathered top-k read equals the loop twin (outputs and the gradients of q, k, v, float64)",
            $"max |Δ| {Num.Sci(e.ReadMaxAbs)}, gradients {Num.Sci(e.GradMaxAbs)} ({e.Shapes})", $"≤ {Num.Sci(TwinTolerance, 0)}",
            e.ReadMaxAbs <= TwinTolerance && e.GradMaxAbs <= TwinTolerance);
        claims.Exactness("chunk-1-all-k-is-softmax", "with C = 1 and k = M the read is an explicit softmax-weighted sum over earlier positions",
            $"max |Δ| {Num.Sci(e.SoftmaxMaxAbs)}", $"≤ {Num.Sci(SpecTolerance, 0)} (spec §6)", e.SoftmaxMaxAbs <= SpecTolerance);
        claims.Exactness("topk-weights", "top-k weights sum to 1 (0 with no visible chunk); hidden chunks are never chosen while ≥ k are visible",
            $"max |Σw − 1| {Num.Sci(e.WeightSumDeviation)}, hidden chunks chosen or weighted: {e.HiddenChosen}", "≤ 1e-6 and 0 (spec §6)",
            e.WeightSumDeviation <= SpecTolerance && e.HiddenChosen == 0);
        claims.Exactness("memory-stop-gradient", "memory keys and contents get zero gradient (only the query's own position does)",
            $"max |∂z_t/∂x_s|, s < t: {Num.Sci(e.StopGradientLeak)}; |∂z_t/∂x_t| {Num.Sci(e.QueryGradient)}", "leak = 0, query path > 0 (spec §6)",
            e.StopGradientLeak == 0 && e.QueryGradient > 0);
        claims.Exactness("pattern-hook-analogue", "the memory pattern hook's T×T weights times v reproduce the read",
            $"max |Δ| {Num.Sci(e.PatternMaxAbs)}", $"≤ {Num.Sci(TwinTolerance, 0)}", e.PatternMaxAbs <= TwinTolerance);

        const string paperFigure = "HCAM agents solve Ballet, object permanence and rapid word learning where TrXL and LSTM agents fail, and " +
                                   "extrapolate to episodes an order of magnitude longer (paper §4, Figs. 2–6)";
        foreach (var (ratio, id, asserted) in new[] { (4, "recall-4x", true), (8, "recall-8x", false) })
        {
            string statement = $"recall at {ratio}× the training distractors: HCAM beats full attention and local attention";
            string criterion = $"HCAM − max(full, local) ≥ {Margin * 100:F0} pp at D = {ratio}·D_train (spec §6, seed 0)";
            if (At(ratio) is not { } d)
            {
                claims.NotShown(id, statement, paperFigure, "—", criterion, $"D = {ratio}·{Config.TrainDistractors} was not tested in this run");
                continue;
            }
            double h = Accuracy(HcamExperiment.HcamName, d), f = Accuracy(HcamExperiment.FullName, d), l = Accuracy(HcamExperiment.LocalName, d);
            double lengthRatio = Rows.First(r => r.Distractors == d).LengthRatio;
            if (!Learned)
            {
                claims.NotShown(id, statement, paperFigure,
                    $"D = {d} ({lengthRatio:F1}× the training length): HCAM {h:P1}, full {f:P1}, local {l:P1}", criterion, NotLearnedWhy);
                continue;
            }
            bool holds = h - Math.Max(f, l) >= Margin;
            claims.Claim(id, statement, paperFigure,
                $"D = {d} (T = {Config.Task.Length(d)}, {lengthRatio:F1}× the training length): HCAM {h:P1}, full {f:P1}, local {l:P1}",
                criterion, holds, asserted: asserted && holds,
                note: asserted ? null : "8× is beyond the spec's §6 point (4×): recorded, not asserted");
        }

        int train = Config.TrainDistractors;
        if (At(4) is { } d4)
        {
            double f1 = Accuracy(HcamExperiment.FullName, train), f4 = Accuracy(HcamExperiment.FullName, d4);
            if (!Learned)
                claims.NotShown("full-attention-degrades", "full attention, accurate at the training length, degrades at 4× the distractors",
                    "TrXL fails the long-recall tasks (paper Figs. 2–4)", $"full attention {f1:P1} at D = {train} → {f4:P1} at D = {d4}",
                    $"accuracy at D_train ≥ 80 % and drops ≥ {Margin * 100:F0} pp at 4×", NotLearnedWhy);
            else
            claims.Claim("full-attention-degrades", "full attention, accurate at the training length, degrades at 4× the distractors",
                "TrXL fails the long-recall tasks (paper Figs. 2–4)", $"full attention {f1:P1} at D = {train} → {f4:P1} at D = {d4}",
                $"accuracy at D_train ≥ 80 % and drops ≥ {Margin * 100:F0} pp at 4× [ours: spec §7 says \"degrades\" without a number]",
                f1 >= 0.8 && f1 - f4 >= Margin, asserted: false,
                deviation: "the spec gives no number for \"degrades\": 80 % in distribution and a 20 pp drop, the margin of its §6 criterion");
            double hMin = Config.TestDistractors.Where(d => d >= d4).Min(d => Accuracy(HcamExperiment.HcamName, d));
            if (!Learned)
                claims.NotShown("hcam-about-90", "HCAM recalls at about 90 % accuracy at 4–8× the training length (spec §7 toy analogue)",
                    "toy analogue, spec §7: about 90 %", $"HCAM's lowest accuracy at D ≥ {d4}: {hMin:P1}", "≥ 85 % [ours: \"about 90 %\"]", NotLearnedWhy);
            else
            claims.Claim("hcam-about-90", "HCAM recalls at about 90 % accuracy at 4–8× the training length (spec §7 toy analogue)",
                "toy analogue, spec §7: about 90 %", $"HCAM's lowest accuracy at D ≥ {d4}: {hMin:P1}", "≥ 85 % [ours: \"about 90 %\"]",
                hMin >= 0.85, asserted: false, deviation: "\"about 90 %\" read as ≥ 85 %");
        }

        var hits = Rows.Where(r => r.TopOneHit is not null).ToList();
        if (hits.Count > 0)
            claims.Reported("top1-chunk-hit", "the heaviest chosen chunk is the queried event's chunk (the \"time travel\" to the right chunk)",
                "—", string.Join(", ", hits.Select(r => $"D = {r.Distractors}: {r.TopOneHit:P0}")),
                "≥ 90 % at every D [ours: the spec plots it without a threshold]", hits.All(r => r.TopOneHit >= 0.9));

        var hT = Timings.Where(t => t.Model == HcamExperiment.HcamName).OrderBy(t => t.Length).ToList();
        var fT = Timings.Where(t => t.Model == HcamExperiment.FullName).OrderBy(t => t.Length).ToList();
        if (hT.Count > 0 && fT.Count > 0)
        {
            claims.Reported("time-per-token", "per-token forward time of the last mixer (CPU, shared machine: reported)",
                "O(M·F + k·C·D) per query vs O(M·C·D) for full attention (spec §8)",
                string.Join("; ", hT.Zip(fT, (h, f) => $"T = {h.Length}: HCAM {h.MicrosecondsPerToken:F1} µs, full {f.MicrosecondsPerToken:F1} µs")),
                "HCAM's per-token time grows less than full attention's from the shortest to the longest T",
                hT[^1].MicrosecondsPerToken / hT[0].MicrosecondsPerToken < fT[^1].MicrosecondsPerToken / fT[0].MicrosecondsPerToken);
            claims.Reported("state-bytes", "bytes one layer holds to decode a sequence (float32, formula)",
                "the memory stores past activations in chunks (paper §2)",
                string.Join("; ", hT.Zip(fT, (h, f) => $"T = {h.Length}: HCAM {h.StateBytes:N0} B, full KV {f.StateBytes:N0} B")),
                "HCAM ≤ full attention's KV cache at the longest T (stored activations d per token vs K and V 2d)",
                hT[^1].StateBytes <= fT[^1].StateBytes);
        }

        if (At(4) is { } dd)
        {
            claims.Saw($"At D = {dd} distractor chunks ({Rows.First(r => r.Distractors == dd).LengthRatio:F1}× the training length) HCAM answers " +
                       $"{Accuracy(HcamExperiment.HcamName, dd):P0} of the queries, full attention {Accuracy(HcamExperiment.FullName, dd):P0} and local " +
                       $"attention {Accuracy(HcamExperiment.LocalName, dd):P0}.");
        }
        claims.Saw($"At the training length (D = {train}) the three models reach {Accuracy(HcamExperiment.HcamName, train):P0} (HCAM), " +
                   $"{Accuracy(HcamExperiment.FullName, train):P0} (full) and {Accuracy(HcamExperiment.LocalName, train):P0} (local) after " +
                   $"{Config.Steps} steps of the same batches ({Origin}).");
        if (hits.Count > 0)
            claims.Saw($"HCAM's heaviest chunk is the queried event's in {hits.Min(r => r.TopOneHit):P0} to {hits.Max(r => r.TopOneHit):P0} of the queries " +
                       $"across D = {hits.Min(r => r.Distractors)} … {hits.Max(r => r.Distractors)}.");
        return claims;
    }
}
