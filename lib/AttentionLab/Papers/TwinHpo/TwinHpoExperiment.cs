using AttentionLab.Core;
using AttentionLab.Models;
using static TorchSharp.torch;

namespace AttentionLab.Papers.TwinHpo;

/// <summary>One evaluated topic-model configuration: its hyperparameters, objectives and top words.</summary>
/// <param name="Model">"LDA", "anchored LDA", "embedding".</param>
/// <param name="Optimiser">"default", "grid", "NSGA-II", "MOTPE".</param>
/// <param name="Trial">Order within its optimiser.</param>
/// <param name="Parameters">Name → value.</param>
/// <param name="Npmi">NPMI (top-10, window 10) on the training documents (the paper's in-sample score).</param>
/// <param name="NpmiHeldOut">NPMI of the same top words on the held-out documents.</param>
/// <param name="InvertedRbo">1 − mean pairwise RBO (p = 0.9, top-10).</param>
/// <param name="Diversity">Unique share of the top-25 words.</param>
/// <param name="ThirdObjective">LDA: held-out perplexity (document completion); embedding: the doc–topic mass proxy (not a likelihood).</param>
/// <param name="TopWords">Top-10 words per topic.</param>
public sealed record TopicEval(string Model, string Optimiser, int Trial, IReadOnlyDictionary<string, double> Parameters, double Npmi,
    double NpmiHeldOut, double InvertedRbo, double Diversity, double ThirdObjective, string[][] TopWords)
{
    /// <summary>(NPMI ↑, inverted RBO ↑, third ↓).</summary>
    public double[] Objectives => [Npmi, InvertedRbo, ThirdObjective];

    /// <summary>"K=8 α=0.1 η=0.01".</summary>
    public string Label => string.Join(" ", Parameters.Select(p => $"{p.Key}={p.Value:G3}"));
}

/// <summary>
/// P02 twin HPO on a planted circular-economy corpus: LDA (collapsed Gibbs; ML.NET's LightLDA as a cross-check), an anchored LDA and an
/// embedding topic model (MiniLM → PCA → KMeans → c-TF-IDF), each tuned twice — grid search on NPMI, and multi-objective NSGA-II and
/// MOTPE — with recovered topics matched to the planted ones by Hungarian assignment on Jensen–Shannon distance.
/// </summary>
public sealed class TwinHpoExperiment : IPaperExperiment<TwinHpoExperiment.Config, TwinHpoResult>
{
    TwinHpoExperiment() { }

    /// <summary>P02 in the catalogue (notebook notebooks/02-twin-hpo.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(2, "Circular-economy topic models + twin HPO", "twin-hpo");

    /// <summary>The paper's α/η grid values (lda_grid_*.py).</summary>
    public static readonly double[] PaperPriorGrid = [0.04, 0.05, 0.07, 0.1, 0.2, 0.5];

