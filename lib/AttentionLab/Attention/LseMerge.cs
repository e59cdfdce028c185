using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Exact merge of softmax-attention outputs computed over disjoint key sets (flash-decoding, split/offloaded attention):
/// each part gives its output o_p [B, Tq, H, Dv] and log-sum-exp ℓ_p [B, H, Tq] (as <see cref="ReferenceAttention"/> returns).
/// </summary>
/// <remarks>
/// ℓ = log Σ_p exp(ℓ_p);   o = Σ_p exp(ℓ_p − ℓ) · o_p.
/// A part with no keys (ℓ_p = −∞) gets weight 0; when every part is empty, o = 0 and ℓ = −∞ (never NaN).
/// Averaging the o_p instead is wrong unless every part has the same ℓ_p.
/// </remarks>
public static class LseMerge
{
    /// <summary>Merges the parts' (output, LSE) pairs; returns (o [B, Tq, H, Dv], ℓ [B, H, Tq]).</summary>
    public static (Tensor Output, Tensor LogSumExp) Combine(IReadOnlyList<(Tensor Output, Tensor LogSumExp)> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0) throw new ArgumentException("parts must not be empty.", nameof(parts));
        for (int i = 0; i < parts.Count; i++)
        {
            var (po, l) = parts[i];
            Guard.Rank(po, 4, $"{nameof(parts)}[{i}].Output", "B, Tq, H, Dv");
            Guard.Rank(l, 3, $"{nameof(parts)}[{i}].LogSumExp", "B, H, Tq");
            if (l.shape[0] != po.shape[0] || l.shape[1] != po.shape[2] || l.shape[2] != po.shape[1])
                throw new ArgumentException($"parts[{i}]: LSE {Guard.ShapeText(l)} must be [B, H, Tq] of output {Guard.ShapeText(po)}.", nameof(parts));
            if (!po.shape.SequenceEqual(parts[0].Output.shape))
                throw new ArgumentException(
                    $"parts[{i}].Output {Guard.ShapeText(po)} differs from parts[0].Output {Guard.ShapeText(parts[0].Output)}.", nameof(parts));
            Guard.SameDtype(parts[0].Output, "parts[0].Output", po, $"parts[{i}].Output");
            Guard.SameDevice(parts[0].Output, "parts[0].Output", po, $"parts[{i}].Output");
        }
        using var scope = NewDisposeScope();
        var lses = torch.stack(parts.Select(p => p.LogSumExp).ToArray());                 // [P, B, H, Tq]
        var lse = torch.logsumexp(lses, 0);                                                // ℓ = log Σ_p exp(ℓ_p)
        var safe = torch.where(lse.isneginf(), torch.zeros_like(lse), lse);               // all parts empty: avoid −∞ − (−∞)
        var w = (lses - safe).exp();                                                       // exp(ℓ_p − ℓ)  [P, B, H, Tq]
        var outputs = torch.stack(parts.Select(p => p.Output).ToArray());                 // [P, B, Tq, H, Dv]
        var o = (outputs * w.permute(0, 1, 3, 2).unsqueeze(-1)).sum(dim: 0);                 // o = Σ_p exp(ℓ_p − ℓ) o_p
        return (o.MoveToOuterDisposeScope(), lse.MoveToOuterDisposeScope());
    }
}
