using AttentionLab.Core;
using AttentionLab.Interp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.CircuitReuse;

/// <summary>
/// The paper's measurements on a hooked model (spec §2): the logit difference, path patching of every sender head into the
/// END position's logits (noising direction, other heads frozen), the circuit as a thresholded effect set, the overlap, and
/// the attention intervention. The patching itself is the library's <see cref="PathPatching"/> and <see cref="Patching"/>.
/// </summary>
/// <remarks>
/// LD(x) = mean over prompts of logit_a(x)[END] − logit_{a′}(x)[END] (a: the clean answer, a′: the corrupted prompt's).
/// Noising path patching of sender (l, h): run the clean x with z_{l,h} := z_{l,h}(x′) at every position and every other head's
/// z frozen to its clean value (MLPs recompute); the receiver is the last block's resid_post (the logits' input), read at END.
/// effect(l, h) = (LD_p − LD_clean) / (LD_corr − LD_clean): 0 = no effect, 1 = the sender's direct-and-MLP paths carry the whole
/// clean→corrupt change; positive = the head helps the task (the official repo plots −100 × a clean-normalised variant).
/// It is <see cref="PathPatching.Run"/> with the clean and corrupted inputs swapped (that function denoises).
/// </remarks>
public static class CircuitReuseOps
{
    /// <summary>The batch-mean logit difference at END, as a metric of logits [B, T, V].</summary>
    public static Func<Tensor, double> LogitDiff(PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        return logits =>
        {
            using var scope = NewDisposeScope();
            var end = logits.select(1, -1).to(ScalarType.Float64);
            var a = tensor(pairs.Answer, device: end.device).unsqueeze(1);
            var b = tensor(pairs.CorruptAnswer, device: end.device).unsqueeze(1);
            return (end.gather(1, a) - end.gather(1, b)).mean().item<double>();
        };
    }

    /// <summary>LD of the clean and of the corrupted prompts (both read against the clean answers).</summary>
    public static (double Clean, double Corrupt) LogitDiffs(IHookedModel model, PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var metric = LogitDiff(pairs);
        return (metric(model.Run(pairs.Clean)), metric(model.Run(pairs.Corrupt)));
    }

    /// <summary>Noising path-patching effect [L, H] of every sender head into the END logits (see the remarks of the class).</summary>
    public static double[,] PathEffects(IHookedModel model, PromptPairs pairs, bool freezeOtherHeads = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        var metric = LogitDiff(pairs);
        var receiver = new[] { PathReceiver.Residual(model.LayerCount - 1) };
        var effects = new double[model.LayerCount, model.HeadCount];
        for (int l = 0; l < model.LayerCount; l++)
            for (int h = 0; h < model.HeadCount; h++)
                effects[l, h] = PathPatching.Run(model, pairs.Corrupt, pairs.Clean, metric, new[] { (l, h) }, receiver, freezeOtherHeads);
        return effects;
    }

    /// <summary>Noising activation patching of each head's z [L, H] (<see cref="Patching.HeadOutputs"/> with the inputs swapped).</summary>
    public static double[,] ActivationEffects(IHookedModel model, PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var t = Patching.HeadOutputs(model, pairs.Corrupt, pairs.Clean, LogitDiff(pairs));
        var flat = t.data<double>().ToArray();
        var result = new double[model.LayerCount, model.HeadCount];
        Buffer.BlockCopy(flat, 0, result, 0, flat.Length * sizeof(double));
        return result;
    }

    /// <summary>The circuit: heads (layer, head) with |effect| &gt; <paramref name="threshold"/>.</summary>
    public static HashSet<(int Layer, int Head)> Circuit(double[,] effects, double threshold)
    {
        ArgumentNullException.ThrowIfNull(effects);
        if (!(threshold >= 0)) throw new ArgumentException($"threshold must be ≥ 0, got {threshold}.", nameof(threshold));
        var set = new HashSet<(int, int)>();
        for (int l = 0; l < effects.GetLength(0); l++)
            for (int h = 0; h < effects.GetLength(1); h++)
                if (Math.Abs(effects[l, h]) > threshold) set.Add((l, h));
        return set;
    }

    /// <summary>Overlap = Jaccard |A ∩ B| / |A ∪ B| (the union denominator; 1 for two empty sets).</summary>
    public static double Overlap(IEnumerable<(int, int)> a, IEnumerable<(int, int)> b) => Metrics.Jaccard(a, b);

