using AttentionLab.Data;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// The trained-model needle task [ours]: one needle token hidden in a haystack at a controlled depth; at the last position
/// the model must emit it. A single attention layer can solve it (the query attends to the one key from the needle half
/// of the vocabulary and copies it), so a tiny model learns it in a few hundred steps — unlike a passkey, which needs an
/// induction circuit — and what limits a pattern is only whether its heads can <i>see</i> the needle.
/// </summary>
/// <remarks>
/// Tokens: 0 = BOS, 1 = QUERY; filler from [2, V/2), needles from [V/2, V). Layout (length T): BOS at 0, filler at
/// 1 … T−2 with the needle at p = 1 + round(depth · (T − 3)), QUERY at T − 1; Labels[T − 1] = the needle, −100 elsewhere.
/// A depth of null draws p uniformly per row (training).
/// </remarks>
public sealed record S2NeedleTask(int VocabSize = 64, int Length = 256)
{
    public const long BosToken = 0, QueryToken = 1;

    /// <summary>Needle classes V − V/2 (chance = 1 / this).</summary>
    public int NeedleClasses => VocabSize - VocabSize / 2;

    /// <summary>Position of the needle at <paramref name="depth"/> ∈ [0, 1].</summary>
    public int PositionAt(double depth)
    {
        if (!(depth >= 0 && depth <= 1)) throw new ArgumentException($"depth must be in [0, 1], got {depth}.", nameof(depth));
        return 1 + (int)Math.Round(depth * (Length - 3));
    }

    /// <summary><paramref name="count"/> rows from <c>new Random(seed)</c>; needle at <paramref name="depth"/> (null: uniform per row).</summary>
    /// <returns>The batch and the needle position of each row.</returns>
    public (TokenBatch Batch, int[] Positions) Generate(int count, int seed, double? depth = null, Device? device = null)
    {
        if (VocabSize < 6) throw new ArgumentException($"VocabSize must be ≥ 6 (2 special tokens, filler and needles), got {VocabSize}.", nameof(VocabSize));
        if (Length < 4) throw new ArgumentException($"Length must be ≥ 4, got {Length}.", nameof(Length));
        if (count <= 0) throw new ArgumentException($"count must be positive, got {count}.", nameof(count));
        var rng = new Random(seed);
        int t = Length, half = VocabSize / 2;
        var tokens = new long[count * t];
        var labels = new long[count * t];
        var positions = new int[count];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            int row = n * t;
            tokens[row] = BosToken;
            for (int j = 1; j < t - 1; j++) tokens[row + j] = rng.NextInt64(2, half);       // filler
            int p = depth is double d ? PositionAt(d) : rng.Next(1, t - 1);
            long needle = rng.NextInt64(half, VocabSize);
            tokens[row + p] = needle;
            tokens[row + t - 1] = QueryToken;
            labels[row + t - 1] = needle;
            positions[n] = p;
        }
        using var scope = NewDisposeScope();
        return (new TokenBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device)), positions);
    }
}
