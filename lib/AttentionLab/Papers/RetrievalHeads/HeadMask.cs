using AttentionLab.Interp;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>How a masked head is removed.</summary>
public enum MaskKind
{
    /// <summary>The paper's mask: the head's pre-softmax logits set to 0 → uniform attention over the causal prefix (mean of v).</summary>
    Uniform,
    /// <summary>The head's output z set to 0 (not the paper's; offered beside it).</summary>
    Zero,
    /// <summary>The head's output z set to its mean over reference prompts (not the paper's).</summary>
    Mean,
}

/// <summary>
/// Head masks for a TinyGpt, as hook lists for <c>model.Hooks(...)</c>. <see cref="MaskKind.Uniform"/> is the official code's
/// <c>block_list</c> mask (faiss_attn/source/modeling_llama.py): s^{l,h}_{ij} ← 0 for the visible j ≤ i, so
/// A^{l,h}_{ij} = 1/(i+1) and z_i = mean_{j≤i} v_j — the head still writes, it only stops choosing.
/// </summary>
public static class HeadMask
{
    /// <summary>
    /// The paper's form: a hook on <c>blocks.{l}.attn.hook_attn_scores</c> that sets head h's finite (visible) logits to 0,
    /// leaving −∞ (hidden) ones, so the softmax that follows is uniform over the causal prefix.
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) ZeroLogits(IHookedModel model, int layer, int head)
    {
        ArgumentNullException.ThrowIfNull(model);
        var name = Ablation.HeadHookName(model, ref layer, head, "attn_scores");
        return (name, (s, _) =>
        {
            var patched = s.clone();
            var h = patched.select(1, head);
            h.copy_(torch.where(h.isfinite(), torch.zeros_like(h), h));         // s_ij ← 0 where j ≤ i, −∞ stays
            return patched;
        });
    }

    /// <summary>
    /// Hooks masking <paramref name="heads"/> with <paramref name="kind"/>: Uniform through the library's
    /// <see cref="Interventions.UniformAttention"/> (A_ij = 1/(i+1), the fast twin of <see cref="ZeroLogits"/>), Zero and
    /// Mean through <see cref="Ablation"/> (Mean needs <paramref name="meanZ"/> [L, H, Dh] from <see cref="Ablation.MeanZ"/>).
    /// No heads gives no hooks.
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] Hooks(IHookedModel model, IEnumerable<(int Layer, int Head)> heads,
        MaskKind kind = MaskKind.Uniform, Tensor? meanZ = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(heads);
        if (kind == MaskKind.Mean && meanZ is null) throw new ArgumentException("mean masking needs meanZ [L, H, Dh].", nameof(meanZ));
        return heads.Select(x => kind switch
        {
            MaskKind.Uniform => Interventions.UniformAttention(model, x.Layer, x.Head),
            MaskKind.Zero => Ablation.ZeroHead(model, x.Layer, x.Head),
            _ => Ablation.MeanHead(model, x.Layer, x.Head, meanZ![x.Layer]),
        }).ToArray();
    }
}
