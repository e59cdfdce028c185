using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>How a head's output is removed.</summary>
public enum AblationKind
{
    /// <summary>z_h ← 0.</summary>
    Zero,
    /// <summary>z_h ← its mean over a reference batch and all positions (a constant [Dh] per head).</summary>
    Mean,
}

/// <summary>Head ablation at <c>blocks.{L}.attn.hook_z</c> [B, T, H, Dh] (before W_O, so only head h's contribution changes).</summary>
public static class Ablation
{
    /// <summary>A hook setting z[:, :, head] = 0 in <paramref name="layer"/> (negative = from the end).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) ZeroHead(IHookedModel model, int layer, int head)
    {
        var name = ZName(model, ref layer, head);
        return (name, (z, _) => Replace(z, head, torch.zeros_like(z.select(2, head))));
    }

    /// <summary>A hook setting z[:, :, head] = meanZ[head] ([H, Dh], from <see cref="MeanZ"/>) in <paramref name="layer"/>.</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) MeanHead(IHookedModel model, int layer, int head, Tensor meanZ)
    {
        var name = ZName(model, ref layer, head);
        Guard.Rank(meanZ, 2, nameof(meanZ), "H, Dh");
        Guard.Dim(meanZ, 0, model.HeadCount, nameof(meanZ), "heads");
        return (name, (z, _) => Replace(z, head, meanZ[head].to(z.dtype).expand_as(z.select(2, head))));
    }

    /// <summary>Mean of hook_z over batch and positions for every layer: [L, H, Dh], from a no-grad run on reference tokens.</summary>
    public static Tensor MeanZ(IHookedModel model, Tensor referenceTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (_, cache) = model.RunWithCache(referenceTokens, n => n.EndsWith("attn.hook_z", StringComparison.Ordinal));
        using (cache)
            return torch.stack(Enumerable.Range(0, model.LayerCount).Select(l => cache["z", l].mean(new long[] { 0, 1 })).ToArray())
                .MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Effect [L, H] of ablating each head alone: metric(ablated logits) − metric(clean logits), no grad.
    /// Mean ablation uses <see cref="MeanZ"/> of <paramref name="referenceTokens"/> (default: <paramref name="tokens"/>).
    /// </summary>
    public static Tensor HeadEffects(IHookedModel model, Tensor tokens, Func<Tensor, double> metric, AblationKind kind = AblationKind.Zero,
        Tensor? referenceTokens = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(metric);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        double clean = Measure(metric, model.Run(tokens));
        var means = kind == AblationKind.Mean ? MeanZ(model, referenceTokens ?? tokens) : null;
        var effects = new double[model.LayerCount * model.HeadCount];
        for (int l = 0; l < model.LayerCount; l++)
            for (int h = 0; h < model.HeadCount; h++)
            {
                var hook = kind == AblationKind.Zero ? ZeroHead(model, l, h) : MeanHead(model, l, h, means![l]);
                effects[l * model.HeadCount + h] = Measure(metric, model.RunWithHooks(tokens, hook)) - clean;
            }
        return torch.tensor(effects, dtype: ScalarType.Float64, device: tokens.device).view(model.LayerCount, model.HeadCount).MoveToOuterDisposeScope();
    }

    internal static double Measure(Func<Tensor, double> metric, Tensor logits)
    {
        using var scope = NewDisposeScope();
        double m = metric(logits);
        logits.Dispose();
        return m;
    }

    static Tensor Replace(Tensor z, int head, Tensor value)
    {
        var patched = z.clone();
        patched.select(2, head).copy_(value);
        return patched;
    }

    static string ZName(IHookedModel model, ref int layer, int head) => HeadHookName(model, ref layer, head, "z");

    /// <summary>The full name of a per-head activation (<paramref name="activation"/>: z, pattern, …) in a checked layer
    /// (negative = from the end, resolved in place) and head.</summary>
    internal static string HeadHookName(IHookedModel model, ref int layer, int head, string activation)
    {
        ArgumentNullException.ThrowIfNull(model);
        int l = layer < 0 ? layer + model.LayerCount : layer;
        if (l < 0 || l >= model.LayerCount)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [−{model.LayerCount}, {model.LayerCount}).");
        if (head < 0 || head >= model.HeadCount) throw new ArgumentOutOfRangeException(nameof(head), head, $"head must be in [0, {model.HeadCount}).");
        layer = l;
        return ActName.Get(activation, l);
    }
}
