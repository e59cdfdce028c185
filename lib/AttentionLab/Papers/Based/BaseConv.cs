using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// BASED's gated short convolution (zoology <c>mixers/base_conv.py</c>): y = conv_k(u) ⊙ Linear(u) + u, with the shared
/// causal depthwise convolution <see cref="CausalDepthwiseConv"/> of kernel k (3). u [B, T, d] → [B, T, d]. It gives the
/// model the local token shift that associative recall needs (look at the token before). Streams with the last k − 1 inputs.
/// </summary>
/// <remarks>
/// conv_k(u)_t = b + Σ_{j=0}^{k−1} w_j ⊙ u_{t−(k−1)+j}   (u_{&lt;0} = 0; per channel)
/// y_t = conv_k(u)_t ⊙ (W u_t + c) + u_t   (the + u is zoology's, on top of the block's own residual)
/// </remarks>
public sealed class BaseConv : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly CausalDepthwiseConv conv;   // w [d, 1, k], b [d]: made first, so the initial draws are zoology's order
    readonly Linear projection;

    /// <param name="dModel">d.</param>
    /// <param name="kernel">k (zoology's MQAR sweep and the 360M config: 3).</param>
    public BaseConv(int dModel, int kernel = 3) : base(nameof(BaseConv))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(kernel, nameof(kernel));
        (DModel, Kernel) = (dModel, kernel);
        conv = new CausalDepthwiseConv(dModel, kernel);
        projection = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Kernel { get; }
    /// <summary>The causal depthwise convolution conv_k.</summary>
    public CausalDepthwiseConv Conv => conv;

    /// <summary>The causal depthwise convolution alone: u [B, T, d] → [B, T, d].</summary>
    public Tensor Convolve(Tensor u) => conv.call(u);

    public override Tensor forward(Tensor u)
    {
        Guard.Rank(u, 3, nameof(u), "B, T, d");
        Guard.Dim(u, 2, DModel, nameof(u), "width");
        using var scope = NewDisposeScope();
        return (conv.call(u) * projection.call(u) + u).MoveToOuterDisposeScope();       // conv(u) ⊙ Lin(u) + u
    }

    /// <summary>Bytes of the streaming state for <paramref name="batch"/> sequences: (k − 1)·d float32 values each.</summary>
    public long StateBytes(long batch = 1) => conv.StateBytes(batch);

    /// <summary>The convolution's state: the last k − 1 inputs (<see cref="ConvState"/>).</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device) => conv.NewState(batch, dtype, device);

    /// <summary>One token u_t [B, d] → y_t [B, d], with the last k − 1 inputs in the state.</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        using var scope = NewDisposeScope();
        var c = conv.Step(xT, state);                                                    // conv_k(u)_t, the state advanced
        return (c * projection.call(xT) + xT).MoveToOuterDisposeScope();
    }
}
