using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>
/// The notebook's experiment (P35 §4): decode delayed-reference sequences (<see cref="DeltaCheckpoint.Task"/>) token by
/// token with the shipped 4-layer model under full attention and DELTA (full [0], Δ [1], sparse [2, 3]), and under four
/// baselines at an <b>equal read budget</b>: every policy keeps DELTA's layer roles (layers 0–1 attend fully) and lets its
/// sparse layers read K pages × P tokens — the per-layer oracle (each sparse layer's own top-K pages from its own full
/// attention), Quest-style page-bound selection (<see cref="QuestSelector"/>), and the evicting StreamingLLM and H2O.
/// Scores the second copy (teacher forcing); counts attended tokens per layer and step (sparse layers and all layers),
/// the reads a selection costs on top (the oracle's scoring row, Quest's page min/max), KV bytes read and held; records
/// DELTA's page scores, selections, layer overlap and sparse-layer recall. An exactness phase first checks the page
/// score against its loop, the gather against its masked twin, and the reduces-to-full identities.
/// </summary>
public sealed class DeltaExperiment : IPaperExperiment<DeltaExperiment.Config, DeltaResult>
{
    DeltaExperiment() { }

    /// <summary>P35 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(35, "DELTA: dynamic layer-aware token attention", "delta");

    /// <summary>Sizes of one run; the model is fixed by the checkpoint (n = 73 tokens).</summary>
    public sealed record Config(int Sequences, int Seed, int PageSize, int[] BudgetPages, int HeadlineBudget, int RecentPages,
        int SinkTokens, int[] FullLayers, int[] DeltaLayers) : IPaperConfig<Config>
    {
        /// <summary>CPU notebook size.</summary>
        public static Config Smoke => new(Sequences: 32, Seed: 1, PageSize: 4, BudgetPages: new[] { 3, 5 }, HeadlineBudget: 5,
            RecentPages: 2, SinkTokens: 4, FullLayers: new[] { 0 }, DeltaLayers: new[] { 1 }) { Size = "smoke" };
        /// <summary>More sequences and a budget sweep (same model).</summary>
        public static Config Full => Smoke with { Sequences = 512, BudgetPages = new[] { 2, 3, 4, 5, 6, 8, 10 }, Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        public DeltaPolicy Policy(int budget) => new(FullLayers, DeltaLayers, PageSize, budget, RecentPages);

        /// <summary>Layers that attend fully in every policy (DELTA's full and Δ-layers): the equal-read-budget roles.</summary>
        public bool IsDense(int layer) => FullLayers.Contains(layer) || DeltaLayers.Contains(layer);

        public Config Validate()
        {
            Guard.Positive(Sequences, nameof(Sequences)); Guard.Positive(PageSize, nameof(PageSize));
            if (BudgetPages is null || BudgetPages.Length == 0 || BudgetPages.Any(b => b < Math.Max(2, RecentPages)))
                throw new ArgumentException($"BudgetPages must be non-empty and each ≥ RecentPages {RecentPages} and ≥ 2.", nameof(BudgetPages));
            if (!BudgetPages.Contains(HeadlineBudget))
                throw new ArgumentException($"HeadlineBudget {HeadlineBudget} must be one of BudgetPages.", nameof(HeadlineBudget));
            if (SinkTokens < 0 || BudgetPages.Any(b => b * PageSize <= SinkTokens))
                throw new ArgumentException($"SinkTokens {SinkTokens} must be ≥ 0 and below every budget in tokens.", nameof(SinkTokens));
            Policy(HeadlineBudget).CheckLayers(DeltaCheckpoint.Config.Layers, nameof(DeltaLayers));
            return this;
        }
    }

    /// <summary>Policy names in plot order.</summary>
    public const string FullName = "full", DeltaName = "DELTA", PerLayerName = "per-layer top-K (oracle)", QuestName = "Quest-like (page bounds)",
        StreamingName = "StreamingLLM", H2OName = "H2O";

    /// <summary>Loads the checkpoint and runs every policy on <paramref name="device"/>.</summary>
    public static DeltaResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var model = DeltaCheckpoint.Load();
        model.to(device);
        return Run(config, model, device, progress);
    }

