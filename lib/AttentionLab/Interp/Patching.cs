using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// Activation patching (TransformerLens <c>patching</c>, denoising direction): run the corrupted input while one
/// activation is replaced by its value from the clean run, and report the normalised metric
/// (m(patched) − m(corrupt)) / (m(clean) − m(corrupt)) — 1 = the patch restores the clean behaviour, 0 = no effect.
/// </summary>
public static class Patching
{
    /// <summary>
    /// Per layer × position [L, T]: patch <c>blocks.{L}.hook_{activation}</c>[:, pos] (resid_pre, resid_mid, resid_post, attn_out, mlp_out).
    /// </summary>
    public static Tensor ResidByPosition(IHookedModel model, Tensor cleanTokens, Tensor corruptTokens, Func<Tensor, double> metric,
        string activation = "resid_pre")
    {
        Check(model, cleanTokens, corruptTokens, metric);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var names = Enumerable.Range(0, model.LayerCount).Select(l => ActName.Get(activation, l)).ToArray();
        foreach (var n in names)
            if (!model.HookPoints.ContainsKey(n)) throw new ArgumentException($"the model has no hook point '{n}'.", nameof(activation));
        var (cleanLogits, cache) = model.RunWithCache(cleanTokens, names.Contains);
        using (cache)
        {
            var (clean, corrupt) = (Ablation.Measure(metric, cleanLogits), Ablation.Measure(metric, model.Run(corruptTokens)));
            long t = cleanTokens.shape[1];
            var result = new double[model.LayerCount * t];
            for (int l = 0; l < model.LayerCount; l++)
                for (long p = 0; p < t; p++)
                {
                    var source = cache[names[l]];
                    long pos = p;
                    var patched = model.RunWithHooks(corruptTokens, (names[l], (x, _) => Put(x, 1, pos, source.select(1, pos))));
                    result[l * t + p] = Normalise(Ablation.Measure(metric, patched), clean, corrupt);
                }
            return torch.tensor(result, dtype: ScalarType.Float64, device: cleanTokens.device).view(model.LayerCount, t).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Per layer × head [L, H]: patch head h of <c>blocks.{L}.attn.hook_z</c> at every position.</summary>
    public static Tensor HeadOutputs(IHookedModel model, Tensor cleanTokens, Tensor corruptTokens, Func<Tensor, double> metric)
    {
        Check(model, cleanTokens, corruptTokens, metric);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (cleanLogits, cache) = model.RunWithCache(cleanTokens, n => n.EndsWith("attn.hook_z", StringComparison.Ordinal));
        using (cache)
        {
            var (clean, corrupt) = (Ablation.Measure(metric, cleanLogits), Ablation.Measure(metric, model.Run(corruptTokens)));
            var result = new double[model.LayerCount * model.HeadCount];
            for (int l = 0; l < model.LayerCount; l++)
                for (int h = 0; h < model.HeadCount; h++)
                {
                    var source = cache["z", l];
                    int head = h;
                    var patched = model.RunWithHooks(corruptTokens, (ActName.Get("z", l), (z, _) => Put(z, 2, head, source.select(2, head))));
                    result[l * model.HeadCount + h] = Normalise(Ablation.Measure(metric, patched), clean, corrupt);
                }
            return torch.tensor(result, dtype: ScalarType.Float64, device: cleanTokens.device).view(model.LayerCount, model.HeadCount)
                .MoveToOuterDisposeScope();
        }
    }

    /// <summary>(patched − corrupt) / (clean − corrupt); throws when clean = corrupt (nothing to restore).</summary>
    public static double Normalise(double patched, double clean, double corrupt)
    {
        if (clean == corrupt) throw new InvalidOperationException($"the metric is {clean} on both the clean and the corrupted input: nothing to restore.");
        return (patched - corrupt) / (clean - corrupt);
    }

    static Tensor Put(Tensor x, int dim, long index, Tensor value)
    {
        var patched = x.clone();
        patched.select(dim, index).copy_(value);
        return patched;
    }

    internal static void Check(IHookedModel model, Tensor clean, Tensor corrupt, Func<Tensor, double> metric)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(metric);
        Guard.NotNull(clean, "cleanTokens");
        Guard.NotNull(corrupt, "corruptTokens");
        if (!clean.shape.SequenceEqual(corrupt.shape))
            throw new ArgumentException(
                $"corruptTokens {Guard.ShapeText(corrupt)} must have the shape of cleanTokens {Guard.ShapeText(clean)}.", "corruptTokens");
        if (clean.dim() < 2) throw new ArgumentException($"cleanTokens must be [B, T, …], got {Guard.ShapeText(clean)}.", "cleanTokens");
    }
}
