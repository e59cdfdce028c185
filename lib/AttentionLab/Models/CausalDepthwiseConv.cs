using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// A causal depthwise (per-channel) 1-D convolution over time — the short convolution of BASED's BaseConv, Mamba, GLA and
/// Titans (after the q, k, v projections). u [B, T, C] → [B, T, C]. Streams with the last k − 1 inputs.
/// </summary>
/// <remarks>
/// y_t = b + Σ_{j=0}^{k−1} w_j ⊙ u_{t−(k−1)+j}   (u_{&lt;0} = 0; w_j, b ∈ ℝ^C, one filter per channel)
/// Initialised like PyTorch's Conv1d (fan_in = k): w, b ~ U(−1/√k, 1/√k), weight first, then bias.
/// </remarks>
public sealed class CausalDepthwiseConv : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Parameter weight;     // w [C, 1, k] (conv1d depthwise layout)
    readonly Parameter? bias;      // b [C] or none

    /// <param name="channels">C.</param>
    /// <param name="kernel">k (BASED/zoology: 3; Mamba, GLA: 4).</param>
    /// <param name="bias">Add a per-channel bias b.</param>
    public CausalDepthwiseConv(int channels, int kernel = 3, bool bias = true) : base(nameof(CausalDepthwiseConv))
    {
        Guard.Positive(channels, nameof(channels));
        Guard.Positive(kernel, nameof(kernel));
        (Channels, Kernel) = (channels, kernel);
        double bound = 1.0 / Math.Sqrt(kernel);                                         // PyTorch's Conv1d init for fan_in = k
        weight = nn.Parameter((torch.rand(channels, 1, kernel) * 2 - 1) * bound);
        this.bias = bias ? nn.Parameter((torch.rand(channels) * 2 - 1) * bound) : null;
        RegisterComponents();
    }

    /// <summary>C.</summary>
    public int Channels { get; }
    /// <summary>k.</summary>
    public int Kernel { get; }
    /// <summary>w [C, 1, k]: w[c, 0, j] multiplies u_{t−(k−1)+j} of channel c.</summary>
    public Parameter Weight => weight;
    /// <summary>b [C], or null without bias.</summary>
    public Parameter? Bias => bias;

    public override Tensor forward(Tensor u)
    {
        Guard.Rank(u, 3, nameof(u), "B, T, C");
        Guard.Dim(u, 2, Channels, nameof(u), "width");
        using var scope = NewDisposeScope();
        var padded = nn.functional.pad(u.transpose(1, 2), new long[] { Kernel - 1, 0 });   // u_{<0} = 0 (left pad)
        var y = nn.functional.conv1d(padded, weight, bias, groups: Channels);               // [B, C, T]
        return y.transpose(1, 2).MoveToOuterDisposeScope();
    }

    /// <summary>Bytes of the streaming state for <paramref name="batch"/> sequences: (k − 1)·C float32 values each.</summary>
    public long StateBytes(long batch = 1) => batch * (Kernel - 1L) * Channels * sizeof(float);

    /// <summary>The last k − 1 inputs, zeros before the first token: a <see cref="ConvState"/> [B, k − 1, C].</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new ConvState(torch.zeros(new[] { batch, (long)Kernel - 1, Channels }, dtype: dtype, device: device));

    /// <summary>One token u_t [B, C] → y_t [B, C], with the last k − 1 inputs in <paramref name="state"/> (stored detached).</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, C");
        Guard.Dim(xT, 1, Channels, nameof(xT), "width");
        if (state is not ConvState s)
            throw new ArgumentException($"state must come from {nameof(CausalDepthwiseConv)}.NewState, got {state?.GetType().Name ?? "null"}.", nameof(state));
        using var scope = NewDisposeScope();
        var window = torch.cat(new[] { s.Past, xT.unsqueeze(1) }, 1);                    // u_{t−k+1} … u_t  [B, k, C]
        var y = (window * weight.squeeze(1).t().unsqueeze(0)).sum(1);                     // Σ_j w_j ⊙ u_{t−(k−1)+j}
        if (bias is not null) y = y + bias;                                                // + b
        s.Replace(window.narrow(1, 1, Kernel - 1));
        s.Advance();
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>The last k − 1 inputs of a <see cref="CausalDepthwiseConv"/> [B, k − 1, C] (zeros before the first token).</summary>
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