    /// <summary>Runs the exactness phase and every policy with <paramref name="model"/> (a <see cref="DeltaCheckpoint.Config"/> TinyGpt).</summary>
    public static DeltaResult Run(Config config, TinyGpt model, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = Stopwatch.StartNew();
        var exactness = Exactness(model, config, device);
        progress?.Report($"exactness: page score vs loop {exactness.PageScoreMaxAbs:E1}, K ≥ pages vs dense {exactness.AllPagesMaxAbs:E1}, " +
            $"all full vs dense {exactness.AllFullMaxAbs:E1}, gather vs masked {exactness.GatherVsMaskedMaxAbs:E1}");
        using var batch = DeltaCheckpoint.Task.Generate(config.Sequences, config.Seed, device);
        var rows = new List<DeltaRow>();
        DeltaDecoder? headline = null;
        try
        {
            rows.Add(RunDelta(model, config, DeltaPolicy.AllFull(model.Config.Layers, config.PageSize, 1, 1), batch, FullName, int.MaxValue, false,
                out var fullDec));
            fullDec.Dispose();
            progress?.Report(rows[^1].ToString());
            foreach (int k in config.BudgetPages)
            {
                long tokens = (long)k * config.PageSize;
                rows.Add(RunDelta(model, config, config.Policy(k), batch, DeltaName, k, k == config.HeadlineBudget, out var dec));
                if (k == config.HeadlineBudget) headline = dec; else dec.Dispose();
                progress?.Report(rows[^1].ToString());
                rows.Add(RunDelta(model, config, config.Policy(k), batch, PerLayerName, k, false, out var oracle, perLayer: true));
                oracle.Dispose();
                progress?.Report(rows[^1].ToString());
                rows.Add(RunQuest(model, config, k, batch));
                progress?.Report(rows[^1].ToString());
                rows.Add(RunEvicting(model, config, KvPolicy.SinkWindow(tokens - config.SinkTokens, config.SinkTokens), batch, StreamingName, k));
                progress?.Report(rows[^1].ToString());
                rows.Add(RunEvicting(model, config, KvPolicy.H2O(tokens / 2, tokens - tokens / 2), batch, H2OName, k));
                progress?.Report(rows[^1].ToString());
            }
            return DeltaResult.From(config, exactness, rows, headline!, model.Config.Layers, clock.Elapsed);
        }
        finally { headline?.Dispose(); }
    }

