using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// Multi-query associative recall with zoology's semantics (<c>multiquery_ar</c>, Arora et al. 2023).
/// </summary>
/// <remarks>
/// Layout of one sequence (length T, P pairs, V vocabulary):
/// positions 0 … 2P−1: k₁ v₁ k₂ v₂ … k_P v_P — distinct keys from [1, V/2), distinct values from [V/2, V);
/// positions 2P … T−1: the query region. Key k_i is queried at position 2P + 2·g_i, where the gaps g_i ∈ [0, S),
/// S = (T − 2P)/2, are drawn without replacement with p(g) ∝ (g+1)^{a−1}, a = <see cref="PowerA"/> (0.01: queries
/// cluster near the context); Labels there = v_i, −100 everywhere else. Every other query-region slot is filler:
/// uniform random tokens from [0, V) (<see cref="RandomFiller"/>), else 0.
/// </remarks>
public sealed record MqarTask(int VocabSize = 8192, int Length = 64, int Pairs = 8, double PowerA = 0.01, bool RandomFiller = true)
{
    /// <summary>Gap slots in the query region, S = (T − 2P) / 2.</summary>
    public int Slots => (Length - 2 * Pairs) / 2;

    /// <summary>p(g) ∝ (g+1)^{a−1} over the S slots (normalised): the law of the first draw.</summary>
    public double[] GapProbabilities()
    {
        Validate();
        var w = Enumerable.Range(1, Slots).Select(g => PowerA * Math.Pow(g, PowerA - 1)).ToArray();
        double sum = w.Sum();
        return w.Select(x => x / sum).ToArray();
    }

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c>, on <paramref name="device"/>.</summary>
    public MqarBatch Generate(int count, int seed, Device? device = null)
    {
        Validate();
        Sampling.CheckCount(count);
        var rng = new Random(seed);
        int t = Length, p = Pairs;
        var weights = GapProbabilities();
        var tokens = new long[count * t];
        var labels = new long[count * t];
        var gaps = new long[count * p];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            var keys = Sampling.Distinct(rng, 1, VocabSize / 2, p);
            var values = Sampling.Distinct(rng, VocabSize / 2, VocabSize, p);
            var g = DrawGaps(rng, weights, p);
            var row = new long[t];                                              // 0 = filler for now
            for (int i = 0; i < p; i++)
            {
                row[2 * i] = keys[i]; row[2 * i + 1] = values[i];               // k_i v_i
                long q = 2 * p + 2 * g[i];                                      // query of k_i
                row[q] = keys[i];
                labels[n * t + q] = values[i];                                  // predict v_i after k_i
                gaps[n * p + i] = g[i];
            }
            for (int j = 2 * p; j < t; j++)
                if (row[j] == 0 && RandomFiller) row[j] = rng.NextInt64(0, VocabSize);   // zoology: replace 0s by random tokens
            Array.Copy(row, 0, tokens, n * t, t);
        }
        using var scope = NewDisposeScope();
        return new MqarBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device),
            torch.tensor(gaps, new long[] { count, p }, device: device));
    }

    /// <summary>Weighted draws without replacement (numpy's choice(replace=False, p=…)): each draw ∝ p among the slots left.</summary>
    static long[] DrawGaps(Random rng, double[] p, int count)
    {
        var left = (double[])p.Clone();
        var result = new long[count];
        for (int i = 0; i < count; i++)
        {
            double u = rng.NextDouble() * left.Sum(), acc = 0;
            int pick = Array.FindLastIndex(left, w => w > 0);
            for (int g = 0; g < left.Length; g++)
            {
                if (left[g] == 0) continue;
                acc += left[g];
                if (u < acc) { pick = g; break; }
            }
            result[i] = pick;
            left[pick] = 0;
        }
        return result;
    }

    void Validate()
    {
        if (Pairs <= 0) throw new ArgumentException($"Pairs must be positive, got {Pairs}.", nameof(Pairs));
        if (Length % 2 != 0) throw new ArgumentException($"Length must be even, got {Length}.", nameof(Length));
        if (4 * Pairs > Length) throw new ArgumentException($"Length must be ≥ 4·Pairs = {4 * Pairs}, got {Length}.", nameof(Length));
        if (VocabSize / 2 - 1 < Pairs)
            throw new ArgumentException($"VocabSize {VocabSize} leaves {VocabSize / 2 - 1} keys in [1, V/2), fewer than Pairs = {Pairs}.", nameof(VocabSize));
        if (!(PowerA > 0)) throw new ArgumentException($"PowerA must be positive, got {PowerA}.", nameof(PowerA));
    }
}

/// <summary>MQAR sequences: Tokens, Labels, and Gaps [N, P] (int64; key i is queried at position 2P + 2·Gaps[n, i]).</summary>
public sealed class MqarBatch : TokenBatch
{
    public MqarBatch(Tensor tokens, Tensor labels, Tensor gaps) : base(tokens, labels) => Gaps = gaps.DetachFromDisposeScope();
    public Tensor Gaps { get; }
    public override void Dispose() { Gaps.Dispose(); base.Dispose(); }
}
