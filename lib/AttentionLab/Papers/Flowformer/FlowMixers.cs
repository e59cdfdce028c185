using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>The token mixers the notebook compares inside a <see cref="Models.TinyGpt"/> backbone (causal or encoder).</summary>
public enum FlowMixerKind
{
    /// <summary>Softmax attention (causal: TinyGpt's <see cref="Models.CausalSelfAttention"/>; encoder: <see cref="SoftmaxSelfAttention"/>).</summary>
    Softmax,
    /// <summary>Plain linear attention with φ = σ and the usual normaliser: o_i = Σ_j φq_i·φk_j v_j / Σ_j φq_i·φk_j (j ≤ i when causal).</summary>
    Linear,
    /// <summary>Flow-Attention (<see cref="FlowAttention"/>), causal or normal.</summary>
    Flow,
}

/// <summary>
/// A mixer that can show the attention it implies: for the mixer's input x [B, T, d] the matrix W [B, H, T, T] with
/// output_h = W_h V_h before the output projection (softmax probabilities, normalised σ-kernel, or Flow-Attention's
/// <see cref="FlowAttention.Materialize"/>). O(T²): for probes and plots.
/// </summary>
public interface IAttentionPattern
{
    /// <summary>W [B, H, T, T] of the mixer on its input <paramref name="x"/> [B, T, d] (zero above the diagonal when causal).</summary>
    Tensor Pattern(Tensor x);
}

/// <summary>
/// Flow-Attention as a self-attention mixer on the <see cref="AttentionMixer"/> base: q, k, v = split(x W_QKV), then
/// <see cref="FlowAttention.Attend"/>, then W_O (and dropout). The causal one streams (<see cref="FlowStreamState"/>).
/// hook_pattern carries W = <see cref="FlowAttention.Materialize"/> (O(T²), computed only while a hook listens; z is then
/// W·V, equal to the linear-time form, so edits to the pattern flow into the output); hook_attn_scores carries the σ-kernel
/// φq_i·φk_j for reading (W is built from the flows, not from an edited kernel).
/// </summary>
public sealed class FlowSelfAttention : AttentionMixer, IAttentionPattern
{
    readonly Dropout dropout;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">causal variant (decoder, streams) or normal variant (encoder, LRA).</param>
    /// <param name="dropout">dropout after the output projection (repo 0.05; the notebook's models use 0).</param>
    /// <param name="eps">ε of the flows.</param>
    public FlowSelfAttention(int dModel, int heads, bool causal = true, double dropout = 0.0, double eps = FlowAttention.DefaultEps)
        : base(nameof(FlowSelfAttention), dModel, heads)
    {
        if (!(eps > 0)) throw new ArgumentException($"eps must be positive, got {eps}.", nameof(eps));
        (Causal, Eps) = (causal, eps);
        this.dropout = nn.Dropout(dropout);
        RegisterComponents();
    }

    public bool Causal { get; }
    /// <summary>ε of the flows.</summary>
    public double Eps { get; }
    /// <summary>Form of the causal dot product.</summary>
    public LinearForm Form { get; set; } = LinearForm.Chunked;
    /// <summary>Chunk length of the chunked form.</summary>
    public int ChunkSize { get; set; } = 64;

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (!PatternObserved) return FlowAttention.Attend(q, k, v, Causal, Eps, Form, ChunkSize);    // R [B, T, H, D]
        var kernel = torch.sigmoid(q.permute(0, 2, 1, 3)).matmul(torch.sigmoid(k.permute(0, 2, 1, 3)).transpose(-2, -1));
        hook_attn_scores.call(Causal ? kernel.tril() : kernel);                                    // φq_i·φk_j (observed; W is computed below)
        var w = hook_pattern.call(FlowAttention.Materialize(q, k, Causal, Eps));                   // W_ij = A_i (φq_i·φk_j / I_i′) C_j
        return Combine(w, v);                                                                        // R = W·V
    }

    protected override Tensor Output(Tensor z, Tensor x) => dropout.call(base.Output(z, x));

    /// <summary>Five running sums and the linear state (<see cref="FlowStreamState"/>); causal only.</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => Causal
        ? new FlowStreamState(batch, Heads, KeyDim, dtype, device, Eps)
        : throw new InvalidOperationException("only causal Flow-Attention can decode token by token: the normal variant's flows sum over every key.");

    /// <summary>W_ij = A_i (φq_i·φk_j / I_i′) C_j of the projected x (<see cref="FlowAttention.Materialize"/>).</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, _) = Project(x);
        return FlowAttention.Materialize(q, k, Causal, Eps).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The "plain linear" baseline: linear attention with the same σ feature map and no flow conservation, on the shared
