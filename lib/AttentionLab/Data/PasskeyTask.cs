using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// Needle-in-a-haystack / passkey retrieval at a controlled depth.
/// </summary>
/// <remarks>
/// Tokens: 0 = BOS, 1 = needle marker, 2 = query marker; filler and needle digits from [3, V).
/// Layout (length T, needle length k): position 0 BOS; the haystack 1 … q−1 of random filler holding the needle
/// [MARK n₁ … n_k] with its marker at m = 1 + round(Depth · (q − 1 − (k+1))); then q = T − k − 1 holds QUERY and
/// q+1 … T−1 repeat n₁ … n_k. Labels[q + i] = n_{i+1} for i = 0 … k−1 (each answer digit is predicted from the
/// position before it); −100 elsewhere. Depth 0 puts the needle right after BOS, 1 right before the query.
/// The needle's digits sit at <see cref="NeedleBatch.NeedleStart"/> … + k − 1.
/// </remarks>
public sealed record PasskeyTask(int VocabSize = 64, int Length = 64, int NeedleLength = 4, double Depth = 0.5)
{
    public const long BosToken = 0, MarkerToken = 1, QueryToken = 2;

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c>; the needle depth is the same in every row.</summary>
    public NeedleBatch Generate(int count, int seed, Device? device = null)
    {
        Validate();
        Sampling.CheckCount(count);
        var rng = new Random(seed);
        int t = Length, k = NeedleLength, q = t - k - 1;
        int marker = 1 + (int)Math.Round(Depth * (q - 1 - (k + 1)));
        var tokens = new long[count * t];
        var labels = new long[count * t];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            var row = new long[t];
            for (int j = 1; j < q; j++) row[j] = rng.NextInt64(3, VocabSize);            // filler
            row[0] = BosToken;
            row[marker] = MarkerToken;
            row[q] = QueryToken;
            for (int i = 0; i < k; i++)
            {
                long digit = rng.NextInt64(3, VocabSize);
                row[marker + 1 + i] = digit;                                             // the needle
                row[q + 1 + i] = digit;                                                  // the answer
                labels[n * t + q + i] = digit;
            }
            Array.Copy(row, 0, tokens, n * t, t);
        }
        using var scope = NewDisposeScope();
        return new NeedleBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device), marker, marker + 1, k, q);
    }

    void Validate()
    {
        if (NeedleLength <= 0) throw new ArgumentException($"NeedleLength must be positive, got {NeedleLength}.", nameof(NeedleLength));
        if (Length < 2 * NeedleLength + 3)
            throw new ArgumentException($"Length must be ≥ 2·NeedleLength + 3 = {2 * NeedleLength + 3}, got {Length}.", nameof(Length));
        if (VocabSize <= 3) throw new ArgumentException($"VocabSize must be > 3 (0–2 are special), got {VocabSize}.", nameof(VocabSize));
        if (!(Depth >= 0 && Depth <= 1)) throw new ArgumentException($"Depth must be in [0, 1], got {Depth}.", nameof(Depth));
    }
}

/// <summary>Passkey sequences with the needle's place: marker position, digits at NeedleStart … NeedleStart+NeedleLength−1, query position.</summary>
public sealed class NeedleBatch : TokenBatch
{
    public NeedleBatch(Tensor tokens, Tensor labels, long markerPosition, long needleStart, long needleLength, long queryPosition) : base(tokens, labels)
    {
        (MarkerPosition, NeedleStart, NeedleLength, QueryPosition) = (markerPosition, needleStart, needleLength, queryPosition);
    }

    public long MarkerPosition { get; }
    public long NeedleStart { get; }
    public long NeedleLength { get; }
    public long QueryPosition { get; }
}
