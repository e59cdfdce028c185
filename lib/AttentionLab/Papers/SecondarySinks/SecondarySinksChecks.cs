using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SecondarySinks;

/// <summary>The injection checks on the trained model (float32).</summary>
/// <param name="ZeroBitwise">α = 0: logits and h^{(l)} bitwise equal to the run without the hook.</param>
/// <param name="AddGap">At the largest α: max |Δh_p^{(l)} − α u| / α.</param>
/// <param name="Elsewhere">At the largest α: max |Δh_i^{(l)}| over the other tokens (0: the MLP acts per token).</param>
/// <param name="BosNorm">‖h_b^{(l)}‖, the unit of α.</param>
/// <param name="TokenNorm">Mean ‖h_p^{(l)}‖ of the injected token before injection.</param>
public sealed record InjectionExactness(bool ZeroBitwise, double AddGap, double Elsewhere, double BosNorm, double TokenNorm)
{
    /// <summary>Tolerance of <see cref="AddGap"/> (float32 residual sums).</summary>
    public const double Tolerance = 1e-5;
}

/// <summary>The exactness phase on toy tensors (float64) and the injection checks.</summary>
/// <param name="WindowOnSpec">PrimaryWindow on the spec's curve [1, 1, 10, 10, 10, 2, 2] (expected (2, 5)).</param>
/// <param name="WindowTwinMismatches">Random norm curves where the tensor form and the loop twin disagree.</param>
/// <param name="ConstructedFound">The detector's map on states with planted BOS copies, as text.</param>
/// <param name="ConstructedOk">The planted copies (and only they) are flagged in exactly the planted layers of the window.</param>
/// <param name="DetectorTwinMismatches">Random sequences where <c>SinkDetector.Detect</c> and the twin disagree.</param>
/// <param name="LabelsOk">The paper's thresholds at L = 36 and the rescaled ones at L = 3 give the expected classes.</param>
/// <param name="SinkScoreTwinMaxAbs">Per-token sink score vs its loop twin (causal and encoder), max |Δ|.</param>
/// <param name="RescaleTwinMaxAbs">RescaleAligned vs its loop twin, max |Δ|.</param>
/// <param name="RescaleMarked">Positions the toy rescaling marked (planted: 2).</param>
/// <param name="Injection">The injection checks on the trained model (set by the run).</param>
public sealed record SinkExactness((int Start, int End) WindowOnSpec, int WindowTwinMismatches, string ConstructedFound, bool ConstructedOk,
    int DetectorTwinMismatches, bool LabelsOk, double SinkScoreTwinMaxAbs, double RescaleTwinMaxAbs, long RescaleMarked,
    InjectionExactness? Injection = null)
{
    /// <summary>Twin tolerance (float64).</summary>
    public const double TwinTolerance = 1e-12;
}

/// <summary>The toy checks of the spec's §6, each against a hand-built answer or the loop twin.</summary>
public static class SecondarySinksChecks
{
    /// <summary>The spec's synthetic norm curve and its window.</summary>
    public static readonly double[] SpecCurve = { 1, 1, 10, 10, 10, 2, 2 };

