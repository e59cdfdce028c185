using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>Where a patched path ends: one head's query, key or value input, or the residual stream after a block.</summary>
/// <param name="Layer">The block (≥ 0).</param>
/// <param name="Head">The head for a q/k/v receiver; null for the residual stream.</param>
/// <param name="Input">"q", "k" or "v" for a head; "resid_post" for the stream after the block (the last block's = the logits' input).</param>
public sealed record PathReceiver(int Layer, int? Head, string Input)
{
    /// <summary>Head <paramref name="head"/>'s <paramref name="input"/> ("q", "k" or "v") in block <paramref name="layer"/>.</summary>
    public static PathReceiver HeadInput(int layer, int head, string input) =>
        input is "q" or "k" or "v" ? new(layer, head, input) : throw new ArgumentException($"input must be q, k or v, got '{input}'.", nameof(input));

    /// <summary>The residual stream after block <paramref name="layer"/> (the last block's: the direct path to the logits).</summary>
    public static PathReceiver Residual(int layer) => new(layer, null, "resid_post");

    internal string HookName => ActName.Get(Input, Layer);
}

/// <summary>
/// Path patching (Wang et al. 2022, the IOI circuit; Goldowsky-Dill et al. 2023), in the denoising direction of
/// <see cref="Patching"/>: how much of the clean behaviour returns when only the paths from the sender heads to the
/// receivers carry clean values.
/// </summary>
/// <remarks>
/// 1. Cache the clean and the corrupted run.
/// 2. Run the corrupted input with each sender's z from the clean run and — with <c>freezeOtherHeads</c> — every other
///    head's z held at its corrupted value (MLPs recompute: paths through MLPs count, as in the IOI work); record the
///    receivers' activations.
/// 3. Run the corrupted input with only the receivers patched to those records; report
///    (m(patched) − m(corrupt)) / (m(clean) − m(corrupt)).
/// With no freezing and the last block's residual as receiver this is activation patching of the senders' z; with the
/// senders in the last block it is too (nothing downstream to freeze).
/// </remarks>
public static class PathPatching
{
    /// <summary>The normalised metric after patching the paths from <paramref name="senders"/> (layer, head) to <paramref name="receivers"/>.</summary>
    public static double Run(IHookedModel model, Tensor cleanTokens, Tensor corruptTokens, Func<Tensor, double> metric,
        IReadOnlyList<(int Layer, int Head)> senders, IReadOnlyList<PathReceiver> receivers, bool freezeOtherHeads = true)
    {
        Patching.Check(model, cleanTokens, corruptTokens, metric);
        ArgumentNullException.ThrowIfNull(senders);
        ArgumentNullException.ThrowIfNull(receivers);
        if (senders.Count == 0) throw new ArgumentException("name at least one sender head.", nameof(senders));
        if (receivers.Count == 0) throw new ArgumentException("name at least one receiver.", nameof(receivers));
        foreach (var (l, h) in senders)
            if (l < 0 || l >= model.LayerCount || h < 0 || h >= model.HeadCount)
                throw new ArgumentException($"sender ({l}, {h}) is outside {model.LayerCount} layers × {model.HeadCount} heads.", nameof(senders));
        foreach (var r in receivers)
        {
            if (r.Layer < 0 || r.Layer >= model.LayerCount || r.Head is < 0 || r.Head >= model.HeadCount)
                throw new ArgumentException($"receiver {r} is outside {model.LayerCount} layers × {model.HeadCount} heads.", nameof(receivers));
            if (!model.HookPoints.ContainsKey(r.HookName)) throw new ArgumentException($"the model has no hook point '{r.HookName}'.", nameof(receivers));
        }
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var zNames = Enumerable.Range(0, model.LayerCount).Select(l => ActName.Get("z", l)).ToArray();
        var (cleanLogits, cleanCache) = model.RunWithCache(cleanTokens, zNames.Contains);
        var (corruptLogits, corruptCache) = model.RunWithCache(corruptTokens, zNames.Contains);
        using (cleanCache)
        using (corruptCache)
        {
            double clean = Ablation.Measure(metric, cleanLogits), corrupt = Ablation.Measure(metric, corruptLogits);
            // step 2: senders clean, the other heads frozen at their corrupted z; record the receivers
            var zHooks = new List<(string, Func<Tensor, HookPoint, Tensor?>)>();
            for (int l = 0; l < model.LayerCount; l++)
            {
                int layer = l;
                var sent = senders.Where(s => s.Layer == layer).Select(s => s.Head).ToHashSet();
                if (sent.Count == 0 && !freezeOtherHeads) continue;
                zHooks.Add((zNames[l], (z, _) =>
                {
                    var patched = freezeOtherHeads ? corruptCache["z", layer].to(z.dtype).clone() : z.clone();
                    foreach (int h in sent) patched.select(2, h).copy_(cleanCache["z", layer].select(2, h));
                    return patched;
                }));
            }
            var receiverNames = receivers.Select(r => r.HookName).Distinct().ToArray();
            ActivationCache recorded;
            using (model.Hooks(zHooks.ToArray()))
                (_, recorded) = model.RunWithCache(corruptTokens, receiverNames.Contains);
            using (recorded)
            {
                // step 3: the corrupted run with only the receivers patched
                var patchHooks = receiverNames.Select(name =>
                {
                    var heads = receivers.Where(r => r.HookName == name).Select(r => r.Head).ToList();
                    var source = recorded[name];
                    return (name, (Func<Tensor, HookPoint, Tensor?>)((x, _) =>
                    {
                        if (heads.Contains(null)) return source.to(x.dtype).clone();
                        var patched = x.clone();
                        foreach (int h in heads.Select(h => h!.Value)) patched.select(2, h).copy_(source.select(2, h));
                        return patched;
                    }));
                }).ToArray();
                double value = Ablation.Measure(metric, model.RunWithHooks(corruptTokens, patchHooks));
                return Patching.Normalise(value, clean, corrupt);
            }
        }
    }
}
