using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// Induction / copy sequences: a random segment S of length L shown twice.
/// </summary>
/// <remarks>
/// Layout: [BOS] S [SEP] S with o = 1 if <see cref="Bos"/> (token 0 at position 0) else 0, and token 1 as SEP when
/// <see cref="Separator"/>; segment tokens come from [c, V), c = 2 with a separator else 1 (token 0 is reserved for BOS),
/// all distinct within a segment when <see cref="Distinct"/> (so each token has one earlier copy).
/// Labels (next token) on the second copy: the first copy starts at o, the second at s = o + L (+1 with SEP);
/// Labels[t] = Tokens[t+1] for t = s … s+L−2, and with SEP also at t = s−1 (the SEP predicts S₀, the copy task);
/// −100 elsewhere. Induction (without SEP) cannot predict the second copy's first token, so it is not scored.
/// </remarks>
public sealed record InductionTask(int VocabSize = 64, int SegmentLength = 16, bool Bos = true, bool Separator = false, bool Distinct = true)
{
    /// <summary>Sequence length: o + 2L (+1 with SEP).</summary>
    public int Length => (Bos ? 1 : 0) + 2 * SegmentLength + (Separator ? 1 : 0);
    /// <summary>First position of the second copy.</summary>
    public int SecondCopyStart => (Bos ? 1 : 0) + SegmentLength + (Separator ? 1 : 0);
    /// <summary>The separator token (1) when <see cref="Separator"/>.</summary>
    public const long SeparatorToken = 1;
    /// <summary>The BOS token (0).</summary>
    public const long BosToken = 0;

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c>.</summary>
    public TokenBatch Generate(int count, int seed, Device? device = null)
    {
        Validate();
        Sampling.CheckCount(count);
        var rng = new Random(seed);
        int t = Length, l = SegmentLength, o = Bos ? 1 : 0, s = SecondCopyStart;
        long first = Separator ? 2 : 1;
        var tokens = new long[count * t];
        var labels = new long[count * t];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            var segment = Distinct ? Sampling.Distinct(rng, first, VocabSize, l)
                : Enumerable.Range(0, l).Select(_ => rng.NextInt64(first, VocabSize)).ToArray();
            var row = new long[t];
            if (Bos) row[0] = BosToken;
            for (int i = 0; i < l; i++) { row[o + i] = segment[i]; row[s + i] = segment[i]; }   // S … S
            if (Separator) row[s - 1] = SeparatorToken;
            Array.Copy(row, 0, tokens, n * t, t);
            for (int pos = Separator ? s - 1 : s; pos <= s + l - 2; pos++) labels[n * t + pos] = row[pos + 1];
        }
        using var scope = NewDisposeScope();
        return new TokenBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device));
    }

    void Validate()
    {
        if (SegmentLength < 2) throw new ArgumentException($"SegmentLength must be ≥ 2, got {SegmentLength}.", nameof(SegmentLength));
        long first = Separator ? 2 : 1;
        if (VocabSize <= first) throw new ArgumentException($"VocabSize must be > {first}, got {VocabSize}.", nameof(VocabSize));
        if (Distinct && VocabSize - first < SegmentLength)
            throw new ArgumentException($"VocabSize {VocabSize} has {VocabSize - first} segment tokens, fewer than SegmentLength {SegmentLength} distinct ones.", nameof(VocabSize));
    }
}