    /// <summary>Sizes of one run.</summary>
    /// <param name="CorpusScale">Document-count multiplier of the three platforms (1 → 600 documents).</param>
    /// <param name="GuardianLength">Mean Guardian document length (tokens).</param>
    /// <param name="Sweeps">Gibbs sweeps per LDA fit.</param>
    /// <param name="GridK">LDA grid: topics.</param>
    /// <param name="GridAlpha">LDA grid: α.</param>
    /// <param name="GridEta">LDA grid: η.</param>
    /// <param name="KMax">Largest K the multi-objective searches may pick (from 2).</param>
    /// <param name="MoEvaluations">Fits per multi-objective optimiser (equal to the grid's size at smoke: equal budgets).</param>
    /// <param name="Population">NSGA-II population.</param>
    /// <param name="TpeStartup">Random start-up trials of MOTPE.</param>
    /// <param name="AnchorK">Anchored LDA grid: topics.</param>
    /// <param name="AnchorStrength">Anchored LDA grid: anchor strength (added to η on the anchor words).</param>
    /// <param name="EmbClusters">Embedding model grid: KMeans clusters.</param>
    /// <param name="EmbComponents">Embedding model grid: PCA components.</param>
    /// <param name="EmbMaxClusters">Largest cluster count the multi-objective searches may pick.</param>
    /// <param name="EmbedWords">Words of each document given to MiniLM.</param>
    /// <param name="HeldOutFraction">Share of documents held out (perplexity, held-out NPMI).</param>
    /// <param name="Seed">Seed of the corpus, the split, the samplers and the optimisers.</param>
    public sealed record Config(double CorpusScale, double GuardianLength, int Sweeps, int[] GridK, double[] GridAlpha, double[] GridEta, int KMax,
        int MoEvaluations, int Population, int TpeStartup, int[] AnchorK, double[] AnchorStrength, int[] EmbClusters, int[] EmbComponents,
        int EmbMaxClusters, int EmbedWords, double HeldOutFraction, int Seed) : IPaperConfig<Config>
    {
        /// <summary>600 documents, 100 sweeps, grid 3×2×2 and 12 evaluations per multi-objective optimiser (spec §4).</summary>
        public static Config Smoke => new(CorpusScale: 1, GuardianLength: 300, Sweeps: 100, GridK: [4, 8, 12], GridAlpha: [0.05, 0.5],
            GridEta: [0.01, 0.1], KMax: 16, MoEvaluations: 12, Population: 6, TpeStartup: 6, AnchorK: [3, 8], AnchorStrength: [1, 4],
            EmbClusters: [4, 8, 12], EmbComponents: [5, 15], EmbMaxClusters: 25, EmbedWords: 32, HeldOutFraction: 0.2, Seed: 0)
        { Size = "smoke" };

        /// <summary>3 000 documents, the paper's K values, 54-point grid and 54 evaluations per optimiser (CPU, minutes).</summary>
        public static Config Full => new(CorpusScale: 5, GuardianLength: 300, Sweeps: 100, GridK: [2, 5, 10, 15, 20, 25], GridAlpha: [0.05, 0.1, 0.5],
            GridEta: [0.01, 0.05, 0.1], KMax: 30, MoEvaluations: 54, Population: 18, TpeStartup: 10, AnchorK: [3, 8], AnchorStrength: [1, 2, 4, 8],
            EmbClusters: [2, 5, 8, 10, 15, 20, 25], EmbComponents: [5, 10, 15], EmbMaxClusters: 25, EmbedWords: 64, HeldOutFraction: 0.2, Seed: 0)
        { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
    }

    /// <summary>The paper's three anchors (["reduce"], ["reuse"], ["recycle"]) mapped into the planted lexicon.</summary>
    public static readonly string[][] Anchors = [["recycle"], ["reuse"], ["repair"]];

    /// <summary>Runs everything (CPU work; <paramref name="device"/> carries MiniLM), reporting one line per phase.</summary>
    public static TwinHpoResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.GridK.Length == 0 || config.GridAlpha.Length == 0 || config.GridEta.Length == 0)
            throw new ArgumentException("the LDA grid needs at least one value per hyperparameter.", nameof(config));
        if (!(config.HeldOutFraction > 0 && config.HeldOutFraction < 1))
            throw new ArgumentException($"HeldOutFraction must be in (0, 1), got {config.HeldOutFraction}.", nameof(config));
        var clock = new PhaseClock();
        var planted = SyntheticCorpus.PlantedTopics(SyntheticCorpus.CePlatforms(config.CorpusScale, config.GuardianLength), 8, config.Seed);
        var corpus = planted.Corpus;
        var split = new Random(config.Seed + 1);
        var order = Enumerable.Range(0, corpus.Docs.Length).OrderBy(_ => split.Next()).ToArray();
        int nTest = (int)Math.Round(config.HeldOutFraction * order.Length);
        var testIdx = order.Take(nTest).OrderBy(i => i).ToArray();
        var trainIdx = order.Skip(nTest).OrderBy(i => i).ToArray();
        var train = corpus.Subset(trainIdx);
        var test = corpus.Subset(testIdx);
        progress?.Report($"P02: planted corpus {corpus.Docs.Length} documents ({train.Tokens} training tokens, V = {corpus.V}); "
            + $"{trainIdx.Length} train / {testIdx.Length} held out");
        clock.Lap("corpus");

