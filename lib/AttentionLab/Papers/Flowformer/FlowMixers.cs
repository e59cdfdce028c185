using AttentionLab.Attention;
using AttentionLab.Core;
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

/// <summary>Self-attention adapter: x [B, T, d] → <see cref="FlowAttention"/>(x, x, x), a TinyGpt mixer.</summary>
public sealed class FlowSelfAttention : nn.Module<Tensor, Tensor>
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
}

/// <summary>
/// The "plain linear" baseline: causal linear attention with the same σ feature map and no flow conservation, on the
/// shared engine (normalised, chunked). o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε), then W_o.
/// </summary>
public sealed class SigmoidLinearAttention : nn.Module<Tensor, Tensor>
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
