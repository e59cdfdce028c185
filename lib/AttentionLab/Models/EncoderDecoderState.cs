using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// The encoded source of an <see cref="EncoderDecoder"/>: the memory [B, Tenc, d], its key mask, and each decoder layer's
/// cross-attention keys and values, projected once. Owns its tensors (no dispose scope holds them): dispose it.
/// </summary>
public sealed class EncoderMemory : IDisposable
{
    internal EncoderMemory(Tensor hidden, Tensor keep, IReadOnlyList<(Tensor K, Tensor V)> layers)
    {
        Hidden = hidden; Keep = keep; Layers = layers;
    }

    /// <summary>The encoder output [B, Tenc, d].</summary>
    public Tensor Hidden { get; }
    /// <summary>Boolean [B, 1, 1, Tenc]: true where the source position is real (cross-attention hides the rest).</summary>
    public Tensor Keep { get; }
    /// <summary>Per decoder layer, the cross-attention k, v [B, Tenc, H, D].</summary>
    public IReadOnlyList<(Tensor K, Tensor V)> Layers { get; }
    /// <summary>B.</summary>
    public long Batch => Hidden.size(0);

    /// <summary>Each sequence repeated <paramref name="times"/> times in a row (b → b·times … b·times + times − 1), for beams.</summary>
    internal EncoderMemory RepeatEach(int times)
    {
        using var scope = NewDisposeScope();
        static Tensor Own(Tensor t) => t.DetachFromDisposeScope();
        Tensor Repeat(Tensor t) => Own(t.repeat_interleave(times, dim: 0));
        return new EncoderMemory(Repeat(Hidden), Repeat(Keep), Layers.Select(l => (Repeat(l.K), Repeat(l.V))).ToList());
    }

    public void Dispose()
    {
        Hidden.Dispose(); Keep.Dispose();
        foreach (var (k, v) in Layers) { k.Dispose(); v.Dispose(); }
    }
}

/// <summary>The decoder's self-attention KV caches, one <see cref="KvCacheState"/> per layer. Dispose it when done.</summary>
public sealed class EncoderDecoderState : IDisposable
{
    readonly List<MixerState> layers;

    internal EncoderDecoderState(List<MixerState> layers) => this.layers = layers;

    public IReadOnlyList<MixerState> Layers => layers;
    /// <summary>Target tokens consumed so far.</summary>
    public long Position => layers[0].Position;
    /// <summary>Bytes held by the caches.</summary>
    public long Bytes => layers.Sum(l => l.Bytes);

    /// <summary>
    /// Keeps, for new row i, the cache of old row <paramref name="rows"/>[i] (int64 [B']): beam search's reordering.
    /// Each layer gets a fresh cache holding k[rows], v[rows]; the old caches are disposed.
    /// </summary>
    public void Reorder(Tensor rows)
    {
        Guard.Rank(rows, 1, nameof(rows), "B' row indices");
        using var scope = NewDisposeScope();
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i] is not KvCacheState old || old.Owner is null)
                throw new InvalidOperationException($"layer {i} holds a {layers[i].GetType().Name}, not a KV cache of a mixer.");
            var keys = old.Cache.Keys;
            var fresh = (KvCacheState)old.Owner.NewState(rows.size(0), keys.dtype, keys.device);
            fresh.Cache.Append(keys.index_select(0, rows), old.Cache.Values.index_select(0, rows));   // k[rows], v[rows]
            fresh.Advance(old.Position);
            old.Dispose();
            layers[i] = fresh;
        }
    }

    public void Dispose()
    {
        foreach (var l in layers) l.Dispose();
    }
}

/// <summary>
/// Greedy decoding: per sequence the tokens after BOS (EOS included when emitted), their summed log-probability, and the
/// logits of every step [B, L, V] (L = steps run; a row's steps after its EOS are computed but belong to no output). Dispose it.
/// </summary>
public sealed class GreedyDecoding : IDisposable
{
    internal GreedyDecoding(long[][] tokens, double[] logProbs, Tensor stepLogits)
    {
        Tokens = tokens; LogProbs = logProbs; StepLogits = stepLogits;
    }

    public IReadOnlyList<long[]> Tokens { get; }
    /// <summary>Σ_t log p(y_t | y_&lt;t, x) of each output.</summary>
    public IReadOnlyList<double> LogProbs { get; }
    /// <summary>[B, L, V] logits of each decoding step (owned by this object).</summary>
    public Tensor StepLogits { get; }

    public void Dispose() => StepLogits.Dispose();
}

/// <summary>One finished beam: tokens after BOS (EOS included when emitted), Σ log p, and the score log p / length^α it ranks by.</summary>
public sealed record BeamHypothesis(long[] Tokens, double LogProb, double Score);

/// <summary>
/// Beam search's result: per source, its best W hypotheses, best first (<see cref="Hypotheses"/>), and the winner's tokens,
/// log-probability and score (α = the length penalty; α = 0: the score is the log-probability).
/// </summary>
public sealed record BeamDecoding(IReadOnlyList<IReadOnlyList<BeamHypothesis>> Hypotheses)
{
    /// <summary>The best hypothesis's tokens per source.</summary>
    public IReadOnlyList<long[]> Tokens => Hypotheses.Select(h => h[0].Tokens).ToList();
    /// <summary>The best hypothesis's Σ log p per source.</summary>
    public IReadOnlyList<double> LogProbs => Hypotheses.Select(h => h[0].LogProb).ToList();
    /// <summary>The best hypothesis's score per source.</summary>
    public IReadOnlyList<double> Scores => Hypotheses.Select(h => h[0].Score).ToList();
}
