using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>
/// P04 BAM: the notebook's experiment. An exactness phase on toy models (the soft mixture of attention against its naive
/// twin; the upcycled BAM and BTX models built from identical copies equal the seed; averaging identical models is the
/// identity; gate sums; BAM-all's KV cache is N × dense; decoding equals the forward pass). Then the pipeline of spec §4:
/// a dense parallel-block seed trained on the three-domain mixture, one branch per domain (the shipped checkpoint, or a
/// brief fallback trained here), the branches evaluated per domain, and BTX, BAM-all (and the dense seed continued) trained
/// for equal mixture steps on the same batches: validation loss per domain and over time, and the routers' weight per domain.
/// </summary>
public sealed class BamExperiment : IPaperExperiment<BamExperiment.Config, BamResult>
{
    BamExperiment() { }

    /// <summary>P04 in the catalogue (notebook notebooks/04-bam.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(4, "BAM! Just Like That: Simple and Efficient Parameter Upcycling for Mixture of Experts", "bam");

    /// <summary>The model names the claims look up.</summary>
    public const string BtxName = "BTX", BamName = "BAM-all", DenseName = "dense continued";

    /// <summary>
    /// Sizes of one run. Smoke: spec §4 (d = 64, L = 2, H = 4, T = 64, batch 32, 3 domains); the seed (600 steps) and branches
    /// (3 × 300) come from the shipped checkpoint (fallback: 200 and 3 × 100 steps trained here, the spec's smoke numbers), then
    /// 150 mixture steps per model. Full: spec §4's GPU size (d = 256, L = 6, H = 8, T = 256; seed 3k, branch 2k, mix 4k), trained
    /// here, one seed per run.
    /// </summary>
    /// <remarks>
    /// Checkpoint: the seed-and-branches checkpoint to load (null: train them here with the key's steps). FallbackSeedSteps and
    /// FallbackBranchSteps: the brief training when the checkpoint is missing or made for another config. Dense: also continue the
    /// dense seed for the mixture steps (the spec's "dense continued" baseline).
    /// </remarks>
    public sealed record Config(int Layers, int DModel, int Heads, double MlpRatio, int SeqLen, int BatchSize, int SeedSteps, int BranchSteps,
        double LearningRate, int MixSteps, double MixLearningRate, int TopK, double AuxWeight, int EvalPerDomain, int EvalEvery,
        string? Checkpoint, int FallbackSeedSteps, int FallbackBranchSteps, bool Dense, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, MlpRatio: 4, SeqLen: 64, BatchSize: 32, SeedSteps: 600, BranchSteps: 300,
            LearningRate: 3e-3, MixSteps: 150, MixLearningRate: 1e-3, TopK: 2, AuxWeight: 0.01, EvalPerDomain: 32, EvalEvery: 25,
            Checkpoint: BamCheckpoint.Name, FallbackSeedSteps: 200, FallbackBranchSteps: 100, Dense: true, Seed: 0) { Size = "smoke" };

        public static Config Full => new(Layers: 6, DModel: 256, Heads: 8, MlpRatio: 4, SeqLen: 256, BatchSize: 32, SeedSteps: 3000, BranchSteps: 2000,
            LearningRate: 1e-3, MixSteps: 4000, MixLearningRate: 5e-4, TopK: 2, AuxWeight: 0.01, EvalPerDomain: 128, EvalEvery: 250,
            Checkpoint: null, FallbackSeedSteps: 3000, FallbackBranchSteps: 2000, Dense: true, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The dense seed: a parallel-block TinyGpt with learned positions over the domains' characters.</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, MlpRatio, Positions: PositionKind.Learned, VocabSize: BamDomains.VocabSize,
            MaxLength: SeqLen, ParallelBlock: true);

