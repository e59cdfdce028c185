using AttentionLab.Core;
using AttentionLab.Data;
using static TorchSharp.torch;

namespace AttentionLab.Papers.CircuitReuse;

/// <summary>Which of the two tasks a prompt set belongs to.</summary>
public enum ReuseTask
{
    /// <summary>IOI analogue: "BOS when A and B went , S gave it to" → the name that is not S (length 11).</summary>
    Ioi,
    /// <summary>Colored-Objects analogue: "BOS c1 o1 , c2 o2 , c3 o3 . oq" → the colour of oq (length 11).</summary>
    ColoredObjects,
}

/// <summary>
/// Clean/corrupt prompt pairs of one task. Both inputs share the template (IOI: also the END token "to"; CO: END is the asked
/// object, so it differs); the corrupted one asks for a
/// different answer (IOI: the other name is repeated; CO: another object is asked about), so LD = logit(answer) −
/// logit(corrupt answer) flips sign between them.
/// </summary>
/// <param name="Task">The task.</param>
/// <param name="Clean">Clean tokens [B, T] (int64).</param>
/// <param name="Corrupt">Corrupted tokens [B, T].</param>
/// <param name="Answer">The clean answer token per prompt.</param>
/// <param name="CorruptAnswer">The corrupted prompt's answer token (the LD's other logit).</param>
/// <param name="AnswerPosition">Where a mover head at END reads the answer from (IOI: the IO name itself; CO: the earlier copy of the asked
/// object, which holds its colour through a previous-token head — the colour token precedes it, so END's match is a same-token match).</param>
/// <remarks>Token ids: <see cref="ReuseVocabulary"/>.</remarks>
public sealed record PromptPairs(ReuseTask Task, Tensor Clean, Tensor Corrupt, long[] Answer, long[] CorruptAnswer, long[] AnswerPosition)
{
    /// <summary>Number of prompts.</summary>
    public int Count => Answer.Length;
}

/// <summary>
/// The shared vocabulary of the two synthetic tasks (spec §4): 11 template words, 20 first names from
/// <see cref="Facts.FirstNames"/>, 8 colours and 10 objects (49 tokens).
/// </summary>
public sealed class ReuseVocabulary
{
    /// <summary>Template words, ids 0–10 (ids 8 "a" and 10 "color" are unused by the prompts and kept so the ids stay put).</summary>
    public static readonly string[] Words = { "<bos>", "when", "and", "went", ",", "gave", "it", "to", "a", ".", "color" };
    /// <summary>Colour words.</summary>
    public static readonly string[] Colours = { "red", "blue", "green", "yellow", "black", "white", "pink", "brown" };
    /// <summary>Object words.</summary>
    public static readonly string[] Objects = { "cup", "pen", "ball", "book", "hat", "key", "box", "shoe", "lamp", "coin" };
    /// <summary>Number of names.</summary>
    public const int NameCount = 20;
    /// <summary>First name id.</summary>
    public const int NameStart = 11;
    /// <summary>First colour id.</summary>
    public const int ColourStart = NameStart + NameCount;
    /// <summary>First object id.</summary>
    public const int ObjectStart = ColourStart + 8;
    /// <summary>Vocabulary size (49).</summary>
    public const int Size = ObjectStart + 10;
    /// <summary>Prompt length of the IOI analogue.</summary>
    public const int IoiLength = 11;
    /// <summary>Prompt length of the CO analogue.</summary>
    public const int CoLength = 11;

    string[]? names;

    /// <summary>The 20 names (the first 20 of the shipped first-name list, read on first use).</summary>
    public IReadOnlyList<string> Names => names ??= Facts.FirstNames().Take(NameCount).Select(f => f.Name).ToArray();

    /// <summary>The word of token <paramref name="id"/>.</summary>
    public string Word(long id) => id switch
    {
        < 0 or >= Size => throw new ArgumentException($"token must be in 0…{Size - 1}, got {id}.", nameof(id)),
        < NameStart => Words[id],
        < ColourStart => Names[(int)id - NameStart],
        < ObjectStart => Colours[id - ColourStart],
        _ => Objects[id - ObjectStart],
    };

    /// <summary>The words of a prompt.</summary>
    public string Text(IEnumerable<long> tokens) => string.Join(" ", tokens.Select(Word));
}

