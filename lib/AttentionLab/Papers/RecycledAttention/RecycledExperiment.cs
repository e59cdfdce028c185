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
/// the copy phase is decoded (teacher-forced) under full attention and Recycled Attention (K, S; and the dynamic τ
/// schedule), and under three baselines at <b>equal key budgets</b> — keys read per head and step, Recycled's full
/// steps counted in its budget: StreamingLLM (sink + window), H2O (heavy hitters + recent) and a per-step top-k oracle
/// (exact q·k, <see cref="QuestSelector"/> with pages of one token). Copying moves the attended source position by one
/// token per step, and the source lies 12–28 tokens back: outside a window of K = n/8, inside the recycled set only if
/// the last full step ranked it there. An exactness phase first checks the fast form against its naive twin and the
/// reduces-to-full identities.
/// </summary>
public sealed class RecycledExperiment : IPaperExperiment<RecycledExperiment.Config, RecycledResult>
{
    RecycledExperiment() { }

    /// <summary>P05 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(5, "Recycled Attention: efficient inference for long-context language models", "recycled-attention");

    /// <summary>The shipped checkpoint (data/models/manifest.json) and its model (lib/AttentionLab.Checkpoints InductionRecipe).</summary>
    public const string Checkpoint = "induction-2l-attn-only";

    /// <summary>The checkpoint's model: 2 attention-only layers, 4 heads of 16, RoPE base 100.</summary>
    public static TinyGptConfig ModelConfig =>
        new(Layers: 2, DModel: 64, Heads: 4, VocabSize: 16, Positions: PositionKind.Rope, RopeBase: 100, MaxLength: 64, Mlp: false);

    /// <summary>
    /// Copy task: [BOS] filler S gap S with |S| = 12, gap g ∈ [0, 16] and 16 − g filler tokens before the first copy, so
    /// the second copy always occupies positions 29–40 (n = 41) and the copy distance is 12 + g.
    /// </summary>
    public static InductionTask Task => new(VocabSize: 16, SegmentLength: 12, MaxGap: 16);

    /// <summary>Sizes of one run. Smoke fits a CPU notebook; Full sweeps more K and S over more queries.</summary>
    /// <param name="Queries">sequences decoded together.</param>
    /// <param name="TopKs">K values of Recycled Attention.</param>
    /// <param name="Strides">S values (a full step every S tokens).</param>
    /// <param name="SinkTokens">StreamingLLM's sink tokens (BOS).</param>
    /// <param name="Seed">data seed (the batch uses 10 000 + seed).</param>
    public sealed record Config(int Queries, int[] TopKs, int[] Strides, int SinkTokens, int Seed) : IPaperConfig<Config>
    {
        /// <summary>τ values of the dynamic schedule (a full step when cos(q̄_t, q̄_{t₀}) &lt; τ; no stride cap); empty: none.</summary>
        public double[] Taus { get; init; } = { 0.2, 0.5 };

        /// <summary>The stride of the claim (spec §6: S = 4).</summary>
        public int ClaimStride { get; init; } = 4;

        public static Config Smoke => new(Queries: 64, TopKs: new[] { 5, 10, 20 }, Strides: new[] { 2, 4 }, SinkTokens: 1, Seed: 0) { Size = "smoke" };
        public static Config Full => new(Queries: 1024, TopKs: new[] { 3, 5, 8, 10, 15, 20, 30 }, Strides: new[] { 1, 2, 4, 8, 16 }, SinkTokens: 1, Seed: 0)
        { Taus = new[] { 0.0, 0.2, 0.5, 0.8 }, Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>K = n/8 (n = 41 → 5): the budget of the claim check.</summary>
        public int ClaimK => Math.Max(1, Task.Length / 8);

        public Config Validate()
        {
            Guard.Positive(Queries, nameof(Queries));
            if (TopKs is null || TopKs.Length == 0 || TopKs.Any(k => k <= SinkTokens + 1))
                throw new ArgumentException($"TopKs must be non-empty and each > SinkTokens + 1 = {SinkTokens + 1}.", nameof(TopKs));
            if (!TopKs.Contains(ClaimK)) throw new ArgumentException($"TopKs must contain the claim's K = n/8 = {ClaimK}.", nameof(TopKs));
            if (Strides is null || Strides.Length == 0 || Strides.Any(s => s <= 0))
                throw new ArgumentException("Strides must be non-empty and positive.", nameof(Strides));
            if (!Strides.Contains(ClaimStride)) throw new ArgumentException($"Strides must contain the claim's S = {ClaimStride}.", nameof(Strides));
            if (Taus is null || Taus.Any(t => !(t >= -1 && t <= 1)))
                throw new ArgumentException("Taus must be a list of values in [−1, 1] (possibly empty).", nameof(Taus));
            if (SinkTokens < 0) throw new ArgumentException($"SinkTokens must be ≥ 0, got {SinkTokens}.", nameof(SinkTokens));
            return this;
        }
    }

