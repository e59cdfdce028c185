using AttentionLab.Core;
using AttentionLab.Data;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// The spec's task (§4): key–value facts placed early, filler, then queries beyond the backbone's window. A sequence of
/// <see cref="Length"/> tokens holds a block of <see cref="Facts"/> pairs [key, value] starting at p₀, filler elsewhere, and
/// ends with the facts' keys in random order; the label at each query is its fact's value (every other label is ignored).
/// Keys are drawn without replacement with Zipf weights ∝ 1/(k+1): keys in the upper half of the key range are the "rare" keys.
/// Distance d = (first query) − (last fact's value) = (T − F) − (p₀ + 2F − 1). Token ids: keys, then values, then fillers.
/// </summary>
/// <param name="Length">T.</param>
/// <param name="Facts">F facts (and F queries) per sequence.</param>
/// <param name="Keys">distinct keys.</param>
/// <param name="Values">distinct values ("numbers").</param>
/// <param name="Fillers">distinct filler tokens.</param>
public sealed record RareFactsTask(int Length = 256, int Facts = 4, int Keys = 24, int Values = 16, int Fillers = 16)
{
    /// <summary>Keys + Values + Fillers.</summary>
    public int VocabSize => Keys + Values + Fillers;

    /// <summary>The largest distance: the facts at the very start.</summary>
    public int MaxDistance => Length - 3 * Facts + 1;

    /// <summary>True for a rare key (k ≥ Keys / 2).</summary>
    public bool IsRare(long key) => key >= Keys / 2 && key < Keys;

    /// <summary>Positions of the queries: the last F.</summary>
    public int FirstQuery => Length - Facts;

    /// <summary>
    /// <paramref name="count"/> sequences from a seeded stream; every sequence at <paramref name="distance"/> when given, else at a
    /// uniform p₀: tokens [n, T], labels [n, T] (−100 except at the queries).
    /// </summary>
    public TokenBatch Generate(int count, int seed, int? distance = null, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        if (Facts < 1 || Facts > Keys) throw new ArgumentException($"Facts must be in 1 … Keys = {Keys}, got {Facts}.", nameof(Facts));
        if (Values < 1 || Fillers < 1) throw new ArgumentException($"Values and Fillers must be positive, got {Values} and {Fillers}.", nameof(Values));
        if (Length < 3 * Facts) throw new ArgumentException($"Length must be ≥ 3·Facts = {3 * Facts}, got {Length}.", nameof(Length));
        if (distance is { } d && (d < 1 || d > MaxDistance))
            throw new ArgumentException($"distance must be in 1 … {MaxDistance}, got {d}.", nameof(distance));
        var rng = new Random(seed);
        var zipf = Enumerable.Range(0, Keys).Select(k => 1.0 / (k + 1)).ToArray();
        var tokens = new long[count * (long)Length];
        var labels = new long[count * (long)Length];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            long row = n * (long)Length;
            for (int i = 0; i < Length; i++) tokens[row + i] = Keys + Values + rng.Next(Fillers);
            int p0 = distance is { } dd ? FirstQuery - 2 * Facts + 1 - dd : rng.Next(Length - 3 * Facts + 1);
            var keys = DrawKeys(rng, zipf);
            var values = Enumerable.Range(0, Facts).Select(_ => (long)(Keys + rng.Next(Values))).ToArray();
            for (int f = 0; f < Facts; f++)
            {
                tokens[row + p0 + 2 * f] = keys[f];
                tokens[row + p0 + 2 * f + 1] = values[f];
            }
            var order = Enumerable.Range(0, Facts).ToArray();
            Sampling.Shuffle(rng, order);
            for (int i = 0; i < Facts; i++)
            {
                tokens[row + FirstQuery + i] = keys[order[i]];
                labels[row + FirstQuery + i] = values[order[i]];
            }
        }
        var shape = new long[] { count, Length };
        return new TokenBatch(tensor(tokens, shape, device: device), tensor(labels, shape, device: device));
    }

    long[] DrawKeys(Random rng, double[] weights)
    {
        var w = (double[])weights.Clone();
        var keys = new long[Facts];
        for (int f = 0; f < Facts; f++)
        {
            double u = rng.NextDouble() * w.Sum(), acc = 0;
            int k = 0;
            for (; k < w.Length - 1; k++) { acc += w[k]; if (u < acc && w[k] > 0) break; }
            while (w[k] == 0) k--;                                                          // rounding at the top end
            keys[f] = k;
            w[k] = 0;                                                                       // without replacement
        }
        return keys;
    }
}
