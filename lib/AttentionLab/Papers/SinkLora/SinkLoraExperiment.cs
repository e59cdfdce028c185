using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SinkLora;

/// <summary>One fine-tuning variant of the context extension (spec §4).</summary>
public enum FtVariant
{
    /// <summary>No fine-tuning: the pretrained model with position interpolation only.</summary>
    None,
    /// <summary>LoRA+ with full causal attention (the reference improvement).</summary>
    Full,
    /// <summary>LoRA+ with LongLoRA's S2-Attn, roll variant (wrap leak).</summary>
    S2Roll,
    /// <summary>LoRA+ with LongLoRA's S2-Attn, no-wrap (flash) variant.</summary>
    S2NoWrap,
    /// <summary>LoRA+ with SinkLoRA's SF-Attn.</summary>
    SinkFixed,
}

/// <summary>
/// P09 SinkLoRA: the notebook's experiment. An exactness phase (S2-roll, S2-no-wrap and SF-Attn masks against their loop
/// twin, the causality probe, the mask rules, LoRA and H2O identities); a base TinyGpt (RoPE) pretrained at T0 on the
/// repeated-segment LM (or loaded from its committed checkpoint); its context extended to T by RoPE position interpolation
/// and fine-tuned with LoRA+ for equal steps under full attention, S2-roll, S2-no-wrap and SF-Attn; perplexity at T with
/// full attention and R_X = (ppl_none − ppl_X)/(ppl_none − ppl_full); last the full-attention model streamed token by token
/// under KV budgets with H2O, sink+window and recent-only eviction.
/// </summary>
public sealed class SinkLoraExperiment : IPaperExperiment<SinkLoraExperiment.Config, SinkLoraResult>
{
    SinkLoraExperiment() { }

    /// <summary>P09 in the catalogue (notebook notebooks/09-sinklora.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(9, "SinkLoRA: Enhanced Efficiency and Chat Capabilities for Long-Context LLMs", "sinklora");

