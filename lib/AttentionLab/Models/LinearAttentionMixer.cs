using AttentionLab.Attention;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// The base of the linear-attention mixers (BASED's Taylor layer, σ-linear, TNL/Lightning): an <see cref="AttentionMixer"/>
/// whose Mix runs the shared engine (<see cref="LinearAttention"/>: causal form or bidirectional) with the mixer's
/// <see cref="LinearAttentionOptions"/> and optional per-head decay, and streams with the engine's state (S, z).
/// </summary>
/// <remarks>
/// o_i = Σ_{j≤i} λ_h^{i−j} φ(q_i)·φ(k_j) v_j  (/ Σ_{j≤i} λ_h^{i−j} φ(q_i)·φ(k_j) + ε when normalised)
/// While a hook listens, the same numbers come from the explicit weights: hook_attn_scores = κ_ij (<see cref="LinearAttention.Kernel"/>),
/// hook_pattern = W (κ row-normalised when the options normalise), z = W·V — so pattern edits reach the output.
/// </remarks>
public abstract class LinearAttentionMixer : AttentionMixer
{
    /// <param name="name">The module's name.</param>
    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="options">Feature map, normalisation, ε, q scale, chunk size of the engine.</param>
    /// <param name="causal">Causal (decoder, streams) or bidirectional (encoder).</param>
    /// <param name="keyDim">Dk of q and k per head (BASED: d′), default d / H.</param>
    /// <param name="valueDim">Dv per head, default d / H.</param>
    /// <param name="bias">Bias on W_QKV and W_O.</param>
    protected LinearAttentionMixer(string name, int dModel, int heads, LinearAttentionOptions options, bool causal = true,
        int? keyDim = null, int? valueDim = null, bool bias = true) : base(name, dModel, heads, keyDim, valueDim, bias: bias)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Causal = causal;
    }

    /// <summary>Feature map, normalisation, ε, q scale and chunk size of the engine.</summary>
    public LinearAttentionOptions Options { get; }
    public bool Causal { get; }
    /// <summary>The causal form the forward pass uses (all give the same numbers).</summary>
    public LinearForm Form { get; set; } = LinearForm.Chunked;

    /// <summary>log λ [H] of a decaying mixer (TNL), or null.</summary>
    protected virtual Tensor? HeadLogDecay(Device device) => null;

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (PatternObserved) return base.Mix(q, k, v, x);                                  // explicit W·V
        if (!Causal) return LinearAttention.Bidirectional(q, k, v, Options);
        using var r = LinearAttention.Run(Form, q, k, v, HeadLogDecay(q.device), null, Options);
        return r.Output.alias();
    }

    /// <summary>κ_ij = φ(q_i)·φ(k_j) λ^{i−j}, 0 where hidden (causal: j &gt; i).</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys) =>
        LinearAttention.Kernel(q, k, qPos, kPos, Options, HeadLogDecay(q.device), Causal).to(q.dtype);

    /// <summary>W = κ / (Σ_j κ + ε) when the options normalise, else κ.</summary>
    protected override Tensor Normalise(Tensor scores) => LinearAttention.NormaliseKernel(scores, Options);

    /// <summary>(S, z) per head: constant in t (causal only).</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device)
    {
        if (!Causal) throw new InvalidOperationException($"only causal {GetType().Name} can decode token by token.");
        using var scope = NewDisposeScope();
        var decay = HeadLogDecay(device);
        return new LinearStreamState(new LinearAttentionStream(batch, Heads, KeyDim, ValueDim, dtype, device, decay, Options));
    }

    /// <summary>Bytes of the recurrent state for <paramref name="batch"/> sequences (S and z, float32): constant in t.</summary>
    public long StateBytes(long batch = 1) => LinearAttention.StateBytes(batch, Heads, KeyDim, ValueDim, Options);
}
