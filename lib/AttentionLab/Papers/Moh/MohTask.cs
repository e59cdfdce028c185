using AttentionLab.Core;
using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Moh;

/// <summary>The four sub-tasks of <see cref="MohTask"/>; each segment starts with its opcode token (the enum's value).</summary>
public enum MohOpcode
{
    /// <summary>c_i = c_{i−2}: attend two tokens back.</summary>
    Copy2,
    /// <summary>c_i = c_{i−3}: attend three tokens back.</summary>
    Copy3,
    /// <summary>A random run of distinct tokens, then the same run again: the token after the earlier copy of the current one.</summary>
    Induction,
    /// <summary>c_{i+1} = π(c_i) for a fixed permutation π: no attention needed (a local bigram).</summary>
    Bigram,
}

/// <summary>
/// A batch of <see cref="MohTask"/>: next-token labels on every position but the last, the opcode of each position's
/// segment, and where the next token is determined by the segment's rule (the rest are random draws).
/// </summary>
public sealed class MohBatch : TokenBatch
{
    internal MohBatch(Tensor tokens, Tensor labels, Tensor opcodes, Tensor determined) : base(tokens, labels)
    {
        Opcodes = opcodes.DetachFromDisposeScope();
        Determined = determined.DetachFromDisposeScope();
    }

    /// <summary>[N, T] int64: the opcode (0 … 3) of the segment each position belongs to (its opcode token included).</summary>
    public Tensor Opcodes { get; }
    /// <summary>[N, T] bool: the label is fixed by the segment's rule (a perfect model predicts it with certainty).</summary>
    public Tensor Determined { get; }

    public override void Dispose()
    {
        Opcodes.Dispose();
        Determined.Dispose();
        base.Dispose();
    }
}

/// <summary>
/// The spec's multi-task opcode LM (§4): a sequence of segments, each an opcode token followed by content that obeys the
/// opcode's rule (<see cref="MohOpcode"/>), so different tokens need different heads. Tokens 0 … 3 are the opcodes,
/// 4 … 4 + <see cref="Symbols"/> − 1 the content symbols. Segment lengths are drawn from [<see cref="MinSegment"/>,
/// <see cref="MaxSegment"/>]; the sequence is cut at <see cref="Length"/>. [ours: the spec names the opcodes (COPY-k back,
/// INDUCTION, COUNT, local bigram) but no generator; COUNT is replaced by a second copy distance, docs/decisions.md.]
/// </summary>
public sealed record MohTask(int Length = 64, int Symbols = 16, int MinSegment = 10, int MaxSegment = 16, int PermutationSeed = 12345)
{
    /// <summary>Number of opcodes.</summary>
    public const int Opcodes = 4;
    /// <summary>Vocabulary: opcodes + symbols.</summary>
    public int VocabSize => Opcodes + Symbols;

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c> on <paramref name="device"/>.</summary>
    public MohBatch Generate(int count, int seed, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        if (Length < 2) throw new ArgumentException($"Length must be at least 2, got {Length}.", nameof(Length));
        if (Symbols < 4) throw new ArgumentException($"Symbols must be at least 4, got {Symbols}.", nameof(Symbols));
        if (MinSegment < 5 || MaxSegment < MinSegment)
            throw new ArgumentException($"segments need 5 ≤ MinSegment ≤ MaxSegment, got {MinSegment} … {MaxSegment}.", nameof(MinSegment));
        if (MaxSegment / 2 > Symbols)
            throw new ArgumentException($"an induction run of {MaxSegment / 2} distinct symbols needs Symbols ≥ it, got {Symbols}.", nameof(Symbols));
        var perm = Permutation();
        var rng = new Random(seed);
        int t = Length;
        var tokens = new long[count * t];
        var ops = new long[count * t];
        var determinedNext = new bool[count * t];                                      // token at this position follows the rule
        for (int n = 0; n < count; n++)
        {
            int pos = 0;
            while (pos < t)
            {
                var op = (MohOpcode)rng.Next(Opcodes);
                int len = rng.Next(MinSegment, MaxSegment + 1);                         // content length
                var content = Content(op, len, rng, perm, out var rule);
                Put(n, pos, (long)op, op, false);
                for (int i = 0; i < len; i++) Put(n, pos + 1 + i, Opcodes + content[i], op, rule[i]);
                pos += 1 + len;
            }
        }
        var labels = new long[count * t];
        var determined = new bool[count * t];
        for (int n = 0; n < count; n++)
            for (int i = 0; i < t; i++)
            {
                int at = n * t + i;
                labels[at] = i + 1 < t ? tokens[at + 1] : TokenBatch.Ignore;
                determined[at] = i + 1 < t && determinedNext[at + 1];
            }
        return new MohBatch(torch.tensor(tokens, new long[] { count, t }, device: device), torch.tensor(labels, new long[] { count, t }, device: device),
            torch.tensor(ops, new long[] { count, t }, device: device), torch.tensor(determined, new long[] { count, t }, device: device));

        void Put(int n, int p, long token, MohOpcode op, bool rule)
        {
            if (p >= t) return;
            tokens[n * t + p] = token;
            ops[n * t + p] = (long)op;
            determinedNext[n * t + p] = rule;
        }
    }

    /// <summary>π: a fixed permutation of the symbols (seeded by <see cref="PermutationSeed"/>).</summary>
    public int[] Permutation()
    {
        var rng = new Random(PermutationSeed);
        var p = Enumerable.Range(0, Symbols).ToArray();
        for (int i = p.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (p[i], p[j]) = (p[j], p[i]); }
        return p;
    }

    /// <summary>Content symbols of one segment and, per symbol, whether the rule fixes it given the earlier ones.</summary>
    int[] Content(MohOpcode op, int len, Random rng, int[] perm, out bool[] rule)
    {
        var c = new int[len];
        rule = new bool[len];
        switch (op)
        {
            case MohOpcode.Copy2:
            case MohOpcode.Copy3:
                int back = op == MohOpcode.Copy2 ? 2 : 3;
                for (int i = 0; i < len; i++)
                    (c[i], rule[i]) = i < back ? (rng.Next(Symbols), false) : (c[i - back], true);   // c_i = c_{i−k}
                break;
            case MohOpcode.Induction:
                int half = len / 2;
                var run = Enumerable.Range(0, Symbols).OrderBy(_ => rng.Next()).Take(half).ToArray();   // distinct
                for (int i = 0; i < len; i++)
                {
                    int j = i < half ? i : i - half;
                    (c[i], rule[i]) = j < half ? (run[j], i > half) : (rng.Next(Symbols), false);   // the copy's first token is not fixed
                }
                break;
            default:
                c[0] = rng.Next(Symbols);
                for (int i = 1; i < len; i++) (c[i], rule[i]) = (perm[c[i - 1]], true);   // c_{i+1} = π(c_i)
                break;
        }
        return c;
    }
}
