using System.Diagnostics;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Atlas;

/// <summary>A head role the atlas detects, with its threshold.</summary>
/// <param name="Name">"previous-token", "induction", …</param>
/// <param name="Threshold">a head holds the role when its score reaches this.</param>
/// <param name="Source">where the score and the threshold come from.</param>
public sealed record HeadRole(string Name, double Threshold, string Source);

/// <summary>
/// A shipped TinyGpt checkpoint the atlas reads, with how its inputs are made: token 0 of every sequence is
/// <paramref name="Bos"/>; random tokens come from [<paramref name="Low"/>, <paramref name="High"/>); character models read Moby-Dick
/// windows as natural text (<paramref name="Characters"/>) and are scored for succession over a … z; a segment of
/// <paramref name="Segment"/> distinct tokens is what the induction, duplicate-token and retrieval inputs repeat.
/// </summary>
public sealed record HeadAtlasModel(string Checkpoint, long Bos, long Low, long High, int Segment, bool Characters)
{
    /// <summary>Checks the fields; an ArgumentException names the bad one.</summary>
    public HeadAtlasModel Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(Checkpoint);
        if (Low < 0 || High <= Low) throw new ArgumentException($"the random-token range [{Low}, {High}) is empty.", nameof(High));
        if (Segment < 2 || Segment > High - Low)
            throw new ArgumentException($"Segment {Segment} must be in 2 … {High - Low} (distinct tokens of the range).", nameof(Segment));
        return this;
    }
}

/// <summary>
/// One model's scores: [L, H] per role (NaN where a role is not defined for the model), and per pattern role the score a
/// uniform causal head (row i spread over keys 0 … i) gets on the same input — the chance level of that detector.
/// </summary>
public sealed record HeadAtlasScores(string Model, int Layers, int Heads, IReadOnlyDictionary<string, double[,]> Scores,
    IReadOnlyDictionary<string, double> Uniform, int RetrievalRunsCounted, int RetrievalRuns, double DetectorLoopGap, double Seconds);

/// <summary>
/// The heads atlas (issue 14 item 5, notebook 92): every head detector of the library — previous-token, duplicate-token and
/// induction patterns (TransformerLens's detector), the first-token sink score (Gu et al.), the retrieval score of Wu et al.
/// (P12) from decode-time attention, and the OV-circuit copying (Elhage et al.) and succession (Gould et al.) scores — run
/// on the shipped checkpoints and on the pretrained MiniLM, one heatmap per detector and a table of heads with several roles.
/// </summary>
public sealed class HeadsAtlas : IPaperExperiment<HeadsAtlas.Config, HeadsAtlasResult>
{
    HeadsAtlas() { }

    /// <summary>The heads atlas in the catalogue (a cross-paper study: 92).</summary>
    public static PaperInfo Paper { get; } = new(92, "Heads atlas: every head detector on the shipped checkpoints and MiniLM", "heads-atlas");

    /// <summary>Role names.</summary>
    public const string PreviousToken = "previous-token", DuplicateToken = "duplicate-token", Induction = "induction", Sink = "sink",
        Retrieval = "retrieval", Copying = "copying", Successor = "successor";

    /// <summary>
    /// The roles and their thresholds: pattern scores are the share of a row's attention on the role's keys (0.4 [ours]); the sink
    /// threshold is Gu et al.'s ε = 0.3; retrieval is Wu et al.'s 0.1; copying Σλ/Σ|λ| &gt; 0.5 [ours]; succession ≥ 0.5 [ours].
    /// </summary>
    public static IReadOnlyList<HeadRole> Roles { get; } = new[]
    {
        new HeadRole(PreviousToken, 0.4, "share of attention on i − 1 (TransformerLens detector, mul) [threshold ours]"),
        new HeadRole(DuplicateToken, 0.4, "share of attention on earlier copies of x_i [threshold ours]"),
        new HeadRole(Induction, 0.4, "share of attention on the token after an earlier copy of x_i [threshold ours]"),
        new HeadRole(Sink, HeadScoresSinkEpsilon, "mean attention on position 0 (Gu et al.'s ε = 0.3)"),
        new HeadRole(Retrieval, RetrievalScore.Threshold, "Wu et al.'s retrieval score (threshold 0.1, the paper's)"),
        new HeadRole(Copying, 0.5, "OV-circuit Σλ/Σ|λ| (Elhage et al.) [threshold ours]"),
        new HeadRole(Successor, 0.5, "OV-circuit succession over a … z (Gould et al.) [threshold ours]"),
    };

    const double HeadScoresSinkEpsilon = 0.3;

