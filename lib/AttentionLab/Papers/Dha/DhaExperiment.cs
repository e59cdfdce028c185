using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Dha;

/// <summary>
/// P14 DHA: the notebook's experiment. An exactness phase on a toy TinyGpt (float64); then an MHA TinyGpt character LM on
/// Moby-Dick (the shipped checkpoint, or pretrained here when it is missing or made for another config), converted at each
/// budget ρ by GQA's mean-pool (contiguous groups, the same count in every layer) and by DHA (search → fusion of ω → collapse);
/// every converted model and the MHA itself then continue training for the same steps on the same batches, with the
/// validation loss read every few steps (spec §4).
/// </summary>
public sealed class DhaExperiment : IPaperExperiment<DhaExperiment.Config, DhaResult>
{
    DhaExperiment() { }

    /// <summary>P14 in the catalogue (notebook notebooks/14-dha.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(14, "DHA: Decoupled-Head Attention via Adaptive Heads Fusion", "dha");

    /// <summary>The checkpoint of the smoke MHA (data/models/manifest.json).</summary>
    public const string CheckpointName = "dha-mha-moby";

    /// <summary>
    /// Sizes of one run. Smoke: spec §4 (d = 64, L = 2, H = 8, T = 64; pretrain 300, fusion 60, continued training 150).
    /// Full: spec §4's GPU size (d = 512, L = 8, H = 16, T = 512; pretrain 20k, continued 2k), pretrained in the run.
    /// </summary>
    /// <remarks>
    /// Checkpoint: read the pretrained MHA from data/models when it matches this config (else pretrain here). Fusion: ω's Adam
    /// learning rate, λ's start and step μ (on L_fuse relative to its start). Continue: steps and learning rate of the continued
    /// training every model gets; the validation loss is read every EvalEvery steps on EvalBatch windows.
    /// </remarks>
    public sealed record Config(int Layers, int DModel, int Heads, int SeqLen, int BatchSize, int PretrainSteps, double PretrainLr,
        int FusionSteps, double FusionLr, double Lambda0, double Mu, int ContinueSteps, double ContinueLr, int EvalEvery, int EvalBatch,
        double[] Ratios, bool Checkpoint, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 8, SeqLen: 64, BatchSize: 16, PretrainSteps: 300, PretrainLr: 3e-3,
            FusionSteps: 60, FusionLr: 0.05, Lambda0: 1, Mu: 5, ContinueSteps: 150, ContinueLr: 1e-3, EvalEvery: 10, EvalBatch: 32,
            Ratios: new[] { 0.25, 0.5 }, Checkpoint: true, Seed: 0) { Size = "smoke" };

        public static Config Full => new(Layers: 8, DModel: 512, Heads: 16, SeqLen: 512, BatchSize: 32, PretrainSteps: 20_000, PretrainLr: 1e-3,
            FusionSteps: 500, FusionLr: 0.05, Lambda0: 1, Mu: 0.5, ContinueSteps: 2_000, ContinueLr: 3e-4, EvalEvery: 100, EvalBatch: 64,
            Ratios: new[] { 0.25, 0.5 }, Checkpoint: false, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The MHA backbone (RoPE: fusing in weight space commutes with it, spec §2).</summary>
        public TinyGptConfig Model(int vocab) => new(Layers, DModel, Heads, 4, Positions: PositionKind.Rope, VocabSize: vocab, MaxLength: SeqLen + 1);

        /// <summary>The pretraining recipe's part of the config (what the checkpoint must match).</summary>
        public PretrainRecipe Recipe => new(Layers, DModel, Heads, SeqLen, BatchSize, PretrainSteps, PretrainLr, Seed);
    }

    /// <summary>What a pretrained MHA depends on (the checkpoint's manifest config).</summary>
    public sealed record PretrainRecipe(int Layers, int DModel, int Heads, int SeqLen, int BatchSize, int Steps, double LearningRate, int Seed);

