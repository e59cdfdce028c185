using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>Scores s [B, H, Tq, Tk] (−∞ where hidden) → attention weights A of the same shape. A module: it may learn.</summary>
public abstract class AttentionNormaliser(string name) : nn.Module<Tensor, Tensor>(name)
{
    /// <summary>The normaliser of a TinyGpt attention kind (Softmax, Softmax1, SinkLogit; GatedG1 and Register use softmax).</summary>
    public static AttentionNormaliser For(AttentionKind kind, int heads) => kind switch
    {
        AttentionKind.Softmax1 => new Softmax1Normaliser(),
        AttentionKind.SinkLogit => new SinkLogitNormaliser(heads),
        AttentionKind.Softmax or AttentionKind.GatedG1 or AttentionKind.Register => new SoftmaxNormaliser(),
        _ => throw new ArgumentException($"kind {(int)kind} is not a known AttentionKind.", nameof(kind)),
    };
}

/// <summary>A_ij = softmax_j(s_ij); a fully hidden row gives zeros, never NaN.</summary>
public sealed class SoftmaxNormaliser() : AttentionNormaliser(nameof(SoftmaxNormaliser))
{
    public override Tensor forward(Tensor scores) => ReferenceAttention.Normalize(scores).Probabilities;
}

/// <summary>Softmax-off-by-one: A_ij = e^{s_ij} / (1 + Σ_k e^{s_ik}) — a head may attend to nothing.</summary>
public sealed class Softmax1Normaliser() : AttentionNormaliser(nameof(Softmax1Normaliser))
{
    public override Tensor forward(Tensor scores) =>
        AttentionVariants.NormalizeWithSink(scores, torch.zeros(1, dtype: scores.dtype, device: scores.device)).Probabilities;
}

/// <summary>A learnable sink logit per head (gpt-oss): A_ij = e^{s_ij} / (e^{b_h} + Σ_k e^{s_ik}), b_h starting at 0.</summary>
public sealed class SinkLogitNormaliser : AttentionNormaliser
{
    readonly Parameter sink_logits;

    public SinkLogitNormaliser(int heads) : base(nameof(SinkLogitNormaliser))
    {
        Guard.Positive(heads, nameof(heads));
        sink_logits = nn.Parameter(torch.zeros(heads));
        RegisterComponents();
    }

    /// <summary>b_h [H].</summary>
    public Parameter SinkLogits => sink_logits;

    public override Tensor forward(Tensor scores) => AttentionVariants.NormalizeWithSink(scores, sink_logits.view(1, -1, 1, 1)).Probabilities;
}