    /// <summary>Policy names of the rows.</summary>
    public const string FullName = "full", Recycled = "recycled", RecycledDynamic = "recycled-tau", StreamingName = "streamingllm", H2OName = "h2o",
        OracleName = "topk-oracle";

    /// <summary>The prompt: tokens 0 … 29 (through the first token of the second copy) are prefill, all full steps.</summary>
    public static int Prefill => Task.SecondCopyStart + Task.MaxGap + 1;

    /// <summary>
    /// The baselines' key budgets: every K, and every fixed-stride Recycled row's mean keys per step rounded up (its full
    /// steps included), so each Recycled row has baselines at its own budget (rounding gives them the benefit).
    /// </summary>
    public static int[] BaselineBudgets(Config config, IEnumerable<PolicyRow> recycledRows) =>
        config.TopKs.Concat(recycledRows.Where(r => r.Policy == Recycled).Select(r => EqualBudget(r.AttendedMean))).Distinct().Order().ToArray();

    /// <summary>Keys per step a baseline gets against a Recycled row reading <paramref name="meanKeys"/> on average: ⌈mean⌉.</summary>
    public static int EqualBudget(double meanKeys) => (int)Math.Ceiling(meanKeys - 1e-9);

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
        var exactness = Exactness(model, batch, device, config.Seed);
        progress?.Report($"exactness: naive twin {exactness.NaiveTwin.MaxAbs:E1}, K ≥ n vs dense decode {exactness.FullBudgetMaxAbs:E1}, " +
            $"S = 1 vs dense decode {exactness.StrideOneMaxAbs:E1}");
        var rows = new List<PolicyRow> { Decode(model, batch, FullName, 0, 0, b => model.NewSelectiveState(b, _ => new FullSelector())) };
        progress?.Report($"full: accuracy {rows[0].TokenAccuracy:P0}, {rows[0].AttendedMean:F1} keys per step");
        foreach (int k in config.TopKs)
        {
            foreach (int s in config.Strides)
                rows.Add(Decode(model, batch, Recycled, k, s, b => model.NewSelectiveState(b, _ => new RecycledAttentionPolicy(k, s, Prefill))));
            foreach (double tau in config.Taus)
                rows.Add(Decode(model, batch, RecycledDynamic, k, 0,
                    b => model.NewSelectiveState(b, _ => new RecycledAttentionPolicy(k, int.MaxValue, Prefill, tau)), tau));
            foreach (var r in rows.Skip(rows.Count - config.Strides.Length - config.Taus.Length))
                progress?.Report($"{r.Name}: accuracy {r.TokenAccuracy:P0}, {r.AttendedMean:F1} keys per step");
        }
        foreach (int budget in BaselineBudgets(config, rows))
        {
            int heavy = budget / 2;
            rows.Add(Decode(model, batch, StreamingName, budget, 0,
                b => model.NewState(b, _ => KvPolicy.SinkWindow(budget - config.SinkTokens, config.SinkTokens))));
            rows.Add(Decode(model, batch, H2OName, budget, 0, b => model.NewState(b, _ => KvPolicy.H2O(heavy, budget - heavy))));
            rows.Add(Decode(model, batch, OracleName, budget, 0, b => model.NewSelectiveState(b, _ => new QuestSelector(pageSize: 1, budgetPages: budget))));
            foreach (var r in rows.TakeLast(3)) progress?.Report($"{r.Name}: accuracy {r.TokenAccuracy:P0}, {r.AttendedMean:F1} keys per step");
        }
        var probe = RecycledProbe.Measure(model, batch, Prefill, config.ClaimK, config.Strides.Max(), config.SinkTokens);
        return new RecycledResult(config, exactness, rows, probe, Task.Length, clock.Elapsed);
    }

