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
/// token with the shipped 4-layer model under full attention, DELTA (full [0], Δ [1], sparse [2, 3]), the eviction
/// baselines StreamingLLM and H2O, the per-layer oracle selection and Quest-style page-bound selection at the same token budgets; score the second copy (teacher forcing), count attended
/// tokens and KV bytes read per step, and record DELTA's page scores, selections, layer overlap and sparse-layer recall.
/// </summary>
public static class DeltaExperiment
{
    /// <summary>Sizes of one run; the model is fixed by the checkpoint (n = 73 tokens).</summary>
    public sealed record Config(int Sequences, int Seed, int PageSize, int[] BudgetPages, int HeadlineBudget, int RecentPages,
        int SinkTokens, int[] FullLayers, int[] DeltaLayers)
    {
        /// <summary>CPU notebook size.</summary>
        public static Config Smoke => new(Sequences: 32, Seed: 1, PageSize: 4, BudgetPages: new[] { 3, 5 }, HeadlineBudget: 5,
            RecentPages: 2, SinkTokens: 4, FullLayers: new[] { 0 }, DeltaLayers: new[] { 1 });
        /// <summary>More sequences and a budget sweep (same model).</summary>
        public static Config Full => Smoke with { Sequences = 512, BudgetPages = new[] { 2, 3, 4, 5, 6, 8, 10 } };
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        public DeltaPolicy Policy(int budget) => new(FullLayers, DeltaLayers, PageSize, budget, RecentPages);

        public Config Validate()
        {
            Guard.Positive(Sequences, nameof(Sequences)); Guard.Positive(PageSize, nameof(PageSize));
            if (BudgetPages is null || BudgetPages.Length == 0 || BudgetPages.Any(b => b < RecentPages))
                throw new ArgumentException($"BudgetPages must be non-empty and each ≥ RecentPages {RecentPages}.", nameof(BudgetPages));
            if (!BudgetPages.Contains(HeadlineBudget)) throw new ArgumentException($"HeadlineBudget {HeadlineBudget} must be one of BudgetPages.", nameof(HeadlineBudget));
            if (SinkTokens < 0 || BudgetPages.Any(b => b * PageSize <= SinkTokens)) throw new ArgumentException($"SinkTokens {SinkTokens} must be ≥ 0 and below every budget in tokens.", nameof(SinkTokens));
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
        using var model = DeltaCheckpoint.Load();
        model.to(device);
        return Run(config, model, device, progress);
    }

    /// <summary>Runs every policy with <paramref name="model"/> (a <see cref="DeltaCheckpoint.Config"/> TinyGpt).</summary>
    public static DeltaResult Run(Config config, TinyGpt model, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(model);
        config.Validate();
        using var batch = DeltaCheckpoint.Task.Generate(config.Sequences, config.Seed, device);
        var rows = new List<DeltaRow>();
        DeltaDecoder? headline = null;
        try
        {
            rows.Add(RunDelta(model, DeltaPolicy.AllFull(model.Config.Layers, config.PageSize, 1, 1), batch, FullName, int.MaxValue, false, out var fullDec));
            fullDec.Dispose();
            progress?.Report(rows[^1].ToString());
            foreach (int k in config.BudgetPages)
            {
                long tokens = (long)k * config.PageSize;
                rows.Add(RunDelta(model, config.Policy(k), batch, DeltaName, k, k == config.HeadlineBudget, out var dec));
                if (k == config.HeadlineBudget) headline = dec; else dec.Dispose();
                progress?.Report(rows[^1].ToString());
                rows.Add(RunDelta(model, config.Policy(k), batch, PerLayerName, k, false, out var oracle, perLayer: true));
                oracle.Dispose();
                progress?.Report(rows[^1].ToString());
                rows.Add(RunQuest(model, config, k, batch));
                progress?.Report(rows[^1].ToString());
                rows.Add(RunEvicting(model, KvPolicy.SinkWindow(tokens - config.SinkTokens, config.SinkTokens), batch, StreamingName, k));
                progress?.Report(rows[^1].ToString());
                rows.Add(RunEvicting(model, KvPolicy.H2O(tokens / 2, tokens - tokens / 2), batch, H2OName, k));
                progress?.Report(rows[^1].ToString());
            }
            return DeltaResult.From(config, rows, headline!, model.Config.Layers);
        }
        finally { headline?.Dispose(); }
    }

    static DeltaRow RunDelta(TinyGpt model, DeltaPolicy policy, TokenBatch batch, string name, int budget, bool capture, out DeltaDecoder dec, bool perLayer = false)
    {
        using var scope = NewDisposeScope();
        dec = new DeltaDecoder(model, policy, batch.Count, perLayer: perLayer) { Capture = capture };
        var watch = Stopwatch.StartNew();
        var steps = new List<Tensor> { dec.Prefill(batch.Tokens.narrow(1, 0, 1)) };               // BOS: prefill
        for (long t = 1; t < batch.Length; t++) steps.Add(dec.Step(batch.Tokens.select(1, t)));
        watch.Stop();
        return Row(name, budget, batch, torch.stack(steps, 1), dec.Trace, watch.Elapsed, model.Config.Layers);
    }

    /// <summary>Quest-style per-layer selection from page key bounds (<see cref="QuestSelector"/>) on the sparse layers, the
    /// full layers as in DELTA; same page size and page budget.</summary>
    static DeltaRow RunQuest(TinyGpt model, Config config, int budget, TokenBatch batch)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = model.NewSelectiveState(batch.Count, layer => config.FullLayers.Contains(layer) ? new FullSelector() : new QuestSelector(config.PageSize, budget));
        var watch = Stopwatch.StartNew();
        var steps = new List<Tensor>();
        for (long t = 0; t < batch.Length; t++) steps.Add(model.Step(batch.Tokens.select(1, t), state));
        watch.Stop();
        var trace = state.Layers.SelectMany(l => ((CausalSelfAttention.SelectiveState)l).Cache.Trace).Where(s => s.Step > 0).ToList();
        return Row(QuestName, budget, batch, torch.stack(steps, 1), trace, watch.Elapsed, model.Config.Layers);
    }

    static DeltaRow RunEvicting(TinyGpt model, IKvPolicy policy, TokenBatch batch, string name, int budget)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = model.NewState(batch.Count, _ => policy);
        var watch = Stopwatch.StartNew();
        var steps = new List<Tensor>();
        for (long t = 0; t < batch.Length; t++) steps.Add(model.Step(batch.Tokens.select(1, t), state));
        watch.Stop();
        var trace = state.Layers.SelectMany(l => ((CausalSelfAttention.PolicyState)l).Cache.Trace).Where(s => s.Step > 0).ToList();   // decode steps, as DELTA
        return Row(name, budget, batch, torch.stack(steps, 1), trace, watch.Elapsed, model.Config.Layers);
    }

    static DeltaRow Row(string name, int budget, TokenBatch batch, Tensor logits, IReadOnlyList<DecodeStepStats> trace, TimeSpan elapsed, int layers)
    {
        double attended = trace.Sum(s => s.AttendedMean), full = trace.Sum(s => s.Step + 1.0);   // Σ attended vs Σ t (full attention)
        return new DeltaRow(name, budget, batch.Accuracy(logits), attended / trace.Count, attended / full,
            trace.Average(s => (double)s.KvBytesRead), trace.Average(s => (double)s.KvBytesHeld),
            elapsed.TotalMilliseconds / batch.Length);
    }
}
