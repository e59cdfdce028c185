using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// BASED's linear-attention layer (zoology <c>mixers/based.py</c>): x [B, T, d] → [B, T, d]. q and k are projected
/// <b>separately</b> to d′ = <see cref="FeatureDim"/> per head (not the head dim), v to the head dim d/H, then
/// Taylor linear attention (<see cref="BasedAttention"/>) and an output projection. Streams with a constant-size state.
/// </summary>
/// <remarks>
/// q_t = W_q x_t ∈ ℝ^{H·d′},  k_t = W_k x_t ∈ ℝ^{H·d′},  v_t = W_v x_t ∈ ℝ^{H·d/H}   (no biases, as zoology)
/// o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε) per head  (see <see cref="BasedAttention"/>),  y_t = W_o [o_{t,1}; …; o_{t,H}]
/// State per sequence: H · F · (d/H + 1) floats, F = 1 + d′ + d′(d′+1)/2 (packed) — constant in t.
/// </remarks>
public sealed class BasedLinearAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear proj_q, proj_k, proj_v, proj_o;
    readonly LinearAttentionOptions options;

    /// <param name="dModel">d.</param>
    /// <param name="featureDim">d′ of the projected q and k (BASED: 16).</param>
    /// <param name="heads">H (the 360M model: 16; zoology's MQAR sweep: 1). Must divide d.</param>
    /// <param name="packSymmetric">packed Taylor map (same kernel, smaller state).</param>
    /// <param name="form">the engine form <see cref="forward"/> uses.</param>
    /// <param name="chunkSize">chunk length of the chunked form.</param>
    /// <param name="eps">ε of the denominator.</param>
    /// <param name="featureMap">null: BASED's Taylor map of d′ (packed per <paramref name="packSymmetric"/>); otherwise this map,
    /// normalised (e.g. <see cref="FeatureMaps.EluPlusOne"/>: the pure linear-attention baseline, state H·d′·(d/H + 1)).</param>
    public BasedLinearAttention(int dModel, int featureDim = 16, int heads = 16, bool packSymmetric = true,
        LinearForm form = LinearForm.Chunked, int chunkSize = 64, double eps = BasedAttention.DefaultEps, IFeatureMap? featureMap = null)
        : base(nameof(BasedLinearAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(featureDim, nameof(featureDim));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        (DModel, FeatureDim, Heads, Form) = (dModel, featureDim, heads, form);
        options = featureMap is null ? BasedAttention.Options(featureDim, packSymmetric, chunkSize, eps)
            : new LinearAttentionOptions { FeatureMap = featureMap, Normalize = true, Eps = eps, ChunkSize = chunkSize };
        proj_q = nn.Linear(dModel, (long)featureDim * heads, hasBias: false);
        proj_k = nn.Linear(dModel, (long)featureDim * heads, hasBias: false);
        proj_v = nn.Linear(dModel, dModel, hasBias: false);
        proj_o = nn.Linear(dModel, dModel, hasBias: false);
        RegisterComponents();
    }

    public int DModel { get; }
    /// <summary>d′: width of the projected q and k per head.</summary>
    public int FeatureDim { get; }
    public int Heads { get; }
    /// <summary>d/H: width of v per head.</summary>
    public int HeadDim => DModel / Heads;
    /// <summary>The form <see cref="forward"/> uses (all give the same numbers).</summary>
    public LinearForm Form { get; set; }
    /// <summary>Feature map, normalisation, ε and chunk size of the engine.</summary>
    public LinearAttentionOptions Options => options;

    /// <summary>x [B, T, d] → [B, T, d], causal.</summary>
    public override Tensor forward(Tensor x)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x);
        using var r = LinearAttention.Run(Form, q, k, v, null, null, options);
        return proj_o.call(r.Output.reshape(x.shape[0], x.shape[1], DModel)).MoveToOuterDisposeScope();
    }

    /// <summary>q, k [B, T, H, d′] and v [B, T, H, d/H] of x [B, T, d].</summary>
    public (Tensor Q, Tensor K, Tensor V) Project(Tensor x)
    {
        CheckInput(x);
        long b = x.shape[0], t = x.shape[1];
        return (proj_q.call(x).view(b, t, Heads, FeatureDim), proj_k.call(x).view(b, t, Heads, FeatureDim),
                proj_v.call(x).view(b, t, Heads, HeadDim));
    }

    /// <summary>Bytes of the recurrent state for <paramref name="batch"/> sequences (S and z, float32): constant in t.</summary>
    public long StateBytes(long batch = 1) => LinearAttention.StateBytes(batch, Heads, FeatureDim, HeadDim, options);

    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new LinearStreamState(new LinearAttentionStream(batch, Heads, FeatureDim, HeadDim, dtype, device, options: options));

    /// <summary>One token x_t [B, d] → y_t [B, d]: S_t = S_{t−1} + φ(k_t) v_tᵀ, z_t = z_{t−1} + φ(k_t) (O(H·F·d/H) per token).</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        if (state is not LinearStreamState s) throw new ArgumentException($"state must come from BasedLinearAttention.NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(xT.unsqueeze(1));
        var o = s.Stream.Step(q.squeeze(1), k.squeeze(1), v.squeeze(1));                  // [B, H, d/H]
        s.Advance();
        return proj_o.call(o.reshape(xT.shape[0], DModel)).MoveToOuterDisposeScope();
    }

    void CheckInput(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
    }
}