    /// <summary>Runs every toy check (float64, CPU).</summary>
    public static SinkExactness Toy(int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator((ulong)seed + 25);
        var window = SinkDetector.PrimaryWindow(torch.tensor(SpecCurve, dtype: float64));

        int windowMismatches = 0;
        for (int k = 0; k < 40; k++)
        {
            var curve = torch.rand(2 + k % 9, generator: gen, dtype: float64) * 10;
            if (SinkDetector.PrimaryWindow(curve) != SecondarySinksNaive.PrimaryWindow(SecondarySinksExperiment.Doubles(curve))) windowMismatches++;
        }

        var (found, constructedOk) = Constructed(gen);

        int detectorMismatches = 0;
        for (int k = 0; k < 20; k++)
        {
            int s = 3 + k % 5, t = 2 + k % 7, d = 3 + k % 4;
            var hidden = torch.randn(s, t, d, generator: gen, dtype: float64);
            hidden[.., t - 1] = hidden[.., 0] * (k % 2 == 0 ? 2.0 : -0.5) + 0.05 * torch.randn(s, d, generator: gen, dtype: float64);   // a near-copy
            var fast = SinkDetector.Detect(hidden, 0, cos: 0.5 + k % 5 * 0.1);
            var naive = SecondarySinksNaive.Detect(SecondarySinksNaive.Array3(hidden), 0, cos: 0.5 + k % 5 * 0.1);
            if (!fast.SameAs(naive)) detectorMismatches++;
        }

        var paper = LabelThresholds.Paper(36);                                                   // primary n ≥ 21, secondary 4 < n < 21
        var toy = LabelThresholds.Rescaled(3);                                                   // primary n ≥ 1.75, secondary n > 0.33
        bool labelsOk = paper.Classify(25) == SinkLabel.Primary && paper.Classify(21) == SinkLabel.Primary && paper.Classify(20) == SinkLabel.Secondary
            && paper.Classify(5) == SinkLabel.Secondary && paper.Classify(4) == SinkLabel.Noise && paper.Classify(0) == SinkLabel.Noise
            && toy.Classify(3) == SinkLabel.Primary && toy.Classify(2) == SinkLabel.Primary && toy.Classify(1) == SinkLabel.Secondary
            && toy.Classify(0) == SinkLabel.Noise && Math.Abs(LabelThresholds.Rescaled(36).PrimaryMin - 21) < 1e-12
            && Math.Abs(LabelThresholds.Rescaled(36).SecondaryAbove - 4) < 1e-12;

        double scoreGap = 0;
        foreach (bool causal in new[] { true, false })
        {
            var logits = torch.randn(new long[] { 2, 3, 2, 6, 6 }, generator: gen, dtype: float64);
            if (causal) logits = logits.masked_fill(torch.ones(new long[] { 6, 6 }, dtype: ScalarType.Bool).triu(1), double.NegativeInfinity);
            var patterns = torch.softmax(logits, -1);
            var fast = SecondarySinksExperiment.Rows(SinkScores.PerToken(patterns, causal));
            var naive = SecondarySinksNaive.PerToken(patterns, causal);
            scoreGap = Math.Max(scoreGap, fast.Zip(naive, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max());
        }

        var dir = torch.randn(5, generator: gen, dtype: float64);
        var mlp = torch.randn(2, 6, 5, generator: gen, dtype: float64);
        mlp[0, 4] = dir * 3 + 0.01 * torch.randn(5, generator: gen, dtype: float64);             // aligned, rescaled
        mlp[1, 2] = dir * 2;                                                                     // aligned but position < 3: kept
        mlp[1, 5] = dir * 0.5;                                                                   // aligned, rescaled
        var (outFast, marked) = SinkScores.RescaleAligned(mlp, dir, tau: 7);
        var outNaive = SecondarySinksNaive.RescaleAligned(SecondarySinksNaive.Array3(mlp), SecondarySinksExperiment.Doubles(dir), tau: 7);
        var f = SecondarySinksNaive.Array3(outFast);
        double rescaleGap = f.SelectMany((seq, b) => seq.SelectMany((row, i) => row.Select((x, k) => Math.Abs(x - outNaive[b][i][k])))).Max();

        return new SinkExactness(window, windowMismatches, found, constructedOk, detectorMismatches, labelsOk, scoreGap, rescaleGap,
            marked.sum().item<long>());
    }

    /// <summary>
    /// Six states of seven tokens: token 3 is 2.5·h_b in states 2–4, token 5 is −h_b (|cos| = 1) in states 1–5, token 6 is h_b plus
    /// an orthogonal part (cos = 0.8 &lt; 0.9) everywhere. With the window [2, 5): token 3 in {2, 3, 4}, token 5 in {2, 3, 4}, nothing else.
    /// </summary>
    static (string Found, bool Ok) Constructed(Generator gen)
    {
        const int S = 6, T = 7, D = 6;
        var hidden = torch.randn(S, T, D, generator: gen, dtype: float64) * 0.1;
        for (int l = 0; l < S; l++)
        {
            hidden[l, 0] = torch.zeros(D, dtype: float64);
            hidden[l, 0, l % D] = 3.0;                                                            // h_b^{(l)} = 3 e_{l mod D}: changes per state
            for (int i = 1; i < T; i++) hidden[l, i, l % D] = 0;                                  // every other token orthogonal to it
        }
        for (int l = 2; l <= 4; l++) hidden[l, 3] = hidden[l, 0] * 2.5;
        for (int l = 1; l <= 5; l++) hidden[l, 5] = -hidden[l, 0];
        for (int l = 0; l < S; l++)
        {
            var other = torch.zeros(D, dtype: float64);
            other[(l + 1) % D] = 2.25;                                                           // cos = 3 / √(9 + 2.25²·…) = 0.8
            hidden[l, 6] = hidden[l, 0] + other;
        }
        var map = SinkDetector.Detect(hidden, 0, window: (2, 5));
        string text = string.Join("; ", map.Layers.Select(kv => $"token {kv.Key}: states {string.Join(",", kv.Value)}"));
        bool ok = map.Layers.Count == 2 && map.Layers.TryGetValue(3, out var a) && a.SequenceEqual(new[] { 2, 3, 4 })
            && map.Layers.TryGetValue(5, out var b) && b.SequenceEqual(new[] { 2, 3, 4 });
        return (text, ok);
    }
}