        // Recovery: Gibbs LDA at the true K, matched to the planted topics (Hungarian on JS distance); ML.NET's LightLDA alike.
        var truth = LdaGibbs.Fit(train, 8, 0.1, 0.01, config.Sweeps, config.Seed);
        var recovery = Recovery.Of(truth.Phi, planted.Phi);
        double mlNetJs;
        string? mlNetError = null;
        try { mlNetJs = Recovery.Of(LdaMlNet.Fit(train, 8, 0.1, 0.01, config.Sweeps, config.Seed).Phi, planted.Phi).MeanJs; }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or InvalidOperationException or EntryPointNotFoundException)
        { mlNetJs = double.NaN; mlNetError = e.GetType().Name + ": " + e.Message; }
        progress?.Report($"P02: true-K Gibbs LDA mean JS to planted {recovery.MeanJs:F3}; ML.NET LightLDA {mlNetJs:F3}");
        clock.Lap("recovery");

        // LDA tuned twice: grid on NPMI (in-sample, as the paper), then NSGA-II and MOTPE on (NPMI ↑, inverted RBO ↑, perplexity ↓).
        var ldaCache = new Dictionary<string, (TopicEval Eval, LdaModel Model)>();
        (TopicEval, LdaModel) Lda(string optimiser, int trial, int k, double alpha, double eta)
        {
            string key = $"{k}|{alpha}|{eta}";
            if (!ldaCache.TryGetValue(key, out var hit))
            {
                var m = LdaGibbs.Fit(train, k, alpha, eta, config.Sweeps, config.Seed);
                var top = m.TopWords(10);
                hit = (Score("LDA", optimiser, trial, new() { ["K"] = k, ["α"] = alpha, ["η"] = eta }, top, m.TopWords(25), train, test,
                    m.HeldOutPerplexity(test, 20, config.Seed)), m);
                ldaCache[key] = hit;
            }
            return (hit.Eval with { Optimiser = optimiser, Trial = trial }, hit.Model);
        }
        var ldaDefault = Lda("default", 0, 10, 0.1, 0.1).Item1;   // gensim's defaults α = η = 1/K at K = 10
        var ldaTrials = new List<TopicEval>();
        SearchProblem LdaProblem(string name, List<TopicEval> sink, Dimension[] space) => new(space, [true, true, false], v =>
        {
            var e = Lda(name, sink.Count(t => t.Optimiser == name), (int)v[0], v[1], v[2]).Item1;
            sink.Add(e);
            return e.Objectives;
        });
        var gridSpace = new[] { Dimension.Choice("K", config.GridK.Select(k => (double)k).ToArray()), Dimension.Choice("α", config.GridAlpha),
            Dimension.Choice("η", config.GridEta) };
        GridSearch.Run(LdaProblem("grid", ldaTrials, gridSpace));
        var moSpace = new[] { Dimension.Int("K", 2, config.KMax), Dimension.Choice("α", PaperPriorGrid), Dimension.Choice("η", PaperPriorGrid) };
        Nsga2.Run(LdaProblem("NSGA-II", ldaTrials, moSpace), config.MoEvaluations, config.Population, config.Seed);
        Tpe.Run(LdaProblem("MOTPE", ldaTrials, moSpace), config.MoEvaluations, config.Seed, config.TpeStartup);
        var ldaBest = ldaTrials.Where(t => t.Optimiser == "grid").MaxBy(t => t.Npmi)!;
        var ldaBestModel = Lda("grid", ldaBest.Trial, (int)ldaBest.Parameters["K"], ldaBest.Parameters["α"], ldaBest.Parameters["η"]).Item2;
        progress?.Report($"P02: LDA {ldaCache.Count} distinct fits; grid best {ldaBest.Label} NPMI {ldaBest.Npmi:F3} (default {ldaDefault.Npmi:F3})");
        clock.Lap("LDA search");

        // The planted platform difference read back from the grid-selected LDA (θ of its topics matched to the planted ones).
        var bestMatch = Recovery.Of(ldaBestModel.Phi, planted.Phi);
        var platforms = new PlatformReading[planted.Platforms.Length];
        for (int p = 0; p < platforms.Length; p++)
        {
            var docs = Enumerable.Range(0, trainIdx.Length).Where(i => planted.Platform[trainIdx[i]] == p).ToArray();
            var plantedShare = TopicMath.MeanRows(planted.Theta, docs.Select(i => trainIdx[i]));
            var recovered = TopicMath.MeanRows(ldaBestModel.Theta, docs);
            platforms[p] = new PlatformReading(planted.Platforms[p].Name, plantedShare, bestMatch.PlantedShare(recovered, planted.Phi.Length));
        }
        clock.Lap("platforms");

        // Anchored LDA: grid over K × anchor strength on NPMI; the paper's pinned 3 topics, strength 1, as its default.
        var vocabIndex = corpus.Vocab.Select((w, i) => (w, i)).ToDictionary(p => p.w, p => p.i);
        var anchorIds = Anchors.Select(a => a.Select(w => vocabIndex[w]).ToArray()).ToArray();
        TopicEval Anchored(string optimiser, int trial, int k, double strength)
        {
            var m = LdaGibbs.FitAnchored(train, k, 0.1, 0.01, anchorIds, strength, config.Sweeps, config.Seed);
            return Score("anchored LDA", optimiser, trial, new() { ["K"] = k, ["strength"] = strength }, m.TopWords(10), m.TopWords(25), train, test,
                m.HeldOutPerplexity(test, 20, config.Seed));
        }
        var anchoredDefault = Anchored("default", 0, 3, 1);
        var anchoredTrials = config.AnchorK.SelectMany(k => config.AnchorStrength.Select(s => (k, s)))
            .Select((p, i) => Anchored("grid", i, p.k, p.s)).ToList();
        clock.Lap("anchored");

        // Embedding topic model on MiniLM sentence embeddings: grid on NPMI, NSGA-II and MOTPE on (NPMI ↑, inverted RBO ↑, mass proxy ↓).
        using var miniLm = MiniLm.LoadPretrained(device: device);
        miniLm.eval();
        var embeddings = EmbeddingTopics.Embed(miniLm, train, config.EmbedWords);
        var projected = EmbeddingTopics.Pca(embeddings, Math.Max(15, config.EmbComponents.Max()));
        clock.Lap("MiniLM embeddings");
        var embTrials = new List<TopicEval>();
        TopicEval Embedding(string optimiser, int trial, int clusters, int components)
        {
            var m = EmbeddingTopics.Fit(projected, train, clusters, components, config.Seed);
            return Score("embedding", optimiser, trial, new() { ["clusters"] = clusters, ["components"] = components }, m.TopWords(10), m.TopWords(25),
                train, test, m.MassProxy(train));
        }
        var embDefault = Embedding("default", 0, 8, 5);   // KMeans' default 8 clusters, BERTopic's UMAP default 5 components
        SearchProblem EmbProblem(string name, Dimension[] space) => new(space, [true, true, false], v =>
        {
            var e = Embedding(name, embTrials.Count(t => t.Optimiser == name), (int)v[0], (int)v[1]);
            embTrials.Add(e);
            return e.Objectives;
        });
        GridSearch.Run(EmbProblem("grid", [Dimension.Choice("clusters", config.EmbClusters.Select(c => (double)c).ToArray()),
            Dimension.Choice("components", config.EmbComponents.Select(c => (double)c).ToArray())]));
        var embSpace = new[] { Dimension.Int("clusters", 2, config.EmbMaxClusters), Dimension.Int("components", 5, 15) };
        Nsga2.Run(EmbProblem("NSGA-II", embSpace), config.MoEvaluations, config.Population, config.Seed);
        Tpe.Run(EmbProblem("MOTPE", embSpace), config.MoEvaluations, config.Seed, config.TpeStartup);
        progress?.Report($"P02: embedding model {embTrials.Count} fits; grid best NPMI "
            + $"{embTrials.Where(t => t.Optimiser == "grid").Max(t => t.Npmi):F3} (default {embDefault.Npmi:F3})");
        clock.Lap("embedding search");

        var exactness = TwinHpoChecks.Run(train, ldaTrials, config.Seed);
        clock.Lap("exactness");
        return new TwinHpoResult(config, planted, trainIdx, testIdx, recovery, truth, mlNetJs, mlNetError, bestMatch, platforms,
            ldaDefault, ldaTrials, anchoredDefault, anchoredTrials, embDefault, embTrials, exactness, clock.Seconds, clock.Phases);
    }

    static TopicEval Score(string model, string optimiser, int trial, Dictionary<string, double> parameters, int[][] top10, int[][] top25,
        Corpus train, Corpus test, double third) => new(model, optimiser, trial, parameters,
            TopicMetrics.Npmi(top10, train), TopicMetrics.Npmi(top10, test), TopicMetrics.InvertedRbo(top10), TopicMetrics.TopicDiversity(top25),
            third, top10.Select(t => t.Select(w => train.Vocab[w]).ToArray()).ToArray());
}