    /// <summary>
    /// The exactness phase: (1) <see cref="PageScores.MaxOverHeads"/> against its loop twin on toy probabilities (B 2,
    /// H 4, 3 queries, 22 keys, P = 4: a partial last page), float64; (2) on 4 delayed-reference sequences, DELTA with a
    /// budget covering every page, and with every layer full, against the dense KV-cache decode (float32 logits);
    /// (3) the sparse layers' page gather against the masked twin at the smallest budget.
    /// </summary>
    public static DeltaExactness Exactness(TinyGpt model, Config config, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)(3 + config.Seed));
        var probs = torch.randn(2, 4, 3, 22, generator: gen, dtype: float64).mul(2).softmax(-1).to(device);
        double pageError = ErrorStats.Of(PageScores.MaxOverHeads(probs, 4), DeltaNaive.PageScores(probs, 4)).MaxAbs;
        using var sample = DeltaCheckpoint.Task.Generate(4, seed: 99 + config.Seed, device);
        var ids = sample.Tokens;
        Tensor dense;
        using (torch.no_grad())
        using (var state = model.NewState(ids.shape[0]))
            dense = torch.stack(Enumerable.Range(0, (int)ids.shape[1]).Select(t => model.Step(ids.select(1, t), state)).ToList(), 1);
        int allPages = (int)config.Policy(config.HeadlineBudget).Pages(ids.shape[1]);
        double errAll = ErrorStats.Of(DecodeLogits(model, config.Policy(allPages), ids), dense).MaxAbs;
        double errFull = ErrorStats.Of(DecodeLogits(model, DeltaPolicy.AllFull(model.Config.Layers, config.PageSize, 1, 1), ids), dense).MaxAbs;
        int small = config.BudgetPages.Min();
        double errTwin = ErrorStats.Of(DecodeLogits(model, config.Policy(small), ids), DecodeLogits(model, config.Policy(small), ids, masked: true)).MaxAbs;
        return new DeltaExactness(pageError, errAll, errFull, errTwin, small);
    }

    /// <summary>Logits [B, T, V] of DELTA's decode of <paramref name="ids"/> (the first token is the prefill).</summary>
    static Tensor DecodeLogits(TinyGpt model, DeltaPolicy policy, Tensor ids, bool masked = false)
    {
        using var scope = NewDisposeScope();
        using var dec = new DeltaDecoder(model, policy, ids.shape[0], masked);
        var steps = new List<Tensor> { dec.Prefill(ids.narrow(1, 0, 1)) };
        for (long t = 1; t < ids.shape[1]; t++) steps.Add(dec.Step(ids.select(1, t)));
        return torch.stack(steps, 1).MoveToOuterDisposeScope();
    }

    static DeltaRow RunDelta(TinyGpt model, Config config, DeltaPolicy policy, TokenBatch batch, string name, int budget, bool capture, out DeltaDecoder dec,
        bool perLayer = false)
    {
        using var scope = NewDisposeScope();
        dec = new DeltaDecoder(model, policy, batch.Count, perLayer: perLayer) { Capture = capture };
        var watch = Stopwatch.StartNew();
        var steps = new List<Tensor> { dec.Prefill(batch.Tokens.narrow(1, 0, 1)) };               // BOS: prefill
        for (long t = 1; t < batch.Length; t++) steps.Add(dec.Step(batch.Tokens.select(1, t)));
        watch.Stop();
        Func<DecodeStepStats, double> overhead = perLayer
            ? s => policy.Role(s.Layer) == LayerRole.Sparse ? 0.5 * (s.Step + 1 - s.AttendedMean) : 0  // the oracle scores every key (K of K+V) to choose
            : _ => 0;                                                                                // DELTA's scores come from the Δ-layer's own full row
        return Row(name, budget, config, batch, torch.stack(steps, 1), dec.Trace, watch.Elapsed, overhead);
    }

    /// <summary>Quest-style per-layer selection from page key bounds (<see cref="QuestSelector"/>) on DELTA's sparse layers,
    /// the full and Δ-layers attending fully; same page size and page budget.</summary>
    static DeltaRow RunQuest(TinyGpt model, Config config, int budget, TokenBatch batch)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = model.NewSelectiveState(batch.Count,
            layer => config.IsDense(layer) ? new FullSelector() : new QuestSelector(config.PageSize, budget));
        var watch = Stopwatch.StartNew();
        var steps = new List<Tensor>();
        for (long t = 0; t < batch.Length; t++) steps.Add(model.Step(batch.Tokens.select(1, t), state));
        watch.Stop();
        var trace = state.Layers.SelectMany(l => ((CausalSelfAttention.SelectiveState)l).Cache.Trace).Where(s => s.Step > 0).ToList();
        // a selecting step reads the min and max key of every full page before the current one: 2 key vectors = one token's K + V
        double Overhead(DecodeStepStats s) => !config.IsDense(s.Layer) && s.AttendedMean < s.Step + 1 ? s.Step / config.PageSize : 0;
        return Row(QuestName, budget, config, batch, torch.stack(steps, 1), trace, watch.Elapsed, Overhead);
    }

    /// <summary>An evicting policy on DELTA's sparse layers; the full and Δ-layers keep every token.</summary>
    static DeltaRow RunEvicting(TinyGpt model, Config config, IKvPolicy policy, TokenBatch batch, string name, int budget)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = model.NewState(batch.Count, layer => config.IsDense(layer) ? KvPolicy.Full : policy);
        var watch = Stopwatch.StartNew();
        var steps = new List<Tensor>();
        for (long t = 0; t < batch.Length; t++) steps.Add(model.Step(batch.Tokens.select(1, t), state));
        watch.Stop();
        var trace = state.Layers.SelectMany(l => ((CausalSelfAttention.PolicyState)l).Cache.Trace).Where(s => s.Step > 0).ToList();   // decode steps, as DELTA
        return Row(name, budget, config, batch, torch.stack(steps, 1), trace, watch.Elapsed, _ => 0);
    }

    /// <summary>
    /// Attended ratio = Σ attended / Σ (t + 1) over decode steps (t = token index) and layers: all layers, and DELTA's
    /// sparse layers only; read ratio adds each step's selection overhead (in token units: one K + V row = 1).
    /// </summary>
    static DeltaRow Row(string name, int budget, Config config, TokenBatch batch, Tensor logits, IReadOnlyList<DecodeStepStats> trace, TimeSpan elapsed,
        Func<DecodeStepStats, double> overhead)
    {
        double attended = trace.Sum(s => s.AttendedMean), full = trace.Sum(s => s.Step + 1.0);     // Σ attended vs Σ (t + 1) (full attention)
        var sparse = trace.Where(s => !config.IsDense(s.Layer)).ToList();
        double sparseRatio = sparse.Sum(s => s.AttendedMean) / sparse.Sum(s => s.Step + 1.0);
        double read = attended + trace.Sum(overhead);
        return new DeltaRow(name, budget, batch.Accuracy(logits), attended / trace.Count, attended / full, sparseRatio, read / full,
            trace.Average(s => (double)s.KvBytesRead), trace.Average(s => (double)s.KvBytesHeld),
            elapsed.TotalMilliseconds / batch.Length);
    }
}
