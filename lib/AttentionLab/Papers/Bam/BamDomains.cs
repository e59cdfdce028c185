using AttentionLab.Core;
using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>The spec's three synthetic domains (§4), over one character vocabulary.</summary>
public enum BamDomain
{
    /// <summary>"a+b=c;" with digits a, b and c = (a + b) mod 10.</summary>
    Arithmetic,
    /// <summary>"abcd|dcba;": 3–6 letters, a bar, the letters reversed.</summary>
    CopyReverse,
    /// <summary>Balanced brackets of two kinds, "([()])[];" (depth ≤ 4).</summary>
    Dyck,
}

/// <summary>A batch of one or several domains: next-token labels on every position, and the domain of each sequence.</summary>
public sealed class BamBatch : TokenBatch
{
    internal BamBatch(Tensor tokens, Tensor labels, long[] domains) : base(tokens, labels) => Domains = domains;

    /// <summary>The domain of sequence n (each sequence is one domain).</summary>
    public IReadOnlyList<long> Domains { get; }
}

/// <summary>
/// The spec's DomainMixture (§4): sequences of one domain each, made of back-to-back examples ended by ';', cut to T + 1
/// characters (tokens = the first T, labels = the last T). Vocabulary: digits 0–9, '+', '=', ';', letters a–h, '|', '(', ')',
/// '[', ']' (26 characters). [ours: the spec names the domains; the formats and lengths are ours, docs/decisions.md.]
/// </summary>
public static class BamDomains
{
    /// <summary>The characters, index = token id.</summary>
    public const string Alphabet = "0123456789+=;abcdefgh|()[]";
    /// <summary>V.</summary>
    public static int VocabSize => Alphabet.Length;
    /// <summary>Number of domains.</summary>
    public static int Count => Enum.GetValues<BamDomain>().Length;
    const int Plus = 10, Eq = 11, End = 12, Letter0 = 13, Letters = 8, Bar = 21;
    static readonly int[] Open = [22, 24], Close = [23, 25];

    /// <summary>
    /// <paramref name="count"/> sequences of <paramref name="length"/> tokens from <c>new Random(seed)</c>: all of
    /// <paramref name="domain"/>, or (null) the mixture, sequence n of domain n mod 3 (equal shares).
    /// </summary>
    public static BamBatch Batch(int count, int length, int seed, BamDomain? domain = null, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        Guard.Positive(length, nameof(length));
        if (domain is { } d && !Enum.IsDefined(d)) throw new ArgumentException($"domain {(int)d} is not a BamDomain.", nameof(domain));
        var rng = new Random(seed);
        var tokens = new long[count * (long)length];
        var labels = new long[count * (long)length];
        var domains = new long[count];
        var seq = new List<int>(length + 16);
        for (int n = 0; n < count; n++)
        {
            var dn = domain ?? (BamDomain)(n % Count);
            domains[n] = (long)dn;
            seq.Clear();
            seq.Add(End);                                                               // every sequence starts at an example boundary
            while (seq.Count < length + 1) Example(dn, rng, seq);
            for (int t = 0; t < length; t++)
            {
                tokens[n * (long)length + t] = seq[t];
                labels[n * (long)length + t] = seq[t + 1];
            }
        }
        using var scope = NewDisposeScope();
        var shape = new long[] { count, length };
        return new BamBatch(torch.tensor(tokens, shape, device: device), torch.tensor(labels, shape, device: device), domains);
    }

    /// <summary>The characters of token ids.</summary>
    public static string Text(IEnumerable<long> ids) => new(ids.Select(i => Alphabet[(int)i]).ToArray());

    static void Example(BamDomain domain, Random rng, List<int> seq)
    {
        switch (domain)
        {
            case BamDomain.Arithmetic:
                int a = rng.Next(10), b = rng.Next(10);
                seq.AddRange([a, Plus, b, Eq, (a + b) % 10, End]);                 // a+b=c;
                break;
            case BamDomain.CopyReverse:
                int n = rng.Next(3, 7);
                var word = Enumerable.Range(0, n).Select(_ => Letter0 + rng.Next(Letters)).ToArray();
                seq.AddRange(word);
                seq.Add(Bar);
                seq.AddRange(word.Reverse());                                           // w|wᴿ;
                seq.Add(End);
                break;
            default:
                var stack = new Stack<int>();
                int pairs = rng.Next(3, 7), opened = 0;
                while (opened < pairs || stack.Count > 0)
                {
                    bool open = opened < pairs && (stack.Count == 0 || (stack.Count < 4 && rng.NextDouble() < 0.5));
                    if (open) { int kind = rng.Next(2); stack.Push(kind); seq.Add(Open[kind]); opened++; }
                    else seq.Add(Close[stack.Pop()]);                                   // the matching bracket
                }
                seq.Add(End);
                break;
        }
    }
}