    /// <summary>Sizes of one run.</summary>
    public sealed record Config(IReadOnlyList<HeadAtlasModel> Models, bool MiniLm, int Batch, int RetrievalRuns, int RetrievalPrefix, int Seed)
        : IPaperConfig<Config>
    {
        /// <summary>The plain TinyGpt checkpoints in data/models/ (the others use a paper's mixer).</summary>
        public static IReadOnlyList<HeadAtlasModel> Shipped { get; } = new[]
        {
            new HeadAtlasModel("induction-2l-attn-only", Bos: 0, Low: 1, High: 16, Segment: 12, Characters: false),
            new HeadAtlasModel("delta-4l-attn-only", Bos: 0, Low: 1, High: 16, Segment: 12, Characters: false),
            new HeadAtlasModel("sinklora-base", Bos: 0, Low: 1, High: 64, Segment: 20, Characters: false),
            new HeadAtlasModel("retrieval-heads-niah", Bos: 0, Low: 3, High: 51, Segment: 20, Characters: false),
            new HeadAtlasModel("affine-scaled-softmax", Bos: 75, Low: 0, High: 75, Segment: 20, Characters: true),
            new HeadAtlasModel("affine-scaled-sink", Bos: 75, Low: 0, High: 75, Segment: 20, Characters: true),
        };

        /// <summary>Every shipped model and MiniLM; CPU, well under a minute.</summary>
        public static Config Smoke => new(Shipped, MiniLm: true, Batch: 32, RetrievalRuns: 8, RetrievalPrefix: 3, Seed: 0) { Size = "smoke" };

        /// <summary>The same models with more sequences and retrieval runs (the checkpoints are small; a GPU adds little).</summary>
        public static Config Full => new(Shipped, MiniLm: true, Batch: 256, RetrievalRuns: 64, RetrievalPrefix: 3, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; "custom" once a field changes.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>Checks the sizes; an ArgumentException names the bad field.</summary>
        public Config Validate()
        {
            if (Models is null || Models.Count == 0 && !MiniLm) throw new ArgumentException("give at least one model (or MiniLm).", nameof(Models));
            foreach (var m in Models) m.Validate();
            Guard.Positive(Batch, nameof(Batch));
            Guard.Positive(RetrievalRuns, nameof(RetrievalRuns));
            Guard.Positive(RetrievalPrefix, nameof(RetrievalPrefix));
            if (Models.Any(m => RetrievalPrefix >= m.Segment))
                throw new ArgumentException($"RetrievalPrefix {RetrievalPrefix} must be shorter than every model's segment.", nameof(RetrievalPrefix));
            return this;
        }
    }

    /// <summary>Sentences for MiniLM's natural-text detectors (previous-token, sink).</summary>
    public static IReadOnlyList<string> Sentences { get; } = new[]
    {
        "The whale rose slowly from the grey water and the sailors watched in silence.",
        "A small village stood at the edge of the forest, far from the nearest road.",
        "She opened the old letter and read it twice before putting it back in the drawer.",
        "Every morning the baker lit the oven long before the first customers arrived.",
    };

    /// <summary>Runs every detector on every model of <paramref name="config"/>, one progress line per model.</summary>
    public static HeadsAtlasResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = new PhaseClock();
        var results = new List<HeadAtlasScores>();
        foreach (var spec in config.Models)
        {
            var sw = Stopwatch.StartNew();
            using var model = TinyGptCheckpoint.Load(spec.Checkpoint);
            model.to(device);
            var scores = Detect(model, spec, config, device, out var uniform, out int counted, out double gap);
            results.Add(new HeadAtlasScores(spec.Checkpoint, model.LayerCount, model.HeadCount, scores, uniform, counted, config.RetrievalRuns, gap,
                sw.Elapsed.TotalSeconds));
            clock.Lap(spec.Checkpoint);
            progress?.Report($"{spec.Checkpoint}: {model.LayerCount}×{model.HeadCount} heads, {Summary(scores)} ({sw.Elapsed.TotalSeconds:F1} s)");
        }
        if (config.MiniLm)
        {
            var sw = Stopwatch.StartNew();
            using var minilm = MiniLm.LoadPretrained(device: device);
            var scores = DetectEncoder(minilm, config, out var uniform);
            results.Add(new HeadAtlasScores("MiniLM", minilm.Config.Layers, minilm.Config.Heads, scores, uniform, 0, 0, double.NaN,
                sw.Elapsed.TotalSeconds));
            clock.Lap("MiniLM");
            progress?.Report($"MiniLM: {minilm.Config.Layers}×{minilm.Config.Heads} heads, {Summary(scores)} ({sw.Elapsed.TotalSeconds:F1} s)");
        }
        return new HeadsAtlasResult(config, results, clock.Seconds);
    }

    static string Summary(IReadOnlyDictionary<string, double[,]> scores) => string.Join(", ", Roles.Where(r => scores.ContainsKey(r.Name))
        .Select(r => $"{Count(scores[r.Name], r.Threshold)} {r.Name}"));

