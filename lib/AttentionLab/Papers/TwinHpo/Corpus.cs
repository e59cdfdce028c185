namespace AttentionLab.Papers.TwinHpo;

/// <summary>A bag-of-words corpus: the vocabulary and each document as word ids in reading order.</summary>
/// <param name="Vocab">Word of each id.</param>
/// <param name="Docs">Each document's word ids, in order (the order matters for NPMI's sliding windows).</param>
public sealed record Corpus(IReadOnlyList<string> Vocab, int[][] Docs)
{
    /// <summary>Vocabulary size V.</summary>
    public int V => Vocab.Count;

    /// <summary>Total tokens Σ_d |d|.</summary>
    public long Tokens => Docs.Sum(d => (long)d.Length);

    /// <summary>Checks ids are in [0, V) and documents are not null.</summary>
    public Corpus Validated()
    {
        ArgumentNullException.ThrowIfNull(Vocab, nameof(Vocab));
        ArgumentNullException.ThrowIfNull(Docs, nameof(Docs));
        for (int d = 0; d < Docs.Length; d++)
        {
            if (Docs[d] is null) throw new ArgumentException($"document {d} is null.", nameof(Docs));
            foreach (int w in Docs[d])
                if ((uint)w >= (uint)V) throw new ArgumentException($"document {d} has word id {w} outside the vocabulary [0, {V}).", nameof(Docs));
        }
        return this;
    }

    /// <summary>The documents at <paramref name="indices"/> (same vocabulary).</summary>
    public Corpus Subset(IEnumerable<int> indices) => new(Vocab, indices.Select(i => Docs[i]).ToArray());

    /// <summary>Document text: its words joined by spaces.</summary>
    public string Text(int doc) => string.Join(' ', Docs[doc].Select(w => Vocab[w]));
}

/// <summary>Builds a <see cref="Corpus"/> from texts (lowercased, split on non-letters, stop words and rare/common words removed).</summary>
public static class CorpusBuilder
{
    /// <summary>
    /// Tokenises (lowercase, letters only), drops <paramref name="stopwords"/>, keeps words in ≥ <paramref name="minDf"/> documents and in
    /// ≤ <paramref name="maxDfFrac"/> of them; the vocabulary is sorted.
    /// </summary>
    public static Corpus Build(IEnumerable<string> texts, IEnumerable<string> stopwords, int minDf = 1, double maxDfFrac = 1.0)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(stopwords);
        if (minDf < 1) throw new ArgumentException($"minDf must be ≥ 1, got {minDf}.", nameof(minDf));
        if (!(maxDfFrac > 0 && maxDfFrac <= 1)) throw new ArgumentException($"maxDfFrac must be in (0, 1], got {maxDfFrac}.", nameof(maxDfFrac));
        var stop = new HashSet<string>(stopwords.Select(s => s.ToLowerInvariant()));
        var tokenised = texts.Select(t => Tokenise(t ?? throw new ArgumentException("a text is null.", nameof(texts))).Where(w => !stop.Contains(w)).ToArray())
            .ToArray();
        var df = new Dictionary<string, int>();
        foreach (var doc in tokenised)
            foreach (var w in doc.Distinct()) df[w] = df.GetValueOrDefault(w) + 1;
        double maxDf = maxDfFrac * tokenised.Length;
        var vocab = df.Where(p => p.Value >= minDf && p.Value <= maxDf).Select(p => p.Key).OrderBy(w => w, StringComparer.Ordinal).ToArray();
        var index = vocab.Select((w, i) => (w, i)).ToDictionary(p => p.w, p => p.i);
        return new Corpus(vocab, tokenised.Select(doc => doc.Where(index.ContainsKey).Select(w => index[w]).ToArray()).ToArray());
    }

    /// <summary>Lowercase runs of letters.</summary>
    public static IEnumerable<string> Tokenise(string text)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char c in text)
        {
            if (char.IsLetter(c)) sb.Append(char.ToLowerInvariant(c));
            else if (sb.Length > 0) { yield return sb.ToString(); sb.Clear(); }
        }
        if (sb.Length > 0) yield return sb.ToString();
    }
}
