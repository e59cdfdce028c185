using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>The token mixers the notebook compares inside a <see cref="Models.TinyGpt"/> (all causal).</summary>
public enum FlowMixerKind
{
    /// <summary>Causal softmax attention (TinyGpt's default <see cref="Models.CausalSelfAttention"/>).</summary>
    Softmax,
    /// <summary>Plain causal linear attention with φ = σ and the usual normaliser: o_t = Σ_{s≤t} φq_t·φk_s v_s / Σ_{s≤t} φq_t·φk_s.</summary>
    Linear,
    /// <summary>Causal Flow-Attention (<see cref="FlowAttention"/>).</summary>
    Flow,
}

/// <summary>Self-attention adapter: x [B, T, d] → <see cref="FlowAttention"/>(x, x, x), a TinyGpt mixer; the causal one streams.</summary>
public sealed class FlowSelfAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly FlowAttention attn;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">causal variant (a TinyGpt mixer must be causal).</param>
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
}

/// <summary>
/// The "plain linear" baseline: causal linear attention with the same σ feature map and no flow conservation, on the
/// shared engine (normalised, chunked). o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε), then W_o.
/// </summary>
public sealed class SigmoidLinearAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear qkv, proj;
    readonly LinearAttentionOptions options = new() { FeatureMap = FeatureMaps.Sigmoid, Normalize = true, Eps = 1e-6 };

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    public SigmoidLinearAttention(int dModel, int heads) : base(nameof(SigmoidLinearAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        (DModel, Heads) = (dModel, heads);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }

    /// <summary>x [B, T, d] → [B, T, d], causal.</summary>
    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.call(x).view(b, t, 3, Heads, DModel / Heads).unbind(2);
        using var r = LinearAttention.Chunked(parts[0], parts[1], parts[2], options: options);
        return proj.call(r.Output.reshape(b, t, DModel)).MoveToOuterDisposeScope();
    }

    /// <summary>(S, z) per head: constant in t.</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new LinearStreamState(new LinearAttentionStream(batch, Heads, DModel / Heads, DModel / Heads, dtype, device, options: options));

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
}

/// <summary>Builds the mixers of <see cref="FlowMixerKind"/> for a TinyGpt.</summary>
public static class FlowMixers
{
    /// <summary>A TinyGpt mixer factory for <paramref name="kind"/> (null: TinyGpt's default softmax attention).</summary>
    public static Func<int, nn.Module<Tensor, Tensor>>? Factory(FlowMixerKind kind, int dModel, int heads) => kind switch
    {
        FlowMixerKind.Softmax => null,
        FlowMixerKind.Linear => _ => new SigmoidLinearAttention(dModel, heads),
        FlowMixerKind.Flow => _ => new FlowSelfAttention(dModel, heads, causal: true),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown mixer kind."),
    };
}
