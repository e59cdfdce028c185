using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// What a step-wise run returns: logits [B, T, V] (each computed once, before any later rewrite), the final rewritten caches
/// per layer (K [B, T, H, Dk], V [B, T, H, Dv], carrying gradients), the reconsolidated positions of every rewrite
/// ([B, m] each, m = min(k, a_s), ascending) and the RMS of ΔK and ΔV per rewrite ([rewrites, 2]; empty for the naive twin).
/// </summary>
public sealed record BottleneckedOutput(Tensor Logits, IReadOnlyList<Tensor> Keys, IReadOnlyList<Tensor> Values, IReadOnlyList<Tensor> Selected,
    Tensor DeltaRms);

/// <summary>Called at every rewrite with the layer, the rewritten positions [B, m] and the entries before and after.</summary>
public delegate void RewriteObserver(int layer, int stepStart, Tensor positions, Tensor kBefore, Tensor vBefore, Tensor kAfter, Tensor vAfter);

/// <summary>
/// Step-wise decoding with periodic KV consolidation (spec §2), batched: the backbone runs causally over one whole step
/// [a_s, b_s] against the current cache; when the step closes (a delimiter at b_s), the Cache Processor rewrites, per layer,
/// the entries of R = [a_s, b_s] and of P = the top-k positions j &lt; a_s by score_j = Σ_{i∈R} Σ_{h,ℓ} p^ℓ_{h,i,j}; the next
/// step sees the rewritten cache. Gradients flow through every rewrite into the processor and the backbone.
/// Steps are aligned across the batch (the same <c>stepEnds</c> for every row). The naive twin is
/// <see cref="BottleneckedTransformerNaive.Run"/> (token by token, one sequence at a time, loops).
/// </summary>
public static class BottleneckedRunner
{
    /// <summary>Step ends b_s: the positions of <paramref name="delimiterId"/> in row 0 of <paramref name="ids"/>, which every row must share.</summary>
    public static int[] StepEnds(Tensor ids, long delimiterId)
    {
        Guard.Rank(ids, 2, nameof(ids), "B, T token ids");
        using var scope = NewDisposeScope();
        var at = ids.eq(delimiterId);
        if (!at.eq(at.narrow(0, 0, 1)).all().item<bool>())
            throw new ArgumentException("the delimiters must sit at the same positions in every row (aligned steps).", nameof(ids));
        return at[0].nonzero().view(-1).data<long>().Select(p => (int)p).ToArray();
    }

    /// <summary>
    /// Runs <paramref name="model"/> step by step over <paramref name="input"/> (ids [B, T] or features [B, T, F]) with steps
    /// closing at <paramref name="stepEnds"/> (strictly increasing, in [0, T)); a tail after the last end runs without a rewrite.
    /// <paramref name="processor"/> null: no rewrite (the runner then equals one causal pass). <paramref name="topK"/>: k ≥ 0.
    /// </summary>
    public static BottleneckedOutput Run(TinyGpt model, CacheProcessor? processor, Tensor input, IReadOnlyList<int> stepEnds, int topK,
        RewriteObserver? observe = null)
    {
        var mixers = Validate(model, processor, input, stepEnds, topK);
        using var scope = NewDisposeScope();
        long b = input.size(0), T = input.size(1);
        using var state = model.NewState(b);
        var states = state.Layers.Cast<ConsolidatingKvState>().ToList();
        var (logits, selected, norms) = (new List<Tensor>(), new List<Tensor>(), new List<Tensor>());
        int start = 0;
        var ends = stepEnds.ToList();
        if (ends.Count == 0 || ends[^1] < T - 1) ends.Add((int)T - 1);
        var closes = stepEnds.ToHashSet();
        foreach (int end in ends)
        {
            var binds = mixers.Select((m, i) => m.Bind(states[i])).ToList();
            try { logits.Add(model.call(input.narrow(1, start, end - start + 1))); }       // the step, causally, on the current cache
            finally { foreach (var handle in binds) handle.Dispose(); }
            var mass = states.Select(s => s.TakeStepMass()).Aggregate((x, y) => x + y);    // score_j = Σ_ℓ Σ_{i∈R} Σ_h p
            if (processor is not null && closes.Contains(end))
            {
                var (positions, dkRms, dvRms) = Consolidate(states, processor, mass, start, end, topK, observe);
                selected.Add(positions.narrow(1, end - start + 1, positions.size(1) - (end - start + 1)));
                norms.Add(torch.stack(new[] { dkRms, dvRms }));
            }
            start = end + 1;
        }
        var rms = norms.Count == 0 ? torch.zeros(0, 2, dtype: ScalarType.Float64, device: input.device) : torch.stack(norms);
        var output = new BottleneckedOutput(torch.cat(logits, 1), states.Select(s => s.Keys).ToList(), states.Select(s => s.Values).ToList(), selected, rms);
        Keep(output);
        return output;
    }

