using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>
/// The notebook's experiment (P33 §4), training-free: synthetic video-like Q/K/V (<see cref="SyntheticVideoQkv"/>) on a
/// frames × height × width grid in Hilbert order plus text tokens; for each locality γ and threshold τ, four variants
/// with the same critical sets (same density) against full attention: plain top-p sparse, IPAR scaling only,
/// IPAR + compensation of every dropped block, IPAR + compensation + GAPR. Errors are over the visual queries (text
/// queries use full attention in every variant).
/// </summary>
public static class RectifiedExperiment
{
    /// <summary>Sizes of one run.</summary>
    public sealed record Config(int Frames, int Height, int Width, int HeadDim, int Heads, int TextTokens, int Block,
        double[] Localities, double[] Taus, double Noise, int MinTopK, double ModerateLocality, double PeakedLocality, double FixedTau, int Seed,
        double LengthScale = 1.0, double ContentScale = 4.0)
    {
        /// <summary>2×16×16 grid (512 visual tokens), B = 32, d = 32, 2 heads, 16 text tokens (spec smoke size); γ 1…5, moderate 2, peaked 4, τ = 0.8 fixed.</summary>
        public static Config Smoke => new(2, 16, 16, 32, 2, 16, 32, new[] { 1.0, 2.0, 3.0, 4.0, 5.0 }, new[] { 0.3, 0.5, 0.7, 0.8, 0.9 }, 0.1, 1, 2.0, 4.0, 0.8, 0);
        /// <summary>8×32×32 = 8192 visual tokens, B = 128, d = 64, 4 heads, 64 text tokens (spec full size).</summary>
        public static Config Full => new(8, 32, 32, 64, 4, 64, 128, new[] { 1.0, 2.0, 3.0, 4.0, 5.0, 6.0 }, new[] { 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95 }, 0.1, 1, 2.0, 4.0, 0.8, 0);
        /// <summary>Smoke or Full.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Visual tokens.</summary>
        public int VisualTokens => Frames * Height * Width;

        /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
        public Config Validate()
        {
            Guard.Positive(Frames, nameof(Frames)); Guard.Positive(Height, nameof(Height)); Guard.Positive(Width, nameof(Width));
            Guard.Positive(HeadDim, nameof(HeadDim)); Guard.Positive(Heads, nameof(Heads)); Guard.Positive(Block, nameof(Block)); Guard.Positive(MinTopK, nameof(MinTopK));
            if (TextTokens < 0) throw new ArgumentException("TextTokens must be ≥ 0.", nameof(TextTokens));
            if (Localities is null || Localities.Length == 0 || Localities.Any(g => !(g >= 0))) throw new ArgumentException("Localities must be non-empty and ≥ 0.", nameof(Localities));
            if (Taus is null || Taus.Length == 0 || Taus.Any(t => !(t >= 0 && t < 1))) throw new ArgumentException("Taus must be non-empty, in [0, 1).", nameof(Taus));
            if (!Localities.Contains(ModerateLocality)) throw new ArgumentException("ModerateLocality must be one of Localities.", nameof(ModerateLocality));
            if (!Localities.Contains(PeakedLocality)) throw new ArgumentException("PeakedLocality must be one of Localities.", nameof(PeakedLocality));
            if (!Taus.Contains(FixedTau)) throw new ArgumentException("FixedTau must be one of Taus.", nameof(FixedTau));
            if (!(Noise >= 0)) throw new ArgumentException("Noise must be ≥ 0.", nameof(Noise));
            return this;
        }
    }

    /// <summary>Variant names in plot order.</summary>
    public static readonly string[] Variants = { "plain top-p", "IPAR scaling", "IPAR + comp. (all)", "IPAR + comp. + GAPR" };

