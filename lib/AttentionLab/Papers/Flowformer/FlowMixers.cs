using AttentionLab.Attention;
using AttentionLab.Core;
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

/// <summary>Self-attention adapter: x [B, T, d] → <see cref="FlowAttention"/>(x, x, x), a TinyGpt mixer; the causal one streams.</summary>
public sealed class FlowSelfAttention : nn.Module<Tensor, Tensor>, IStreamingMixer, IAttentionPattern
{
    readonly FlowAttention attn;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">causal variant (decoder, streams) or normal variant (encoder, LRA).</param>
    /// <param name="dropout">dropout after the output projection (repo 0.05; the notebook's models use 0).</param>
    public FlowSelfAttention(int dModel, int heads, bool causal = true, double dropout = 0.0) : base(nameof(FlowSelfAttention))
    {
        attn = new FlowAttention(dModel, heads, causal, dropout: dropout);
        RegisterComponents();
    }

    /// <summary>The wrapped attention (its projections, flows and form).</summary>
    public FlowAttention Attention => attn;

    public override Tensor forward(Tensor x) => attn.call(x, x, x);

    /// <summary>Five running sums and the linear state (<see cref="FlowStreamState"/>); causal only.</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device) => attn.NewState(batch, dtype, device);

    public Tensor Step(Tensor xT, MixerState state) => state is FlowStreamState s ? attn.Step(xT, s)
        : throw new ArgumentException($"state must come from FlowSelfAttention.NewState, got {state?.GetType().Name}.", nameof(state));

    /// <summary>W_ij = A_i (φq_i·φk_j / I_i′) C_j of the projected x (<see cref="FlowAttention.Materialize"/>).</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, _) = attn.Project(x, x, x);
        return FlowAttention.Materialize(q, k, attn.Causal, attn.Eps).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The "plain linear" baseline: linear attention with the same σ feature map and no flow conservation, on the shared
/// engine (normalised). Causal: o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε) (chunked form; streams); non-causal (encoder):
/// o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)·Σ_j φ(k_j) + ε) (<see cref="LinearAttention.Bidirectional"/>). Then W_o.
/// </summary>
public sealed class SigmoidLinearAttention : nn.Module<Tensor, Tensor>, IStreamingMixer, IAttentionPattern
{
    readonly Linear qkv, proj;
    readonly LinearAttentionOptions options = new() { FeatureMap = FeatureMaps.Sigmoid, Normalize = true, Eps = 1e-6 };

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">causal (decoder, streams) or bidirectional (encoder).</param>
    public SigmoidLinearAttention(int dModel, int heads, bool causal = true) : base(nameof(SigmoidLinearAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        (DModel, Heads, Causal) = (dModel, heads, causal);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    public bool Causal { get; }

    /// <summary>x [B, T, d] → [B, T, d].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(x);
        Tensor r;
        if (Causal) { using var res = LinearAttention.Chunked(q, k, v, options: options); r = res.Output.alias(); }
        else r = LinearAttention.Bidirectional(q, k, v, options);
        return proj.call(r.reshape(x.shape[0], x.shape[1], DModel)).MoveToOuterDisposeScope();
    }

    /// <summary>W_ij = φq_i·φk_j / Σ_{j′} φq_i·φk_{j′} (j, j′ ≤ i when causal), φ = σ.</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, _) = Split(x);
        var kernel = torch.sigmoid(q.permute(0, 2, 1, 3)).matmul(torch.sigmoid(k.permute(0, 2, 1, 3)).transpose(-2, -1));   // [B, H, T, T]
        if (Causal) kernel = kernel.tril();
        return (kernel / (kernel.sum(-1, keepdim: true) + options.Eps)).MoveToOuterDisposeScope();
    }

    /// <summary>(S, z) per head: constant in t (causal only).</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device) => Causal
        ? new LinearStreamState(new LinearAttentionStream(batch, Heads, DModel / Heads, DModel / Heads, dtype, device, options: options))
        : throw new InvalidOperationException("only causal σ-linear attention can decode token by token.");

    /// <summary>One token x_t [B, d] → y_t [B, d] with the engine's stream (S_t = S_{t−1} + σ(k_t) v_tᵀ, z_t = z_{t−1} + σ(k_t)).</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        if (state is not LinearStreamState s) throw new ArgumentException($"state must come from SigmoidLinearAttention.NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        var parts = qkv.call(xT).view(xT.shape[0], 3, Heads, DModel / Heads).unbind(1);   // [B, H, d/H] each
        var o = s.Stream.Step(parts[0], parts[1], parts[2]);
        s.Advance();
        return proj.call(o.reshape(xT.shape[0], DModel)).MoveToOuterDisposeScope();
    }

    (Tensor Q, Tensor K, Tensor V) Split(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        var parts = qkv.call(x).view(x.shape[0], x.shape[1], 3, Heads, DModel / Heads).unbind(2);
        return (parts[0], parts[1], parts[2]);
    }
}

/// <summary>
/// Multi-head softmax self-attention, bidirectional by default (the encoder baseline; TinyGpt's own attention is causal):
/// o_i = Σ_j softmax_j(q_i·k_j/√D) v_j on the library's reference attention, then W_o.
/// </summary>
public sealed class SoftmaxSelfAttention : nn.Module<Tensor, Tensor>, IAttentionPattern
{
    readonly Linear qkv, proj;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">mask keys after each query.</param>
    public SoftmaxSelfAttention(int dModel, int heads, bool causal = false) : base(nameof(SoftmaxSelfAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        (DModel, Heads, Causal) = (dModel, heads, causal);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    public bool Causal { get; }

    /// <summary>x [B, T, d] → [B, T, d].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(x);
        using var r = ReferenceAttention.Softmax(q, k, v, Causal);
        return proj.call(r.Output.reshape(x.shape[0], x.shape[1], DModel)).MoveToOuterDisposeScope();
    }

    /// <summary>The probabilities softmax_j(q_i·k_j/√D) [B, H, T, T].</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(x);
        using var r = ReferenceAttention.Softmax(q, k, v, Causal);
        return r.Probabilities.alias().MoveToOuterDisposeScope();
    }

    (Tensor Q, Tensor K, Tensor V) Split(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        var parts = qkv.call(x).view(x.shape[0], x.shape[1], 3, Heads, DModel / Heads).unbind(2);
        return (parts[0], parts[1], parts[2]);
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
