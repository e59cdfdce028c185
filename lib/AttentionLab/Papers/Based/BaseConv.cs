using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// BASED's gated short convolution (zoology <c>mixers/base_conv.py</c>): y = conv_k(u) ⊙ Linear(u) + u, with a causal
/// depthwise convolution of kernel k (3). u [B, T, d] → [B, T, d]. It gives the model the local token shift that
/// associative recall needs (look at the token before). Streams with the last k − 1 inputs.
/// </summary>
/// <remarks>
/// conv_k(u)_t = b + Σ_{j=0}^{k−1} w_j ⊙ u_{t−(k−1)+j}   (u_{&lt;0} = 0; per channel)
/// y_t = conv_k(u)_t ⊙ (W u_t + c) + u_t   (the + u is zoology's, on top of the block's own residual)
/// </remarks>
public sealed class BaseConv : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Parameter weight, bias;   // w [d, 1, k] (conv1d depthwise layout), b [d]
    readonly Linear projection;

    /// <param name="dModel">d.</param>
    /// <param name="kernel">k (zoology's MQAR sweep and the 360M config: 3).</param>
    public BaseConv(int dModel, int kernel = 3) : base(nameof(BaseConv))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(kernel, nameof(kernel));
        (DModel, Kernel) = (dModel, kernel);
        double bound = 1.0 / Math.Sqrt(kernel);                                         // PyTorch's Conv1d init for fan_in = k
        weight = nn.Parameter((torch.rand(dModel, 1, kernel) * 2 - 1) * bound);
        bias = nn.Parameter((torch.rand(dModel) * 2 - 1) * bound);
        projection = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Kernel { get; }

    /// <summary>The causal depthwise convolution alone: u [B, T, d] → [B, T, d].</summary>
    public Tensor Convolve(Tensor u)
    {
        CheckInput(u);
        using var scope = NewDisposeScope();
        var padded = nn.functional.pad(u.transpose(1, 2), new long[] { Kernel - 1, 0 });   // u_{<0} = 0 (left pad)
        var y = nn.functional.conv1d(padded, weight, bias, groups: DModel);                 // [B, d, T]
        return y.transpose(1, 2).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor u)
    {
        CheckInput(u);
        using var scope = NewDisposeScope();
        return (Convolve(u) * projection.call(u) + u).MoveToOuterDisposeScope();          // conv(u) ⊙ Lin(u) + u
    }

    /// <summary>Bytes of the streaming state for <paramref name="batch"/> sequences: (k − 1)·d float32 values each.</summary>
    public long StateBytes(long batch = 1) => batch * (Kernel - 1L) * DModel * sizeof(float);

    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new ConvState(torch.zeros(new[] { batch, (long)Kernel - 1, DModel }, dtype: dtype, device: device));

    /// <summary>One token u_t [B, d] → y_t [B, d], with the last k − 1 inputs in the state.</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        if (state is not ConvState s) throw new ArgumentException($"state must come from BaseConv.NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        var window = torch.cat(new[] { s.Past, xT.detach().unsqueeze(1) }, 1);           // u_{t−k+1} … u_t  [B, k, d]
        var conv = (window * weight.squeeze(1).t().unsqueeze(0)).sum(1) + bias;          // b + Σ_j w_j ⊙ u_{t−(k−1)+j}
        s.Replace(window.narrow(1, 1, Kernel - 1));
        s.Advance();
        return (conv * projection.call(xT) + xT).MoveToOuterDisposeScope();
    }

    void CheckInput(Tensor u)
    {
        Guard.Rank(u, 3, nameof(u), "B, T, d");
        Guard.Dim(u, 2, DModel, nameof(u), "width");
    }
}

/// <summary>The last k − 1 inputs of a <see cref="BaseConv"/> [B, k − 1, d] (zeros before the first token).</summary>
public sealed class ConvState : MixerState
{
    public ConvState(Tensor past) => Past = past.DetachFromDisposeScope();
    public Tensor Past { get; private set; }
    public override long Bytes => Past.NumberOfElements * Past.ElementSize;

    /// <summary>Keeps a detached copy of <paramref name="past"/>.</summary>
    public void Replace(Tensor past)
    {
        var next = past.detach().contiguous().clone().DetachFromDisposeScope();
        Past.Dispose();
        Past = next;
    }

    public override void Dispose() => Past.Dispose();
}
