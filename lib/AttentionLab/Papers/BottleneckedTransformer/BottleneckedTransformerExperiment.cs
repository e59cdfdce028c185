using AttentionLab.Bench;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// P48's experiment (spec §4): a vanilla TinyGpt and the same backbone with a Cache Processor (k = 4), trained from the same
/// initialisation on the same batches of arithmetic chains for the same number of steps (optionally a pause-token baseline);
/// accuracy in distribution and beyond the trained chain lengths; the probes: which past lines the top-k reconsolidates, the
/// size of ΔK and ΔV during training, and a linear probe of each line's result from the cache before and after its rewrite.
/// </summary>
public sealed class BottleneckedTransformerExperiment : IPaperExperiment<BottleneckedTransformerExperiment.Config, BottleneckedTransformerResult>
{
    BottleneckedTransformerExperiment() { }

    /// <summary>P48 in the catalogue (notebook notebooks/48-bottlenecked-transformer.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(48, "Bottlenecked Transformers: KV consolidation", "bottlenecked-transformer");

    public const string VanillaName = "vanilla", BottleneckedName = "bottlenecked", PauseName = "pause tokens";

    /// <summary>
    /// Sizes of one run. Smoke: d = 64, L = 2, H = 4, chains 2–4 (OOD 5–6), 250 steps each, vanilla vs bottlenecked (spec §4);
    /// Full: d = 256, L = 4, chains 2–5 (OOD 6–12), 5k steps, with the pause-token baseline.
    /// </summary>
    public sealed record Config(int DModel, int Layers, int Heads, int TrainMin, int TrainMax, int OodMax, int Distractors, int Steps, int BatchSize,
        double LearningRate, int TopK, int ProcessorWidth, int Pauses, int TestPerLength, int BenchRepeats, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(DModel: 64, Layers: 2, Heads: 4, TrainMin: 2, TrainMax: 4, OodMax: 6, Distractors: 1, Steps: 250, BatchSize: 32,
            LearningRate: 3e-3, TopK: 4, ProcessorWidth: 32, Pauses: 0, TestPerLength: 128, BenchRepeats: 3, Seed: 0) { Size = "smoke" };
        public static Config Full => new(DModel: 256, Layers: 4, Heads: 8, TrainMin: 2, TrainMax: 5, OodMax: 12, Distractors: 2, Steps: 5000, BatchSize: 64,
            LearningRate: 1e-3, TopK: 4, ProcessorWidth: 128, Pauses: 2, TestPerLength: 512, BenchRepeats: 5, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The task (pauses 0; the pause baseline uses <see cref="Pauses"/>).</summary>
        public ArithmeticChainTask Task => new(Variables: OodMax + Distractors, Distractors: Distractors);
        /// <summary>The backbone every model shares: no position encoding (so rewritten keys need no re-rotation).</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, MlpRatio: 4, VocabSize: Task.VocabSize, Positions: PositionKind.None);
    }

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase.</summary>
    public static BottleneckedTransformerResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.TrainMin < 1 || config.TrainMax < config.TrainMin || config.OodMax < config.TrainMax)
            throw new ArgumentException($"need 1 ≤ TrainMin ≤ TrainMax ≤ OodMax, got {config.TrainMin}, {config.TrainMax}, {config.OodMax}.", nameof(config));
        var clock = new PhaseClock();
        using var scope = NewDisposeScope();
        progress?.Report("exactness: batched runner vs its loop twin (float64), zero-init, processor off, top-k, untouched entries");
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");

        var task = config.Task;
        torch.manual_seed(config.Seed);
        using var vanilla = new TinyGpt(config.Model, ConsolidatingAttention.Factory(config.Model)).to(device);
        torch.manual_seed(config.Seed);
        var backbone = new TinyGpt(config.Model, ConsolidatingAttention.Factory(config.Model));          // the same initial weights
        torch.manual_seed(config.Seed + 1);
        var processor = new CacheProcessor(config.Layers, config.Heads, config.DModel / config.Heads, config.DModel / config.Heads, config.ProcessorWidth,
            maxOffset: task.LineLength);
        using var bottlenecked = new BottleneckedModel(backbone, processor, config.TopK, task.Newline).to(device);

