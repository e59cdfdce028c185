using AttentionLab.Interp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.CircuitReuse;

/// <summary>
/// The naive twin of <see cref="CircuitReuseOps.PathEffects"/>: one hooked forward per sender written out by hand (no
/// receiver record/replay), the logit difference summed prompt by prompt in float64.
/// </summary>
public static class CircuitReuseNaive
{
    /// <summary>LD_p − LD_clean of sender (layer, head), un-normalised: the clean run with that head's z from the corrupted run and
    /// every other head's z set to its clean value.</summary>
    public static double RawPathEffect(IHookedModel model, PromptPairs pairs, int layer, int head)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var zNames = Enumerable.Range(0, model.LayerCount).Select(l => ActName.Get("z", l)).ToArray();
        var (cleanLogits, clean) = model.RunWithCache(pairs.Clean, zNames.Contains);
        var (_, corrupt) = model.RunWithCache(pairs.Corrupt, zNames.Contains);
        using (clean)
        using (corrupt)
        {
            var hooks = new (string, Func<Tensor, HookPoint, Tensor?>)[model.LayerCount];
            for (int l = 0; l < model.LayerCount; l++)
            {
                int li = l;
                hooks[l] = (zNames[l], (z, _) =>
                {
                    var frozen = clean["z", li].to(z.dtype).clone();
                    if (li == layer) frozen.select(2, head).copy_(corrupt["z", li].select(2, head));
                    return frozen;
                });
            }
            return Ld(model.RunWithHooks(pairs.Clean, hooks), pairs) - Ld(cleanLogits, pairs);
        }
    }

    /// <summary>(LD_p − LD_clean) / (LD_corr − LD_clean) of every sender, from <see cref="RawPathEffect"/>.</summary>
    public static double[,] PathEffects(IHookedModel model, PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        double ldClean, ldCorrupt;
        using (var scope = NewDisposeScope())
        using (var noGrad = no_grad())
            (ldClean, ldCorrupt) = (Ld(model.Run(pairs.Clean), pairs), Ld(model.Run(pairs.Corrupt), pairs));
        var result = new double[model.LayerCount, model.HeadCount];
        for (int l = 0; l < model.LayerCount; l++)
            for (int h = 0; h < model.HeadCount; h++)
                result[l, h] = RawPathEffect(model, pairs, l, h) / (ldCorrupt - ldClean);
        return result;
    }

    /// <summary>Mean over prompts of logit(answer) − logit(corrupt answer) at END, one prompt at a time in float64.</summary>
    public static double Ld(Tensor logits, PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(pairs);
        double sum = 0;
        long t = logits.size(1);
        for (int i = 0; i < pairs.Count; i++)
            sum += logits[i, t - 1, pairs.Answer[i]].to(ScalarType.Float64).item<double>()
                 - logits[i, t - 1, pairs.CorruptAnswer[i]].to(ScalarType.Float64).item<double>();
        return sum / pairs.Count;
    }
}
