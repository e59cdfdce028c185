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
/// A gated mixer (causal) also overrides <see cref="TokenLogDecay"/>: g_t [B, T, H] from its input, and λ_h^{i−j} becomes
/// e^{Σ_{j&lt;s≤i} (log λ_h + g_s)} — the engine's per-token gate, in the forward pass, the hook path and decoding alike.
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

    /// <summary>True for a mixer whose <see cref="TokenLogDecay"/> gives a gate (its decode state then feeds g_t to every step).</summary>
    protected virtual bool HasTokenGate => false;

    /// <summary>
    /// The per-token gate g [B, T, H] (≤ 0; −∞ resets) of a gated causal mixer, from its input x [B, T, d] (one token while
    /// decoding: T = 1), or null. Set <see cref="HasTokenGate"/> with it.
    /// </summary>
    protected virtual Tensor? TokenLogDecay(Tensor x) => null;

    Tensor? observedGate;   // the forward pass's log-decays [B, T, H] while the explicit weights are built (Scores gets no x)

    /// <summary>log λ_h + g_t [B, T, H] of a gated mixer (g_t alone without a per-head decay); null when not gated.</summary>
    Tensor? Gate(Tensor x, Device device)
    {
        if (!HasTokenGate || !Causal || TokenLogDecay(x) is not { } g) return null;
        return HeadLogDecay(device) is { } ld ? g + ld.to(g.dtype).view(1, 1, -1) : g;
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var gate = Gate(x, q.device);
        if (PatternObserved)                                                               // explicit W·V
        {
            observedGate = gate;
            try { return base.Mix(q, k, v, x); }
            finally { observedGate = null; }
        }
        if (!Causal) return LinearAttention.Bidirectional(q, k, v, Options);
        using var r = LinearAttention.Run(Form, q, k, v, gate ?? HeadLogDecay(q.device), null, Options);
        return r.Output.alias();
    }

    /// <summary>κ_ij = φ(q_i)·φ(k_j) λ^{i−j} (gated: e^{Σ_{j&lt;s≤i} g_s}), 0 where hidden (causal: j &gt; i).</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys) =>
        LinearAttention.Kernel(q, k, qPos, kPos, Options, observedGate ?? HeadLogDecay(q.device), Causal).to(q.dtype);

    /// <summary>W = κ / (Σ_j κ + ε) when the options normalise, else κ.</summary>
    protected override Tensor Normalise(Tensor scores) => LinearAttention.NormaliseKernel(scores, Options);

    /// <summary>(S, z) per head: constant in t (causal only).</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device)
    {
        if (!Causal) throw new InvalidOperationException($"only causal {GetType().Name} can decode token by token.");
        using var scope = NewDisposeScope();
        var decay = HeadLogDecay(device);
        var stream = new LinearAttentionStream(batch, Heads, KeyDim, ValueDim, dtype, device, decay, Options);
        return HasTokenGate ? new GatedStreamState(this, stream) : new LinearStreamState(stream);
    }

    /// <summary>The decode state of a gated mixer: the engine's stream, stepped with this token's gate g_t from x_t.</summary>
    sealed class GatedStreamState(LinearAttentionMixer owner, LinearAttentionStream stream) : AttentionState(owner)
    {
        public override long Bytes => stream.Bytes;

        /// <summary>q, k [B, 1, H, D], v [B, 1, H, Dv], x_t [B, 1, d] → o [B, 1, H, Dv]: S_t = λ_h e^{g_t} S_{t−1} + φ(k_t) v_tᵀ.</summary>
        public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
        {
            using var scope = NewDisposeScope();
            var g = owner.TokenLogDecay(x)?.squeeze(1);                                   // g_t [B, H]; the stream adds log λ_h
            var o = stream.Step(q.squeeze(1), k.squeeze(1), v.squeeze(1), g).unsqueeze(1);
            Advance();
            return o.MoveToOuterDisposeScope();
        }

        public override void Dispose() => stream.Dispose();
    }

    /// <summary>Bytes of the recurrent state for <paramref name="batch"/> sequences (S and z, float32): constant in t.</summary>
    public long StateBytes(long batch = 1) => LinearAttention.StateBytes(batch, Heads, KeyDim, ValueDim, Options);
}
