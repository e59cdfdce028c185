using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>
/// The notebook's experiment (P05 §4, training-free): the shipped induction checkpoint (2-layer attention-only TinyGpt,
/// RoPE) copies the second half of a repeated random segment. The prompt ends at the first token of the second copy;
/// the copy phase is decoded (teacher-forced) under full attention, Recycled Attention (K, S), StreamingLLM
/// (sink + window of K) and H2O (K/2 heavy + K/2 recent). Copying moves the attended source position by one token per
/// step, and the source lies 12–28 tokens back: outside a window of K = n/8, inside the recycled set only if the last
/// full step ranked it there.
/// </summary>
public static class RecycledExperiment
{
    /// <summary>The shipped checkpoint (data/models/manifest.json) and its model (lib/AttentionLab.Checkpoints InductionRecipe).</summary>
    public const string Checkpoint = "induction-2l-attn-only";

    /// <summary>The checkpoint's model: 2 attention-only layers, 4 heads of 16, RoPE base 100.</summary>
    public static TinyGptConfig ModelConfig => new(Layers: 2, DModel: 64, Heads: 4, VocabSize: 16, Positions: PositionKind.Rope, RopeBase: 100, MaxLength: 64, Mlp: false);

    /// <summary>
    /// Copy task: [BOS] filler S gap S with |S| = 12, gap g ∈ [0, 16] and 16 − g filler tokens before the first copy, so
    /// the second copy always occupies positions 29–40 (n = 41) and the copy distance is 12 + g.
    /// </summary>
    public static InductionTask Task => new(VocabSize: 16, SegmentLength: 12, MaxGap: 16);

    /// <summary>Sizes of one run. Smoke fits a CPU notebook; Full sweeps more K and S over more queries.</summary>
    public sealed record Config(int Queries, int[] TopKs, int[] Strides, int SinkTokens, int Seed)
    {
        /// <summary>τ values of the dynamic schedule (a full step when cos(q̄_t, q̄_{t₀}) &lt; τ; no stride cap); empty: none.</summary>
        public double[] Taus { get; init; } = { 0.2, 0.5 };

        public static Config Smoke => new(Queries: 64, TopKs: new[] { 5, 10, 20 }, Strides: new[] { 2, 4 }, SinkTokens: 1, Seed: 0);
        public static Config Full => new(Queries: 1024, TopKs: new[] { 3, 5, 8, 10, 15, 20, 30 }, Strides: new[] { 1, 2, 4, 8, 16 }, SinkTokens: 1, Seed: 0) { Taus = new[] { 0.0, 0.2, 0.5, 0.8 } };
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>K = n/8 (n = 41 → 5): the budget of the claim check.</summary>
        public int ClaimK => Math.Max(1, Task.Length / 8);

        public Config Validate()
        {
            Guard.Positive(Queries, nameof(Queries));
            if (TopKs is null || TopKs.Length == 0 || TopKs.Any(k => k <= SinkTokens + 1)) throw new ArgumentException($"TopKs must be non-empty and each > SinkTokens + 1 = {SinkTokens + 1}.", nameof(TopKs));
            if (Strides is null || Strides.Length == 0 || Strides.Any(s => s <= 0)) throw new ArgumentException("Strides must be non-empty and positive.", nameof(Strides));
            if (Taus is null || Taus.Any(t => !(t >= -1 && t <= 1))) throw new ArgumentException("Taus must be a list of values in [−1, 1] (possibly empty).", nameof(Taus));
            if (SinkTokens < 0) throw new ArgumentException($"SinkTokens must be ≥ 0, got {SinkTokens}.", nameof(SinkTokens));
            return this;
        }
    }

    /// <summary>Policy names of the rows: fixed stride, dynamic τ schedule.</summary>
    public const string Recycled = "recycled", RecycledDynamic = "recycled-tau";

    /// <summary>The prompt: tokens 0 … 29 (through the first token of the second copy) are prefill, all full steps.</summary>
    public static int Prefill => Task.SecondCopyStart + Task.MaxGap + 1;