    /// <summary>
    /// LD of the clean prompts with every head's z, every MLP output and the token embedding replaced by the corrupted run's at
    /// every position (spec §6: it must equal LD_corr; the embedding is patched too because CO's END token is the asked object).
    /// </summary>
    public static double PatchEverything(IHookedModel model, PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var names = model.HookPoints.Keys.Where(n => n.EndsWith("attn.hook_z", StringComparison.Ordinal) || n.EndsWith("hook_mlp_out", StringComparison.Ordinal)
            || n == "hook_embed").ToHashSet();
        var (_, cache) = model.RunWithCache(pairs.Corrupt, names.Contains);
        using (cache)
        {
            var hooks = names.Select(n => (n, (Func<Tensor, HookPoint, Tensor?>)((x, _) => cache[n].to(x.dtype).clone()))).ToArray();
            return LogitDiff(pairs)(model.RunWithHooks(pairs.Clean, hooks));
        }
    }

    /// <summary>Mean attention [L, H] from END to each prompt's answer token (IOI: the IO name; CO: the asked colour).</summary>
    public static double[,] AnswerAttention(IHookedModel model, PromptPairs pairs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var names = Enumerable.Range(0, model.LayerCount).Select(l => ActName.Get("pattern", l)).ToArray();
        var (_, cache) = model.RunWithCache(pairs.Clean, names.Contains);
        using (cache)
        {
            var result = new double[model.LayerCount, model.HeadCount];
            var pos = tensor(pairs.AnswerPosition, device: pairs.Clean.device);
            for (int l = 0; l < model.LayerCount; l++)
            {
                var end = cache[names[l]].select(2, -1).to(ScalarType.Float64);                     // [B, H, Tk]
                var idx = pos.view(-1, 1, 1).expand(-1, model.HeadCount, 1);
                var w = end.gather(2, idx).squeeze(2).mean(new long[] { 0 }).data<double>().ToArray();
                for (int h = 0; h < model.HeadCount; h++) result[l, h] = w[h];
            }
            return result;
        }
    }

    /// <summary>Mean END-row attention pattern [T] of head (layer, head) over the clean prompts.</summary>
    public static double[] EndPattern(IHookedModel model, PromptPairs pairs, int layer, int head)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var name = ActName.Get("pattern", layer);
        var (_, cache) = model.RunWithCache(pairs.Clean, n => n == name);
        using (cache) return cache[name].select(1, head).select(1, -1).to(ScalarType.Float64).mean(new long[] { 0 }).data<double>().ToArray();
    }

    /// <summary>Per-prompt correctness (END argmax = answer) of the clean prompts, optionally with hooks.</summary>
    public static bool[] Correct(IHookedModel model, PromptPairs pairs, params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = hooks.Length == 0 ? model.Run(pairs.Clean) : model.RunWithHooks(pairs.Clean, hooks);
        var pred = logits.select(1, -1).argmax(-1).data<long>().ToArray();
        return pred.Select((p, i) => p == pairs.Answer[i]).ToArray();
    }

    /// <summary>
    /// The intervention (paper §5, spec §2): each of <paramref name="heads"/> gets, at END, the pattern a mover head shows on
    /// IOI — all of its weight on the answer token (the IO name there, the asked colour here); other rows unchanged.
    /// </summary>
    /// <remarks>A[END, j] := 1[j = pos(answer)], the limit of the IOI mover pattern; the edit flows into A·V
    /// (<see cref="Interventions.OverridePattern"/>).</remarks>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] AttendToAnswer(IHookedModel model, PromptPairs pairs,
        IEnumerable<(int Layer, int Head)> heads)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        ArgumentNullException.ThrowIfNull(heads);
        var positions = pairs.AnswerPosition;
        return heads.Select(lh => Interventions.OverridePattern(model, lh.Layer, lh.Head, p =>
        {
            var q = p.clone();                                                                    // [B, Tq, Tk]
            var row = zeros(p.size(0), p.size(2), dtype: p.dtype, device: p.device);
            var idx = tensor(positions, device: p.device).unsqueeze(1);
            row.scatter_(1, idx, ones(p.size(0), 1, dtype: p.dtype, device: p.device));
            q.select(1, -1).copy_(row);
            return q;
        })).ToArray();
    }
}
