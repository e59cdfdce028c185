using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>Which public per-head decay schedule a Lightning layer uses (see <see cref="DecaySchedules"/>).</summary>
public enum DecaySchedule
{
    /// <summary>ALiBi slopes × the TNL example's per-layer factor (lightning-attention's <c>tnl_attn.py</c>, MiniMax-01). The default.</summary>
    Alibi,
    /// <summary>fla's lightning op, the TNL paper's formula: log λ_h = −(8/H)(1 − l/L)·h (head 0 never decays).</summary>
    Tnl,
}

/// <summary>
/// The per-head decay slopes found in public Lightning Attention code, as slopes a_h ≥ 0 (λ_h = e^{−a_h}) or as log-decays
/// log λ_h = −a_h ([H]) for the shared linear-attention engine.
/// </summary>
/// <remarks>
/// Bare ALiBi slopes — OpenNLPLab/lightning-attention <c>_build_slope_tensor(H)</c>, what <see cref="AlibiSlopes"/> and
/// <see cref="Alibi"/> return (no layer factor):
///     a_h = 2^{−8(h+1)/H}   (H a power of two; otherwise ALiBi's interleaving)          H = 8: 1/2, 1/4, …, 1/256
/// (a) the TNL example's per-layer schedule — <c>examples/module/tnl_attn.py</c>: the bare slopes times a layer factor,
///     a_{h,l} = a_h · f(l, L),   f(l, L) = 1 − l/(L−1) + 1e−5   (<see cref="AlibiLayerFactor"/>, <see cref="AlibiLayerSlopes"/>)
///     so the first layer decays fastest and the last almost not at all. With L = 1 the reference divides by zero; a
///     single layer has no layer schedule here: f = 1, the bare slopes.
/// (b) fla-org/flash-linear-attention <c>fla/ops/lightning_attn/chunk.py</c>:
///     log λ_{h,l} = −(8/H) · (1 − l/L) · h,   h = 0 … H−1   (<see cref="TnlSlopes"/>).
/// Which of (a) and (b) the ICML paper trained with is unverified; both are exposed, (a) is the default of
/// <see cref="TnlAttention"/>.
/// </remarks>
public static class DecaySchedules
{
    /// <summary>The +1e−5 of the TNL example's layer factor (keeps the last layer's decay strictly positive).</summary>
    public const double LayerFactorEpsilon = 1e-5;

    /// <summary>
    /// The bare ALiBi slopes a_h = 2^{−8(h+1)/H} (H = 8: exactly 1/2 … 1/256) — the reference <c>_build_slope_tensor(H)</c>,
    /// no layer factor. λ_h = e^{−a_h}.
    /// </summary>
    /// <param name="heads">H ≥ 1 (not a power of two: ALiBi's interleaving, as the reference).</param>
    public static double[] AlibiSlopes(int heads) => Positions.AlibiSlopes(heads);

    /// <summary>
    /// The TNL example's per-layer factor f(l, L) = 1 − l/(L−1) + 1e−5 that multiplies the bare ALiBi slopes in layer l of
    /// L (<c>tnl_attn.py</c>). L = 1: 1 (the reference formula divides by zero; a single layer keeps the bare slopes).
    /// </summary>
    /// <param name="layer">l, 0-based, &lt; <paramref name="layers"/>.</param>
    /// <param name="layers">L ≥ 1.</param>
    public static double AlibiLayerFactor(int layer, int layers)
    {
        CheckLayer(1, layer, layers);
        return layers == 1 ? 1.0 : 1 - (double)layer / (layers - 1) + LayerFactorEpsilon;          // 1 − l/(L−1) + 1e−5
    }

    /// <summary>Slopes of schedule (a) for layer l of L: a_h · f(l, L) (<see cref="AlibiSlopes"/> × <see cref="AlibiLayerFactor"/>).</summary>
    public static double[] AlibiLayerSlopes(int heads, int layer, int layers)
    {
        CheckLayer(heads, layer, layers);
        double factor = AlibiLayerFactor(layer, layers);
        return AlibiSlopes(heads).Select(a => a * factor).ToArray();                                   // a_h · f(l, L)
    }

    /// <summary>Slopes of schedule (b): a_{h,l} = (8/H)(1 − l/L)·h (head 0: 0, no decay).</summary>
    public static double[] TnlSlopes(int heads, int layer = 0, int layers = 1)
    {
        CheckLayer(heads, layer, layers);
        double rate = 8.0 / heads * (1 - (double)layer / layers);                                      // (8/H)(1 − l/L)
        return Enumerable.Range(0, heads).Select(h => rate * h).ToArray();                             // · h
    }

    /// <summary>log λ [H] = −a_h of the bare ALiBi slopes (<see cref="AlibiSlopes"/>; equal to the reference's <c>_build_slope_tensor</c>).</summary>
    public static Tensor Alibi(int heads, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LogDecay(AlibiSlopes(heads), dtype, device);

    /// <summary>log λ [H] of schedule (a) for layer l of L: −a_h · f(l, L) (<see cref="AlibiLayerSlopes"/>).</summary>
    public static Tensor AlibiLayer(int heads, int layer, int layers, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LogDecay(AlibiLayerSlopes(heads, layer, layers), dtype, device);

    /// <summary>log λ [H] of schedule (b): −(8/H)(1 − l/L)·h; see <see cref="TnlSlopes"/>.</summary>
    public static Tensor Tnl(int heads, int layer = 0, int layers = 1, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LogDecay(TnlSlopes(heads, layer, layers), dtype, device);

    /// <summary>
    /// Slopes of <paramref name="schedule"/> for layer l of L: (a) <see cref="AlibiLayerSlopes"/> (the layer factor applied;
    /// with L = 1 the bare slopes), (b) <see cref="TnlSlopes"/>.
    /// </summary>
    public static double[] Slopes(DecaySchedule schedule, int heads, int layer = 0, int layers = 1) => schedule switch
    {
        DecaySchedule.Alibi => AlibiLayerSlopes(heads, layer, layers),
        DecaySchedule.Tnl => TnlSlopes(heads, layer, layers),
        _ => throw new ArgumentOutOfRangeException(nameof(schedule), schedule, "unknown decay schedule."),
    };

    /// <summary>log λ [H] of <paramref name="schedule"/> for layer l of L (see <see cref="Slopes"/>).</summary>
    public static Tensor For(DecaySchedule schedule, int heads, int layer = 0, int layers = 1, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LogDecay(Slopes(schedule, heads, layer, layers), dtype, device);

    /// <summary>log λ = −a, computed in float64 and then cast.</summary>
    static Tensor LogDecay(double[] slopes, ScalarType dtype, Device? device)
    {
        using var scope = NewDisposeScope();
        return (-torch.tensor(slopes, dtype: ScalarType.Float64, device: device)).to(dtype).MoveToOuterDisposeScope();
    }

    static void CheckLayer(int heads, int layer, int layers)
    {
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(layers, nameof(layers));
        if (layer < 0 || layer >= layers)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {layers}) (layers = {layers}).");
    }
}