    /// <summary>R ∪ P of the step [a, end], ΔK, ΔV from the processor per layer, written in place; returns the positions [B, |R|+m] and the RMS of ΔK,
    /// ΔV.</summary>
    static (Tensor Positions, Tensor DkRms, Tensor DvRms) Consolidate(IReadOnlyList<ConsolidatingKvState> states, CacheProcessor processor, Tensor mass,
        int a, int end, int topK, RewriteObserver? observe)
    {
        long b = mass.size(0), r = end - a + 1;
        int m = Math.Min(topK, a);
        var device = mass.device;
        var recent = torch.arange(a, end + 1, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(b, r);        // R = [a_s, b_s]
        var positions = recent;
        var types = torch.zeros(r, dtype: ScalarType.Int64, device: device);
        var offsets = torch.arange(r, dtype: ScalarType.Int64, device: device);                                        // offset inside the step
        if (m > 0)
        {
            var past = mass.narrow(1, 0, a).topk(m, dim: 1).indexes.sort(dim: 1).Values;   // P = top-k of score_j, j < a_s, ascending
            positions = torch.cat(new[] { recent, past }, 1);
            types = torch.cat(new[] { types, torch.ones(m, dtype: ScalarType.Int64, device: device) });
            offsets = torch.cat(new[] { offsets, torch.arange(m, dtype: ScalarType.Int64, device: device) });          // rank by position
        }
        long count = positions.size(1);
        Tensor sumK = torch.zeros(1, dtype: ScalarType.Float64, device: device), sumV = sumK;
        for (int layer = 0; layer < states.Count; layer++)
        {
            var s = states[layer];
            var (keys, values) = (s.Keys, s.Values);
            long h = keys.size(2);
            var k = keys.gather(1, positions.view(b, count, 1, 1).expand(b, count, h, keys.size(3)));
            var v = values.gather(1, positions.view(b, count, 1, 1).expand(b, count, h, values.size(3)));
            var (dk, dv) = processor.Process(k, v, types, offsets, layer);
            s.Rewrite(positions, dk, dv);
            sumK = sumK + dk.detach().to(ScalarType.Float64).square().mean();
            sumV = sumV + dv.detach().to(ScalarType.Float64).square().mean();
            if (observe is not null) observe(layer, a, positions, k, v, k + dk, v + dv);
        }
        return (positions, (sumK / states.Count).sqrt().squeeze(0), (sumV / states.Count).sqrt().squeeze(0));
    }

    static void Keep(BottleneckedOutput o)
    {
        o.Logits.MoveToOuterDisposeScope();
        foreach (var t in o.Keys.Concat(o.Values).Concat(o.Selected)) t.MoveToOuterDisposeScope();
        o.DeltaRms.MoveToOuterDisposeScope();
    }

    /// <summary>Checks the arguments (each exception names its argument) and returns the model's consolidating mixers.</summary>
    internal static List<ConsolidatingAttention> Validate(TinyGpt model, CacheProcessor? processor, Tensor input, IReadOnlyList<int> stepEnds, int topK)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(stepEnds);
        if (model.Config.Positions != PositionKind.None)
            throw new ArgumentException($"the toy backbone takes no position encoding (cached keys must not carry positions), got {model.Config.Positions}.",
                nameof(model));
        if (model.Prefix != 0) throw new ArgumentException("a Register model is not supported.", nameof(model));
        var mixers = model.Blocks.Select(b => b.Mixer as ConsolidatingAttention).ToList();
        if (mixers.Any(m => m is null)) throw new ArgumentException("every block's mixer must be a ConsolidatingAttention.", nameof(model));
        if (model.Config.TokenInputs)
        {
            Guard.Rank(input, 2, nameof(input), "B, T token ids");
            if (input.dtype != ScalarType.Int64) throw new ArgumentException($"input must hold int64 token ids, got {input.dtype}.", nameof(input));
        }
        else
        {
            Guard.Rank(input, 3, nameof(input), "B, T, features");
            Guard.Dim(input, 2, model.Config.InputFeatures, nameof(input), "features");
        }
        if (input.size(1) < 1) throw new ArgumentException("input must hold at least one token.", nameof(input));
        for (int i = 0; i < stepEnds.Count; i++)
            if (stepEnds[i] < 0 || stepEnds[i] >= input.size(1) || (i > 0 && stepEnds[i] <= stepEnds[i - 1]))
                throw new ArgumentException($"stepEnds must be strictly increasing positions in [0, {input.size(1)}), got [{string.Join(", ", stepEnds)}].",
                    nameof(stepEnds));
        if (topK < 0) throw new ArgumentException($"topK must be ≥ 0, got {topK}.", nameof(topK));
        if (processor is not null)
        {
            var first = mixers[0]!;
            if (processor.Layers != mixers.Count || processor.Heads != first.Heads || processor.KeyDim != first.KeyDim || processor.ValueDim != first.ValueDim)
                throw new ArgumentException($"processor (layers {processor.Layers}, H {processor.Heads}, Dk {processor.KeyDim}, Dv {processor.ValueDim}) " +
                    $"does not fit the model (layers {mixers.Count}, H {first.Heads}, Dk {first.KeyDim}, Dv {first.ValueDim}).", nameof(processor));
        }
        return mixers!;
    }
}
