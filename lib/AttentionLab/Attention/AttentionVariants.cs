using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Attention-sink mitigations (P47 §2) as drop-in replacements for <see cref="ReferenceAttention.Softmax"/>: same
/// layout [B, T, H, D], masks, scale, grouped-query heads and <see cref="AttentionResult"/> — plus the G1 output gate.
/// </summary>
/// <remarks>
/// Both normalisers are "softmax with a virtual key of logit b and value 0":
///   A_ij = e^{s_ij} / (e^{b} + Σ_k e^{s_ik}),   computed as e^{s_ij − m} / (e^{b − m} + Σ_k e^{s_ik − m}),  m = max(b, max_k s_ik).
/// Softmax₁ (off-by-one) is b = 0; the learnable sink logit is a per-head b_h. Rows sum to less than 1 (the rest is
/// "attend nowhere"). <see cref="AttentionResult.LogSumExp"/> holds the full normaliser log(e^{b} + Σ_k e^{s_ik}),
/// which is −∞ only when b = −∞ and every key is masked (then p = 0, o = 0, never NaN). A NaN score stays NaN (the empty
/// row is z = 0 exactly, which a NaN never equals).
/// </remarks>
public static class AttentionVariants
{
    /// <summary>
    /// Softmax-off-by-one: A_ij = e^{s_ij} / (1 + Σ_k e^{s_ik}), stably e^{s−m} / (e^{−m} + Σ e^{s−m}), m = max(0, max_k s).
    /// Arguments as <see cref="ReferenceAttention.Softmax"/>.
    /// </summary>
    public static AttentionResult Softmax1(Tensor q, Tensor k, Tensor v, bool causal = false, double? scale = null, Tensor? mask = null)
    {
        using var scope = NewDisposeScope();
        var (scores, vh) = ReferenceAttention.MaskedScores(q, k, v, causal, scale, mask);
        var b = torch.zeros(1, dtype: scores.dtype, device: scores.device);         // b = 0
        return WithVirtualKey(scores, vh, b).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Learnable sink logit per query head (gpt-oss style): A_ij = e^{s_ij} / (e^{b_h} + Σ_k e^{s_ik}).
    /// b_h = −∞ is plain softmax; b_h = 0 is softmax₁.
    /// </summary>
    /// <param name="q">[B, Tq, Hq, D]</param>
    /// <param name="k">[B, Tk, Hkv, D]</param>
    /// <param name="v">[B, Tk, Hkv, Dv]</param>
    /// <param name="causal">mask keys after each query (end-aligned).</param>
    /// <param name="scale">score scale; default 1/√D.</param>
    /// <param name="mask">optional boolean keep-mask or additive mask, broadcastable to [B, Hq, Tq, Tk].</param>
    /// <param name="sinkLogits">[Hq] logits b_h, same dtype and device as q; −∞ allowed, +∞ and NaN are not.</param>
    public static AttentionResult SinkLogit(Tensor q, Tensor k, Tensor v, Tensor sinkLogits, bool causal = false, double? scale = null, Tensor? mask = null)
    {
        Guard.Rank(sinkLogits, 1, nameof(sinkLogits), "Hq");
        Guard.Rank(q, 4, nameof(q), "B, Tq, Hq, D");
        Guard.Dim(sinkLogits, 0, q.shape[2], nameof(sinkLogits), "length (one logit per query head)");
        Guard.SameDtype(q, nameof(q), sinkLogits, nameof(sinkLogits));
        Guard.SameDevice(q, nameof(q), sinkLogits, nameof(sinkLogits));
        using var scope = NewDisposeScope();
        if (Guard.ShouldReadValues(sinkLogits) && (sinkLogits.isnan() | sinkLogits.isposinf()).any().item<bool>())
            throw new ArgumentException("sinkLogits must not contain NaN or +∞.", nameof(sinkLogits));
        var (scores, vh) = ReferenceAttention.MaskedScores(q, k, v, causal, scale, mask);
        var b = sinkLogits.view(1, -1, 1, 1);                                         // b_h per query head
        return WithVirtualKey(scores, vh, b).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Gated attention, G1 position (Qiu et al. 2025): Y′ = Y ⊙ σ(g), applied to the per-head outputs after attention
    /// and before W_O. The caller computes the gate logits g = X̃ W_θ (+ bias) from the normalised block input X̃.
    /// </summary>
    /// <param name="headOutputs">Y [B, T, H, Dv] (e.g. <see cref="AttentionResult.Output"/>).</param>
    /// <param name="gateLogits">g: [B, T, H, Dv] (elementwise gate) or [B, T, H] (one gate per head).</param>
    public static Tensor GatedG1(Tensor headOutputs, Tensor gateLogits)
    {
        Guard.Rank(headOutputs, 4, nameof(headOutputs), "B, T, H, Dv");
        Guard.NotNull(gateLogits, nameof(gateLogits));
        Guard.SameDtype(headOutputs, nameof(headOutputs), gateLogits, nameof(gateLogits));
        Guard.SameDevice(headOutputs, nameof(headOutputs), gateLogits, nameof(gateLogits));
        bool elementwise = gateLogits.dim() == 4 && gateLogits.shape.SequenceEqual(headOutputs.shape);
        bool perHead = gateLogits.dim() == 3 && gateLogits.shape.SequenceEqual(headOutputs.shape[..3]);
        if (!elementwise && !perHead)
            throw new ArgumentException(
                $"gateLogits {Guard.ShapeText(gateLogits)} must be [B, T, H, Dv] or [B, T, H] for headOutputs {Guard.ShapeText(headOutputs)}.",
                nameof(gateLogits));
        using var scope = NewDisposeScope();
        var g = perHead ? gateLogits.unsqueeze(-1) : gateLogits;
        return (headOutputs * torch.sigmoid(g)).MoveToOuterDisposeScope();           // Y′ = Y ⊙ σ(g)
    }


    /// <summary>
    /// The sink-logit normaliser on ready scores s [B, H, Tq, Tk] (−∞ = masked) with logits b broadcastable to
    /// [B, H, Tq, 1] (e.g. [1, H, 1, 1]): A = e^{s − m} / (e^{b − m} + Σ_k e^{s_k − m}), m = max(b, max_k s), and the full
    /// log-normaliser log(e^{b} + Σ_k e^{s_k}) [B, H, Tq]. b = 0 is softmax₁; b = −∞ is softmax.
    /// </summary>
    public static (Tensor Probabilities, Tensor LogSumExp) NormalizeWithSink(Tensor scores, Tensor b)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, Tq, Tk");
        Guard.SameDtype(scores, nameof(scores), b, nameof(b));
        using var scope = NewDisposeScope();
        var rowMax = scores.amax(new long[] { -1 }, keepdim: true);                   // max_k s_ik  [B, H, Tq, 1]
        var m = torch.maximum(rowMax, b.expand_as(rowMax));                          // m = max(b, max_k s_ik)
        m = torch.where(m.isneginf(), torch.zeros_like(m), m);                       // b = −∞ and all masked: any finite m
        var e = torch.exp(scores - m);                                               // e^{s − m}
        var z = torch.exp(b - m) + e.sum(-1, keepdim: true);                         // e^{b − m} + Σ_k e^{s_k − m}
        var empty = z.eq(0);                                                         // z = 0 only when b = −∞ and all masked (NaN is not)
        var probs = e / z.masked_fill(empty, 1.0);                                   // A = e^{s − m} / z; an empty row: e = 0, so A = 0
        var lse = (m + torch.log(z)).squeeze(-1);                                    // log(e^{b} + Σ_k e^{s_k})
        return (probs.MoveToOuterDisposeScope(), lse.MoveToOuterDisposeScope());
    }

    /// <summary>Softmax over [s, b] with the virtual key's column dropped and a zero value for it.</summary>
    static AttentionResult WithVirtualKey(Tensor scores, Tensor vh, Tensor b)
    {
        var (probs, lse) = NormalizeWithSink(scores, b);
        var output = ReferenceAttention.WeightedValues(probs, vh).permute(0, 2, 1, 3).contiguous();   // o_i = Σ_j A_ij v_j
        return new AttentionResult(output, probs, lse);
    }
}
