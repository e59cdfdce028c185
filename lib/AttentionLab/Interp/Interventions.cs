using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// Hooks that change what a head attends to or add to an activation, for <see cref="HookedModel.RunWithHooks"/> and
/// <c>HookedModel.Hooks</c>: a pattern override
/// at <c>blocks.{L}.attn.hook_pattern</c> [B, H, Tq, Tk] (the mixer multiplies v by what the hook returns) and an injection
/// at any [B, T, d] hook. Head ablations of z are in <see cref="Ablation"/>.
/// </summary>
public static class Interventions
{
    /// <summary>Head <paramref name="head"/>'s pattern [B, Tq, Tk] replaced by <paramref name="replace"/>(pattern) in block
    /// <paramref name="layer"/> (negative: from the end).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) OverridePattern(IHookedModel model, int layer, int head, Func<Tensor, Tensor> replace)
    {
        ArgumentNullException.ThrowIfNull(replace);
        var name = PatternName(model, layer, head);
        return (name, (pattern, _) =>
        {
            var patched = pattern.clone();
            var value = replace(pattern.select(1, head));
            if (!value.shape.SequenceEqual(patched.select(1, head).shape))
                throw new ArgumentException($"the override returned {Guard.ShapeText(value)} for a head pattern of {Guard.ShapeText(patched.select(1, head))}.",
                    nameof(replace));
            patched.select(1, head).copy_(value);
            return patched;
        });
    }

    /// <summary>
    /// Uniform attention for one head: query i (of Tq, the last Tq of Tk positions) weighs each key j ≤ i equally —
    /// the "uniform" head mask of the interpretability papers, for causal mixers (a windowed mixer's own visible set
    /// needs <see cref="OverridePattern"/>).
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) UniformAttention(IHookedModel model, int layer, int head) =>
        OverridePattern(model, layer, head, p =>
        {
            long tq = p.size(1), tk = p.size(2);
            var visible = torch.ones(tq, tk, dtype: p.dtype, device: p.device).tril(tk - tq);   // j ≤ i + (Tk − Tq)
            return (visible / visible.sum(-1, keepdim: true)).expand_as(p).contiguous();
        });

    /// <summary>
    /// Adds <paramref name="scale"/> · <paramref name="vector"/> [d] to a [B, T, d] activation (<paramref name="hookName"/>,
    /// full or short with <paramref name="layer"/>) at <paramref name="position"/> (negative = from the end) in every sequence.
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) Inject(IHookedModel model, string hookName, int? layer, int position, Tensor vector,
        double scale = 1)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vector);
        var name = ActName.Get(hookName, layer);
        if (!model.HookPoints.ContainsKey(name)) throw new ArgumentException($"the model has no hook point '{name}'.", nameof(hookName));
        Guard.Rank(vector, 1, nameof(vector), "d");
        if (!double.IsFinite(scale)) throw new ArgumentException($"scale must be finite, got {scale}.", nameof(scale));
        return (name, (x, _) =>
        {
            if (x.dim() != 3 || x.size(2) != vector.size(0))
                throw new ArgumentException($"{name} holds {Guard.ShapeText(x)}, not [B, T, {vector.size(0)}].", nameof(vector));
            long p = position < 0 ? x.size(1) + position : position;
            if (p < 0 || p >= x.size(1))
                throw new ArgumentOutOfRangeException(nameof(position), position, $"position must be in −{x.size(1)} … {x.size(1) - 1}.");
            var patched = x.clone();
            patched.select(1, p).add_(vector.to(x.dtype).to(x.device) * scale);
            return patched;
        });
    }

    static string PatternName(IHookedModel model, int layer, int head)
    {
        var name = Ablation.HeadHookName(model, ref layer, head, "pattern");
        if (!model.HookPoints.ContainsKey(name)) throw new ArgumentException($"the model has no hook point '{name}'.", nameof(layer));
        return name;
    }
}