    /// <summary>
    /// The exactness phase. (1) The fast form (<see cref="RecycledDecode.Layer"/>: a <see cref="SelectiveKvCache"/> step by
    /// step) against the naive twin (<see cref="RecycledAttentionNaive.Decode"/>, float64 loops) on toy tensors: one
    /// sequence of 23 tokens, 4 query heads sharing 2 KV heads, D = 5, K = 4, S = 5, prefill 8; the same run checks every
    /// step's set size |J| = min(K, t₀+1) + (t − t₀) (t + 1 on full steps), unique and causal. (2) On the checkpoint, 4
    /// sequences: K ≥ n and S = 1 decode (selective path, float32) against the dense KV-cache decode (spec §6: "equal to full
    /// decode").
    /// </summary>
    public static RecycledExactness Exactness(TinyGpt model, TokenBatch batch, Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        using var scope = NewDisposeScope();
        const int T = 23, K = 4, S = 5, P = 8;
        var gen = new Generator((ulong)seed);
        var q = torch.randn(1, T, 4, 5, dtype: float64, generator: gen).to(device);
        var k = torch.randn(1, T, 2, 5, dtype: float64, generator: gen).to(device);
        var v = torch.randn(1, T, 2, 5, dtype: float64, generator: gen).to(device);
        var (fast, attended, trace) = RecycledDecode.Layer(q, k, v, K, S, P);
        var naive = ErrorStats.Of(fast, RecycledAttentionNaive.Decode(q, k, v, K, S, P));
        int sizeErrors = 0;
        long t0 = -1;
        var rowSums = attended.sum(-1).to(ScalarType.Int64).cpu().data<long>().ToArray();                  // [1, Hkv, T] row sums
        bool causal = attended.triu(1).abs().sum().item<double>() == 0;
        for (int t = 0; t < T; t++)
        {
            bool full = t0 < 0 || t < P || t - t0 >= S;
            long expected = full ? t + 1 : Math.Min(K, t0 + 1) + (t - t0);                                  // |J| = min(K, t₀+1) + (t − t₀)
            if (full) t0 = t;
            if (trace[t].AttendedTokens.Any(a => a != expected)) sizeErrors++;
            for (int c = 0; c < 2; c++) if (rowSums[c * T + t] != expected) sizeErrors++;                   // duplicates would collapse in the mask
        }
        if (!causal) sizeErrors++;

        var ids = batch.Tokens.narrow(0, 0, Math.Min(4, batch.Count));
        long n = ids.shape[1];
        var dense = DecodeLogits(model, ids, b => model.NewState(b));                                        // the dense KV-cache decode
        var bigK = DecodeLogits(model, ids, b => model.NewSelectiveState(b, _ => new RecycledAttentionPolicy((int)n, 4)));   // K ≥ n: every key recycled
        var strideOne = DecodeLogits(model, ids, b => model.NewSelectiveState(b, _ => new RecycledAttentionPolicy(2, 1)));   // S = 1: every step full
        return new RecycledExactness(naive, ErrorStats.Of(bigK, dense).MaxAbs, ErrorStats.Of(strideOne, dense).MaxAbs, T, sizeErrors);
    }

    /// <summary>Logits [B, T, V] of a token-by-token decode of <paramref name="ids"/> with the state <paramref name="newState"/> makes.</summary>
    static Tensor DecodeLogits(TinyGpt model, Tensor ids, Func<long, TinyGptState> newState)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = newState(ids.shape[0]);
        var steps = new List<Tensor>();
        for (long t = 0; t < ids.shape[1]; t++) steps.Add(model.Step(ids.select(1, t), state));
        return torch.stack(steps, 1).MoveToOuterDisposeScope();
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
        double attended = traces.Average(x => x.AttendedMean);                                          // keys per head and step, mean over layers
        double bytesRead = traces.Sum(x => (double)x.KvBytesRead) / (n - Prefill) / b;                  // Σ layers, per sequence
        double fullFraction = policy switch
        {
            FullName => 1,
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