        /// <summary>What the shipped checkpoint must have been trained with.</summary>
        public BamCheckpointKey Key => new(Model, SeedSteps, BranchSteps, BatchSize, LearningRate, Seed);
    }

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static BamResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: mixture of attention vs naive {Num.Sci(exactness.MoaVsNaive)}, BAM from identical copies vs seed " +
            $"{Num.Sci(exactness.BamIdenticalVsSeed)}, BTX {Num.Sci(exactness.BtxIdenticalVsSeed)} (float64)");

        using var models = new BamCheckpoint(config.Model, BamDomains.Count);
        models.to(device);
        string source = LoadOrTrain(models, config, device, progress);
        clock.Lap("seed and branches");

        var evals = Enumerable.Range(0, BamDomains.Count)
            .Select(d => BamDomains.Batch(config.EvalPerDomain, config.SeqLen, seed: 1_000_003 + 17 * d + config.Seed, (BamDomain)d, device)).ToList();
        try
        {
            var branchLoss = new List<double[]> { DomainLosses(models.Seed, evals) };
            branchLoss.AddRange(models.Branches.Select(b => DomainLosses(b, evals)));
            progress?.Report("seed and branches, validation loss per domain: " + string.Join("; ", branchLoss.Select((l, i) =>
                $"{(i == 0 ? "seed" : $"branch {(BamDomain)(i - 1)}")} [{string.Join(", ", l.Select(v => v.ToString("F3")))}]")));
            clock.Lap("branch evaluation");

            var runs = new List<BamRun>();
            var routing = new List<RouterMap>();
            foreach (var (name, kind) in Variants(config))
            {
                var (run, maps) = Mix(name, kind, models, evals, config, device, progress);
                runs.Add(run);
                routing.AddRange(maps);
                clock.Lap($"mix {name}");
            }
            progress?.Report($"done in {clock.Seconds:F1} s");
            return new BamResult(config, exactness, source, branchLoss, runs, routing, clock.Seconds, clock.Phases);
        }
        finally
        {
            foreach (var e in evals) e.Dispose();
        }
    }

    static IEnumerable<(string Name, MixKind? Kind)> Variants(Config c)
    {
        yield return (BtxName, MixKind.Btx);
        yield return (BamName, MixKind.Bam);
        if (c.Dense) yield return (DenseName, null);
    }

    /// <summary>
    /// Loads the seed and branches from <see cref="Config.Checkpoint"/> when it exists and matches <see cref="Config.Key"/>;
    /// otherwise trains them here with the fallback steps (train briefly). Returns which happened.
    /// </summary>
    static string LoadOrTrain(BamCheckpoint models, Config c, Device device, IProgress<string>? progress)
    {
        string why;
        if (c.Checkpoint is null) why = "no checkpoint configured";
        else
        {
            try
            {
                var entry = CheckpointStore.Default().Load(models, c.Checkpoint, c.Key);
                progress?.Report($"loaded checkpoint {entry.Name} (seed {c.SeedSteps} steps, branches {c.BranchSteps} steps each; " +
                    $"sha256 {entry.Sha256[..12]}…)");
                return $"checkpoint {entry.Name} (seed {c.SeedSteps} steps, branches {BamDomains.Count} × {c.BranchSteps})";
            }
            catch (Exception e) when (e is FileNotFoundException or ArgumentException or InvalidDataException or DirectoryNotFoundException)
            {
                why = e.Message.Length > 160 ? e.Message[..160] + "…" : e.Message;
            }
        }
        bool fallback = c.Checkpoint is not null;
        int seedSteps = fallback ? c.FallbackSeedSteps : c.SeedSteps, branchSteps = fallback ? c.FallbackBranchSteps : c.BranchSteps;
        progress?.Report($"training seed ({seedSteps} steps) and branches ({BamDomains.Count} × {branchSteps}) here: {why}");
        TrainSeedAndBranches(models, c with { SeedSteps = seedSteps, BranchSteps = branchSteps }, device, progress);
        return $"trained here ({(fallback ? "fallback: " : "")}seed {seedSteps} steps, branches {BamDomains.Count} × {branchSteps}; {why})";
    }

    /// <summary>
    /// The Branch step of BAM: the seed trained on the mixture for <see cref="Config.SeedSteps"/>, then each branch starts from
    /// the seed and continues on its own domain for <see cref="Config.BranchSteps"/>. The checkpoint recipe calls this.
    /// </summary>
    public static void TrainSeedAndBranches(BamCheckpoint models, Config c, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(c);
        torch.manual_seed(c.Seed);
        Fit(models.Seed, c.SeedSteps, c.LearningRate, step => BamDomains.Batch(c.BatchSize, c.SeqLen, seed: c.Seed * 7_919 + step, device: device),
            progress, "seed");
        models.CopyFromSeed();
        for (int d = 0; d < BamDomains.Count; d++)
        {
            int domain = d;
            Fit(models.Branches[d], c.BranchSteps, c.LearningRate,
                step => BamDomains.Batch(c.BatchSize, c.SeqLen, seed: 5_000_011 * (domain + 1) + c.Seed * 7_919 + step, (BamDomain)domain, device),
                progress, $"branch {(BamDomain)d}");
        }
    }

    static TrainHistory Fit(TinyGpt model, int steps, double lr, Func<int, BamBatch> batches, IProgress<string>? progress, string label,
        int evalEvery = 0, Func<int, IReadOnlyDictionary<string, double>>? evaluate = null, double auxWeight = 0)
    {
        var options = new TrainOptions(Math.Max(1, steps), lr, WarmupSteps: Math.Min(20, steps / 10), StepsPerEpoch: evalEvery,
            ReportEvery: Math.Max(1, steps / 2));
        return Trainer.Fit(model, step =>
        {
            using var batch = batches(step);
            var loss = batch.Loss(model.call(batch.Tokens));
            if (auxWeight > 0) loss = loss + auxWeight * BamUpcycling.AuxLoss(model);    // task + α·Σ_layers L_aux
            return loss;
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {label}: {p}")), evaluate);
    }

    /// <summary>Mean next-token loss of <paramref name="model"/> on each domain's batch (eval mode, no grad).</summary>
    public static double[] DomainLosses(TinyGpt model, IReadOnlyList<BamBatch> evals)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(evals);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        bool training = model.training;
        model.eval();
        var losses = evals.Select(e => e.Loss(model.call(e.Tokens)).item<float>() * 1.0).ToArray();
        if (training) model.train();
        return losses;
    }

    static (BamRun Run, List<RouterMap> Maps) Mix(string name, MixKind? kind, BamCheckpoint models, IReadOnlyList<BamBatch> evals, Config c,
        Device device, IProgress<string>? progress)
    {
        torch.manual_seed(c.Seed + 1);
        using var model = kind is { } k ? BamUpcycling.Mix(models.Branches, k, c.TopK) : Clone(models.Seed, c.Model);
        int attentionExperts = kind == MixKind.Bam ? BamDomains.Count : 1;
        var (total, active) = ParameterCounts(model, c, attentionExperts, kind is null ? 1 : c.TopK);
        progress?.Report($"mixing {name}: {total:N0} parameters ({active:N0} active per token), {c.MixSteps} steps of {c.BatchSize} × {c.SeqLen}");
        var curve = new List<(int Step, double[] Losses)> { (0, DomainLosses(model, evals)) };
        var history = Fit(model, c.MixSteps, c.MixLearningRate, step => BamDomains.Batch(c.BatchSize, c.SeqLen, seed: 9_000_001 + c.Seed * 7_919 + step,
            device: device), progress, name, c.EvalEvery, epoch =>
        {
            var l = DomainLosses(model, evals);
            curve.Add((Math.Min(epoch * c.EvalEvery, c.MixSteps), l));
            return new Dictionary<string, double> { ["mean"] = l.Average() };
        }, kind is null ? 0 : c.AuxWeight);
        var final = curve[^1].Losses;
        var maps = kind is null ? new List<RouterMap>() : Routing(name, model, evals);
        double msPerStep = history.Elapsed.TotalMilliseconds / Math.Max(1, history.Losses.Count);
        progress?.Report($"  {name}: validation loss per domain [{string.Join(", ", final.Select(v => v.ToString("F3")))}], mean {final.Average():F4}; " +
            $"{msPerStep:F0} ms/step");
        var flops = AttentionFlopsPerToken(c, attentionExperts);
        return (new BamRun(name, total, active, flops, KvBytesPerToken(c, attentionExperts), final, curve.Select(p => p.Step).ToArray(),
            curve.Select(p => p.Losses.Average()).ToArray(), history.Losses, msPerStep), maps);
    }

    static TinyGpt Clone(TinyGpt source, TinyGptConfig config)
    {
        var copy = new TinyGpt(config);
        var w = source.FinalNorm.Weight;
        copy.to(w.device).to(w.dtype);
        using var noGrad = torch.no_grad();
        var from = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (n, p) in copy.named_parameters()) p.copy_(from[n]);
        return copy;
    }

    /// <summary>
    /// The routers' weight per domain on the evaluation batches: per layer, the FFN router's top-1 share and the attention
    /// router's mean soft weight (BAM), rows domain, columns expert (expert i branched on domain i).
    /// </summary>
    static List<RouterMap> Routing(string name, TinyGpt model, IReadOnlyList<BamBatch> evals)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        var ffns = BamUpcycling.FfnMixtures(model);
        var attns = BamUpcycling.AttentionMixtures(model);
        int layers = model.Config.Layers, e = BamDomains.Count;
        var top1 = Enumerable.Range(0, layers).Select(_ => new double[evals.Count][]).ToArray();
        var soft = Enumerable.Range(0, layers).Select(_ => new double[evals.Count][]).ToArray();
        for (int d = 0; d < evals.Count; d++)
        {
            var captured = new double[]?[layers];
            var handles = new List<IDisposable>();
            for (int l = 0; l < attns.Count; l++)
            {
                int layer = l;
                handles.Add(model.HookPoints[$"blocks.{l}.attn.hook_router"].AddHook((r, _) =>
                {
                    captured[layer] = r.detach().reshape(-1, r.size(-1)).mean(new long[] { 0 }).to(ScalarType.Float64).cpu().data<double>().ToArray();
                    return null;
                }));
            }
            try { model.call(evals[d].Tokens); }
            finally { foreach (var h in handles) h.Dispose(); }
            for (int l = 0; l < layers; l++)
            {
                var p = ffns[l].LastProbabilities!;
                var choice = p.argmax(-1);
                top1[l][d] = Enumerable.Range(0, e).Select(i => choice.eq(i).to(ScalarType.Float64).mean().item<double>()).ToArray();
                soft[l][d] = captured[l] ?? Array.Empty<double>();
            }
        }
        var maps = new List<RouterMap>();
        for (int l = 0; l < layers; l++)
        {
            maps.Add(new RouterMap(name, "FFN top-1", l, top1[l]));
            if (attns.Count > l) maps.Add(new RouterMap(name, "attention soft", l, soft[l]));
        }
        return maps;
    }

    /// <summary>Total parameters and those one token uses (k of E FFN experts; every attention expert in BAM).</summary>
    static (long Total, long Active) ParameterCounts(TinyGpt model, Config c, int attentionExperts, int ffnExpertsPerToken)
    {
        long total = model.ParameterCount;
        long ffn = 2L * c.DModel * c.Model.MlpDim + c.Model.MlpDim + c.DModel;          // one FFN expert
        long ffnTotal = BamUpcycling.FfnMixtures(model).Sum(m => m.Moe.Experts.Count) * ffn;
        long ffnActive = c.Layers * ffnExpertsPerToken * ffn;
        if (ffnTotal == 0) return (total, total);
        return (total, total - ffnTotal + ffnActive);
    }

    /// <summary>
    /// Attention FLOPs per token at T (multiply-adds × 2, averaged over causal positions): E experts × (QKV 2·3d² + scores and
    /// A·V 2·2·d·(T+1)/2 + W_O 2·d²) per layer, and the router (2·d·E) for BAM.
    /// </summary>
    public static double AttentionFlopsPerToken(Config c, int experts)
    {
        ArgumentNullException.ThrowIfNull(c);
        double d = c.DModel, t = c.SeqLen;
        double one = 2 * 3 * d * d + 2 * 2 * d * (t + 1) / 2 + 2 * d * d;
        return c.Layers * (experts * one + (experts > 1 ? 2 * d * experts : 0));
    }

    /// <summary>KV-cache bytes per token (float32): L layers × E experts × (K and V) × d × 4.</summary>
    public static long KvBytesPerToken(Config c, int experts)
    {
        ArgumentNullException.ThrowIfNull(c);
        return (long)c.Layers * experts * 2 * c.DModel * 4;
    }

    /// <summary>
    /// The exactness phase: the mixture of attention vs its naive twin (float64, B 2, T 7, d 11, E 3, H 2, Dk 3, Dv 4; output and every
    /// gradient), BAM and BTX from identical copies vs the seed, averaging identical models, gate sums, KV bytes and decoding.
    /// </summary>
    public static BamExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        double twin;
        using (var moa = new MixtureOfAttention(11, 2, 3, zeroRouter: false, keyDim: 3, valueDim: 4))
        {
            moa.to(float64).to(device);
            var gen = new Generator((ulong)seed + 11);
            var x = torch.randn(new long[] { 2, 7, 11 }, generator: gen, dtype: float64).to(device).requires_grad_();
            twin = BamChecks.TwinGap(moa, x, gen);
        }
        double bam = BamChecks.IdenticalCopiesGap(MixKind.Bam, device, seed);
        double btx = BamChecks.IdenticalCopiesGap(MixKind.Btx, device, seed);
        double averaging = BamChecks.AveragingIdentityGap(device, seed);
        var (sumGap, badRows) = BamChecks.GateSums(device, seed);
        var (kvRatio, stepGap) = BamChecks.Decode(device, seed);
        return new BamExactness(twin, bam, btx, averaging, sumGap, badRows, kvRatio, stepGap);
    }
}
