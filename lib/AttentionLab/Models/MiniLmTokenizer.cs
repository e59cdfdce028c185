using Microsoft.ML.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Token ids of a batch, padded to its longest text: <see cref="InputIds"/> [B, T] int64 (pad = 0) and
/// <see cref="AttentionMask"/> [B, T] int64 (1 = token, 0 = padding), plus the WordPiece tokens as strings.
/// Owns its two tensors (they belong to no dispose scope): dispose it.
/// </summary>
public sealed class MiniLmEncoding : IDisposable
{
    internal MiniLmEncoding(IReadOnlyList<IReadOnlyList<int>> ids, IReadOnlyList<IReadOnlyList<string>> tokens)
    {
        Ids = ids; Tokens = tokens;
        int b = ids.Count, t = ids.Max(x => x.Count);
        var flat = new long[b * t];
        var mask = new long[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < ids[i].Count; j++) { flat[i * t + j] = ids[i][j]; mask[i * t + j] = 1; }
        InputIds = torch.tensor(flat, new long[] { b, t }, int64).DetachFromDisposeScope();
        AttentionMask = torch.tensor(mask, new long[] { b, t }, int64).DetachFromDisposeScope();
    }

    /// <summary>[B, T] int64, padded with the [PAD] id 0.</summary>
    public Tensor InputIds { get; }
    /// <summary>[B, T] int64: 1 where a token is, 0 at padding.</summary>
    public Tensor AttentionMask { get; }
    /// <summary>Unpadded ids per text, [CLS] … [SEP].</summary>
    public IReadOnlyList<IReadOnlyList<int>> Ids { get; }
    /// <summary>Unpadded WordPiece tokens per text, "[CLS]" … "[SEP]" (continuations start with "##").</summary>
    public IReadOnlyList<IReadOnlyList<string>> Tokens { get; }
    /// <summary>Number of real tokens per text.</summary>
    public IReadOnlyList<int> Lengths => Ids.Select(x => x.Count).ToList();
    public int BatchSize => Ids.Count;
    /// <summary>T, the padded length.</summary>
    public int Length => (int)InputIds.shape[1];

    public void Deconstruct(out Tensor ids, out Tensor mask, out IReadOnlyList<IReadOnlyList<string>> tokens)
    {
        ids = InputIds; mask = AttentionMask; tokens = Tokens;
    }

    public void Dispose() { InputIds.Dispose(); AttentionMask.Dispose(); }
}

/// <summary>
/// The uncased WordPiece tokenizer of all-MiniLM-L6-v2: Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/> on the
/// model's own vocab.txt (lowercase, accents stripped, split on whitespace and punctuation, greedy longest match with
/// "##" continuations, [CLS] … [SEP]).
/// </summary>
public sealed class MiniLmTokenizer
{
    readonly BertTokenizer bert;
    readonly string[] vocabulary;

    MiniLmTokenizer(BertTokenizer bert, string[] vocabulary, int maxLength)
    {
        this.bert = bert; this.vocabulary = vocabulary; MaxLength = maxLength;
    }

    /// <summary>From vocab.txt bytes (one token per line; the line number is the id).</summary>
    public static MiniLmTokenizer FromVocabulary(byte[] vocabTxt, int maxLength = 512)
    {
        ArgumentNullException.ThrowIfNull(vocabTxt);
        if (maxLength < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "maxLength must hold at least [CLS] and [SEP].");
        var options = new BertOptions { LowerCaseBeforeTokenization = true, RemoveNonSpacingMarks = true, ApplyBasicTokenization = true };
        var bert = BertTokenizer.Create(new MemoryStream(vocabTxt, writable: false), options);
        var lines = new List<string>();
        using (var reader = new StreamReader(new MemoryStream(vocabTxt, writable: false)))
            for (string? line; (line = reader.ReadLine()) is not null;) lines.Add(line);
        return new MiniLmTokenizer(bert, lines.ToArray(), maxLength);
    }

