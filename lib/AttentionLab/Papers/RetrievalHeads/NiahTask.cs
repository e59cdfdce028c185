using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>One needle-in-a-haystack prompt: the prompt ids, the answer, and where the answer sits in the prompt.</summary>
/// <param name="Tokens">BOS, haystack with the needle inside, then the question (ends with VAL).</param>
/// <param name="Answer">The needle's value tokens v1 … v_m the model must emit.</param>
/// <param name="NeedleStart">s: position of v1 in <see cref="Tokens"/>.</param>
/// <param name="NeedleEnd">e: one past the last value token (e − s = m).</param>
/// <param name="Haystack">Filler tokens in the prompt.</param>
/// <param name="Depth">Needle depth as a fraction of the haystack (0 = first, 1 = last).</param>
public sealed record NiahPrompt(long[] Tokens, long[] Answer, int NeedleStart, int NeedleEnd, int Haystack, double Depth);

/// <summary>
/// The synthetic NIAH task of the spec (§4): a haystack of random filler tokens, a needle <c>KEY k1 k2 VAL v1 v2 v3</c> at
/// depth d, then the question <c>KEY k1 k2 VAL</c>; the model must emit v1 v2 v3 — the needle's tokens copied into the
/// answer, which is what the retrieval score counts. Ids: 0 BOS, 1 KEY, 2 VAL, then <see cref="Symbols"/> symbols shared by
/// filler, keys and values (so a token's identity does not say "needle": only its place after VAL does); a needle's keys and
/// values are distinct and the filler avoids them, so the answer is unambiguous. <see cref="Distractors"/> more needles with
/// other keys sit at random places (multi-query recall, as the spec's MQAR prototype): the question's keys pick the needle.
/// </summary>
public sealed record NiahTask(int Symbols = 48, int KeyLength = 2, int ValueLength = 3,
    int MinHaystack = 8, int MaxHaystack = 48, int Distractors = 0)
{
    /// <summary>Special ids.</summary>
    public const long Bos = 0, Key = 1, Val = 2;

    /// <summary>3 specials + symbols.</summary>
    public int VocabSize => 3 + Symbols;
    /// <summary>KEY, keys, VAL, values.</summary>
    public int NeedleLength => 2 + KeyLength + ValueLength;
    /// <summary>KEY, keys, VAL.</summary>
    public int QuestionLength => 2 + KeyLength;
    /// <summary>Prompt length for <paramref name="haystack"/> filler tokens.</summary>
    public int PromptLength(int haystack) => 1 + haystack + (1 + Distractors) * NeedleLength + QuestionLength;
    /// <summary>Longest training sequence (prompt + answer at <see cref="MaxHaystack"/>).</summary>
    public int MaxLength => PromptLength(MaxHaystack) + ValueLength;

    /// <summary>A prompt with <paramref name="haystack"/> filler tokens and the needle after round(depth · haystack) of them.</summary>
    public NiahPrompt Prompt(int haystack, double depth, Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (haystack < 0) throw new ArgumentException($"haystack must be ≥ 0, got {haystack}.", nameof(haystack));
        if (!(depth >= 0 && depth <= 1)) throw new ArgumentException($"depth must be in [0, 1], got {depth}.", nameof(depth));
        int per = KeyLength + ValueLength, needles = 1 + Distractors;
        if (needles * per >= Symbols)
            throw new ArgumentException($"{needles} needles of {KeyLength} keys + {ValueLength} values need more than that many symbols, have {Symbols}.");
        int before = (int)Math.Round(depth * haystack);
        var symbols = Enumerable.Range(0, Symbols).OrderBy(_ => rng.Next()).Take(needles * per).Select(i => 3L + i).ToArray();
        var keys = symbols[..KeyLength];
        var values = symbols[KeyLength..per];
        var at = new List<(int Before, int Needle)> { (before, 0) };                  // needle 0 is the one asked for
        for (int n = 1; n < needles; n++) at.Add((rng.Next(haystack + 1), n));
        at = at.OrderBy(x => x.Before).ThenBy(_ => rng.Next()).ToList();
        var tokens = new List<long> { Bos };
        var filler = Enumerable.Range(0, Symbols).Select(i => 3L + i).Except(symbols).ToArray();
        int s = -1, next = 0;
        for (int i = 0; i <= haystack; i++)
        {
            for (; next < at.Count && at[next].Before == i; next++)
            {
                var needle = symbols[(at[next].Needle * per)..((at[next].Needle + 1) * per)];
                tokens.Add(Key); tokens.AddRange(needle[..KeyLength]); tokens.Add(Val);
                if (at[next].Needle == 0) s = tokens.Count;
                tokens.AddRange(needle[KeyLength..]);
            }
            if (i < haystack) tokens.Add(filler[rng.Next(filler.Length)]);
        }
        tokens.Add(Key); tokens.AddRange(keys); tokens.Add(Val);
        return new NiahPrompt(tokens.ToArray(), values, s, s + ValueLength, haystack, depth);
    }

    /// <summary>
    /// A training batch [B, T] of prompt + answer at one haystack length (drawn from [min, max] by the seed), depths uniform;
    /// targets [B, T] hold the next token at the answer's positions and −100 elsewhere (the loss reads only the answer).
    /// </summary>
    public (Tensor Tokens, Tensor Targets) Batch(int count, int seed, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        var rng = new Random(seed);
        int haystack = rng.Next(MinHaystack, MaxHaystack + 1);
        int t = PromptLength(haystack) + ValueLength;
        var tokens = new long[count * t];
        var targets = new long[count * t];
        Array.Fill(targets, -100L);
        for (int b = 0; b < count; b++)
        {
            var p = Prompt(haystack, rng.NextDouble(), rng);
            var row = p.Tokens.Concat(p.Answer).ToArray();
            Array.Copy(row, 0, tokens, b * t, t);
            for (int i = p.Tokens.Length - 1; i < t - 1; i++) targets[b * t + i] = row[i + 1];
        }
        using var scope = NewDisposeScope();
        var x = torch.tensor(tokens, device: device).view(count, t);
        var y = torch.tensor(targets, device: device).view(count, t);
        return (x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }

    /// <summary>Cross-entropy over the answer positions.</summary>
    public static Tensor Loss(Tensor logits, Tensor targets) =>
        nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index: -100);

    /// <summary>Share of sequences whose every answer token is the teacher-forced argmax.</summary>
    public static double Accuracy(Tensor logits, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var known = targets.ne(-100);
        var right = logits.argmax(-1).eq(targets).logical_or(known.logical_not());
        return right.all(1).to(ScalarType.Float64).mean().item<double>();
    }
}
