using AttentionLab.Core;
using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FactualRecall;

/// <summary>One fact of the knowledge base: subject and relation token, and the object token the prompt must end on.</summary>
public sealed record KbFact(int Subject, int Relation, int Object);

/// <summary>
/// Prompts "filler* the R of S is" (one token each), right-padded to <see cref="FactualKb.SeqLen"/>: tokens [B, T], the END
/// position of each row (the "is" token, where the answer is read), the subject and relation positions, and the answers.
/// Padding sits after END, so a causal model's output at END does not see it.
/// </summary>
public sealed record FactPrompts(Tensor Tokens, long[] End, long[] SubjectPos, long[] RelationPos, long[] Answer, int[] Prefix,
    IReadOnlyList<KbFact> Facts) : IDisposable
{
    /// <summary>Rows.</summary>
    public int Count => End.Length;
    public void Dispose() => Tokens.Dispose();
}

/// <summary>
/// The synthetic knowledge base of spec §4 built from the shipped facts (<see cref="Facts.Countries"/>): subjects are
/// countries, relations capital-of and continent-of, objects capitals and continents (a vocabulary of their own).
/// Vocabulary: pad, fillers, "the", "of", "is", the relations, the subjects, the objects.
/// </summary>
public sealed class FactualKb
{
    /// <summary>Filler words (the random prefix).</summary>
    public static readonly string[] Fillers = ["so", "and", "well", "now", "then", "also", "yes", "indeed"];
    /// <summary>The relations, in token order.</summary>
    public static readonly string[] Relations = ["capital", "continent"];
    /// <summary>Tokens of the template "the R of S is" after the prefix.</summary>
    public const int TemplateLength = 5;

    readonly List<string> vocab = [];
    readonly Dictionary<string, int> ids = [];

    /// <summary>Picks <paramref name="subjects"/> countries with distinct capitals (seeded shuffle of the shipped list).</summary>
    /// <param name="subjects">Subjects (countries), 2 … the number with distinct capitals.</param>
    /// <param name="maxPrefix">Longest filler prefix; prompts are 5 + prefix tokens long.</param>
    /// <param name="seed">Which countries.</param>
    /// <param name="countries">The shipped facts (default <see cref="Facts.Countries"/>).</param>
    public FactualKb(int subjects, int maxPrefix, int seed, IReadOnlyList<CountryFact>? countries = null)
    {
        if (subjects < 2) throw new ArgumentException($"subjects must be at least 2, got {subjects}.", nameof(subjects));
        if (maxPrefix < 0) throw new ArgumentException($"maxPrefix must be ≥ 0, got {maxPrefix}.", nameof(maxPrefix));
        countries ??= Facts.Countries();
        var rng = new Random(seed);
        var pool = countries.Where(c => c.Capital.Length > 0 && c.Continent.Length > 0).OrderBy(_ => rng.Next()).ToList();
        var chosen = new List<CountryFact>();
        var capitals = new HashSet<string>();
        foreach (var c in pool)
            if (chosen.Count < subjects && capitals.Add(c.Capital)) chosen.Add(c);
        if (chosen.Count < subjects)
            throw new ArgumentException($"only {chosen.Count} countries have distinct capitals; asked for {subjects}.", nameof(subjects));
        Countries = chosen;
        MaxPrefix = maxPrefix;
        Add("<pad>");
        foreach (var f in Fillers) Add(f);
        The = Add("the"); Of = Add("of"); Is = Add("is");
        RelationTokens = Relations.Select(Add).ToArray();
        SubjectTokens = chosen.Select(c => Add("S:" + c.Country)).ToArray();
        var objects = chosen.Select(c => "O:" + c.Capital).Concat(chosen.Select(c => "O:" + c.Continent).Distinct()).ToList();
        foreach (var o in objects) Add(o);
        ObjectTokens = objects.Select(o => ids[o]).ToArray();
        var facts = new List<KbFact>();
        for (int s = 0; s < chosen.Count; s++)
        {
            facts.Add(new KbFact(SubjectTokens[s], RelationTokens[0], ids["O:" + chosen[s].Capital]));
            facts.Add(new KbFact(SubjectTokens[s], RelationTokens[1], ids["O:" + chosen[s].Continent]));
        }
        All = facts;
    }

    int Add(string token)
    {
        ids[token] = vocab.Count;
        vocab.Add(token);
        return vocab.Count - 1;
    }

