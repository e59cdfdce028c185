using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// ListOps-lite (after LRA's ListOps, Tay et al. 2021): nested prefix expressions over digits 0–9 with the operators
/// MAX, MIN, MED (median, LRA's floor of the middle mean for an even count) and SM (sum mod 10), e.g.
/// <c>[MAX 3 [SM 4 9 ] 1 ] =</c> → 3. One sequence per row, left-aligned, closed by <c>=</c> and padded after it; the
/// only scored label is at the <c>=</c> position (the value, 0–9), so a causal model has read the whole expression there.
/// </summary>
/// <param name="MaxLength">T: every sequence (with its <c>=</c>) fits in T tokens.</param>
/// <param name="MaxDepth">deepest nesting of operators (1 = a flat list).</param>
/// <param name="MaxArgs">most arguments of one operator (at least 2).</param>
/// <param name="LeafProbability">chance that an argument below the root is a digit rather than a sub-expression.</param>
public sealed record ListOpsLite(int MaxLength = 64, int MaxDepth = 3, int MaxArgs = 4, double LeafProbability = 0.6)
{
    /// <summary>Token ids: digits 0–9 are themselves; then the operators, the closing bracket, <c>=</c> and padding.</summary>
    public const int Max = 10, Min = 11, Med = 12, Sum = 13, Close = 14, Query = 15, Pad = 16;

    /// <summary>17 tokens.</summary>
    public int VocabSize => 17;

    /// <summary>Short names of the tokens, by id.</summary>
    public static IReadOnlyList<string> TokenNames { get; } =
        Enumerable.Range(0, 10).Select(i => i.ToString()).Concat(new[] { "[MAX", "[MIN", "[MED", "[SM", "]", "=", "·" }).ToArray();

    /// <summary><paramref name="count"/> expressions drawn with <paramref name="seed"/>: tokens [N, T], labels [N, T] (−100 except at <c>=</c>).</summary>
    public TokenBatch Generate(int count, int seed, Device? device = null)
    {
        Sampling.CheckCount(count);
        if (MaxLength < 6) throw new ArgumentException($"MaxLength must be ≥ 6 (the smallest expression and '='), got {MaxLength}.", nameof(MaxLength));
        if (MaxDepth < 1) throw new ArgumentException($"MaxDepth must be ≥ 1, got {MaxDepth}.", nameof(MaxDepth));
        if (MaxArgs < 2) throw new ArgumentException($"MaxArgs must be ≥ 2, got {MaxArgs}.", nameof(MaxArgs));
        var rng = new Random(seed);
        var tokens = new long[(long)count * MaxLength];
        var labels = new long[(long)count * MaxLength];
        Array.Fill(tokens, Pad);
        Array.Fill(labels, TokenBatch.Ignore);
        for (int row = 0; row < count; row++)
        {
            List<long> seq;
            int value;
            do
            {
                seq = new List<long>();
                value = Expression(rng, seq, 0);
            } while (seq.Count + 1 > MaxLength);
            seq.Add(Query);
            for (int t = 0; t < seq.Count; t++) tokens[(long)row * MaxLength + t] = seq[t];
            labels[(long)row * MaxLength + seq.Count - 1] = value;
        }
        using var scope = NewDisposeScope();
        return new TokenBatch(TokenBatch.Make(tokens, count, MaxLength, device), TokenBatch.Make(labels, count, MaxLength, device));
    }

    /// <summary>Appends one expression (an operator at the root, digits or sub-expressions below) and returns its value.</summary>
    int Expression(Random rng, List<long> seq, int depth)
    {
        if (depth > 0 && (depth >= MaxDepth || rng.NextDouble() < LeafProbability))
        {
            int digit = rng.Next(10);
            seq.Add(digit);
            return digit;
        }
        int op = Max + rng.Next(4);
        int args = 2 + rng.Next(MaxArgs - 1);
        seq.Add(op);
        var values = new int[args];
        for (int a = 0; a < args; a++) values[a] = Expression(rng, seq, depth + 1);
        seq.Add(Close);
        return Apply(op, values);
    }

    /// <summary>MAX, MIN, MED (floor of the middle mean for an even count, as LRA's int(np.median)) or SM (sum mod 10).</summary>
    public static int Apply(int op, IReadOnlyList<int> values)
    {
        if (values is null || values.Count == 0) throw new ArgumentException("an operator needs at least one argument.", nameof(values));
        var sorted = values.OrderBy(v => v).ToArray();
        return op switch
        {
            Max => sorted[^1],
            Min => sorted[0],
            Med => sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2,
            Sum => values.Sum() % 10,
            _ => throw new ArgumentException($"op must be one of {Max}…{Sum}, got {op}.", nameof(op)),
        };
    }

    /// <summary>Row <paramref name="row"/> of <paramref name="tokens"/> as text (up to and including <c>=</c>).</summary>
    public static string Render(Tensor tokens, long row)
    {
        Guard.Rank(tokens, 2, nameof(tokens), "N, T");
        var ids = tokens[row].to(torch.CPU).data<long>().ToArray();
        int end = Array.IndexOf(ids, (long)Query);
        return string.Join(' ', ids.Take(end < 0 ? ids.Length : end + 1).Select(i => TokenNames[(int)i]));
    }
}