        var curves = new List<TrainingPoint>();
        var deltas = new List<DeltaPoint>();
        curves.AddRange(Train(VanillaName, vanilla, ids => vanilla.call(ids), task, config, device, progress, null));
        clock.Lap("train vanilla");
        curves.AddRange(Train(BottleneckedName, bottlenecked, ids => bottlenecked.Decode(ids).Logits, task, config, device, progress, deltas));
        clock.Lap("train bottlenecked");
        TinyGpt? pause = null;
        var pauseTask = task with { Pauses = config.Pauses };
        if (config.Pauses > 0)
        {
            torch.manual_seed(config.Seed);
            pause = new TinyGpt(config.Model, ConsolidatingAttention.Factory(config.Model)).to(device);
            curves.AddRange(Train(PauseName, pause, ids => pause.call(ids), pauseTask, config, device, progress, null));
            clock.Lap("train pause tokens");
        }

        progress?.Report("evaluating every chain length");
        var accuracy = new List<AccuracyRow>();
        vanilla.eval(); bottlenecked.eval(); pause?.eval();
        using (torch.no_grad())
            for (int n = config.TrainMin; n <= config.OodMax; n++)
            {
                int seed = 1_000_000 + 1000 * config.Seed + n;
                using var batch = task.Generate(config.TestPerLength, n, seed, device);
                Add(VanillaName, vanilla.call(batch.Ids), batch, n);
                Add(BottleneckedName, bottlenecked.Decode(batch.Ids).Logits, batch, n);
                if (pause is not null)
                {
                    using var paused = pauseTask.Generate(config.TestPerLength, n, seed, device);
                    Add(PauseName, pause.call(paused.Ids), paused, n);
                }
            }
        void Add(string model, Tensor logits, ChainBatch batch, int n)
        {
            var (chain, answer) = batch.Accuracy(logits);
            accuracy.Add(new AccuracyRow(model, n, n > config.TrainMax, chain, answer));
        }
        clock.Lap("evaluate");

