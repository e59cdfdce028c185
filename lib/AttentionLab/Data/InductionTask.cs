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
/// With <see cref="MinSegmentLength"/> &lt; L each row draws its own segment length L_n ∈ [MinSegmentLength, L] and
/// fills the first 2(L − L_n) positions after BOS with random tokens, so the distance between the copies varies
/// (a fixed distance lets one layer solve the task by position alone, without an induction circuit); the layout
/// above then holds with o = 1 + 2(L − L_n) and L = L_n.
/// In that layout the second copy always ends the sequence and the copy distance is tied to the filler length.
/// <see cref="MaxGap"/> &gt; 0 puts g_n ∈ [0, MaxGap] random tokens between the copies, and <see cref="RandomOffset"/>
/// splits the row's slack 2(L − L_n) + MaxGap − g_n at random between filler before the first copy (a_n ∈ [0, slack])
/// and filler after the second: the copies sit anywhere among random tokens, and only the token after an earlier copy
/// of the current token (induction) predicts the next one. Then the first copy starts at o + a_n, the second at
/// o + a_n + L_n + g_n (+1 with SEP); sequence length o + 2L + MaxGap (+1 with SEP). Filler tokens are drawn from [c, V)
/// with replacement, so they may repeat segment tokens. Both default off, so earlier seeds give earlier data.
/// </remarks>
public sealed record InductionTask(int VocabSize = 64, int SegmentLength = 16, bool Bos = true, bool Separator = false, bool Distinct = true,
    int? MinSegmentLength = null, int MaxGap = 0, bool RandomOffset = false)
{
    /// <summary>Sequence length: o + 2L + MaxGap (+1 with SEP).</summary>
    public int Length => (Bos ? 1 : 0) + 2 * SegmentLength + MaxGap + (Separator ? 1 : 0);
    /// <summary>First position of the second copy of a full-length segment without gap or random offset.</summary>
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
        int t = Length, l = SegmentLength, o = Bos ? 1 : 0;
        long first = Separator ? 2 : 1;
        var tokens = new long[count * t];
        var labels = new long[count * t];
        Array.Fill(labels, TokenBatch.Ignore);
        int minL = MinSegmentLength ?? l;
        for (int n = 0; n < count; n++)
        {
            int ln = minL == l ? l : rng.Next(minL, l + 1);                              // this row's segment length L_n
            int gap = MaxGap > 0 ? rng.Next(0, MaxGap + 1) : 0;                           // g_n random tokens between the copies
            int slack = 2 * (l - ln) + MaxGap - gap;                                      // filler slots outside the copies
            int before = RandomOffset ? rng.Next(0, slack + 1) : slack;                   // a_n of them before the first copy
            int on = o + before, sn = on + ln + gap + (Separator ? 1 : 0);                // first and second copy start
            var segment = Distinct ? Sampling.Distinct(rng, first, VocabSize, ln)
                : Enumerable.Range(0, ln).Select(_ => rng.NextInt64(first, VocabSize)).ToArray();
            var row = new long[t];
            if (Bos) row[0] = BosToken;
            for (int i = o; i < on; i++) row[i] = rng.NextInt64(first, VocabSize);      // filler before the first copy
            for (int i = on + ln; i < on + ln + gap; i++) row[i] = rng.NextInt64(first, VocabSize);   // the gap
            for (int i = sn + ln; i < t; i++) row[i] = rng.NextInt64(first, VocabSize); // filler after the second copy
            for (int i = 0; i < ln; i++) { row[on + i] = segment[i]; row[sn + i] = segment[i]; }   // S … S
            if (Separator) row[sn - 1] = SeparatorToken;
            Array.Copy(row, 0, tokens, n * t, t);
            for (int pos = Separator ? sn - 1 : sn; pos <= sn + ln - 2; pos++) labels[n * t + pos] = row[pos + 1];
        }
        using var scope = NewDisposeScope();
        return new TokenBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device));
    }

    void Validate()
    {
        if (SegmentLength < 2) throw new ArgumentException($"SegmentLength must be ≥ 2, got {SegmentLength}.", nameof(SegmentLength));
        if (MinSegmentLength is { } m && (m < 2 || m > SegmentLength))
            throw new ArgumentException($"MinSegmentLength must be in [2, SegmentLength = {SegmentLength}], got {m}.", nameof(MinSegmentLength));
        if (MaxGap < 0) throw new ArgumentException($"MaxGap must be ≥ 0, got {MaxGap}.", nameof(MaxGap));
        long first = Separator ? 2 : 1;
        if (VocabSize <= first) throw new ArgumentException($"VocabSize must be > {first}, got {VocabSize}.", nameof(VocabSize));
        if (Distinct && VocabSize - first < SegmentLength)
            throw new ArgumentException(
                $"VocabSize {VocabSize} has {VocabSize - first} segment tokens, fewer than SegmentLength {SegmentLength} distinct ones.", nameof(VocabSize));
    }
}