    /// <summary>Output of one variant (flags of <see cref="RectifiedSparseAttention.Forward"/>).</summary>
    public static (Tensor Output, RectifyDiagnostics Diagnostics) Forward(string variant, Config c, Tensor q, Tensor k, Tensor v, double tau, bool trueMass = false)
    {
        var (ipar, compensate, gapr) = variant switch
        {
            "plain top-p" => (false, false, false),
            "IPAR scaling" => (true, false, false),
            "IPAR + comp. (all)" => (true, true, false),
            "IPAR + comp. + GAPR" => (true, true, true),
            _ => throw new ArgumentException($"unknown variant '{variant}'.", nameof(variant)),
        };
        return RectifiedSparseAttention.Forward(q, k, v, c.Block, tau, c.MinTopK, ipar, gapr, c.TextTokens, compensate: compensate, trueMass: trueMass);
    }

    /// <summary>Relative L2 error ‖o − o*‖/‖o*‖ and mean per-token cosine of the visual queries vs full attention.</summary>
    public static (double RelL2, double Cosine) Error(Tensor output, Tensor full, int visualTokens)
    {
        using var scope = NewDisposeScope();
        var o = output.narrow(1, 0, visualTokens).to(ScalarType.Float64);
        var r = full.narrow(1, 0, visualTokens).to(ScalarType.Float64);
        double rel = ((o - r).norm() / r.norm()).item<double>();
        double cos = nn.functional.cosine_similarity(o, r, dim: -1).mean().item<double>();
        return (rel, cos);
    }

    /// <summary>Sweeps γ × τ × variants; one progress line per γ.</summary>
    public static RectifiedResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var rows = new List<RectifiedRow>();
        MassSnapshot? snapshot = null;
        foreach (double gamma in config.Localities)
        {
            using var scope = NewDisposeScope();
            var (q, k, v) = SyntheticVideoQkv.Generate(config.Frames, config.Height, config.Width, config.HeadDim, gamma, config.Noise,
                config.TextTokens, config.Seed, config.Heads, config.LengthScale, config.ContentScale);
            (q, k, v) = (q.to(device), k.to(device), v.to(device));
            using var full = ReferenceAttention.Softmax(q, k, v);
            foreach (double tau in config.Taus)
            {
                var err = new double[Variants.Length]; var cos = new double[Variants.Length];
                double density = 0, beneficial = 0, selected = 0, bias = 0;
                for (int m = 0; m < Variants.Length; m++)
                {
                    bool last = m == Variants.Length - 1;
                    var (o, d) = Forward(Variants[m], config, q, k, v, tau, trueMass: last);
                    using (o) using (d)
                    {
                        (err[m], cos[m]) = Error(o, full.Output, config.VisualTokens);
                        if (!last) continue;
                        density = d.Density; beneficial = d.FractionBeneficial(); selected = d.SelectedFraction();
                        bias = SelectedMassBias(d);
                        if (gamma == config.ModerateLocality && tau == config.FixedTau) snapshot = MassSnapshot.Of(d, gamma, tau);
                    }
                }
                rows.Add(new RectifiedRow(gamma, tau, density, selected, err, cos, beneficial, bias));
            }
            progress?.Report($"γ = {gamma}: " + string.Join(", ", rows.Where(r => r.Locality == gamma).Select(r =>
                $"τ {r.Tau} (density {r.Density:P0}) plain {r.Error[0]:F3} → GAPR {r.Error[3]:F3}")));
        }
        return new RectifiedResult(config, rows, snapshot!, clock.Elapsed);
    }

    /// <summary>Σ over the critical visual blocks of (estimated − true) mass, mean over query blocks: the Jensen bias of what was kept.</summary>
    static double SelectedMassBias(RectifyDiagnostics d)
    {
        using var scope = NewDisposeScope();
        int nb = d.VisualBlocks;
        var diff = (d.EstimatedMass.narrow(-1, 0, nb) - d.TrueMass!.narrow(-1, 0, nb)).masked_fill(d.Selected.logical_not(), 0.0);
        return diff.sum(-1).to(ScalarType.Float64).mean().item<double>();
    }
}
