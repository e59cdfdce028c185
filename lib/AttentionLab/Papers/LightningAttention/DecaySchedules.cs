using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>Which public per-head decay schedule a Lightning layer uses (see <see cref="DecaySchedules"/>).</summary>
public enum DecaySchedule
{
    /// <summary>ALiBi slopes × a per-layer factor (lightning-attention's TNL example, MiniMax-01). The default.</summary>
    Alibi,
    /// <summary>fla's lightning op, the TNL paper's formula: log λ_h = −(8/H)(1 − l/L)·h (head 0 never decays).</summary>
    Tnl,
}

/// <summary>
/// The two per-head decay schedules found in public Lightning Attention code, as log-decays log λ_h ≤ 0 ([H]) for the
/// shared linear-attention engine (λ_h = e^{log λ_h}; Lightning's kernel takes the slope a_h = −log λ_h).
/// </summary>
/// <remarks>
/// (a) <see cref="Alibi"/> — OpenNLPLab/lightning-attention <c>_build_slope_tensor</c> and <c>examples/module/tnl_attn.py</c>:
///     a_h = 2^{−8(h+1)/H} (ALiBi's geometric slopes; H not a power of two interleaves, as ALiBi does),
///     a_{h,l} = a_h · (1 − l/(L−1) + 1e−5)    (the first layer decays fastest, the last one almost not at all).
/// (b) <see cref="Tnl"/> — fla-org/flash-linear-attention <c>fla/ops/lightning_attn/chunk.py</c>:
///     log λ_{h,l} = −(8/H) · (1 − l/L) · h,   h = 0 … H−1.
/// Which of the two the ICML paper trained with is unverified; both are exposed, (a) is the default.
/// </remarks>
public static class DecaySchedules
{
    /// <summary>The +1e−5 of the layer factor (keeps the last layer's decay strictly positive).</summary>
    public const double LayerFactorEpsilon = 1e-5;

    /// <summary>
    /// Slopes a_{h,l} = 2^{−8(h+1)/H} · (1 − l/(L−1) + 1e−5) as doubles (λ_h = e^{−a}). With one layer (L = 1) the
    /// factor is 1 + 1e−5 (l/(L−1) read as 0: the official formula divides by zero there).
    /// </summary>
    /// <param name="heads">H ≥ 1.</param>
    /// <param name="layer">l, 0-based, &lt; <paramref name="layers"/>.</param>
    /// <param name="layers">L ≥ 1.</param>
    public static double[] AlibiSlopes(int heads, int layer = 0, int layers = 1)
    {
        CheckLayer(heads, layer, layers);
        double factor = 1 - (layers == 1 ? 0.0 : (double)layer / (layers - 1)) + LayerFactorEpsilon;   // 1 − l/(L−1) + 1e−5
        return Positions.AlibiSlopes(heads).Select(a => a * factor).ToArray();                            // a_h · factor
    }

    /// <summary>Slopes a_{h,l} = (8/H)(1 − l/L)·h as doubles (head 0: 0, no decay).</summary>
    public static double[] TnlSlopes(int heads, int layer = 0, int layers = 1)
    {
        CheckLayer(heads, layer, layers);
        double rate = 8.0 / heads * (1 - (double)layer / layers);                                          // (8/H)(1 − l/L)
        return Enumerable.Range(0, heads).Select(h => rate * h).ToArray();                                  // · h
    }

    /// <summary>log λ [H] of schedule (a): −a_{h,l}; see <see cref="AlibiSlopes"/>.</summary>
    public static Tensor Alibi(int heads, int layer = 0, int layers = 1, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LogDecay(AlibiSlopes(heads, layer, layers), dtype, device);

    /// <summary>log λ [H] of schedule (b): −(8/H)(1 − l/L)·h; see <see cref="TnlSlopes"/>.</summary>
    public static Tensor Tnl(int heads, int layer = 0, int layers = 1, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LogDecay(TnlSlopes(heads, layer, layers), dtype, device);

    /// <summary>Slopes of <paramref name="schedule"/> for layer l of L.</summary>
    public static double[] Slopes(DecaySchedule schedule, int heads, int layer = 0, int layers = 1) => schedule switch
    {
        DecaySchedule.Alibi => AlibiSlopes(heads, layer, layers),
        DecaySchedule.Tnl => TnlSlopes(heads, layer, layers),
        _ => throw new ArgumentOutOfRangeException(nameof(schedule), schedule, "unknown decay schedule."),
    };

    /// <summary>log λ [H] of <paramref name="schedule"/> for layer l of L.</summary>
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
