using MathNet.Numerics.Distributions;

namespace AttentionLab.Papers.TwinHpo;

/// <summary>
/// A platform of the planted corpus: its name, document count, mean document length (Poisson), its Dirichlet prior over the
/// planted topics (weights × concentration) and the drift of each topic's weight over time.
/// </summary>
/// <param name="Name">"Twitter", "Reddit", "Guardian".</param>
/// <param name="Docs">Documents drawn for this platform.</param>
/// <param name="MeanLength">Mean tokens per document (Poisson, at least 3).</param>
/// <param name="TopicWeights">Relative prior weight of each planted topic (length K).</param>
/// <param name="Concentration">Σ of the Dirichlet parameters (small → few topics per document).</param>
/// <param name="Drift">Per-topic log-weight slope over time t ∈ [0, 1]: a_k(t) ∝ w_k exp(drift_k (t − ½)); null = none.</param>
public sealed record PlatformSpec(string Name, int Docs, double MeanLength, double[] TopicWeights, double Concentration = 1.0,
    double[]? Drift = null);

/// <summary>A planted corpus with its truth: topic–word distributions φ, per-document topic mixtures θ, platform and time.</summary>
/// <param name="Corpus">The documents.</param>
/// <param name="TopicNames">Name of each planted topic.</param>
/// <param name="Phi">Planted topic–word distributions [K][V] (rows sum to 1).</param>
/// <param name="Theta">Each document's drawn topic mixture [D][K].</param>
/// <param name="Platform">Platform index of each document.</param>
/// <param name="Time">Each document's time in [0, 1].</param>
/// <param name="Platforms">The platform specs.</param>
public sealed record PlantedCorpus(Corpus Corpus, string[] TopicNames, double[][] Phi, double[][] Theta, int[] Platform, double[] Time,
    PlatformSpec[] Platforms)
{
    /// <summary>Mean planted θ of each topic over the documents of <paramref name="platform"/>.</summary>
    public double[] Prevalence(int platform) => TopicMath.MeanRows(Theta, Enumerable.Range(0, Theta.Length).Where(d => Platform[d] == platform));
}

/// <summary>The spec's planted circular-economy (CE) corpus (§4): a CE lexicon, 8 sparse topics, three platforms.</summary>
public static class SyntheticCorpus
{
    /// <summary>The 8 planted topics: a name and its core words (most probable first).</summary>
    public static readonly (string Name, string[] Words)[] CeTopics =
    [
        ("plastic packaging", ["plastic", "packaging", "bottle", "single", "wrapper", "film", "bag", "straw", "container", "pouch", "cup", "lid"]),
        ("recycling & waste", ["recycle", "waste", "landfill", "bin", "collection", "sorting", "scrap", "incinerator", "compost", "dump",
            "garbage", "litter"]),
        ("fashion & textiles", ["fashion", "clothing", "textile", "garment", "brand", "cotton", "wardrobe", "thrift", "denim", "fabric",
            "dress", "secondhand"]),
        ("policy & regulation", ["policy", "tax", "regulation", "government", "law", "directive", "ban", "minister", "parliament", "target",
            "levy", "legislation"]),
        ("technology & batteries", ["battery", "technology", "lithium", "innovation", "electric", "solar", "chip", "device", "material",
            "engineering", "hydrogen", "cobalt"]),
        ("economy & business", ["economy", "business", "market", "cost", "investment", "profit", "jobs", "supply", "price", "growth",
            "company", "finance"]),
        ("repair & reuse", ["repair", "reuse", "refurbish", "fix", "spare", "tool", "workshop", "upcycle", "mend", "broken", "parts",
            "lifespan"]),
        ("food & agriculture", ["food", "farm", "crop", "soil", "harvest", "kitchen", "leftover", "fertiliser", "grocery", "meal", "organic",
            "surplus"]),
    ];

    /// <summary>Shared background words every topic draws a little from.</summary>
    public static readonly string[] Filler =
    [
        "people", "world", "year", "today", "week", "thing", "idea", "news", "city", "home", "work", "life", "change", "future", "plan",
        "local", "community", "report", "study", "impact", "global", "climate", "green", "sustainable", "circular", "system", "product",
        "resource", "energy", "water", "carbon", "emission", "planet", "nature", "consumer", "household", "school", "project", "story", "issue",
    ];

    /// <summary>Index of the "policy &amp; regulation" and "technology &amp; batteries" topics (the Guardian lean).</summary>
    public static readonly int[] GuardianLeanTopics = [3, 4];

    /// <summary>
    /// The spec's three platforms: Twitter (≈15 tokens, leans to plastic and fashion), Reddit (≈60, repair and waste), the Guardian
    /// (≈300, policy and technology); the fashion topic rises and the plastic topic falls over time. <paramref name="scale"/> multiplies
    /// the document counts (1 → 300 / 200 / 100 = 600 documents).
    /// </summary>
    public static PlatformSpec[] CePlatforms(double scale = 1.0, double guardianLength = 300)
    {
        if (!(scale > 0)) throw new ArgumentException($"scale must be > 0, got {scale}.", nameof(scale));
        double[] drift = [-1.5, 0, 1.5, 0, 0, 0, 0, 0];
        return
        [
            new("Twitter", (int)Math.Round(300 * scale), 15, [3, 1, 3, 0.5, 0.5, 1.5, 1, 1.5], 0.6, drift),
            new("Reddit", (int)Math.Round(200 * scale), 60, [1, 2.5, 1, 1, 1, 1, 3, 1], 1.0, drift),
            new("Guardian", (int)Math.Round(100 * scale), guardianLength, [1, 1, 1, 3.5, 3, 2, 0.5, 1], 2.0, drift),
        ];
    }

