namespace AttentionLab.Attention;

/// <summary>
/// How a <see cref="Models.TinyGpt"/> attention layer normalises and gates (P47's variants behind one option; the
/// operators live in <see cref="AttentionVariants"/>).
/// </summary>
public enum AttentionKind
{
    /// <summary>A_ij = softmax_j(s_ij).</summary>
    Softmax,
    /// <summary>Softmax-off-by-one: A_ij = e^{s_ij} / (1 + Σ_k e^{s_ik}).</summary>
    Softmax1,
    /// <summary>A learnable sink logit per head (gpt-oss): A_ij = e^{s_ij} / (e^{b_h} + Σ_k e^{s_ik}), b_h starting at 0.</summary>
    SinkLogit,
    /// <summary>Gated attention at G1 (Qiu et al. 2025): z′ = z ⊙ σ(x̃ W_θ + b_θ), elementwise, before W_O.</summary>
    GatedG1,
    /// <summary>Softmax attention plus a learnable register vector the model prepends at position 0 (ViT registers).</summary>
    Register,
}