        progress?.Report("probes: reconsolidation choices, linear probe of the cache before and after the rewrite");
        var probes = Probes(config, task, vanilla, bottlenecked, device);
        clock.Lap("probes");
        progress?.Report("throughput: tokens/s of the step-wise runner with and without the processor, and one causal pass");
        var throughput = Throughput(config, task, vanilla, bottlenecked, device);
        clock.Lap("throughput");
        pause?.Dispose();
        progress?.Report($"done in {clock.Seconds:F1} s");
        var parameters = new Dictionary<string, long> { [VanillaName] = vanilla.ParameterCount, [BottleneckedName] = bottlenecked.ParameterCount };
        if (config.Pauses > 0) parameters[PauseName] = vanilla.ParameterCount;
        return new BottleneckedTransformerResult(config, exactness, accuracy, curves, deltas, probes, throughput, parameters, clock.Seconds, clock.Phases);
    }

    /// <summary>Trains one model on the shared batch schedule (chain length and rows drawn from the seed and the step).</summary>
    static List<TrainingPoint> Train(string name, nn.Module model, Func<Tensor, Tensor> logits, ArithmeticChainTask task, Config c, Device device,
        IProgress<string>? progress, List<DeltaPoint>? deltas)
    {
        progress?.Report($"training {name} ({model.parameters().Sum(p => p.numel()):N0} parameters, {c.Steps} steps)");
        var lengths = new Random(c.Seed);
        var schedule = Enumerable.Range(0, c.Steps).Select(_ => lengths.Next(c.TrainMin, c.TrainMax + 1)).ToArray();
        var rms = new List<Tensor>();
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: Math.Min(20, c.Steps / 10), ReportEvery: Math.Max(1, c.Steps / 5));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = task.Generate(c.BatchSize, schedule[step], 1000 * c.Seed + step, device);
            if (deltas is null) return batch.Loss(logits(batch.Ids));
            var output = ((BottleneckedModel)model).Decode(batch.Ids);
            rms.Add(output.DeltaRms.mean(new long[] { 0 }).detach().clone().DetachFromDisposeScope());
            return batch.Loss(output.Logits);
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {name}: {p}")));
        if (deltas is not null)
        {
            for (int i = 0; i < rms.Count; i++)
            {
                var pair = rms[i].cpu().data<double>().ToArray();
                deltas.Add(new DeltaPoint(i + 1, pair[0], pair[1]));
                rms[i].Dispose();
            }
        }
        return history.Losses.Select((l, i) => new TrainingPoint(name, i + 1, l)).ToList();
    }

    /// <summary>
    /// At the longest trained length: how often each past line is reconsolidated at each step, how often the line that
    /// defined the step's operand is among them (and that rate for k positions drawn uniformly), and a ridge probe of the
    /// line's result from the last layer's [K; V] at the line's newline (a token that does not spell the result): the vanilla cache, the bottlenecked cache
    /// before its rewrite, and after it.
    /// </summary>
    static ProbeResult Probes(Config c, ArithmeticChainTask task, TinyGpt vanilla, BottleneckedModel model, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = task.Generate(c.TestPerLength, c.TrainMax, 2_000_000 + c.Seed, device);
        int lines = batch.Lines, L = batch.LineLength, last = c.Layers - 1;
        var before = new List<Tensor>(); var after = new List<Tensor>(); var labelsByStep = new List<int[]>();
        var output = model.Decode(batch.Ids, (layer, a, positions, kb, vb, ka, va) =>
        {
            if (layer != last) return;
            long n = kb.size(0);
            Tensor At(Tensor k, Tensor v) => torch.cat(new[] { k.select(1, 5).reshape(n, -1), v.select(1, 5).reshape(n, -1) },
                1);   // the newline closing the line
            before.Add(At(kb, vb).detach().clone().DetachFromDisposeScope());
            after.Add(At(ka, va).detach().clone().DetachFromDisposeScope());
        });
        // selection frequency: heat[s][u] = share of rows where the rewrite closing line s picked a position of line u < s
        var heat = new double[lines][];
        double hits = 0, chance = 0; int cases = 0;
        for (int s = 0; s < lines; s++)
        {
            heat[s] = new double[lines];
            int m = (int)output.Selected[s].size(1), a = s * L;
            if (m == 0) continue;                                                               // the first line has no past
            var chosen = output.Selected[s].cpu().data<long>().ToArray();
            for (int row = 0; row < batch.Count; row++)
            {
                var picked = chosen.Skip(row * m).Take(m).Select(p => (int)(p / L)).ToHashSet();
                foreach (int u in picked) heat[s][u] += 1.0 / batch.Count;
                int operand = batch.OperandLine[row * lines + s];
                if (operand < 0) continue;
                cases++;
                if (picked.Contains(operand)) hits++;
                chance += 1 - Choose(a - L, m) / Choose(a, m);                                  // k uniform positions miss all L of the line
            }
        }
        // the probe: features [rows × lines, 2·d]; labels the line's result; rows split in half (train / test)
        var labels = Enumerable.Range(0, lines).SelectMany(s => Enumerable.Range(0, (int)batch.Count).Select(row => (long)batch.Results[row * lines + s]))
            .ToArray();
        var y = torch.tensor(labels, device: device);
        var rowOf = torch.arange(batch.Count, device: device).repeat(lines);
        var train = rowOf < batch.Count / 2;
        var vanillaCache = BottleneckedRunner.Run(vanilla, null, batch.Ids, batch.StepEnds, 0);
        var resultAt = torch.tensor(Enumerable.Range(0, lines).Select(s => (long)(s * L + 5)).ToArray(), device: device);     // each line's newline
        var vk = vanillaCache.Keys[last].index_select(1, resultAt);                              // [N, lines, H, Dk]
        var vv = vanillaCache.Values[last].index_select(1, resultAt);
        var vanillaFeatures = torch.cat(new[] { vk.transpose(0, 1).reshape(lines * batch.Count, -1), vv.transpose(0, 1).reshape(lines * batch.Count, -1) }, 1);
        double Probe(Tensor x) => RidgeAccuracy(x.to(ScalarType.Float64), y, train);
        var (allBefore, allAfter) = (torch.cat(before), torch.cat(after));                    // in this scope now
        foreach (var t in before.Concat(after)) t.Dispose();
        return new ProbeResult(heat, cases == 0 ? double.NaN : hits / cases, cases == 0 ? double.NaN : chance / cases,
            Probe(vanillaFeatures), Probe(allBefore), Probe(allAfter), c.TrainMax, lines);
    }

    static double Choose(int n, int k)
    {
        if (k < 0 || k > n) return 0;
        double r = 1;
        for (int i = 0; i < k; i++) r *= (double)(n - i) / (k - i);
        return r;
    }

    /// <summary>Ridge regression (λ = 1e-2) from x to one-hot(y) on the train rows; accuracy of the argmax on the others.</summary>
    public static double RidgeAccuracy(Tensor x, Tensor y, Tensor train, int classes = 10, double lambda = 1e-2)
    {
        using var scope = NewDisposeScope();
        var mean = x[train].mean(new long[] { 0 }, keepdim: true);
        var std = x[train].std(0, keepdim: true) + 1e-6;
        var z = torch.cat(new[] { (x - mean) / std, torch.ones(x.size(0), 1, dtype: x.dtype, device: x.device) }, 1);
        var xt = z[train];
        var target = nn.functional.one_hot(y[train], classes).to(x.dtype);
        var w = torch.linalg.solve(xt.T.matmul(xt) + lambda * torch.eye(z.size(1), dtype: x.dtype, device: x.device), xt.T.matmul(target));
        var test = ~train;
        return z[test].matmul(w).argmax(1).eq(y[test]).to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>Tokens per second (no gradients) at the longest trained length: one causal pass, the step-wise runner without and with the processor.</summary>
    static IReadOnlyList<ThroughputRow> Throughput(Config c, ArithmeticChainTask task, TinyGpt vanilla, BottleneckedModel model, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = task.Generate(c.BatchSize, c.TrainMax, 3_000_000 + c.Seed, device);
        double tokens = batch.Ids.numel();
        var rows = new List<ThroughputRow>();
        void Time(string name, Action run)
        {
            var t = Benchmark.Time(run, warmup: 1, repeats: c.BenchRepeats, device: device);
            rows.Add(new ThroughputRow(name, t.MedianMs, tokens / (t.MedianMs / 1000)));
        }
        Time("one causal pass (vanilla)", () => { using var s = NewDisposeScope(); vanilla.call(batch.Ids); });
        Time("step-wise runner, no processor", () => { using var s = NewDisposeScope(); BottleneckedRunner.Run(vanilla, null, batch.Ids, batch.StepEnds, 0); });
        Time("step-wise runner + processor (bottlenecked)", () => { using var s = NewDisposeScope(); model.Decode(batch.Ids); });
        return rows;
    }

    /// <summary>
    /// The exactness phase on toy tensors (float64, continuous inputs, Dk ≠ Dv, steps of 3, 3 and 4 tokens and a tail of 1):
    /// the batched runner against its loop twin (logits, rewritten caches, chosen positions and the gradient of every
    /// parameter), a zero-initialised processor against the backbone, the runner without a processor against one causal pass,
    /// the top-k sets, and entries outside R ∪ P after a rewrite.
    /// </summary>
    public static BottleneckedExactness Exactness(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        var cfg = new TinyGptConfig(Layers: 2, DModel: 6, Heads: 2, MlpRatio: 2, InputFeatures: 3, OutputFeatures: 5);
        torch.manual_seed(seed);
        using var model = new TinyGpt(cfg, ConsolidatingAttention.Factory(cfg, keyDim: 3, valueDim: 4)).to(ScalarType.Float64).to(device);
        using var processor = new CacheProcessor(2, 2, 3, 4, width: 8, processorHeads: 2, maxOffset: 4).to(ScalarType.Float64).to(device);
        var gen = new Generator((ulong)seed);
        var x = torch.randn(new long[] { 2, 11, 3 }, generator: gen, dtype: ScalarType.Float64).to(device);
        int[] ends = { 2, 5, 9 };
        const int k = 2;

        // a zero-initialised processor leaves the backbone's output unchanged
        var full = model.call(x).detach();
        var zeroInit = BottleneckedRunner.Run(model, processor, x, ends, k);
        double zeroInitMaxAbs = (zeroInit.Logits - full).abs().max().item<double>();
        var off = BottleneckedRunner.Run(model, null, x, ends, k);
        double offMaxAbs = (off.Logits - full).abs().max().item<double>();

        using (torch.no_grad())
            foreach (var p in processor.Output.parameters()) p.copy_(torch.randn(p.shape, generator: gen, dtype: ScalarType.Float64).to(device) * 0.5);
        var parameters = model.parameters().Concat(processor.parameters()).Select(p => (Tensor)p).ToList();
        (BottleneckedOutput Out, Tensor[] Grads) Both(Func<BottleneckedOutput> run)
        {
            var o = run();
            var g = new Generator((ulong)seed + 7);
            var loss = (o.Logits * torch.randn(o.Logits.shape, generator: g, dtype: ScalarType.Float64).to(device)).sum();
            foreach (var t in o.Keys.Concat(o.Values)) loss = loss + (t * torch.randn(t.shape, generator: g, dtype: ScalarType.Float64).to(device)).sum();
            var grads = torch.autograd.grad(new[] { loss }, parameters, allow_unused: true).Select((gr, i) => gr is null || gr.IsInvalid
                ? torch.zeros_like(parameters[i]) : gr).ToArray();
            return (o, grads);
        }
        var (fast, fastGrads) = Both(() => BottleneckedRunner.Run(model, processor, x, ends, k));
        var (naive, naiveGrads) = Both(() => BottleneckedTransformerNaive.Run(model, processor, x, ends, k));
        double outputs = (fast.Logits - naive.Logits).abs().max().item<double>();
        for (int l = 0; l < fast.Keys.Count; l++)
        {
            outputs = Math.Max(outputs, (fast.Keys[l] - naive.Keys[l]).abs().max().item<double>());
            outputs = Math.Max(outputs, (fast.Values[l] - naive.Values[l]).abs().max().item<double>());
        }
        double grads = fastGrads.Zip(naiveGrads).Max(p => (p.First - p.Second).abs().max().item<double>());
        double gradScale = fastGrads.Max(g => g.abs().max().item<double>());
        bool sameChoice = fast.Selected.Count == naive.Selected.Count && fast.Selected.Zip(naive.Selected).All(p => p.First.shape.SequenceEqual(p.Second.shape)
            && p.First.eq(p.Second).all().item<bool>());

        // top-k: exactly min(k, a_s) distinct positions, all < a_s
        bool topkValid = fast.Selected.Count == ends.Length;
        for (int s = 0; s < fast.Selected.Count && topkValid; s++)
        {
            int a = s == 0 ? 0 : ends[s - 1] + 1;
            var sel = fast.Selected[s];
            topkValid &= sel.size(1) == Math.Min(k, a);
            if (sel.size(1) == 0) continue;
            topkValid &= sel.max().item<long>() < a && sel.min().item<long>() >= 0;
            topkValid &= sel.sort(1).Values.diff(dim: 1).gt(0).all().item<bool>();
        }

        // a rewrite touches R ∪ P only: everything else bitwise equal
        using var state = model.NewState(2);
        var s0 = (ConsolidatingKvState)state.Layers[0];
        var mixer = (ConsolidatingAttention)model.Blocks[0].Mixer;
        using (mixer.Bind(s0)) mixer.call(model.Blocks[0].Norm1.call(model.Embedded(x, 0)));
        var (kb, vb) = (s0.Keys.detach().clone(), s0.Values.detach().clone());
        var where = torch.tensor(new long[] { 1, 4, 7, 0, 9, 10 }, new long[] { 2, 3 }, device: device);
        s0.Rewrite(where, torch.randn(new long[] { 2, 3, 2, 3 }, generator: gen, dtype: ScalarType.Float64).to(device),
            torch.randn(new long[] { 2, 3, 2, 4 }, generator: gen, dtype: ScalarType.Float64).to(device));
        var touched = torch.zeros(2, 11, dtype: ScalarType.Bool, device: device).scatter_(1, where, torch.ones(2, 3, dtype: ScalarType.Bool, device: device));
        var keep = (~touched).unsqueeze(-1).unsqueeze(-1);
        bool untouched = s0.Keys.detach().eq(kb).logical_or(~keep).all().item<bool>() && s0.Values.detach().eq(vb).logical_or(~keep).all().item<bool>();
        bool changed = !s0.Keys.detach().eq(kb).all().item<bool>();

        return new BottleneckedExactness(outputs, grads, gradScale, sameChoice, zeroInitMaxAbs, offMaxAbs, topkValid, untouched && changed);
    }
}