    /// <summary>Loads the checkpoint and runs every policy; one progress line per policy.</summary>
    public static RecycledResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate();
        var clock = Stopwatch.StartNew();
        using var model = new TinyGpt(ModelConfig);
        CheckpointStore.Default().Load(model, Checkpoint);
        model.to(device).eval();
        using var batch = Task.Generate(config.Queries, seed: 10_000 + config.Seed, device: device);
        var rows = new List<PolicyRow> { Decode(model, batch, "full", 0, 0, b => model.NewSelectiveState(b, _ => new FullSelector())) };
        progress?.Report($"full: accuracy {rows[0].TokenAccuracy:P0}");
        foreach (int k in config.TopKs)
        {
            foreach (int s in config.Strides)
                rows.Add(Decode(model, batch, Recycled, k, s, b => model.NewSelectiveState(b, _ => new RecycledAttentionPolicy(k, s, Prefill))));
            foreach (double tau in config.Taus)
                rows.Add(Decode(model, batch, RecycledDynamic, k, 0, b => model.NewSelectiveState(b, _ => new RecycledAttentionPolicy(k, int.MaxValue, Prefill, tau)), tau));
            rows.Add(Decode(model, batch, "streamingllm", k, 0, b => model.NewState(b, _ => KvPolicy.SinkWindow(k - config.SinkTokens, config.SinkTokens))));
            rows.Add(Decode(model, batch, "h2o", k, 0, b => model.NewState(b, _ => KvPolicy.H2O(k / 2, k - k / 2))));
            foreach (var r in rows.Skip(rows.Count - config.Strides.Length - config.Taus.Length - 2)) progress?.Report($"{r.Name}: accuracy {r.TokenAccuracy:P0}, attended {r.AttendedMean:F1}");
        }
        var probe = RecycledProbe.Measure(model, batch, Prefill, config.ClaimK, config.Strides.Max(), config.SinkTokens);
        return new RecycledResult(config, rows, probe, Task.Length, clock.Elapsed);
    }

    /// <summary>Teacher-forced decode of <paramref name="batch"/> under one state kind; scores the copy phase (t ≥ prefill).</summary>
    static PolicyRow Decode(TinyGpt model, TokenBatch batch, string policy, int k, int s, Func<long, TinyGptState> newState, double tau = double.NaN)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        long b = batch.Count, n = batch.Length;
        using var state = newState(b);
        var predictions = new List<Tensor>();
        var clock = new Stopwatch();
        for (long t = 0; t < n; t++)
        {
            if (t >= Prefill) clock.Start();
            predictions.Add(model.Step(batch.Tokens.select(1, t), state).argmax(-1));
            clock.Stop();
        }
        var predicted = torch.stack(predictions, 1).narrow(1, Prefill, n - Prefill);                // [B, n − P]
        var labels = batch.Labels.narrow(1, Prefill, n - Prefill);
        var scored = labels.ne(TokenBatch.Ignore);
        var correct = predicted.eq(labels).logical_and(scored);
        double tokenAccuracy = correct.sum().item<long>() / (double)scored.sum().item<long>();
        double exact = correct.eq(scored).all(1).to(ScalarType.Float64).mean().item<double>();         // every copied token right
        var traces = state.Layers.SelectMany(Trace).Where(x => x.Step >= Prefill).ToList();
        double attended = traces.Average(x => x.AttendedMean);                                          // per layer and head
        double bytesRead = traces.Sum(x => (double)x.KvBytesRead) / (n - Prefill) / b;                  // Σ layers, per sequence
        double fullFraction = policy switch
        {
            "full" => 1,
            Recycled or RecycledDynamic => state.Layers.Average(l => l is CausalSelfAttention.SelectiveState { Cache.Selector: RecycledAttentionPolicy r }
                ? (r.FullSteps - Prefill) / (double)(n - Prefill) : double.NaN),                         // full steps after the prompt, mean over layers
            _ => 0,
        };
        double msPerToken = clock.Elapsed.TotalMilliseconds / (n - Prefill);
        return new PolicyRow(policy, k, s, tokenAccuracy, exact, attended, fullFraction, bytesRead, msPerToken, tau);
    }

    static IEnumerable<DecodeStepStats> Trace(MixerState layer) => layer switch
    {
        CausalSelfAttention.SelectiveState s => s.Cache.Trace,
        CausalSelfAttention.PolicyState p => p.Cache.Trace,
        _ => Array.Empty<DecodeStepStats>(),
    };
}
