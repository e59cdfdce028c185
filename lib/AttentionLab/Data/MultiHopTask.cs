using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// Multi-hop chains: follow a → b, b → c, … from the queried entity to the end of its chain.
/// </summary>
/// <remarks>
/// Tokens: 0 = BOS, 1 = QUERY; entities from [2, V), all distinct within a sequence.
/// One chain e₀ → e₁ → … → e_H (H = <see cref="Hops"/> edges) plus <see cref="Distractors"/> chains of the same length
/// on other entities; all E = (1 + Distractors)·H edges are written as pairs "src dst" in a random order:
/// [BOS] s₁ d₁ s₂ d₂ … s_E d_E QUERY e₀ e_H, length T = 2E + 4. Labels[T−2] = e_H (read e₀, answer the chain's
/// end); −100 elsewhere. <see cref="MultiHopBatch.Sources"/> = e₀, <see cref="MultiHopBatch.Answers"/> = e_H.
/// </remarks>
public sealed record MultiHopTask(int VocabSize = 64, int Hops = 2, int Distractors = 2)
{
    public const long BosToken = 0, QueryToken = 1;
    /// <summary>Edges written: (1 + Distractors) · Hops.</summary>
    public int Edges => (1 + Distractors) * Hops;
    /// <summary>Sequence length 2E + 4.</summary>
    public int Length => 2 * Edges + 4;

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c>.</summary>
    public MultiHopBatch Generate(int count, int seed, Device? device = null)
    {
        Validate();
        Sampling.CheckCount(count);
        var rng = new Random(seed);
        int t = Length, chains = 1 + Distractors;
        var tokens = new long[count * t];
        var labels = new long[count * t];
        var sources = new long[count];
        var answers = new long[count];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            var entities = Sampling.Distinct(rng, 2, VocabSize, chains * (Hops + 1));     // chain c = entities[c(H+1) … c(H+1)+H]
            var edges = new (long Src, long Dst)[Edges];
            for (int c = 0, e = 0; c < chains; c++)
                for (int h = 0; h < Hops; h++, e++)
                    edges[e] = (entities[c * (Hops + 1) + h], entities[c * (Hops + 1) + h + 1]);
            Sampling.Shuffle(rng, edges);
            var row = new long[t];
            row[0] = BosToken;
            for (int e = 0; e < edges.Length; e++) (row[1 + 2 * e], row[2 + 2 * e]) = edges[e];
            (sources[n], answers[n]) = (entities[0], entities[Hops]);                       // chain 0 is asked
            (row[t - 3], row[t - 2], row[t - 1]) = (QueryToken, sources[n], answers[n]);
            labels[n * t + t - 2] = answers[n];
            Array.Copy(row, 0, tokens, n * t, t);
        }
        using var scope = NewDisposeScope();
        return new MultiHopBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device),
            torch.tensor(sources, device: device), torch.tensor(answers, device: device));
    }

    void Validate()
    {
        if (Hops <= 0) throw new ArgumentException($"Hops must be positive, got {Hops}.", nameof(Hops));
        if (Distractors < 0) throw new ArgumentException($"Distractors must be ≥ 0, got {Distractors}.", nameof(Distractors));
        int needed = (1 + Distractors) * (Hops + 1);
        if (VocabSize - 2 < needed)
            throw new ArgumentException(
                $"VocabSize {VocabSize} has {VocabSize - 2} entities, fewer than the {needed} distinct ones needed.", nameof(VocabSize));
    }
}

/// <summary>Multi-hop sequences with each row's queried entity (Sources [N]) and its chain's end (Answers [N]).</summary>
public sealed class MultiHopBatch : TokenBatch
{
    public MultiHopBatch(Tensor tokens, Tensor labels, Tensor sources, Tensor answers) : base(tokens, labels)
    {
        Sources = sources.DetachFromDisposeScope();
        Answers = answers.DetachFromDisposeScope();
    }

    public Tensor Sources { get; }
    public Tensor Answers { get; }
    public override void Dispose() { Sources.Dispose(); Answers.Dispose(); base.Dispose(); }
}