    /// <summary>
    /// Draws the planted corpus: topic k puts mass <paramref name="coreMass"/> on its core words (Zipf 1/r) and the rest on
    /// <paramref name="fillerPerTopic"/> random filler words; each document draws θ ~ Dir(c · a(t) / Σa(t)), z ~ θ, w ~ φ_z.
    /// </summary>
    public static PlantedCorpus PlantedTopics(PlatformSpec[] platforms, int kTrue, int seed, double coreMass = 0.85, int fillerPerTopic = 10)
    {
        ArgumentNullException.ThrowIfNull(platforms);
        if (platforms.Length == 0) throw new ArgumentException("at least one platform is needed.", nameof(platforms));
        if (kTrue < 1 || kTrue > CeTopics.Length) throw new ArgumentException($"kTrue must be in [1, {CeTopics.Length}], got {kTrue}.", nameof(kTrue));
        if (!(coreMass > 0 && coreMass <= 1)) throw new ArgumentException($"coreMass must be in (0, 1], got {coreMass}.", nameof(coreMass));
        if (fillerPerTopic < 0 || fillerPerTopic > Filler.Length)
            throw new ArgumentException($"fillerPerTopic must be in [0, {Filler.Length}], got {fillerPerTopic}.", nameof(fillerPerTopic));
        foreach (var p in platforms)
        {
            if (p.TopicWeights.Length != kTrue)
                throw new ArgumentException($"platform {p.Name} has {p.TopicWeights.Length} topic weights for {kTrue} topics.", nameof(platforms));
            if (p.Docs < 0 || !(p.MeanLength >= 1) || p.TopicWeights.Any(w => !(w > 0)) || !(p.Concentration > 0))
                throw new ArgumentException($"platform {p.Name}: docs ≥ 0, mean length ≥ 1, weights and concentration > 0.", nameof(platforms));
            if (p.Drift is { } dr && dr.Length != kTrue)
                throw new ArgumentException($"platform {p.Name} has {dr.Length} drifts for {kTrue} topics.", nameof(platforms));
        }
        var rng = new Random(seed);
        var vocab = CeTopics.Take(kTrue).SelectMany(t => t.Words).Concat(Filler).ToArray();
        int v = vocab.Length, fillerStart = vocab.Length - Filler.Length;
        var phi = new double[kTrue][];
        for (int k = 0; k < kTrue; k++)
        {
            phi[k] = new double[v];
            var core = CeTopics[k].Words;
            double z = core.Select((_, r) => 1.0 / (r + 1)).Sum();
            for (int r = 0; r < core.Length; r++) phi[k][k * core.Length + r] = coreMass / (r + 1) / z;   // Zipf over the core words
            var fill = Enumerable.Range(0, Filler.Length).OrderBy(_ => rng.Next()).Take(fillerPerTopic).ToArray();
            foreach (int f in fill) phi[k][fillerStart + f] += (1 - coreMass) / Math.Max(1, fillerPerTopic);
            if (fillerPerTopic == 0) for (int r = 0; r < core.Length; r++) phi[k][k * core.Length + r] /= coreMass;
        }
        var docs = new List<int[]>();
        var theta = new List<double[]>();
        var platformOf = new List<int>();
        var time = new List<double>();
        for (int p = 0; p < platforms.Length; p++)
        {
            var spec = platforms[p];
            for (int i = 0; i < spec.Docs; i++)
            {
                double t = rng.NextDouble();
                var a = spec.TopicWeights.Select((w, k) => w * Math.Exp((spec.Drift?[k] ?? 0) * (t - 0.5))).ToArray();
                double sa = a.Sum();
                var th = Dirichlet.Sample(rng, a.Select(x => spec.Concentration * x / sa).ToArray());   // θ_d ~ Dir(c a(t)/Σa)
                for (int k = 0; k < th.Length; k++) if (double.IsNaN(th[k])) th[k] = 0;
                double st = th.Sum();
                if (!(st > 0)) { th = new double[kTrue]; th[rng.Next(kTrue)] = 1; st = 1; }
                for (int k = 0; k < th.Length; k++) th[k] /= st;
                int n = Math.Max(3, Poisson.Sample(rng, spec.MeanLength));
                var doc = new int[n];
                for (int j = 0; j < n; j++) doc[j] = Categorical.Sample(rng, phi[Categorical.Sample(rng, th)]);  // z ~ θ_d, w ~ φ_z
                docs.Add(doc); theta.Add(th); platformOf.Add(p); time.Add(t);
            }
        }
        return new PlantedCorpus(new Corpus(vocab, docs.ToArray()), CeTopics.Take(kTrue).Select(t => t.Name).ToArray(), phi, theta.ToArray(),
            platformOf.ToArray(), time.ToArray(), platforms);
    }
}
