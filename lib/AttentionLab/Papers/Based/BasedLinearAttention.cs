using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;

namespace AttentionLab.Papers.Based;

/// <summary>
/// BASED's linear-attention layer (zoology <c>mixers/based.py</c>): x [B, T, d] → [B, T, d]. q and k are projected
/// <b>separately</b> to d′ = <see cref="FeatureDim"/> per head (not the head dim), v to the head dim d/H, then
/// Taylor linear attention (<see cref="BasedAttention"/>) and an output projection. Streams with a constant-size state.
/// </summary>
/// <remarks>
/// q_t = W_q x_t ∈ ℝ^{H·d′},  k_t = W_k x_t ∈ ℝ^{H·d′},  v_t = W_v x_t ∈ ℝ^{H·d/H}   (no biases, as zoology; one fused W_QKV
/// whose rows q, k, v are drawn in zoology's order, so a seed gives the same weights as three separate projections)
/// o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε) per head  (see <see cref="BasedAttention"/>),  y_t = W_o [o_{t,1}; …; o_{t,H}]
/// State per sequence: H · F · (d/H + 1) floats, F = 1 + d′ + d′(d′+1)/2 (packed) — constant in t.
/// </remarks>
public sealed class BasedLinearAttention : LinearAttentionMixer
{
    /// <param name="dModel">d.</param>
    /// <param name="featureDim">d′ of the projected q and k (BASED: 16).</param>
    /// <param name="heads">H (the 360M model: 16; zoology's MQAR sweep: 1). Must divide d.</param>
    /// <param name="packSymmetric">packed Taylor map (same kernel, smaller state).</param>
    /// <param name="form">the engine form the forward pass uses.</param>
    /// <param name="chunkSize">chunk length of the chunked form.</param>
    /// <param name="eps">ε of the denominator.</param>
    /// <param name="featureMap">null: BASED's Taylor map of d′ (packed per <paramref name="packSymmetric"/>); otherwise this map,
    /// normalised (e.g. <see cref="FeatureMaps.EluPlusOne"/>: the pure linear-attention baseline, state H·d′·(d/H + 1)).</param>
    public BasedLinearAttention(int dModel, int featureDim = 16, int heads = 16, bool packSymmetric = true,
        LinearForm form = LinearForm.Chunked, int chunkSize = 64, double eps = BasedAttention.DefaultEps, IFeatureMap? featureMap = null)
        : base(nameof(BasedLinearAttention), dModel, heads, OptionsFor(featureDim, packSymmetric, chunkSize, eps, featureMap),
               causal: true, keyDim: featureDim, valueDim: DivideHeads(dModel, heads), bias: false)
    {
        Form = form;
        RegisterComponents();
    }

    static LinearAttentionOptions OptionsFor(int featureDim, bool packSymmetric, int chunkSize, double eps, IFeatureMap? featureMap)
    {
        Guard.Positive(featureDim, nameof(featureDim));
        return featureMap is null ? BasedAttention.Options(featureDim, packSymmetric, chunkSize, eps)
            : new LinearAttentionOptions { FeatureMap = featureMap, Normalize = true, Eps = eps, ChunkSize = chunkSize };
    }

    static int DivideHeads(int dModel, int heads)
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        return dModel % heads == 0 ? dModel / heads : throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
    }

    /// <summary>d′: width of the projected q and k per head.</summary>
    public int FeatureDim => KeyDim;
    /// <summary>d/H: width of v per head.</summary>
    public int HeadDim => ValueDim;
}