    /// <summary>Heads whose score reaches <paramref name="threshold"/>.</summary>
    public static int Count(double[,] scores, double threshold) => scores.Cast<double>().Count(s => s >= threshold);

    static Dictionary<string, double[,]> Detect(TinyGpt model, HeadAtlasModel spec, Config c, Device device, out Dictionary<string, double> uniform,
        out int counted, out double loopGap)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var rng = new Random(c.Seed);
        var natural = spec.Characters ? TextCorpus.MobyDick().Sample(c.Batch, 2 * spec.Segment, seed: c.Seed, split: CorpusSplit.Validation).Tokens
            : RandomTokens(rng, spec, c.Batch, 2 * spec.Segment);
        var repeated = Repeated(rng, spec, c.Batch).to(device);
        natural = natural.to(device);
        uniform = new Dictionary<string, double>
        {
            [PreviousToken] = UniformScore(natural, HeadPattern.PreviousToken, causal: true),
            [DuplicateToken] = UniformScore(repeated, HeadPattern.DuplicateToken, causal: true),
            [Induction] = UniformScore(repeated, HeadPattern.Induction, causal: true),
        };
        var scores = new Dictionary<string, double[,]>
        {
            [PreviousToken] = ToArray(HeadDetector.Detect(model, natural, HeadPattern.PreviousToken)),
            [DuplicateToken] = ToArray(HeadDetector.Detect(model, repeated, HeadPattern.DuplicateToken)),
            [Induction] = ToArray(HeadDetector.Detect(model, repeated, HeadPattern.Induction)),
        };
        var (_, cache) = model.RunWithCache(natural, n => n.EndsWith("attn.hook_pattern", StringComparison.Ordinal));
        using (cache)
        {
            scores[Sink] = ToArray(HeadScores.SinkScore(cache));
            loopGap = LoopGap(cache, natural, scores[PreviousToken]);
        }
        var runs = new List<RetrievalRun>();
        for (int r = 0; r < c.RetrievalRuns; r++)
        {
            var segment = Segment(rng, spec);
            var prompt = new List<long> { spec.Bos };
            prompt.AddRange(segment);
            prompt.AddRange(segment.Take(c.RetrievalPrefix));
            var answer = segment.Skip(c.RetrievalPrefix).ToList();
            runs.Add(RetrievalScore.Detect(model, prompt, 1, 1 + spec.Segment, answer, answer.Count));
        }
        counted = runs.Count(r => r.Counts);
        scores[Retrieval] = RetrievalScore.Average(runs, model.LayerCount, model.HeadCount);
        scores[Copying] = CopyingScore.Heads(model);
        if (spec.Characters)
        {
            var corpus = TextCorpus.MobyDick();
            var letters = Enumerable.Range('a', 26).Select(ch => (char)ch).Where(corpus.Characters.Contains).Select(ch => corpus.Encode(ch.ToString())[0])
                .ToList();
            scores[Successor] = SuccessorScore.Heads(model, letters);
        }
        return scores;
    }

    /// <summary>
    /// The exactness check of the detector on real patterns: the previous-token score recomputed with loops over the cached
    /// patterns (Σ_i A_{i,i−1} / Σ_i Σ_j A_ij per sequence, mean over the batch); max |Δ| over heads.
    /// </summary>
    static double LoopGap(ActivationCache cache, Tensor tokens, double[,] detector)
    {
        double gap = 0;
        for (int l = 0; l < cache.LayerCount; l++)
        {
            var a = cache["pattern", l].to(ScalarType.Float64).cpu();                   // [B, H, T, T]
            long b = a.shape[0], heads = a.shape[1], t = a.shape[2];
            var data = a.data<double>().ToArray();
            for (int h = 0; h < heads; h++)
            {
                double mean = 0;
                for (int n = 0; n < b; n++)
                {
                    double on = 0, all = 0;
                    for (int i = 0; i < t; i++)
                        for (int j = 0; j < t; j++)
                        {
                            double v = data[((n * heads + h) * t + i) * t + j];
                            all += v;
                            if (j == i - 1) on += v;
                        }
                    mean += on / all / b;
                }
                gap = Math.Max(gap, Math.Abs(mean - detector[l, h]));
            }
        }
        return gap;
    }

    static Dictionary<string, double[,]> DetectEncoder(MiniLm model, Config c, out Dictionary<string, double> uniform)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var hooked = (IHookedModel)model;
        Tensor? previous = null, sink = null;
        double uniformPrevious = 0;
        foreach (var sentence in Sentences)                                              // one sentence per run: no padding
        {
            using var enc = model.Tokenize(new[] { sentence });
            var ids = enc.InputIds.to(model.Device);
            previous = Add(previous, HeadDetector.Detect(hooked, ids, HeadPattern.PreviousToken));
            uniformPrevious += UniformScore(ids, HeadPattern.PreviousToken, causal: false) / Sentences.Count;
            var (_, cache) = hooked.RunWithCache(ids, n => n.EndsWith("attn.hook_pattern", StringComparison.Ordinal));
            using (cache) sink = Add(sink, HeadScores.SinkScore(cache, 0, causal: false));
        }
        // Repeated random WordPiece ids between [CLS] (101) and [SEP] (102): ordinary tokens 1996 … 29611 (after the unused and
        // single-character entries of the BERT vocabulary).
        var rng = new Random(c.Seed);
        int segment = 20;
        var rows = new long[c.Batch, 2 + 2 * segment];
        for (int n = 0; n < c.Batch; n++)
        {
            var s = Enumerable.Range(0, segment).Select(_ => (long)rng.Next(1996, 29612)).ToArray();
            rows[n, 0] = 101;
            for (int i = 0; i < segment; i++) rows[n, 1 + i] = rows[n, 1 + segment + i] = s[i];
            rows[n, 1 + 2 * segment] = 102;
        }
        var repeated = torch.tensor(rows, device: model.Device);
        uniform = new Dictionary<string, double>
        {
            [PreviousToken] = uniformPrevious,
            [DuplicateToken] = UniformScore(repeated, HeadPattern.DuplicateToken, causal: false),
            [Induction] = UniformScore(repeated, HeadPattern.Induction, causal: false),
        };
        return new Dictionary<string, double[,]>
        {
            [PreviousToken] = ToArray(previous!.div(Sentences.Count)),
            [DuplicateToken] = ToArray(HeadDetector.Detect(hooked, repeated, HeadPattern.DuplicateToken)),
            [Induction] = ToArray(HeadDetector.Detect(hooked, repeated, HeadPattern.Induction)),
            [Sink] = ToArray(sink!.div(Sentences.Count)),
        };
    }

    /// <summary>
    /// The detector's score for a uniform head on <paramref name="tokens"/> [B, T]: rows spread over keys 0 … i (causal) or over
    /// every key (an encoder) — the chance level a role's score is read against.
    /// </summary>
    public static double UniformScore(Tensor tokens, HeadPattern kind, bool causal)
    {
        using var scope = NewDisposeScope();
        var batch = tokens.dim() == 1 ? tokens.unsqueeze(0) : tokens;
        long b = batch.shape[0], t = batch.shape[1];
        var rows = causal ? torch.ones(t, t, dtype: ScalarType.Float64).tril() : torch.ones(t, t, dtype: ScalarType.Float64);
        var uniform = rows.div(rows.sum(dim: -1, keepdim: true)).expand(b, 1, t, t).to(batch.device);
        return HeadDetector.Score(uniform, HeadDetector.DetectionPattern(batch, kind).to(ScalarType.Float64)).mean().item<double>();
    }

    static Tensor Add(Tensor? sum, Tensor x) => sum is null ? x : sum.add(x);

    static double[,] ToArray(Tensor scores)
    {
        var s = scores.to(ScalarType.Float64).cpu();
        long l = s.shape[0], h = s.shape[1];
        var data = s.data<double>().ToArray();
        var a = new double[l, h];
        for (int i = 0; i < l; i++)
            for (int j = 0; j < h; j++) a[i, j] = data[i * h + j];
        return a;
    }

    static long[] Segment(Random rng, HeadAtlasModel spec) =>
        Enumerable.Range((int)spec.Low, (int)(spec.High - spec.Low)).OrderBy(_ => rng.Next()).Take(spec.Segment).Select(t => (long)t).ToArray();

    static Tensor RandomTokens(Random rng, HeadAtlasModel spec, int batch, int length)
    {
        var rows = new long[batch, 1 + length];
        for (int n = 0; n < batch; n++)
        {
            rows[n, 0] = spec.Bos;
            for (int i = 1; i <= length; i++) rows[n, i] = rng.NextInt64(spec.Low, spec.High);
        }
        return torch.tensor(rows);
    }

    /// <summary>[BOS] S S with S distinct random tokens of the model's range (the induction and duplicate-token input).</summary>
    static Tensor Repeated(Random rng, HeadAtlasModel spec, int batch)
    {
        var rows = new long[batch, 1 + 2 * spec.Segment];
        for (int n = 0; n < batch; n++)
        {
            var s = Segment(rng, spec);
            rows[n, 0] = spec.Bos;
            for (int i = 0; i < spec.Segment; i++) rows[n, 1 + i] = rows[n, 1 + spec.Segment + i] = s[i];
        }
        return torch.tensor(rows);
    }
}
