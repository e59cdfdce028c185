using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FactualRecall;

/// <summary>
/// P08 factual recall (Lv et al. 2024): the notebook's experiment. A tiny GPT memorises a knowledge base built from the
/// shipped country facts (capital-of, continent-of; prompts "filler* the R of S is"); then, on every fact: activation
/// patching per head (corrupted subject → clean run, logit difference), the END → subject attention of each head, direct
/// logit attribution per component (final LN folded, centred W_U), the linearised MLP decomposition (activation ratio ρ
/// of each head in the next MLP, and the DLA of its MLP share: function application), and the exactness checks of spec §6.
/// </summary>
public sealed class FactualRecallExperiment : IPaperExperiment<FactualRecallExperiment.Config, FactualRecallResult>
{
    FactualRecallExperiment() { }

    /// <summary>P08 in the catalogue (notebook notebooks/08-factual-recall.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(8, "Factual-recall mechanisms", "factual-recall");

    /// <summary>
    /// Sizes of one run. Smoke: spec §4 (2 layers, d = 64, 4 heads, 64 subjects × 2 relations, T ≤ 12, 1000 steps).
    /// Full: 4 layers, d = 128, 8 heads, 240 subjects (the shipped facts hold 245 with distinct capitals, not the spec's 500)
    /// × 2 relations, prompts up to 32 tokens, 20k steps.
    /// </summary>
    public sealed record Config(int Layers, int DModel, int Heads, int Subjects, int MaxPrefix, int Steps, int BatchSize, double LearningRate,
        int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(Layers: 2, DModel: 64, Heads: 4, Subjects: 64, MaxPrefix: 7, Steps: 1000, BatchSize: 64,
            LearningRate: 3e-3, Seed: 0) { Size = "smoke" };
        public static Config Full => new(Layers: 4, DModel: 128, Heads: 8, Subjects: 240, MaxPrefix: 27, Steps: 20_000, BatchSize: 128,
            LearningRate: 1e-3, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>The knowledge base (countries picked by <see cref="Seed"/>).</summary>
        public FactualKb Kb() => new(Subjects, MaxPrefix, Seed);

        /// <summary>The model: learned positions, untied unembedding, MLP ratio 4 (erf-GELU).</summary>
        public TinyGptConfig Model(FactualKb kb) =>
            new(Layers, DModel, Heads, MlpRatio: 4, Positions: PositionKind.Learned, VocabSize: kb.VocabSize, MaxLength: kb.SeqLen);
    }

    /// <summary>Runs everything on <paramref name="device"/>, one line per phase.</summary>
    public static FactualRecallResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        double twin = TwinGap(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"exactness: linearised MLP vs naive twin (float64) max |Δ| {Num.Sci(twin)}");

        var kb = config.Kb();
        torch.manual_seed(config.Seed);
        using var model = new TinyGpt(config.Model(kb));
        model.to(device);
        progress?.Report($"knowledge base: {config.Subjects} countries × {FactualKb.Relations.Length} relations = {kb.All.Count} facts, " +
            $"vocabulary {kb.VocabSize}, prompts ≤ {kb.SeqLen} tokens; model {model.ParameterCount:N0} parameters");
        var options = new TrainOptions(config.Steps, config.LearningRate, WarmupSteps: config.Steps / 20, ReportEvery: Math.Max(1, config.Steps / 4));
        var history = Trainer.Fit(model, step =>
        {
            using var batch = kb.Sample(config.BatchSize, seed: config.Seed * 100_003 + step, device: device);
            return EndLoss(model.call(batch.Tokens), batch);
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {p}")));
        clock.Lap("train");

        model.eval();
        var analysis = Analyse(model, kb, config, device);
        clock.Lap("analysis");
        progress?.Report($"recall accuracy {analysis.Accuracy:P1} on all {kb.All.Count} facts; top head by patching " +
            $"L{analysis.TopLayer}H{analysis.TopHead}; done in {clock.Seconds:F1} s");
        return analysis.ToResult(config, twin, history.Losses, clock.Seconds, clock.Phases);
    }

    /// <summary>Cross-entropy of the answer at each row's END position.</summary>
    public static Tensor EndLoss(Tensor logits, FactPrompts prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        using var scope = NewDisposeScope();
        var atEnd = AtEnd(logits, prompts.End);                                                  // [B, V]
        var target = torch.tensor(prompts.Answer, dtype: ScalarType.Int64, device: logits.device);
        return nn.functional.cross_entropy(atEnd, target).MoveToOuterDisposeScope();
    }

    /// <summary>logits[b, end[b]] → [B, V].</summary>
    public static Tensor AtEnd(Tensor logits, long[] end)
    {
        using var scope = NewDisposeScope();
        var index = torch.tensor(end, dtype: ScalarType.Int64, device: logits.device).view(-1, 1, 1).expand(-1, 1, logits.shape[2]);
        return logits.gather(1, index).squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>Mean over rows of logit[answer] − logit[against] at END (the spec's LD).</summary>
    public static double LogitDifference(Tensor logits, long[] end, long[] answer, long[] against)
    {
        using var scope = NewDisposeScope();
        var atEnd = AtEnd(logits, end);
        var a = atEnd.gather(1, torch.tensor(answer, dtype: ScalarType.Int64, device: logits.device).view(-1, 1));
        var b = atEnd.gather(1, torch.tensor(against, dtype: ScalarType.Int64, device: logits.device).view(-1, 1));
        return (a - b).mean().to(ScalarType.Float64).item<double>();
    }

    static Analysis Analyse(TinyGpt model, FactualKb kb, Config c, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var rng = new Random(c.Seed + 77);
        var facts = kb.All;
        var prefix = facts.Select(_ => rng.Next(kb.MaxPrefix + 1)).ToArray();
        var corruptFacts = kb.Corrupt(facts, c.Seed + 78);
        using var clean = kb.Prompts(facts, prefix, c.Seed + 79, device);
        using var corrupt = kb.Prompts(corruptFacts, prefix, c.Seed + 79, device);               // same fillers, another subject
        var against = corruptFacts.Select(f => (long)f.Object).ToArray();
        var a = new Analysis(c.Layers, c.Heads, facts.Count);

        var cleanLogits = model.call(clean.Tokens);
        a.Accuracy = AtEnd(cleanLogits, clean.End).argmax(-1).cpu().data<long>().ToArray().Zip(clean.Answer).Count(p => p.First == p.Second)
            / (double)facts.Count;
        a.CleanLd = LogitDifference(cleanLogits, clean.End, clean.Answer, against);
        a.CorruptLd = LogitDifference(model.call(corrupt.Tokens), clean.End, clean.Answer, against);

        // Noising (spec §2): run the clean prompt with one head's z from the corrupted run, (LD_patched − LD_clean)/(LD_corr − LD_clean).
        // Patching.HeadOutputs runs its second argument with the first's head patched in and normalises the same way.
        Func<Tensor, double> ld = logits => LogitDifference(logits, clean.End, clean.Answer, against);
        var effects = Patching.HeadOutputs(model, corrupt.Tokens, clean.Tokens, ld).cpu().data<double>().ToArray();
        for (int l = 0; l < c.Layers; l++)
            for (int h = 0; h < c.Heads; h++) a.Patch[l, h] = effects[l * c.Heads + h];
        (a.TopLayer, a.TopHead) = Argmax(a.Patch);
        a.PatchAllGap = PatchAllGap(model, clean, corrupt);

        foreach (var k in prefix.Distinct().Order())
        {
            var rows = Enumerable.Range(0, facts.Count).Where(i => prefix[i] == k).ToArray();
            AnalyseGroup(model, kb, clean, rows, k, picture: k == prefix.Max(), a, device);
        }
        return a;
    }

    /// <summary>max |logit| gap at END between the clean run with every head's z and every MLP output from the corrupted run, and the corrupted run.</summary>
    static double PatchAllGap(TinyGpt model, FactPrompts clean, FactPrompts corrupt)
    {
        using var scope = NewDisposeScope();
        var names = Enumerable.Range(0, model.LayerCount).SelectMany(l => new[] { ActName.Get("z", l), ActName.Get("mlp_out", l) }).ToArray();
        var (corruptLogits, cache) = model.RunWithCache(corrupt.Tokens, names);
        using (cache)
        {
            var hooks = names.Select(n => (n, (Func<Tensor, HookPoint, Tensor?>)((_, _) => cache[n].clone()))).ToArray();
            var patched = model.RunWithHooks(clean.Tokens, hooks);
            return (AtEnd(patched, clean.End) - AtEnd(corruptLogits, clean.End)).abs().max().to(ScalarType.Float64).item<double>();
        }
    }

    static void AnalyseGroup(TinyGpt model, FactualKb kb, FactPrompts clean, int[] rows, int k, bool picture, Analysis a, Device device)
    {
        using var scope = NewDisposeScope();
        int len = k + FactualKb.TemplateLength, end = len - 1, subj = k + 3, rel = k + 1;
        var index = torch.tensor(rows.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64, device: device);
        var tokens = clean.Tokens.index_select(0, index).narrow(1, 0, len);                     // causal: END sees only these
        var answer = torch.tensor(rows.Select(i => clean.Answer[i]).ToArray(), dtype: ScalarType.Int64, device: device);
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            using var stack = ResidualStream.Decomposed(model, cache, splitHeads: true);
            using var dla = LogitAttribution.Direct(model, cache, stack, -1, answer);
            var endLogits = logits.select(1, end);
            var centred = endLogits.gather(1, answer.view(-1, 1)).squeeze(1) - endLogits.mean(new long[] { -1 });
            a.DlaGap = Math.Max(a.DlaGap, (dla.Total - centred).abs().max().to(ScalarType.Float64).item<double>());
            var per = Rows(dla.PerComponent);                                                   // [C][b]
            var labels = stack.Labels.ToList();
            for (int j = 0; j < rows.Length; j++)
            {
                a.Constant[rows[j]] = dla.Constant[j].to(ScalarType.Float64).item<double>();
                for (int ci = 0; ci < labels.Count; ci++) a.DlaOf(labels[ci])[rows[j]] = per[ci][j];
            }
            for (int l = 0; l < model.LayerCount; l++)
            {
                using var d = MlpDecomposer.Linearize(model, cache, l, -1);
                a.MlpGap = Math.Max(a.MlpGap, (d.Sum() - d.Output).abs().max().to(ScalarType.Float64).item<double>());
                var rho = Rows(d.ActivationRatio());
                var share = Rows(MlpDecomposer.ShareLogitAttribution(model, cache, d, -1, answer));
                var pattern = cache["pattern", l].select(2, end);                                 // [b, H, T] from END
                var toSubject = Rows(pattern.select(2, subj).t());                                // [H][b]
                var toRelation = Rows(pattern.select(2, rel).t());
                for (int h = 0; h < model.HeadCount; h++)
                {
                    int ci = d.IndexOf($"L{l}H{h}");
                    for (int j = 0; j < rows.Length; j++)
                    {
                        a.Rho[l, h][rows[j]] = rho[ci][j];
                        a.ShareDla[l, h][rows[j]] = share[ci][j];
                        a.AttnSubject[l, h][rows[j]] = toSubject[h][j];
                        a.AttnRelation[l, h][rows[j]] = toRelation[h][j];
                    }
                }
            }
            if (picture)                                                                         // the picture: the longest prompts
            {
                var pattern = cache["pattern", a.TopLayer].select(1, a.TopHead).select(1, end);   // [b, T]
                a.PictureRows = Rows(pattern).Take(8).ToList();
                a.PictureTokens = Enumerable.Range(0, len).Select(p => Role(p, k)).ToArray();
                a.PictureExamples = rows.Take(8).Select(i => kb.Word(clean.Facts[i].Subject)[2..] + " / " + kb.Word(clean.Facts[i].Relation)).ToList();
            }
        }
    }

    static string Role(int p, int k) =>
        p < k ? $"{p}:filler" : (p - k) switch { 0 => $"{p}:the", 1 => $"{p}:R", 2 => $"{p}:of", 3 => $"{p}:S", _ => $"{p}:is" };

    static double[][] Rows(Tensor t)
    {
        var m = t.to(ScalarType.Float64).cpu().contiguous();
        int r = (int)m.shape[0], cols = (int)m.shape[1];
        var flat = m.data<double>().ToArray();
        return Enumerable.Range(0, r).Select(i => flat.Skip(i * cols).Take(cols).ToArray()).ToArray();
    }

    static (int Layer, int Head) Argmax(double[,] x)
    {
        (int, int) best = (0, 0);
        for (int l = 0; l < x.GetLength(0); l++)
            for (int h = 0; h < x.GetLength(1); h++)
                if (x[l, h] > x[best.Item1, best.Item2]) best = (l, h);
        return best;
    }

    /// <summary>
    /// The twin check (float64, fresh 2-layer model, d = 12, 3 heads, MLP 30, T = 5, B = 3): <see cref="MlpDecomposer.Linearize"/>
    /// against <see cref="FactualRecallNaive.Linearize(TinyGpt, int, double[][])"/> — shares, bias and the MLP output — at every
    /// block and position; max |Δ|.
    /// </summary>
    public static double TwinGap(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 12, Heads: 3, MlpRatio: 2.5, Positions: PositionKind.Learned,
            VocabSize: 17, MaxLength: 8));
        using (torch.no_grad())
            foreach (var p in model.parameters()) p.add_(torch.randn_like(p) * 0.3);            // move LN and biases off their init
        model.to(float64).to(device);
        var tokens = torch.randint(0, 17, new long[] { 3, 5 }, device: device);
        var (_, cache) = model.RunWithCache(tokens);
        double gap = 0;
        using (cache)
            for (int l = 0; l < 2; l++)
                for (int p = 0; p < 5; p++)
                {
                    using var d = MlpDecomposer.Linearize(model, cache, l, p);
                    var m = d.Components.cpu();
                    for (int b = 0; b < 3; b++)
                    {
                        var r = Enumerable.Range(0, (int)d.Inputs.shape[0])
                            .Select(ci => d.Inputs[ci, b].cpu().data<double>().ToArray()).ToArray();
                        var naive = FactualRecallNaive.Linearize(model, l, r);
                        for (int ci = 0; ci < r.Length; ci++)
                            gap = Math.Max(gap, MaxAbs(m[ci, b].data<double>().ToArray(), naive.Components[ci]));
                        gap = Math.Max(gap, MaxAbs(d.Bias[b].cpu().data<double>().ToArray(), naive.Bias));
                        gap = Math.Max(gap, MaxAbs(d.Output[b].cpu().data<double>().ToArray(), naive.Output));
                        gap = Math.Max(gap, MaxAbs(d.Gates[b].cpu().data<double>().ToArray(), naive.Gates));
                    }
                }
        return gap;
    }

    static double MaxAbs(double[] x, double[] y) => x.Zip(y).Max(p => Math.Abs(p.First - p.Second) is var v && double.IsNaN(v) ? double.PositiveInfinity : v);

    /// <summary>Accumulators of the analysis, per fact (row).</summary>
    sealed class Analysis(int layers, int heads, int count)
    {
        public int Count { get; } = count;
        public double Accuracy, CleanLd, CorruptLd, PatchAllGap, DlaGap, MlpGap;
        public int TopLayer, TopHead;
        public readonly double[,] Patch = new double[layers, heads];
        public readonly double[] Constant = new double[count];
        public readonly Dictionary<string, double[]> Dla = [];
        public readonly double[,][] Rho = Grid(layers, heads, count), ShareDla = Grid(layers, heads, count),
            AttnSubject = Grid(layers, heads, count), AttnRelation = Grid(layers, heads, count);
        public List<double[]> PictureRows = [];
        public string[] PictureTokens = [];
        public List<string> PictureExamples = [];

        static double[,][] Grid(int l, int h, int n)
        {
            var g = new double[l, h][];
            for (int i = 0; i < l; i++)
                for (int j = 0; j < h; j++) g[i, j] = new double[n];
            return g;
        }

        public FactualRecallResult ToResult(Config c, double twin, IReadOnlyList<double> losses, double seconds, IReadOnlyDictionary<string, double> phases)
        {
            var headRows = new List<HeadRow>();
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < HeadsPerLayer; h++)
                    headRows.Add(new HeadRow(l, h, Patch[l, h], AttnSubject[l, h].Average(), AttnRelation[l, h].Average(), Dla[$"L{l}H{h}"].Average(),
                        Rho[l, h].Average(), ShareDla[l, h].Average()));
            var layerRows = Enumerable.Range(0, layers).Select(l => new LayerDla(l,
                Enumerable.Range(0, HeadsPerLayer).Sum(h => Dla[$"L{l}H{h}"].Average()) + Dla[$"{l}_attn_bias"].Average(),
                Dla[$"{l}_mlp_out"].Average())).ToList();
            double embed = Dla["embed"].Average() + (Dla.TryGetValue("pos_embed", out var pe) ? pe.Average() : 0);
            return new FactualRecallResult(c, twin, Accuracy, CleanLd, CorruptLd, PatchAllGap, DlaGap, MlpGap, headRows, layerRows, embed,
                Constant.Average(), PictureRows, PictureTokens, PictureExamples, TopLayer, TopHead, losses, seconds, phases);
        }

        int HeadsPerLayer => heads;

        /// <summary>The per-fact DLA of component <paramref name="label"/> (created on first use).</summary>
        public double[] DlaOf(string label)
        {
            if (!Dla.TryGetValue(label, out var v)) Dla[label] = v = new double[Count];
            return v;
        }
    }
}