/// <summary>Generators of the two tasks; the same seed gives the same prompts.</summary>
public static class ReuseData
{
    /// <summary>One IOI-analogue prompt: tokens, answer (IO), the other name (S), and the IO's position.</summary>
    /// <remarks>"BOS when A and B went , S gave it to": S ∈ {A, B} at random; the answer is the other name. Corrupting = repeating the
    /// other name (answer and S swap), so the template and END ("to") are shared.</remarks>
    public static (long[] Tokens, long Answer, long Other, long AnswerPos) Ioi(Random rng, bool repeatFirst)
    {
        ArgumentNullException.ThrowIfNull(rng);
        int a = rng.Next(ReuseVocabulary.NameCount), b = rng.Next(ReuseVocabulary.NameCount - 1);
        if (b >= a) b++;
        long na = ReuseVocabulary.NameStart + a, nb = ReuseVocabulary.NameStart + b;
        long s = repeatFirst ? na : nb, io = repeatFirst ? nb : na;
        long[] t = { 0, 1, na, 2, nb, 3, 4, s, 5, 6, 7 };
        return (t, io, s, repeatFirst ? 4 : 2);
    }

    /// <summary>One CO-analogue prompt: three distinct colours and objects (the asked object, END at index 10, is left −1).</summary>
    /// <remarks>"BOS c1 o1 , c2 o2 , c3 o3 . oq": the answer is c_q (at 1 + 3q), read at o_q (position 2 + 3q); END is the asked object.</remarks>
    public static (long[] Tokens, long[] Colours, long[] Objects) ColoredObjects(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var c = Pick(rng, 8, 3).Select(i => (long)(ReuseVocabulary.ColourStart + i)).ToArray();
        var o = Pick(rng, 10, 3).Select(i => (long)(ReuseVocabulary.ObjectStart + i)).ToArray();
        long[] t = { 0, c[0], o[0], 4, c[1], o[1], 4, c[2], o[2], 9, -1 };
        return (t, c, o);
    }

    static int[] Pick(Random rng, int n, int k)
    {
        var all = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < k; i++) { int j = rng.Next(i, n); (all[i], all[j]) = (all[j], all[i]); }
        return all[..k];
    }

    /// <summary><paramref name="count"/> clean/corrupt pairs of <paramref name="task"/> (seeded).</summary>
    public static PromptPairs Pairs(ReuseTask task, int count, int seed, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        var rng = new Random(seed);
        int t = task == ReuseTask.Ioi ? ReuseVocabulary.IoiLength : ReuseVocabulary.CoLength;
        var clean = new long[count * t];
        var corrupt = new long[count * t];
        var (ans, other, pos) = (new long[count], new long[count], new long[count]);
        for (int i = 0; i < count; i++)
        {
            long[] x, xc;
            if (task == ReuseTask.Ioi)
            {
                bool first = rng.Next(2) == 0;
                var state = rng.Next();
                var p = Ioi(new Random(state), first);
                var q = Ioi(new Random(state), !first);
                (x, xc, ans[i], other[i], pos[i]) = (p.Tokens, q.Tokens, p.Answer, q.Answer, p.AnswerPos);
            }
            else
            {
                var p = ColoredObjects(rng);
                int k = rng.Next(3), k2 = (k + 1 + rng.Next(2)) % 3;
                x = (long[])p.Tokens.Clone();
                xc = (long[])p.Tokens.Clone();
                x[10] = p.Objects[k];
                xc[10] = p.Objects[k2];
                (ans[i], other[i], pos[i]) = (p.Colours[k], p.Colours[k2], 2 + 3 * k);
            }
            Array.Copy(x, 0, clean, i * t, t);
            Array.Copy(xc, 0, corrupt, i * t, t);
        }
        var dev = device ?? CPU;
        return new PromptPairs(task, tensor(clean, new long[] { count, t }, device: dev), tensor(corrupt, new long[] { count, t }, device: dev),
            ans, other, pos);
    }

    /// <summary>A training batch: the first half IOI, the second CO (both length 11), tokens [B, T] and the answer tokens [B].</summary>
    public static (Tensor X, Tensor Y) MixedBatch(int batch, int seed, Device? device = null)
    {
        Guard.Positive(batch, nameof(batch));
        var (a, ya) = Batch(ReuseTask.Ioi, Math.Max(1, batch / 2), seed, device);
        var (b, yb) = Batch(ReuseTask.ColoredObjects, Math.Max(1, batch - batch / 2), seed ^ 0x5bd1e995, device);
        using (a) using (ya) using (b) using (yb) return (cat(new[] { a, b }), cat(new[] { ya, yb }));
    }

    /// <summary>A batch of one task: tokens [B, T] and the answer tokens [B].</summary>
    public static (Tensor X, Tensor Y) Batch(ReuseTask task, int batch, int seed, Device? device = null)
    {
        var p = Pairs(task, batch, seed, device);
        p.Corrupt.Dispose();
        return (p.Clean, tensor(p.Answer, device: device ?? CPU));
    }
}
