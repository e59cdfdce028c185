namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// The templated sentiment set of spec §4b for zero-shot nearest-prototype classification with MiniLM: a subject, a template and
/// an adjective of known polarity, a fifth of the sentences negated ("was not great" is negative), which an embedding model
/// often gets wrong — so the baseline is not at ceiling. Label 1 = positive. Prototypes are the two label sentences.
/// [ours: the spec names no data; sentiment only, no topic set; docs/decisions.md.]
/// </summary>
public static class ActSentences
{
    static readonly string[] Subjects = { "the movie", "the food", "the service", "the hotel", "the book", "the concert", "the trip", "the game",
        "the restaurant", "the show", "the album", "the class" };
    static readonly string[] Positive = { "wonderful", "great", "excellent", "delightful", "superb", "lovely", "fantastic", "enjoyable" };
    static readonly string[] Negative = { "terrible", "awful", "boring", "dreadful", "disappointing", "poor", "horrible", "mediocre" };
    static readonly string[] Templates = { "{s} was {a}.", "i thought {s} was {a}.", "honestly, {s} felt {a} to me.", "everyone said {s} was {a}.",
        "in the end {s} was {a}.", "to be fair, {s} seemed {a}." };
    static readonly string[] NegatedTemplates = { "{s} was not {a}.", "i did not think {s} was {a}.", "{s} was never {a}." };

    /// <summary>The two prototype sentences: negative (label 0), positive (label 1).</summary>
    public static IReadOnlyList<string> Prototypes { get; } = new[] { "this review is negative.", "this review is positive." };

    /// <summary><paramref name="count"/> sentences and labels from <c>new Random(seed)</c>, classes balanced in expectation.</summary>
    public static (IReadOnlyList<string> Texts, IReadOnlyList<int> Labels) Generate(int count, int seed)
    {
        if (count < 1) throw new ArgumentException($"count must be positive, got {count}.", nameof(count));
        var rng = new Random(seed);
        var texts = new List<string>(count);
        var labels = new List<int>(count);
        for (int i = 0; i < count; i++)
        {
            bool positiveWord = rng.Next(2) == 1, negated = rng.NextDouble() < 0.2;
            var words = positiveWord ? Positive : Negative;
            var templates = negated ? NegatedTemplates : Templates;
            var text = templates[rng.Next(templates.Length)].Replace("{s}", Subjects[rng.Next(Subjects.Length)]).Replace("{a}", words[rng.Next(words.Length)]);
            texts.Add(text);
            labels.Add(positiveWord ^ negated ? 1 : 0);
        }
        return (texts, labels);
    }
}