    /// <summary>The countries behind the subjects.</summary>
    public IReadOnlyList<CountryFact> Countries { get; }
    /// <summary>Longest filler prefix.</summary>
    public int MaxPrefix { get; }
    /// <summary>Prompt length after padding: 5 + MaxPrefix.</summary>
    public int SeqLen => TemplateLength + MaxPrefix;
    /// <summary>Tokens in the vocabulary.</summary>
    public int VocabSize => vocab.Count;
    /// <summary>Token id of "the".</summary>
    public int The { get; }
    /// <summary>Token id of "of".</summary>
    public int Of { get; }
    /// <summary>Token id of "is" (the END token, where the answer is read).</summary>
    public int Is { get; }
    /// <summary>Token ids of the relations, in <see cref="Relations"/> order.</summary>
    public int[] RelationTokens { get; }
    /// <summary>Token ids of the subjects (one per country in <see cref="Countries"/>).</summary>
    public int[] SubjectTokens { get; }
    /// <summary>Token ids of the objects: the capitals, then the continents that occur.</summary>
    public int[] ObjectTokens { get; }
    /// <summary>Every fact: subjects × relations.</summary>
    public IReadOnlyList<KbFact> All { get; }

    /// <summary>The word of token <paramref name="id"/>.</summary>
    public string Word(long id) => id >= 0 && id < vocab.Count ? vocab[(int)id]
        : throw new ArgumentOutOfRangeException(nameof(id), id, $"token ids are in [0, {vocab.Count}).");

    /// <summary>The object of (subject, relation).</summary>
    public int Answer(int subject, int relation) =>
        All.FirstOrDefault(f => f.Subject == subject && f.Relation == relation)?.Object
        ?? throw new ArgumentException($"no fact for subject {subject} and relation {relation}.", nameof(subject));

    /// <summary>
    /// Prompts for <paramref name="facts"/> with the given prefix lengths (fillers drawn from <paramref name="seed"/>).
    /// Row b: fillers (prefix[b]), "the", R, "of", S, "is", then pad up to <see cref="SeqLen"/>.
    /// </summary>
    public FactPrompts Prompts(IReadOnlyList<KbFact> facts, int[] prefix, int seed, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(facts);
        ArgumentNullException.ThrowIfNull(prefix);
        if (facts.Count == 0) throw new ArgumentException("no facts given.", nameof(facts));
        if (prefix.Length != facts.Count) throw new ArgumentException($"{prefix.Length} prefix lengths for {facts.Count} facts.", nameof(prefix));
        if (prefix.Any(k => k < 0 || k > MaxPrefix)) throw new ArgumentException($"prefix lengths must be in 0 … {MaxPrefix}.", nameof(prefix));
        var rng = new Random(seed);
        int b = facts.Count, t = SeqLen;
        var data = new long[b * t];
        var (end, subj, rel, answer) = (new long[b], new long[b], new long[b], new long[b]);
        for (int i = 0; i < b; i++)
        {
            int k = prefix[i], o = i * t;
            for (int j = 0; j < k; j++) data[o + j] = 1 + rng.Next(Fillers.Length);      // filler*
            data[o + k] = The; data[o + k + 1] = facts[i].Relation; data[o + k + 2] = Of;  // the R of
            data[o + k + 3] = facts[i].Subject; data[o + k + 4] = Is;                      // S is
            (rel[i], subj[i], end[i], answer[i]) = (k + 1, k + 3, k + 4, facts[i].Object);
        }
        var tokens = torch.tensor(data, dtype: ScalarType.Int64).view(b, t).to(device ?? CPU);
        return new FactPrompts(tokens, end, subj, rel, answer, (int[])prefix.Clone(), facts.ToList());
    }

    /// <summary>A training batch: facts drawn uniformly with uniform prefix lengths 0 … MaxPrefix.</summary>
    public FactPrompts Sample(int batch, int seed, Device? device = null)
    {
        Guard.Positive(batch, nameof(batch));
        var rng = new Random(seed);
        var facts = Enumerable.Range(0, batch).Select(_ => All[rng.Next(All.Count)]).ToList();
        var prefix = Enumerable.Range(0, batch).Select(_ => rng.Next(MaxPrefix + 1)).ToArray();
        return Prompts(facts, prefix, seed + 1, device);
    }

    /// <summary>
    /// For each fact, another subject whose answer for the same relation differs (the corrupted prompt of spec §2), drawn
    /// from <paramref name="seed"/>.
    /// </summary>
    public IReadOnlyList<KbFact> Corrupt(IReadOnlyList<KbFact> facts, int seed)
    {
        ArgumentNullException.ThrowIfNull(facts);
        var rng = new Random(seed);
        var result = new List<KbFact>();
        foreach (var f in facts)
        {
            var others = All.Where(g => g.Relation == f.Relation && g.Subject != f.Subject && g.Object != f.Object).ToList();
            if (others.Count == 0) throw new ArgumentException($"no other subject has a different answer for relation {f.Relation}.", nameof(facts));
            result.Add(others[rng.Next(others.Count)]);
        }
        return result;
    }
}