/// engine (normalised). Causal: o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε) (chunked form; streams); non-causal (encoder):
/// o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)·Σ_j φ(k_j) + ε) (<see cref="LinearAttention.Bidirectional"/>). Then W_o.
/// On <see cref="LinearAttentionMixer"/>: hook_attn_scores carries the kernel φq_i·φk_j (0 where hidden) and hook_pattern
/// its row-normalised weights, computed only while a hook listens (z is then W·V).
/// </summary>
public sealed class SigmoidLinearAttention : LinearAttentionMixer, IAttentionPattern
{
    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">causal (decoder, streams) or bidirectional (encoder).</param>
    public SigmoidLinearAttention(int dModel, int heads, bool causal = true)
        : base(nameof(SigmoidLinearAttention), dModel, heads, new LinearAttentionOptions { FeatureMap = FeatureMaps.Sigmoid, Normalize = true, Eps = 1e-6 },
            causal) =>
        RegisterComponents();

    /// <summary>W_ij = φq_i·φk_j / (Σ_{j′} φq_i·φk_{j′} + ε) (j, j′ ≤ i when causal), φ = σ.</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, _) = Project(x);
        var pos = torch.arange(x.shape[1], device: x.device);
        return Normalise(Scores(q, k, pos, pos, cachedKeys: false)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Multi-head softmax self-attention, bidirectional by default (the encoder baseline; TinyGpt's own attention is causal):
/// o_i = Σ_j softmax_j(q_i·k_j/√D) v_j, then W_o — the mixer base's softmax attention with or without the causal mask.
/// </summary>
public sealed class SoftmaxSelfAttention : AttentionMixer, IAttentionPattern
{
    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">mask keys after each query.</param>
    public SoftmaxSelfAttention(int dModel, int heads, bool causal = false) : base(nameof(SoftmaxSelfAttention), dModel, heads)
    {
        Causal = causal;
        RegisterComponents();
    }

    public bool Causal { get; }

    /// <summary>s_ij = q_i·k_j/√D, −∞ where j &gt; i only when causal.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys) =>
        Causal ? base.Scores(q, k, qPos, kPos, cachedKeys)
               : q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 1, 3).transpose(-2, -1)) * (1.0 / Math.Sqrt(q.shape[3]));

    /// <summary>Decoding needs the causal mask.</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => Causal
        ? base.CreateState(batch, dtype, device)
        : throw new InvalidOperationException("bidirectional attention cannot decode token by token.");

    /// <summary>The probabilities softmax_j(q_i·k_j/√D) [B, H, T, T].</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, _) = Project(x);
        var pos = torch.arange(x.shape[1], device: x.device);
        return Normalise(Scores(q, k, pos, pos, cachedKeys: false)).MoveToOuterDisposeScope();
    }
}

/// <summary>Builds the mixers of <see cref="FlowMixerKind"/> for a TinyGpt backbone.</summary>
public static class FlowMixers
{
    /// <summary>
    /// A TinyGpt mixer factory for <paramref name="kind"/>: causal mixers make a decoder; with <paramref name="causal"/> =
    /// false every kind gets its bidirectional module, so TinyGpt's blocks make an encoder. Every mixer shows its
    /// <see cref="IAttentionPattern"/>.
    /// </summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Factory(FlowMixerKind kind, int dModel, int heads, bool causal = true) => kind switch
    {
        FlowMixerKind.Softmax => _ => new SoftmaxSelfAttention(dModel, heads, causal),
        FlowMixerKind.Linear => _ => new SigmoidLinearAttention(dModel, heads, causal),
        FlowMixerKind.Flow => _ => new FlowSelfAttention(dModel, heads, causal),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown mixer kind."),
    };
}