    /// <summary>Method names in the curves.</summary>
    public const string MhaName = "MHA", GqaName = "GQA", DhaName = "DHA";

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static DhaResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: identity plan vs MHA {Num.Sci(exactness.IdentityPlanVsMha)}, search vs naive " +
            $"{(exactness.SearchMatchesNaive ? "same" : "DIFFERENT")}, " +
            $"L_fuse vs naive {Num.Sci(exactness.FusionLossRelGap)} (float64)");

        var corpus = TextCorpus.MobyDick();
        using var eval = corpus.Sample(config.EvalBatch, config.SeqLen, seed: 1_000_003 + config.Seed, split: CorpusSplit.Validation, device: device);
        var (mha, source, pretrainLosses) = Pretrained(config, corpus, device, progress);
        clock.Lap("pretrain");
        using var _mha = mha;
        var keySim = Similarity(mha, HeadKind.Key);
        var valueSim = Similarity(mha, HeadKind.Value);

        var curves = new List<DhaCurve>();
        var plans = new List<DhaPlan>();
        var fusions = new List<DhaFusion>();
        using (var reference = Copy(mha))
            curves.Add(Continue(reference, MhaName, 1, config, corpus, eval, device, progress));
        clock.Lap("continue MHA");
        double mhaLoss = curves[0].ValLoss[0];
        foreach (var ratio in config.Ratios)
        {
            int groups = (int)Math.Round(ratio * config.Heads);
            using (var gqa = DhaConverter.GqaMeanPool(mha, groups))
                curves.Add(Continue(gqa, GqaName, ratio, config, corpus, eval, device, progress));
            clock.Lap($"GQA {ratio:P0}");

            var plan = DhaConverter.Search(mha, ratio);
            plans.Add(plan);
            progress?.Report($"DHA {ratio:P0}: search kept K heads [{string.Join(", ", plan.KeyCounts)}], V heads [{string.Join(", ", plan.ValueCounts)}] " +
                $"per layer ({plan.TotalGroups} of {2 * config.Layers * config.Heads})");
            using var decoupled = DhaConverter.Decouple(mha, plan);
            double atIdentity = Loss(decoupled, eval);
            double noFusion;
            using (var meanPooled = DhaConverter.Collapse(decoupled, plan)) noFusion = Loss(meanPooled, eval);   // ω = I: the search's groups, mean-pooled
            var history = DhaConverter.FusionTrain(decoupled, plan, config.FusionSteps, new LagrangeSchedule(config.Lambda0, config.Mu, config.FusionLr),
                step =>
                {
                    using var batch = corpus.Sample(config.BatchSize, config.SeqLen, seed: 2_000_000 + step, device: device);
                    return batch.Loss(decoupled.call(batch.Tokens));
                },
                progress);
            double afterFusion = Loss(decoupled, eval);
            using var collapsed = DhaConverter.Collapse(decoupled, plan);
            fusions.Add(new DhaFusion(ratio, atIdentity, noFusion, afterFusion, history.Start, history.EndRelative, history.Relative, history.Lambdas));
            progress?.Report($"DHA {ratio:P0}: val loss ω = I {atIdentity:F4} (MHA {mhaLoss:F4}), collapsed without fusion {noFusion:F4}, " +
                $"after fusion {afterFusion:F4}; L_fuse {history.EndRelative:P1} of its start");
            clock.Lap($"DHA fusion {ratio:P0}");
            curves.Add(Continue(collapsed, DhaName, ratio, config, corpus, eval, device, progress));
            clock.Lap($"DHA {ratio:P0}");
        }
        var kvRows = KvTable(config, corpus.VocabSize, plans);
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new DhaResult(config, exactness, source, pretrainLosses, keySim, valueSim, plans, fusions, curves, kvRows, clock.Seconds, clock.Phases);
    }

    /// <summary>Trains the MHA of <paramref name="recipe"/> on Moby-Dick characters (the checkpoint recipe and the fallback both call this).</summary>
    public static (TinyGpt Model, IReadOnlyList<double> Losses) Pretrain(PretrainRecipe recipe, TextCorpus corpus,
         Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        ArgumentNullException.ThrowIfNull(corpus);
        torch.manual_seed(recipe.Seed);
        var model = new TinyGpt(ModelOf(recipe, corpus.VocabSize));
        model.to(device);
        var history = Trainer.Fit(model, step =>
        {
            using var batch = corpus.Sample(recipe.BatchSize, recipe.SeqLen, seed: recipe.Seed * 7_919 + step, device: device);
            return batch.Loss(model.call(batch.Tokens));
        }, new TrainOptions(recipe.Steps, recipe.LearningRate, WarmupSteps: Math.Min(30, recipe.Steps / 10), ReportEvery: Math.Max(1, recipe.Steps / 3)),
            progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  pretrain MHA: {p}")));
        return (model, history.Losses);
    }

    /// <summary>The TinyGpt config of a pretraining recipe.</summary>
    public static TinyGptConfig ModelOf(PretrainRecipe recipe, int vocab)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        return new TinyGptConfig(recipe.Layers, recipe.DModel, recipe.Heads, 4, Positions: PositionKind.Rope, VocabSize: vocab, MaxLength: recipe.SeqLen + 1);
    }

    static (TinyGpt Model, string Source, IReadOnlyList<double> Losses) Pretrained(Config c, TextCorpus corpus, Device device, IProgress<string>? progress)
    {
        if (c.Checkpoint)
        {
            var store = CheckpointStore.Default();
            var entry = store.Find(CheckpointName);
            string? why = entry is null ? "no manifest entry" : null;
            if (entry is not null)
            {
                var model = new TinyGpt(ModelOf(c.Recipe, corpus.VocabSize));
                try
                {
                    store.Load(model, CheckpointName, c.Recipe);
                    model.to(device);
                    progress?.Report($"pretrained MHA: checkpoint {entry.File} ({entry.Steps} steps, final train loss {entry.FinalLoss:F3})");
                    return (model, $"checkpoint {entry.File} ({entry.Steps} steps)", Array.Empty<double>());
                }
                catch (Exception e) when (e is IOException or ArgumentException or InvalidDataException)
                {
                    model.Dispose();
                    why = e.Message.Length > 160 ? e.Message[..160] + "…" : e.Message;
                }
            }
            progress?.Report($"checkpoint {CheckpointName} not used ({why}); pretraining here");
        }
        var (trained, losses) = Pretrain(c.Recipe, corpus, device, progress);
        return (trained, c.Checkpoint ? $"pretrained in the run (checkpoint missing or not matching), {c.PretrainSteps} steps"
            : $"pretrained in the run, {c.PretrainSteps} steps", losses);
    }

    /// <summary>A copy of an MHA TinyGpt (same config, every parameter copied).</summary>
    static TinyGpt Copy(TinyGpt mha)
    {
        var w = mha.FinalNorm.Weight;
        var copy = new TinyGpt(mha.Config);
        copy.to(w.device).to(w.dtype);
        var source = mha.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad())
            foreach (var (name, p) in copy.named_parameters()) p.copy_(source[name]);
        return copy;
    }

    static double[][][] Similarity(TinyGpt mha, HeadKind kind)
    {
        using var sim = HeadSimilarity.Compute(mha, kind);
        int l = (int)sim.shape[0], h = (int)sim.shape[1];
        return Enumerable.Range(0, l).Select(i => Enumerable.Range(0, h).Select(r => sim[i, r].data<double>().ToArray()).ToArray()).ToArray();
    }

    /// <summary>Validation loss (nats per character) of <paramref name="model"/> on <paramref name="eval"/>, no grad, eval mode.</summary>
    static double Loss(TinyGpt model, TokenBatch eval)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        bool training = model.training;
        model.eval();
        double loss = eval.Loss(model.call(eval.Tokens)).item<float>();
        if (training) model.train();
        return loss;
    }

    /// <summary>Continued training of one model: every model the same steps, batches and schedule; val loss at step 0 and every EvalEvery steps.</summary>
    static DhaCurve Continue(TinyGpt model, string method, double ratio, Config c, TextCorpus corpus,
         TokenBatch eval, Device device, IProgress<string>? progress)
    {
        var steps = new List<int> { 0 };
        var losses = new List<double> { Loss(model, eval) };
        long bytes = DhaConverter.KvBytesPerToken(model);
        int cached = model.Blocks.Sum(b => b.Mixer is GroupedKvAttention g ? g.KeySlots + g.ValueSlots : 2 * c.Heads);
        progress?.Report($"{method} {ratio:P0}: {cached} cached heads, {bytes} KV bytes/token (fp32); val loss at step 0 {losses[0]:F4}; " +
            $"continued training {c.ContinueSteps} steps");
        var history = c.ContinueSteps == 0 ? null : Trainer.Fit(model, step =>
        {
            // the same batches for every model
            using var batch = corpus.Sample(c.BatchSize, c.SeqLen, seed: 5_000_000 + c.Seed * 7_919 + step, device: device);
            return batch.Loss(model.call(batch.Tokens));
        }, new TrainOptions(c.ContinueSteps, c.ContinueLr, StepsPerEpoch: c.EvalEvery, ReportEvery: c.ContinueSteps), null, epoch =>
        {
            steps.Add(Math.Min(epoch * c.EvalEvery, c.ContinueSteps));
            double loss = Loss(model, eval);
            losses.Add(loss);
            return new Dictionary<string, double> { ["val"] = loss };
        });
        progress?.Report($"  {method} {ratio:P0}: val loss {losses[0]:F4} → {losses[^1]:F4}");
        return new DhaCurve(method, ratio, cached, bytes, steps, losses, history?.Losses ?? Array.Empty<double>());
    }

    /// <summary>KV bytes per token at the smoke run's widths (from the plans) and at the spec's full widths (ρ · 2LH cached heads).</summary>
    static List<DhaKvRow> KvTable(Config c, int vocab, List<DhaPlan> plans)
    {
        var rows = new List<DhaKvRow>();
        void Add(string width, Config w, string method, double ratio, int cached)
        {
            int dh = w.DModel / w.Heads;
            rows.Add(new DhaKvRow(width, w.Layers, w.DModel, w.Heads, method, ratio, cached, DhaConverter.KvBytesFormula(cached, dh, ScalarType.Float32),
                DhaConverter.KvBytesFormula(cached, dh, ScalarType.Float16)));
        }
        foreach (var (label, w) in new[] { (c.Size == "full" ? "full" : "this run", c), ("spec full", Config.Full) })
        {
            if (label == "spec full" && c.Size == "full") continue;
            Add(label, w, MhaName, 1, 2 * w.Layers * w.Heads);
            foreach (var ratio in w.Ratios)
            {
                Add(label, w, GqaName, ratio, 2 * w.Layers * (int)Math.Round(ratio * w.Heads));
                var plan = ReferenceEquals(w, c) ? plans.FirstOrDefault(p => p.Ratio == ratio) : null;
                Add(label, w, DhaName, ratio, plan?.TotalGroups ?? DhaConverter.Target(w.Layers, w.Heads, ratio));
            }
        }
        return rows;
    }

    /// <summary>
    /// The exactness phase (float64, a toy TinyGpt with L = 2, d = 24, H = 6, RoPE, random biases): the spec's §6 identities,
    /// the search and L_fuse against <see cref="DhaNaive"/>, the budget and the KV bytes against the formula.
    /// </summary>
    public static DhaExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        const int L = 2, D = 24, H = 6, V = 13, B = 2, T = 9;
        torch.manual_seed(seed);
        using var mha = new TinyGpt(new TinyGptConfig(L, D, H, 4, Positions: PositionKind.Rope, VocabSize: V, MaxLength: 16));
        mha.to(ScalarType.Float64).to(device);
        using (torch.no_grad())
            foreach (var b in mha.Blocks) { var q = ((AttentionMixer)b.Mixer).Qkv.bias!; q.copy_(torch.randn_like(q) * 0.3); }
        var x = torch.randint(0, V, new long[] { B, T }, generator: new Generator((ulong)seed + 1)).to(device);
        var reference = mha.call(x);
        double Gap(TinyGpt m) => m.call(x).sub(reference).abs().max().item<double>();

        var identityPlan = DhaConverter.Search(mha, 1.0);
        double identity;
        using (var d = DhaConverter.Decouple(mha, identityPlan)) using (var c = DhaConverter.Collapse(d, identityPlan)) identity = Gap(c);
        bool identityIsIdentity = identityPlan.TotalGroups == 2 * L * H;

        var plan = DhaConverter.Search(mha, 0.5);
        double decoupled;
        using (var d = DhaConverter.Decouple(mha, plan)) decoupled = Gap(d);
        double gqaOne;
        using (var g = DhaConverter.GqaMeanPool(mha, H)) gqaOne = Gap(g);

        // identical heads inside each group of the plan: any row-stochastic in-group ω collapses with no change
        using var same = Copy(mha);
        using (torch.no_grad())
        {
            for (int l = 0; l < L; l++)
            {
                var m = (AttentionMixer)same.Blocks[l].Mixer;
                foreach (var kind in new[] { HeadKind.Key, HeadKind.Value })
                {
                    var w = kind == HeadKind.Key ? m.W_K : m.W_V;                        // views [H, d, D] into W_QKV
                    var bias = DhaConverter.HeadBias(m, kind)!;
                    var groups = plan.Groups(l, kind);
                    for (int h = 0; h < H; h++)
                    {
                        int first = Array.IndexOf(groups, groups[h]);
                        if (first != h) { w[h].copy_(w[first]); bias[h].copy_(bias[first]); }
                    }
                }
            }
        }
        var sameOut = same.call(x);
        var identicalPlan = DhaConverter.Search(same, 0.5);
        double identical;
        using (var d = DhaConverter.Decouple(same, plan))
        {
            RandomOmega(d, plan, seed);
            using var c = DhaConverter.Collapse(d, plan);
            identical = c.call(x).sub(sameOut).abs().max().item<double>();
        }

        var naivePlan = DhaNaive.Search(mha, 0.5);
        bool searchSame = SamePlan(plan, naivePlan);
        double searchCost = Math.Abs(plan.Cost - naivePlan.Cost) / Math.Max(1e-300, Math.Abs(naivePlan.Cost));
        var costs = new List<double>();
        var budgets = new List<(double Ratio, int Target, int Total)>();
        foreach (var ratio in new[] { 0.25, 1.0 / 3, 0.5, 0.75 })
        {
            var p = DhaConverter.Search(mha, ratio);
            budgets.Add((ratio, p.Target, p.TotalGroups));
            costs.Add(p.Cost);
        }

        double fuseValue, fuseGrad;
        using (var d = DhaConverter.Decouple(mha, plan))
        {
            RandomOmega(d, plan, seed + 5);
            var fusion = d.parameters().Where(p => p.requires_grad).Cast<Tensor>().ToList();
            foreach (var p in d.parameters()) p.grad?.zero_();
            var fast = DhaConverter.FusionLoss(d, plan);
            var gFast = torch.autograd.grad(new[] { fast }, fusion, allow_unused: true);
            var slow = DhaNaive.FusionLoss(d, plan);
            var gSlow = torch.autograd.grad(new[] { slow }, fusion, allow_unused: true);
            fuseValue = Math.Abs(fast.item<double>() - slow.item<double>()) / Math.Max(1e-300, Math.Abs(slow.item<double>()));
            fuseGrad = 0;
            for (int i = 0; i < fusion.Count; i++)
            {
                var a = gFast[i] is { IsInvalid: false } ga ? ga : torch.zeros_like(fusion[i]);
                var b = gSlow[i] is { IsInvalid: false } gb ? gb : torch.zeros_like(fusion[i]);
                fuseGrad = Math.Max(fuseGrad, a.sub(b).abs().max().item<double>());
            }
        }

        // KV bytes: the converted model's count, its decode state after T tokens, and the formula Σ_ℓ (g_K + g_V) · d_h · 8
        long counted, formula, decodeBytes;
        using (var d = DhaConverter.Decouple(mha, plan)) using (var c = DhaConverter.Collapse(d, plan))
        {
            counted = DhaConverter.KvBytesPerToken(c, ScalarType.Float64);
            formula = DhaConverter.KvBytesFormula(plan.TotalGroups, D / H, ScalarType.Float64);
            using var noGrad = torch.no_grad();
            using var state = c.NewState(B);
            for (int t = 0; t < T; t++) c.Step(x.select(1, t), state);
            decodeBytes = state.Bytes;
        }
        return new DhaExactness(identity, identityIsIdentity, decoupled, gqaOne, identical, identicalPlan.Cost, searchSame, searchCost,
            fuseValue, fuseGrad, budgets, counted, formula, decodeBytes, (long)B * T * formula);
    }

    /// <summary>Random row-stochastic ω inside every group (zero outside), written into a decoupled model's fusion weights.</summary>
    static void RandomOmega(TinyGpt decoupled, DhaPlan plan, int seed)
    {
        var rng = new Random(seed);
        using var noGrad = torch.no_grad();
        for (int l = 0; l < plan.Layers; l++)
        {
            var layer = (GroupedKvAttention)decoupled.Blocks[l].Mixer;
            foreach (var kind in new[] { HeadKind.Key, HeadKind.Value })
            {
                var groups = plan.Groups(l, kind);
                int h = groups.Length;
                var omega = new double[h * h];
                for (int i = 0; i < h; i++)
                {
                    var members = Enumerable.Range(0, h).Where(j => groups[j] == groups[i]).ToArray();
                    var raw = members.Select(_ => 0.2 + rng.NextDouble()).ToArray();
                    for (int k = 0; k < members.Length; k++) omega[i * h + members[k]] = raw[k] / raw.Sum();
                }
                var f = kind == HeadKind.Key ? layer.KeyFusion : layer.ValueFusion;
                f.copy_(torch.tensor(omega, new long[] { h, h }, dtype: f.dtype).to(f.device));
            }
        }
    }

    static bool SamePlan(DhaPlan a, DhaPlan b) =>
        a.Target == b.Target && a.KeyGroups.Zip(b.KeyGroups).All(p => p.First.SequenceEqual(p.Second))
        && a.ValueGroups.Zip(b.ValueGroups).All(p => p.First.SequenceEqual(p.Second));
}
