using AttentionLab.Data;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SinkLora;

/// <summary>
/// The spec's <c>RepeatedSegmentLm</c> (§4), kept in this folder: sequences built from segments of
/// <see cref="SegmentLength"/> tokens; each segment after the first is, with probability <see cref="RepeatProbability"/>,
/// an exact copy of an earlier segment of the same sequence chosen uniformly (so copies recur at lags up to T and a long
/// context lowers the loss), otherwise fresh text from a fixed random bigram chain (the local n-gram noise: each token
/// has <see cref="Successors"/> likely successors). Every position is scored with the next token.
/// </summary>
/// <param name="VocabSize">V.</param>
/// <param name="SegmentLength">Tokens per segment.</param>
/// <param name="RepeatProbability">Chance that a segment copies an earlier one.</param>
/// <param name="Successors">Successor tokens of the bigram chain per token (probabilities ∝ 2^−rank).</param>
/// <param name="ChainSeed">Seed of the bigram table (fixed across batches).</param>
public sealed record SegmentRecallLm(int VocabSize = 64, int SegmentLength = 16, double RepeatProbability = 0.5, int Successors = 4, int ChainSeed = 12345)
{
    /// <summary><paramref name="count"/> sequences of <paramref name="length"/> tokens with next-token labels (all scored).</summary>
    public TokenBatch Generate(int count, int length, int seed, Device? device = null)
    {
        if (count < 1) throw new ArgumentException($"count must be positive, got {count}.", nameof(count));
        if (length < 1) throw new ArgumentException($"length must be positive, got {length}.", nameof(length));
        if (VocabSize < 2 || SegmentLength < 1 || Successors < 1 || Successors > VocabSize || RepeatProbability is < 0 or > 1)
            throw new ArgumentException($"bad task parameters {this}.", nameof(VocabSize));
        var table = Chain();
        var rng = new Random(seed);
        var tokens = new long[count * (long)length];
        var labels = new long[count * (long)length];
        var row = new long[length + 1];
        for (int n = 0; n < count; n++)
        {
            Fill(row, table, rng);
            Array.Copy(row, 0, tokens, n * (long)length, length);
            Array.Copy(row, 1, labels, n * (long)length, length);
        }
        using var scope = NewDisposeScope();
        return new TokenBatch(TokenBatchData(tokens, count, length, device), TokenBatchData(labels, count, length, device));
    }

    static Tensor TokenBatchData(long[] data, long n, long t, Device? device) => TorchSharp.torch.tensor(data, new[] { n, t }, device: device);

    void Fill(long[] row, int[][] table, Random rng)
    {
        int segments = (row.Length + SegmentLength - 1) / SegmentLength;
        for (int m = 0; m < segments; m++)
        {
            int start = m * SegmentLength, len = Math.Min(SegmentLength, row.Length - start);
            if (m > 0 && rng.NextDouble() < RepeatProbability)
            {
                int src = rng.Next(m) * SegmentLength;                                  // an earlier segment, uniformly
                Array.Copy(row, src, row, start, len);
                continue;
            }
            long prev = start == 0 ? rng.Next(VocabSize) : row[start - 1];
            for (int i = 0; i < len; i++)
            {
                if (start == 0 && i == 0) { row[0] = prev; continue; }
                prev = table[prev][Pick(rng)];
                row[start + i] = prev;
            }
        }
    }

    int Pick(Random rng)
    {
        double u = rng.NextDouble() * (1 - Math.Pow(2, -Successors)), acc = 0;
        for (int r = 0; r < Successors; r++)
        {
            acc += Math.Pow(2, -(r + 1));                                              // P(rank r) ∝ 2^−(r+1)
            if (u < acc) return r;
        }
        return Successors - 1;
    }

    int[][] Chain()
    {
        var rng = new Random(ChainSeed);
        return Enumerable.Range(0, VocabSize).Select(_ =>
        {
            var perm = Enumerable.Range(0, VocabSize).ToArray();
            for (int i = perm.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (perm[i], perm[j]) = (perm[j], perm[i]); }
            return perm.Take(Successors).ToArray();
        }).ToArray();
    }
}