    // Latin letters with diacritics (U+00C0–U+024F) whose canonical decomposition is an ASCII letter + non-spacing marks
    // (generated with Python's unicodedata NFD). Hugging Face strips accents by NFD + dropping marks; .NET's
    // string.Normalize does nothing under InvariantGlobalization (the test host), so BertTokenizer's
    // RemoveNonSpacingMarks alone would turn "café" into [UNK] there but "cafe" in the notebook kernel. Folding these
    // first gives the same ids everywhere; other scripts still rely on BertTokenizer's own normalisation.
    const string Precomposed =
        "ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆćĈĉĊ" +
        "ċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚś" +
        "ŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžƠơƯưǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬ" +
        "ǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳ";
    const string Decomposed =
        "AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaAaAaCcCcC" +
        "cCcDdEeEeEeEeEeGgGgGgGgHhIiIiIiIiIJjKkLlLlLlNnNnNnOoOoOoRrRrRrSs" +
        "SsSsSsTtTtUuUuUuUuUuUuWwYyYZzZzZzOoUuAaIiOoUuUuUuUuUuAaAaGgKkOoO" +
        "ojGgNnAaAaAaEeEeIiIiOoOoRrRrUuUuSsTtHhAaEeOoOoOoOoYy";
    static readonly Dictionary<char, char> Fold = Precomposed.Zip(Decomposed).ToDictionary(p => p.First, p => p.Second);

    /// <summary>Replaces Latin letters with diacritics by their base letter (the part of HF's strip_accents .NET can lose).</summary>
    public static string FoldLatinAccents(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!text.Any(c => c >= '\u00C0' && c <= '\u024F')) return text;
        return string.Create(text.Length, text, (span, t) =>
        {
            for (int i = 0; i < t.Length; i++) span[i] = Fold.TryGetValue(t[i], out var b) ? b : t[i];
        });
    }

    /// <summary>Most tokens one text may have, [CLS] and [SEP] included (the model's position table: 512).</summary>
    public int MaxLength { get; }
    public int VocabSize => vocabulary.Length;
    public int ClsId => bert.ClassificationTokenId;
    public int SepId => bert.SeparatorTokenId;
    public int PadId => bert.PaddingTokenId;

    /// <summary>The vocabulary entry of <paramref name="id"/>.</summary>
    public string IdToToken(int id) => id >= 0 && id < vocabulary.Length ? vocabulary[id]
        : throw new ArgumentOutOfRangeException(nameof(id), id, $"id must be in [0, {vocabulary.Length}).");

    /// <summary>Ids of one text, [CLS] … [SEP].</summary>
    public IReadOnlyList<int> EncodeToIds(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = bert.EncodeToIds(FoldLatinAccents(text), addSpecialTokens: true);
        if (ids.Count > MaxLength)
            throw new ArgumentException($"text has {ids.Count} tokens with [CLS] and [SEP]; at most {MaxLength} fit the model.", nameof(text));
        return ids;
    }

    /// <summary>Tokenises and pads a batch. Returns (ids, mask, tokens) through <see cref="MiniLmEncoding"/>.</summary>
    /// <exception cref="ArgumentException">texts is null, empty, holds a null, or a text is longer than <see cref="MaxLength"/>.</exception>
    public MiniLmEncoding Encode(IEnumerable<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var list = texts.ToList();
        if (list.Count == 0) throw new ArgumentException("texts must hold at least one text.", nameof(texts));
        var ids = new List<IReadOnlyList<int>>();
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is null) throw new ArgumentException($"texts[{i}] is null.", nameof(texts));
            var one = bert.EncodeToIds(FoldLatinAccents(list[i]), addSpecialTokens: true);
            if (one.Count > MaxLength)
                throw new ArgumentException($"texts[{i}] has {one.Count} tokens with [CLS] and [SEP]; at most {MaxLength} fit the model.", nameof(texts));
            ids.Add(one);
        }
        var tokens = ids.Select(x => (IReadOnlyList<string>)x.Select(IdToToken).ToList()).ToList();
        return new MiniLmEncoding(ids, tokens);
    }

    /// <summary>Tokenises one text (a batch of one).</summary>
    public MiniLmEncoding Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Encode(new[] { text });
    }
}
