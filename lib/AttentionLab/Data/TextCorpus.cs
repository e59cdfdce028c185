using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>Which part of a <see cref="TextCorpus"/>: the first 90 % of its characters (train) or the last 10 % (validation).</summary>
public enum CorpusSplit { Train, Validation }

/// <summary>
/// A character-level language-modelling corpus: the text, its vocabulary (every distinct character, sorted, plus a BOS id
/// at the end) and seeded windows of next-character prediction. <see cref="MobyDick"/> is the shipped English corpus.
/// </summary>
/// <remarks>
/// A window of length T starting at s: Tokens = [BOS?] c_s … c_{s+T−1−b}, Labels[t] = the character after Tokens[t]
/// (b = 1 with BOS, whose label is c_s). Every position is scored. Train windows never cross into validation.
/// </remarks>
public sealed class TextCorpus
{
    /// <summary>The shipped file under data/: Moby-Dick chapters 1–10 (public domain; see data/README.md).</summary>
    public const string MobyDickFile = "corpus/moby-dick-ch01-10.txt";
    /// <summary>Its sha256 as data/README.md records it.</summary>
    public const string MobyDickSha256 = "bd5dda1aea0ca8db0506fbf4a99af3841c67a933dc1f32932ee1d5397f072d07";
    /// <summary>The command that regenerates it (build time only: it needs the npm registry).</summary>
    public const string MobyDickCommand = "environment/data/make-corpus.sh";

    readonly long[] ids;
    readonly Dictionary<char, long> index;

    /// <summary>A corpus over <paramref name="text"/> (at least 16 characters) called <paramref name="name"/>.</summary>
    public TextCorpus(string text, string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(text);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (text.Length < 16) throw new ArgumentException($"text must hold at least 16 characters, got {text.Length}.", nameof(text));
        (Text, Name) = (text, name);
        Characters = text.Distinct().Order().ToArray();
        index = Characters.Select((c, i) => (c, (long)i)).ToDictionary(p => p.c, p => p.Item2);
        ids = text.Select(c => index[c]).ToArray();
        TrainLength = (int)(0.9 * text.Length);
    }

    /// <summary>Moby-Dick chapters 1–10 (109,961 characters, 75 distinct) from data/, digest-checked.</summary>
    public static TextCorpus MobyDick(string? path = null)
    {
        path ??= Path.Combine(RepositoryData.Folder(), MobyDickFile);
        RepositoryData.Verify(path, MobyDickSha256, MobyDickCommand);
        return new TextCorpus(File.ReadAllText(path), "Moby-Dick, chapters 1–10");
    }

    public string Name { get; }
    public string Text { get; }
    /// <summary>The distinct characters in id order.</summary>
    public IReadOnlyList<char> Characters { get; }
    /// <summary>The id of the beginning-of-sequence token (after every character id).</summary>
    public long BosToken => Characters.Count;
    /// <summary>Vocabulary size: characters plus BOS.</summary>
    public int VocabSize => Characters.Count + 1;
    /// <summary>Characters in the train split; the rest is validation.</summary>
    public int TrainLength { get; }

    /// <summary>Character ids of <paramref name="text"/>; an unknown character is an ArgumentException that names it.</summary>
    public long[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Select((c, i) => index.TryGetValue(c, out long id) ? id
            : throw new ArgumentException($"character '{c}' (U+{(int)c:X4}) at {i} is not in the {Name} vocabulary.", nameof(text))).ToArray();
    }

    /// <summary>The text of <paramref name="tokens"/>; BOS reads as "⟨bos⟩".</summary>
    public string Decode(IEnumerable<long> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return string.Concat(tokens.Select(t => t == BosToken ? "⟨bos⟩"
            : t >= 0 && t < Characters.Count ? Characters[(int)t].ToString()
            : throw new ArgumentOutOfRangeException(nameof(tokens), t, $"token ids must be in [0, {VocabSize}).")));
    }

    /// <summary><paramref name="count"/> windows of length <paramref name="length"/> at starts drawn from <c>new Random(seed)</c>.</summary>
    public TokenBatch Sample(int count, int length, int seed, CorpusSplit split = CorpusSplit.Train, bool bos = true, Device? device = null)
    {
        Sampling.CheckCount(count);
        var (lo, hi) = Range(split);
        int chars = CharsPerWindow(length, bos);
        if (hi - lo < chars + 1)
            throw new ArgumentOutOfRangeException(
                nameof(length), length, $"the {split} split holds {hi - lo} characters, fewer than a window needs ({chars + 1}).");
        var rng = new Random(seed);
        var starts = Enumerable.Range(0, count).Select(_ => rng.Next(lo, hi - chars)).ToArray();
        return Windows(starts, length, bos, device);
    }

    /// <summary>One contiguous window [1, length] starting <paramref name="offset"/> characters into the split (for streaming).</summary>
    public TokenBatch Contiguous(int length, CorpusSplit split = CorpusSplit.Validation, int offset = 0, bool bos = true, Device? device = null)
    {
        var (lo, hi) = Range(split);
        int chars = CharsPerWindow(length, bos);
        if (offset < 0 || lo + offset + chars + 1 > hi)
            throw new ArgumentOutOfRangeException(
                nameof(length), length, $"offset {offset} + {chars + 1} characters do not fit the {split} split ({hi - lo} characters).");
        return Windows(new[] { lo + offset }, length, bos, device);
    }

    /// <summary>
    /// Cross-entropy (nats) of the validation characters under the training split's character frequencies: what a model
    /// that ignores context reaches. A character unseen in training gets probability 1 / TrainLength.
    /// </summary>
    public double UnigramLoss()
    {
        var counts = Text[..TrainLength].GroupBy(c => c).ToDictionary(g => g.Key, g => (double)g.Count());
        double total = TrainLength;
        return Text[TrainLength..].Average(c => -Math.Log(counts.TryGetValue(c, out double n) ? n / total : 1 / total));
    }

    (int Lo, int Hi) Range(CorpusSplit split) => split switch
    {
        CorpusSplit.Train => (0, TrainLength),
        CorpusSplit.Validation => (TrainLength, ids.Length),
        _ => throw new ArgumentException($"unknown split {split}.", nameof(split)),
    };

    static int CharsPerWindow(int length, bool bos)
    {
        if (length < (bos ? 2 : 1)) throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be ≥ {(bos ? 2 : 1)}.");
        return bos ? length - 1 : length;
    }

    TokenBatch Windows(int[] starts, int length, bool bos, Device? device)
    {
        int b = bos ? 1 : 0;
        var tokens = new long[starts.Length * length];
        var labels = new long[starts.Length * length];
        for (int n = 0; n < starts.Length; n++)
            for (int t = 0; t < length; t++)
            {
                int source = starts[n] + t - b;                                   // the character at window position t
                bool isBos = source < starts[n];
                tokens[n * length + t] = isBos ? BosToken : ids[source];
                labels[n * length + t] = ids[source + 1];                         // the character after it (c_s after BOS)
            }
        using var scope = NewDisposeScope();
        return new TokenBatch(TokenBatch.Make(tokens, starts.Length, length, device), TokenBatch.Make(labels, starts.Length, length, device));
    }
}
