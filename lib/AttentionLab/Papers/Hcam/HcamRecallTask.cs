using AttentionLab.Core;
using AttentionLab.Data;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Hcam;

/// <summary>
/// The spec's supervised stand-in for HCAM's RL recall tasks: "event recall after distractors". An episode is
/// <see cref="Events"/> + D chunks of <see cref="ChunkSize"/> tokens in random order, then one query per event.
/// An event chunk is [tag, value × (C−1)] (a distinct tag per event, a random value); a distractor chunk is C random tokens
/// drawn from the values and the filler tokens (no tag). The queries are the events' tags in random order; the label at a
/// query is its event's value (every other label is ignored). Token ids: tags 0 … Tags−1, values next, fillers last.
/// </summary>
/// <param name="ChunkSize">C.</param>
/// <param name="Events">E events per episode (≤ Tags).</param>
/// <param name="Tags">distinct tags.</param>
/// <param name="Values">distinct values.</param>
/// <param name="Fillers">distinct filler tokens.</param>
public sealed record HcamRecallTask(int ChunkSize = 8, int Events = 4, int Tags = 8, int Values = 16, int Fillers = 16)
{
    /// <summary>Tags + Values + Fillers.</summary>
    public int VocabSize => Tags + Values + Fillers;

    /// <summary>Tokens of an episode with <paramref name="distractors"/> distractor chunks: (E + D)·C + E.</summary>
    public int Length(int distractors) => (Events + distractors) * ChunkSize + Events;

    /// <summary>
    /// <paramref name="count"/> episodes with <paramref name="distractors"/> distractor chunks from a seeded stream:
    /// tokens [n, L], labels [n, L] (−100 except at the queries).
    /// </summary>
    public TokenBatch Generate(int count, int distractors, int seed, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        if (distractors < 0) throw new ArgumentException($"distractors must be ≥ 0, got {distractors}.", nameof(distractors));
        if (Events < 1 || Events > Tags) throw new ArgumentException($"Events must be in 1 … Tags = {Tags}, got {Events}.", nameof(Events));
        if (ChunkSize < 2) throw new ArgumentException($"ChunkSize must be ≥ 2 (a tag and a value), got {ChunkSize}.", nameof(ChunkSize));
        var rng = new Random(seed);
        int length = Length(distractors), chunks = Events + distractors;
        var tokens = new long[count * (long)length];
        var labels = new long[count * (long)length];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            long row = n * (long)length;
            var tags = Sampling.Distinct(rng, 0, Tags, Events);
            var values = Enumerable.Range(0, Events).Select(_ => (long)(Tags + rng.Next(Values))).ToArray();
            var slots = Enumerable.Range(0, chunks).ToArray();
            Sampling.Shuffle(rng, slots);                                               // slots[e] = chunk of event e (e < E)
            var eventOf = new int[chunks];
            Array.Fill(eventOf, -1);
            for (int e = 0; e < Events; e++) eventOf[slots[e]] = e;
            for (int c = 0; c < chunks; c++)
                for (int i = 0; i < ChunkSize; i++)
                {
                    long at = row + c * (long)ChunkSize + i;
                    int e = eventOf[c];
                    tokens[at] = e >= 0 ? (i == 0 ? tags[e] : values[e]) : Tags + rng.Next(Values + Fillers);
                }
            var order = Enumerable.Range(0, Events).ToArray();
            Sampling.Shuffle(rng, order);
            for (int i = 0; i < Events; i++)
            {
                long at = row + chunks * (long)ChunkSize + i;
                tokens[at] = tags[order[i]];
                labels[at] = values[order[i]];
            }
        }
        var shape = new long[] { count, length };
        return new TokenBatch(tensor(tokens, shape, device: device), tensor(labels, shape, device: device));
    }
}