    /// <summary>
    /// Sizes of one run. Smoke: spec §4 (d = 64, L = 2, H = 4; PI ×4 from T0 = 64 to T = 256; LoRA+ steps of batch 8 per variant —
    /// 60 instead of the spec's 100 so the notebook fits a minute, docs/decisions.md; H2O on 2 streams of 512); the base is the committed checkpoint pretrained
    /// <see cref="CheckpointSteps"/> steps at T0 (1,500: the spec's 250 leave the base without a copying circuit, docs/decisions.md), or, when it is missing or
    /// does not match, trained here for the spec's <see cref="PretrainSteps"/> (250; the train-briefly fallback). Full: spec §4's GPU size (d = 256, L = 6, H =
    /// 8; pretrain 3k steps at 256, PI ×8 to 2048, 1k steps per variant, streams of 8192).
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, int VocabSize, int SegmentLength, int PretrainLength, int TargetLength,
        int PretrainSteps, int CheckpointSteps, int PretrainBatch, double PretrainLr, int FtSteps, int FtBatch, double FtLr, int LoraRank, double LoraAlpha,
        int GroupDivisor, int Sinks, int EvalBatch, int StreamLength, int StreamSequences, double[] BudgetFractions, int Seed)
        : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, VocabSize: 64, SegmentLength: 16, PretrainLength: 64, TargetLength: 256,
            PretrainSteps: 250, CheckpointSteps: 1500, PretrainBatch: 16, PretrainLr: 3e-3, FtSteps: 60, FtBatch: 8, FtLr: 3e-3, LoraRank: 8, LoraAlpha: 16,
            GroupDivisor: 4, Sinks: 4, EvalBatch: 16, StreamLength: 512, StreamSequences: 2, BudgetFractions: [0.125, 0.25, 0.5], Seed: 0)
        { Size = "smoke" };

        public static Config Full => new(Layers: 6, DModel: 256, Heads: 8, VocabSize: 256, SegmentLength: 32, PretrainLength: 256, TargetLength: 2048,
            PretrainSteps: 3000, CheckpointSteps: 3000, PretrainBatch: 32, PretrainLr: 1e-3, FtSteps: 1000, FtBatch: 8, FtLr: 1e-3, LoraRank: 8, LoraAlpha: 16,
            GroupDivisor: 4, Sinks: 4, EvalBatch: 32, StreamLength: 8192, StreamSequences: 2, BudgetFractions: [0.1, 0.25, 0.5], Seed: 0)
        { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>G = T / GroupDivisor (LongLoRA's group_size_ratio 1/4).</summary>
        public int GroupSize => TargetLength / GroupDivisor;

        /// <summary>The task.</summary>
        public SegmentRecallLm Task => new(VocabSize, SegmentLength);

        /// <summary>The pretraining model (RoPE, trained at T0).</summary>
        public TinyGptConfig BaseModel => new(Layers, DModel, Heads, VocabSize: VocabSize, Positions: PositionKind.Rope, MaxLength: PretrainLength);

        /// <summary>The extended model: RoPE positions interpolated by T0 / T.</summary>
        public TinyGptConfig ExtendedModel => BaseModel.WithPositionInterpolation(PretrainLength, TargetLength) with { MaxLength = TargetLength };
    }

    /// <summary>Display names of the variants.</summary>
    public static string Name(FtVariant v) => v switch
    {
        FtVariant.None => "none",
        FtVariant.Full => "full",
        FtVariant.S2Roll => "S2-roll",
        FtVariant.S2NoWrap => "S2-no-wrap",
        _ => "SF",
    };

    /// <summary>The module paths LoRA adapts: W_QKV and W_O of every layer (LongLoRA / SinkLoRA adapt q, k, v, o).</summary>
    public static IReadOnlyList<string> LoraTargets(int layers) =>
        Enumerable.Range(0, layers).SelectMany(l => new[] { $"blocks.{l}.attn.qkv", $"blocks.{l}.attn.proj" }).ToList();

    /// <summary>LoRA+ (LongLoRA §3.3): besides the adapters, the embeddings and the norms train.</summary>
    public static bool LoraPlusTrainable(string name) =>
        name.StartsWith("embed.", StringComparison.Ordinal) || name.Split('.').Any(part => part.StartsWith("ln", StringComparison.Ordinal));

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static SinkLoraResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        GroupMasks.CheckLength(config.TargetLength, config.GroupSize, nameof(config));
        var clock = new PhaseClock();
        var exactness = Exactness(config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: twins S2-roll {Num.Sci(exactness.S2RollTwin)}, S2-no-wrap {Num.Sci(exactness.S2NoWrapTwin)}, " +
            $"SF {Num.Sci(exactness.SinkFixedTwin)}; " +
            $"roll leak {Num.Sci(exactness.RollLeak)}; H2O full budget vs full decode {Num.Sci(exactness.H2OVsFullDecode)}");

        var task = config.Task;
        using var baseModel = new TinyGpt(config.BaseModel);
        baseModel.to(device);
        var (source, pretrainLosses) = Pretrain(baseModel, config, task, device, progress);
        clock.Lap("pretrain");

        using var eval = task.Generate(config.EvalBatch, config.TargetLength, seed: 1_000_003 + config.Seed, device: device);
        double basePpl;
        using (var evalShort = task.Generate(config.EvalBatch, config.PretrainLength, seed: 1_000_003 + config.Seed, device: device))
            basePpl = Perplexity(baseModel, evalShort);
        var runs = new List<FtRun>();
        TinyGpt? fullModel = null;
        try
        {
            foreach (var variant in Enum.GetValues<FtVariant>())
            {
                var (run, model) = FineTune(variant, baseModel, task, eval, config, device, progress);
                runs.Add(run);
                if (variant == FtVariant.Full) fullModel = model; else model.Dispose();
                clock.Lap($"fine-tune {Name(variant)}");
            }
            var (streamFull, budgets, keepMap) = Stream(fullModel!, task, config, device, progress);
            clock.Lap("kv budgets");
            var footprint = new[] { SinkLoraCost.Footprint("smoke", Config.Smoke.ExtendedModel), SinkLoraCost.Footprint("full", Config.Full.ExtendedModel) };
            clock.Lap("kv bytes");
            progress?.Report($"done in {clock.Seconds:F1} s");
            return new SinkLoraResult(config, exactness, source, pretrainLosses, basePpl, runs, streamFull, budgets, keepMap, footprint,
                clock.Seconds, clock.Phases);
        }
        finally
        {
            fullModel?.Dispose();
        }
    }

    /// <summary>Loads the committed base checkpoint when it matches the config, else trains the base for PretrainSteps at T0.</summary>
    static (string Source, IReadOnlyList<double> Losses) Pretrain(TinyGpt model, Config c, SegmentRecallLm task, Device device, IProgress<string>? progress)
    {
        if (SinkLoraCheckpoint.TryLoad(model, c, out var why))
        {
            progress?.Report($"base: loaded {SinkLoraCheckpoint.FileName} ({why})");
            return ($"checkpoint {SinkLoraCheckpoint.FileName}", []);
        }
        progress?.Report($"base: training {c.PretrainSteps} steps at T0 = {c.PretrainLength} ({why})");
        var losses = TrainBase(model, c, task, device, c.PretrainSteps, progress);
        return ($"trained here for {c.PretrainSteps} steps ({why})", losses);
    }

    /// <summary>Pretrains <paramref name="model"/> (the base config) at T0 for <paramref name="steps"/>: the checkpoint recipe calls this too.</summary>
    public static IReadOnlyList<double> TrainBase(TinyGpt model, Config c, SegmentRecallLm task, Device device, int steps, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(task);
        torch.manual_seed(c.Seed);
        var options = new TrainOptions(steps, c.PretrainLr, WarmupSteps: Math.Max(1, steps / 10), ReportEvery: Math.Max(1, steps / 4));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = task.Generate(c.PretrainBatch, c.PretrainLength, seed: c.Seed * 7_919 + step, device: device);
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  pretrain: {p}")));
        model.eval();
        return history.Losses;
    }

    /// <summary>The mixer factory of a variant's training model (the extended config's RoPE scale).</summary>
    static Func<int, nn.Module<Tensor, Tensor>> Mixers(FtVariant v, Config c)
    {
        var cfg = c.ExtendedModel;
        return v switch
        {
            FtVariant.S2Roll => _ => new ShiftedSparseAttention(c.DModel, c.Heads, c.GroupSize, S2Mode.RollWrap, PositionKind.Rope, cfg.RopeBase,
                cfg.RopeScale),
            FtVariant.S2NoWrap => _ => new ShiftedSparseAttention(c.DModel, c.Heads, c.GroupSize, S2Mode.NoWrap, PositionKind.Rope, cfg.RopeBase,
                cfg.RopeScale),
            FtVariant.SinkFixed => _ => new SinkFixedAttention(c.DModel, c.Heads, c.GroupSize, c.Sinks, PositionKind.Rope, cfg.RopeBase, cfg.RopeScale),
            _ => CausalSelfAttention.Factory(cfg),
        };
    }

    /// <summary>Copies every parameter of <paramref name="to"/> from the same name in <paramref name="from"/> (adapters of from are skipped).</summary>
    public static void CopyWeights(nn.Module from, nn.Module to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        var source = from.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in to.named_parameters())
            p.copy_(source.TryGetValue(name, out var s) ? s : throw new ArgumentException($"the source has no parameter '{name}'.", nameof(from)));
    }

    /// <summary>
    /// One variant: the base weights in a model with the variant's attention and RoPE PI, LoRA+ for FtSteps at T (the same
    /// batches for every variant), the adapters merged, the weights moved into a full-attention model, perplexity at T.
    /// </summary>
    static (FtRun Run, TinyGpt Eval) FineTune(FtVariant v, TinyGpt baseModel, SegmentRecallLm task, TokenBatch eval, Config c, Device device,
        IProgress<string>? progress)
    {
        var evalModel = new TinyGpt(c.ExtendedModel);
        evalModel.to(device);
        CopyWeights(baseModel, evalModel);
        double fraction = FlopFraction(v, c);
        if (v == FtVariant.None)
        {
            double ppl0 = Perplexity(evalModel, eval);
            progress?.Report($"  none (PI ×{c.TargetLength / c.PretrainLength} only): ppl@{c.TargetLength} {ppl0:F3}");
            return (new FtRun(Name(v), ppl0, fraction, [], 0, 0), evalModel);
        }
        torch.manual_seed(c.Seed + 1);
        using var train = new TinyGpt(c.ExtendedModel, Mixers(v, c));
        train.to(device);
        CopyWeights(baseModel, train);
        var lora = Lora.Apply(train, LoraTargets(c.Layers), c.LoraRank, c.LoraAlpha, new Generator((ulong)c.Seed + 101));
        var trainable = Lora.FreezeBase(train, LoraPlusTrainable);
        long trainableCount = train.named_parameters().Where(p => p.parameter.requires_grad).Sum(p => p.parameter.numel());
        var options = new TrainOptions(c.FtSteps, c.FtLr, WarmupSteps: Math.Max(1, c.FtSteps / 10), ReportEvery: Math.Max(1, c.FtSteps / 2));
        var history = Trainer.Fit(train, step =>
        {
            using var batch = task.Generate(c.FtBatch, c.TargetLength, seed: 500_009 + c.Seed * 7_919 + step, device: device);
            return batch.Loss(train.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {Name(v)}: {p}")));
        lora.Merge();
        CopyWeights(train, evalModel);
        double ppl = Perplexity(evalModel, eval);
        progress?.Report($"  {Name(v)}: ppl@{c.TargetLength} with full attention {ppl:F3} ({trainableCount:N0} trainable of {train.ParameterCount:N0})");
        return (new FtRun(Name(v), ppl, fraction, history.Losses, trainableCount, history.Elapsed.TotalSeconds), evalModel);
    }

    /// <summary>Share of the causal triangle's scores the variant's training attention computes (from its masks).</summary>
    public static double FlopFraction(FtVariant v, Config c)
    {
        using var scope = NewDisposeScope();
        long t = c.TargetLength;
        return v switch
        {
            FtVariant.S2Roll => GroupMasks.CausalFraction(GroupMasks.ShiftedSparse(t, c.GroupSize, c.Heads, S2Mode.RollWrap)),
            FtVariant.S2NoWrap => GroupMasks.CausalFraction(GroupMasks.ShiftedSparse(t, c.GroupSize, c.Heads, S2Mode.NoWrap)),
            FtVariant.SinkFixed => GroupMasks.CausalFraction(GroupMasks.SinkFixed(t, c.GroupSize, c.Heads, c.Sinks)),
            FtVariant.Full => 1.0,
            _ => 0.0,
        };
    }

    /// <summary>exp(mean next-token cross-entropy) of a batch under full attention (no grad).</summary>
    public static double Perplexity(TinyGpt model, TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        return Math.Exp(batch.Loss(model.call(batch.Tokens)).item<float>());
    }

    /// <summary>
    /// The KV-budget part (spec §4): the full-attention fine-tuned model streams StreamSequences × StreamLength tokens, one at a
    /// time, under each budget b = fraction · L with H2O (b/2 heavy + b/2 recent), sink+window (n sinks + b − n) and recent-only
    /// (b); perplexity over the second half of the stream (where every budget has started evicting), the largest cache any layer
    /// held, tokens per second; and the positions H2O keeps (layer 0, head 0, sequence 0) at the middle budget.
    /// </summary>
    static (double FullPpl, List<BudgetRun> Runs, KeepMap Map) Stream(TinyGpt model, SegmentRecallLm task, Config c, Device device, IProgress<string>? progress)
    {
        using var stream = task.Generate(c.StreamSequences, c.StreamLength, seed: 2_000_003 + c.Seed, device: device);
        int from = c.StreamLength / 2;
        double fullPpl;
        using (var scope = NewDisposeScope())
        using (var noGrad = torch.no_grad())
            fullPpl = Math.Exp(HalfLoss(model.call(stream.Tokens).narrow(1, from, c.StreamLength - from), stream, from));
        progress?.Report($"stream: full attention at L = {c.StreamLength}, ppl over the second half {fullPpl:F3}");
        var runs = new List<BudgetRun>();
        KeepMap? map = null;
        int mid = c.BudgetFractions.Length / 2;
        for (int bi = 0; bi < c.BudgetFractions.Length; bi++)
        {
            double f = c.BudgetFractions[bi];
            int budget = Math.Max(c.Sinks + 2, (int)Math.Round(f * c.StreamLength));
            var policies = new (string Name, IKvPolicy Policy)[]
            {
                ("H2O", new H2OPolicy(budget / 2, budget - budget / 2)),
                ("sink+window", new SinkWindowPolicy(budget - c.Sinks, c.Sinks)),
                ("recent-only", new SinkWindowPolicy(budget, 0)),
            };
            foreach (var (name, policy) in policies)
            {
                bool record = name == "H2O" && bi == mid;
                var (ppl, held, tps, rows) = Decode(model, stream, policy, from, record, c.StreamLength / 64);
                runs.Add(new BudgetRun(name, budget, budget / (double)c.StreamLength, ppl, held, tps));
                if (record) map = new KeepMap(budget, rows!);
                progress?.Report($"  {name} budget {budget} ({f:P1}): ppl {ppl:F3}, max cache {held}, {tps:F0} tokens/s");
            }
        }
        return (fullPpl, runs, map ?? new KeepMap(0, []));
    }

    static double HalfLoss(Tensor logits, TokenBatch stream, int from) =>
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), stream.Labels.narrow(1, from, stream.Labels.shape[1] - from).reshape(-1))
            .item<float>();

    static (double Ppl, long MaxHeld, double TokensPerSecond, List<double[]>? Rows) Decode(TinyGpt model, TokenBatch stream, IKvPolicy policy,
        int from, bool record, int every)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        long length = stream.Tokens.shape[1];
        using var state = model.NewState(stream.Tokens.shape[0], _ => policy);
        var logits = new List<Tensor>();
        var rows = record ? new List<double[]>() : null;
        long held = 0;
        var sw = Stopwatch.StartNew();
        for (int t = 0; t < length; t++)
        {
            using var stepScope = NewDisposeScope();
            var y = model.Step(stream.Tokens.select(1, t), state);
            if (t >= from) logits.Add(y.MoveToOuterDisposeScope());
            held = Math.Max(held, SinkLoraChecks.MaxCount(state));
            if (rows is not null && (t + 1) % Math.Max(1, every) == 0 && state.Layers[0] is CausalSelfAttention.PolicyState p)
            {
                var row = new double[length];
                foreach (var pos in p.Cache.TokenPositions[0, 0].cpu().data<long>()) row[pos] = 1;
                rows.Add(row);
            }
        }
        var all = torch.stack(logits.ToArray(), 1);
        double seconds = sw.Elapsed.TotalSeconds;
        double ppl = Math.Exp(HalfLoss(all, stream, from));
        return (ppl, held, length * stream.Tokens.shape[0] / Math.Max(seconds, 1e-9), rows);
    }

    /// <summary>The exactness phase: twin gaps (float64, B 2, T 12, H 3, Dk 4, Dv 5, G 4), the causality probe, mask rules, LoRA and H2O identities.</summary>
    public static SinkLoraExactness Exactness(int seed = 0)
    {
        using var scope = NewDisposeScope();
        var gaps = new double[3];
        foreach (var form in Enum.GetValues<SinkLoraChecks.Form>())
        {
            torch.manual_seed(seed);
            using var mixer = SinkLoraChecks.Mixer(form, 10, 3, 4, sinks: 3, keyDim: 4, valueDim: 5);
            mixer.to(float64);
            gaps[(int)form] = SinkLoraChecks.TwinGap(mixer, 2, 12, 4, 5, new Generator((ulong)seed + 1));
        }
        var roll = SinkLoraChecks.CausalityProbe(SinkLoraChecks.Form.S2Roll, seed);
        var noWrap = SinkLoraChecks.CausalityProbe(SinkLoraChecks.Form.S2NoWrap, seed);
        var sf = SinkLoraChecks.CausalityProbe(SinkLoraChecks.Form.SinkFixed, seed);
        long maskBad = SinkLoraChecks.MaskViolations();
        var (zeroB, merged) = SinkLoraChecks.LoraIdentities(seed);
        var (vsDecode, vsForward, held, budget) = SinkLoraChecks.H2OIdentities(seed);
        return new SinkLoraExactness(gaps[0], gaps[1], gaps[2], roll.EarlyChange, Math.Max(noWrap.AnyEarlierChange, sf.AnyEarlierChange), maskBad,
            zeroB, merged, vsDecode, vsForward, held, budget);
    }

    /// <summary>Per-head masks of the three forms at a small size (for the heatmaps): (title, [T, T] 0/1 rows) for the first and last head.</summary>
    public static IReadOnlyList<(string Title, double[][] Mask)> MaskPanels(int t = 16, int groupSize = 4, int heads = 4, int sinks = 2)
    {
        using var scope = NewDisposeScope();
        var forms = new (string Name, Tensor Mask)[]
        {
            ("S2-roll", GroupMasks.ShiftedSparse(t, groupSize, heads, S2Mode.RollWrap)),
            ("S2-no-wrap", GroupMasks.ShiftedSparse(t, groupSize, heads, S2Mode.NoWrap)),
            ($"SF ({sinks} sinks)", GroupMasks.SinkFixed(t, groupSize, heads, sinks)),
        };
        var panels = new List<(string, double[][])>();
        foreach (var (name, mask) in forms)
            foreach (var h in new[] { 0, heads - 1 })
            {
                var m = mask[h].to(ScalarType.Float64).cpu();
                panels.Add(($"{name}, head {h} ({(h < heads / 2 ? "plain" : "shifted")})",
                    Enumerable.Range(0, t).Select(i => m[i].data<double>().ToArray()).ToArray()));
            }
        return panels;
    }
}
