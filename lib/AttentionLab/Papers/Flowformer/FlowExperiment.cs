using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>The implied attention of one mechanism on the notebook's random q, k: the matrix [n, n] and its mean row entropy (nats).</summary>
public sealed record AttentionMap(string Mechanism, double[][] Weights, double MeanRowEntropy);

/// <summary>
/// One trained ListOps-lite model: accuracy at the <c>=</c> position, the loss curve, ms per training step, parameters, and
/// the mean row entropy (nats) of its implied attention on the probe sequences before and after training (per layer after).
/// </summary>
public sealed record ListOpsRun(FlowMixerKind Mechanism, bool Causal, int Seed, double Accuracy, IReadOnlyList<double> Losses, double MsPerStep, long Params,
    double EntropyAtInit, double EntropyTrained, double[] LayerEntropy);

/// <summary>
/// The notebook's experiment: (a) an exactness phase (fast forms vs the naive twin — outputs and gradients —, streaming vs
/// the causal forward, the flows' identities, causality and permutation symmetry) on toy tensors; (b) softmax, plain
/// σ-linear and Flow-Attention materialised on the same random q, k; (c) encoders (TinyGpt blocks with non-causal mixers,
/// the variant the paper trains on LRA) with each mechanism trained on ListOps-lite at equal budget — accuracy, and the
/// row entropy of their attention before and after training; (d) forward + backward time and memory vs T.
/// </summary>
public sealed class FlowExperiment : IPaperExperiment<FlowExperiment.Config, FlowResult>
{
    FlowExperiment() { }

    /// <summary>P19 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(19, "Flowformer: linearizing Transformers with conservation flows", "flowformer");

    /// <summary>
    /// Sizes of one run. Smoke fits a CPU notebook (≈ 30 s on one thread: 300 steps per encoder, the reference softmax timed
    /// to T = 1024 — its forward + backward at 2048 alone takes ≈ 3 s); Full is for a GPU. Every mechanism trains with the same steps, batches
    /// (same rows in the same order), width, depth and seed. <c>Causal</c> = false (default): encoders, as the paper's LRA
    /// runs; true: causal decoders read at <c>=</c>. <c>ProbeCount</c> test sequences measure the attention entropies.
    /// </summary>
    public sealed record Config(int MapLength, int MapDim, ListOpsLite Task, int Layers, int DModel, int Heads, int Steps, int BatchSize,
        double LearningRate, int TestCount, int ProbeCount, int[] Seeds, int[] SpeedLengths, int SpeedHeads, int SpeedDim, int SpeedRepeats,
        int MaxReferenceLength, int Seed, bool Causal = false) : IPaperConfig<Config>
    {
        public static Config Smoke => new(64, 16, new ListOpsLite(MaxLength: 48, MaxDepth: 3, MaxArgs: 4), Layers: 2, DModel: 64, Heads: 4,
            Steps: 300, BatchSize: 32, LearningRate: 3e-3, TestCount: 512, ProbeCount: 64, Seeds: new[] { 0 },
            SpeedLengths: new[] { 256, 512, 1024, 2048 }, SpeedHeads: 4, SpeedDim: 32, SpeedRepeats: 1, MaxReferenceLength: 1024, Seed: 0) { Size = "smoke" };

        public static Config Full =>
            new(256, 16, new ListOpsLite(MaxLength: 1024, MaxDepth: 6, MaxArgs: 6, LeafProbability: 0.5), Layers: 4, DModel: 128, Heads: 4,
            Steps: 5000, BatchSize: 32, LearningRate: 1e-3, TestCount: 2000, ProbeCount: 64, Seeds: new[] { 0, 1, 2 },
            SpeedLengths: new[] { 256, 512, 1024, 2048, 4096, 8192, 16384, 32768 }, SpeedHeads: 4, SpeedDim: 64, SpeedRepeats: 3, MaxReferenceLength: 16384,
            Seed: 0) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; "custom" once you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;
    }

    /// <summary>The mechanisms compared, in plot order.</summary>
    public static IReadOnlyList<FlowMixerKind> Mechanisms { get; } = new[] { FlowMixerKind.Softmax, FlowMixerKind.Linear, FlowMixerKind.Flow };

    /// <summary>Runs everything on <paramref name="device"/>, one progress line per phase and per training report.</summary>
    public static FlowResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        void Lap(string phase) => clock.Lap(phase);

        progress?.Report("exactness: fast forms vs the naive twin (outputs, gradients), streaming, identities");
        var exactness = Exactness(config.Seed);
        Lap("exactness");
        progress?.Report($"maps: softmax, linear, flow on random q, k (n = {config.MapLength}, d = {config.MapDim})");
        var (maps, competition, allocation) = Maps(config.MapLength, config.MapDim, config.Seed);
        Lap("maps");
        var runs = new List<ListOpsRun>();
        double majority = double.NaN;
        foreach (int seed in config.Seeds)
        {
            if (seed == config.Seeds[0]) majority = MajorityAccuracy(config, seed);
            foreach (var kind in Mechanisms)
                runs.Add(TrainListOps(kind, config, seed, device, progress));
        }
        Lap("listops");
        progress?.Report($"speed (forward + backward): T = {string.Join(", ", config.SpeedLengths)}");
        var speed = FlowBenchmark.Speed(config.SpeedLengths, heads: config.SpeedHeads, headDim: config.SpeedDim, repeats: config.SpeedRepeats,
            maxReferenceLength: config.MaxReferenceLength, measureMemory: true, device: device, backward: true);
        Lap("speed");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new FlowResult(config, exactness, maps, competition, allocation, runs, majority, speed, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// Softmax (scale 1/√d), plain σ-linear (normalised) and normal Flow-Attention weights on one head of random q, k
    /// [1, n, 1, d] (float64, seed): the matrices, mean row entropies, and Flow's competition C [m] and allocation A [n].
    /// </summary>
    public static (IReadOnlyList<AttentionMap> Maps, double[] Competition, double[] Allocation) Maps(int n, int d, int seed)
    {
        Guard.Positive(n, nameof(n)); Guard.Positive(d, nameof(d));
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        var q = torch.randn(new long[] { 1, n, 1, d }, dtype: ScalarType.Float64);
        var k = torch.randn(new long[] { 1, n, 1, d }, dtype: ScalarType.Float64);
        Tensor softmax;
        using (var r = ReferenceAttention.Softmax(q, k, k)) softmax = r.Probabilities[0, 0].alias();
        var fq = torch.sigmoid(q[0, .., 0]); var fk = torch.sigmoid(k[0, .., 0]);
        var kernel = fq.matmul(fk.t());                                                  // φq_i·φk_j
        var linear = kernel / kernel.sum(-1, keepdim: true);                             // plain linear, normalised
        var flow = FlowAttention.Materialize(q, k, causal: false)[0, 0];
        using var w = FlowWeights.Compute(q, k, causal: false);
        var maps = new[] { ("softmax", softmax), ("linear (σ)", linear), ("flow", flow) }
            .Select(m => new AttentionMap(m.Item1, Rows(m.Item2), MeanRowEntropy(m.Item2))).ToList();
        return (maps, w.Competition[0, 0].data<double>().ToArray(), w.Allocation[0, 0].data<double>().ToArray());
    }

    /// <summary>
    /// Mean over rows of −Σ_j p_ij log p_ij with p = |W| row-normalised (nats; ln m for uniform rows). <paramref name="rowMask"/>
    /// (boolean, broadcastable to W's shape without its last axis) keeps only the rows it marks true.
    /// </summary>
    public static double MeanRowEntropy(Tensor weights, Tensor? rowMask = null)
    {
        Guard.NotNull(weights, nameof(weights));
        using var scope = NewDisposeScope();
        var p = weights.abs().to(ScalarType.Float64);
        p = p / p.sum(-1, keepdim: true);
        var h = -(p * p.clamp_min(1e-300).log()).sum(-1);                                // [..., n]
        if (rowMask is null) return h.mean().item<double>();
        var mask = rowMask.to(ScalarType.Float64, h.device).expand_as(h);
        return ((h * mask).sum() / mask.sum()).item<double>();
    }

    /// <summary>
    /// The mean row entropy of every layer's implied attention (<see cref="IAttentionPattern"/>) of <paramref name="net"/> on
    /// <paramref name="tokens"/> [B, T], counting the query rows where <paramref name="rowMask"/> [B, T] is true: the mixer of
    /// each block sees LN₁ of the residual stream that the blocks before it produced. Runs <paramref name="chunk"/> sequences
    /// at a time (the patterns are [chunk, H, T, T]).
    /// </summary>
    public static double[] LayerEntropies(TinyGpt net, Tensor tokens, Tensor rowMask, int chunk = 8)
    {
        ArgumentNullException.ThrowIfNull(net);
        Guard.Rank(tokens, 2, nameof(tokens), "B, T");
        Guard.Positive(chunk, nameof(chunk));
        if (!rowMask.shape.SequenceEqual(tokens.shape))
            throw new ArgumentException($"rowMask {Guard.ShapeText(rowMask)} must have the shape of tokens {Guard.ShapeText(tokens)}.", nameof(rowMask));
        int layers = net.Blocks.Count;
        for (int layer = 0; layer < layers; layer++)
            if (net.Blocks[layer].Mixer is not IAttentionPattern)
                throw new ArgumentException(
                    $"block {layer}'s mixer {net.Blocks[layer].Mixer.GetType().Name} does not show its attention (IAttentionPattern).", nameof(net));
        var sums = new double[layers];
        double rows = 0;
        using var noGrad = torch.no_grad();
        for (long from = 0; from < tokens.shape[0]; from += chunk)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(chunk, tokens.shape[0] - from);
            var mask = rowMask.narrow(0, from, n).unsqueeze(1);                          // query rows [n, 1, T]
            var h = net.Embedded(tokens.narrow(0, from, n), start: 0);
            for (int layer = 0; layer < layers; layer++)
            {
                var block = net.Blocks[layer];
                var pattern = ((IAttentionPattern)block.Mixer).Pattern(block.Norm1.call(h));   // [n, H, T, T]
                double count = mask.to(ScalarType.Float64).sum().item<double>() * pattern.shape[1];
                if (count > 0) sums[layer] += MeanRowEntropy(pattern, mask) * count;   // back to a sum over the counted rows
                if (layer == 0) rows += count;
                h = block.call(h);
            }
        }
        return sums.Select(s => s / rows).ToArray();
    }

    /// <summary>
    /// The exactness phase on toy float64 tensors (seeded): fast normal and causal forms (every engine form, chunk 4) and
    /// the materialised matrix against <see cref="FlowAttentionNaive"/> on awkward shapes (n ≠ m, odd D, T = 1, T = 13);
    /// gradients to q, k, v against the naive twin's; a causal <see cref="FlowSelfAttention"/> stepped token by token
    /// against its forward (T = 70, across the 64-token chunk); Σ_j C_j = m, A ∈ (0, 1), |Ô| ≤ 1 and the rows of
    /// (φQ/I)φKᵀ summing to ≈ 1; causality; query-permutation equivariance and (k, v)-permutation invariance.
    /// </summary>
    public static FlowExactness Exactness(int seed)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        var checks = new List<FlowCheck>();
        const double Tol = 1e-10;
        Tensor R(long b, long t, long h, long d, double spread = 1) => torch.randn(new[] { b, t, h, d }, dtype: ScalarType.Float64) * spread;
        double Diff(Tensor a, Tensor b) => (a - b).abs().max().item<double>();
        void Add(string group, string name, double value, double tolerance) => checks.Add(new FlowCheck(group, name, value, tolerance));

        // outputs: normal (n ≠ m, odd D) and causal (every form, T = 1 and odd T) vs the naive twin; Materialize
        var (q, k, v) = (R(2, 7, 2, 5, 2), R(2, 11, 2, 5, 2), R(2, 11, 2, 3));
        var naive = FlowAttentionNaive.Attend(q, k, v, causal: false);
        Add(NormalGroup, "normal n=7 m=11 D=5", Diff(FlowAttention.Attend(q, k, v, causal: false), naive), Tol);
        Add(NormalGroup, "normal Materialize·V", Diff(FlowAttention.Materialize(q, k, causal: false).matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3), naive),
            Tol);
        foreach (int t in new[] { 1, 13 })
        {
            var (qc, kc, vc) = (R(1, t, 2, 5, 2), R(1, t, 2, 5, 2), R(1, t, 2, 3));
            var naiveC = FlowAttentionNaive.Attend(qc, kc, vc, causal: true);
            foreach (var form in new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked })
                Add(CausalGroup, $"causal T={t} {form}", Diff(FlowAttention.Attend(qc, kc, vc, causal: true, form: form, chunkSize: 4), naiveC), Tol);
            Add(CausalGroup, $"causal T={t} Materialize",
                Diff(FlowAttention.Materialize(qc, kc, causal: true), FlowAttentionNaive.Weights(qc, kc, causal: true)), Tol);
        }

        // gradients of Σ R ⊙ g to q, k, v: fast forms vs the naive twin
        foreach (var (causal, t) in new[] { (true, 11), (false, 7) })
        {
            var (q0, k0, v0, g) = (R(2, t, 2, 5), R(2, t + (causal ? 0 : 2), 2, 5), R(2, t + (causal ? 0 : 2), 2, 3), R(2, t, 2, 3));
            Tensor[] Grads(Func<Tensor, Tensor, Tensor, Tensor> f)
            {
                var (qg, kg, vg) = (q0.clone().requires_grad_(), k0.clone().requires_grad_(), v0.clone().requires_grad_());
                (f(qg, kg, vg) * g).sum().backward();
                return new[] { qg.grad!, kg.grad!, vg.grad! };
            }
            var expected = Grads((a, b, c) => FlowAttentionNaive.Attend(a, b, c, causal));
            var forms = causal ? new[] { LinearForm.Chunked, LinearForm.Parallel, LinearForm.Recurrent } : new[] { LinearForm.Chunked };
            foreach (var form in forms)
            {
                var got = Grads((a, b, c) => FlowAttention.Attend(a, b, c, causal, form: form, chunkSize: 4));
                Add(GradientGroup, causal ? $"causal T={t} {form} ∂q,∂k,∂v" : $"normal n={t} m={t + 2} ∂q,∂k,∂v",
                    Enumerable.Range(0, 3).Max(i => Diff(got[i], expected[i])), Tol);
            }
        }

        // streaming: a causal FlowSelfAttention token by token reproduces its forward
        using (var mixer = new FlowSelfAttention(12, 3, causal: true))
        using (torch.no_grad())
        {
            mixer.to(ScalarType.Float64).eval();
            var x = torch.randn(new long[] { 2, 70, 12 }, dtype: ScalarType.Float64);
            var full = mixer.call(x);
            using var state = mixer.NewState(2, ScalarType.Float64, x.device);
            var streamed = torch.stack(Enumerable.Range(0, 70).Select(i => mixer.Step(x.select(1, i), state)).ToArray(), 1);
            Add(StreamGroup, "Step × 70 vs causal forward (d 12, 3 heads)", Diff(streamed, full), Tol);
        }

        // identities of the flows (normal n = 10, m = 14; causal T = 10)
        var (qi, ki) = (R(2, 10, 3, 6, 3), R(2, 14, 3, 6, 3));
        using (var w = FlowWeights.Compute(qi, ki, causal: false))
        {
            Add(InvariantGroup, "|Σ_j C_j − m| (normal)", (w.Competition.sum(-1) - 14.0).abs().max().item<double>(), 1e-10);
            Add(InvariantGroup, "A outside (0, 1) (normal)", OutsideOpenUnit(w.Allocation), 0);
            Add(InvariantGroup, "|Ô| beyond 1 (clamp)", (w.ConservedSource.abs() - 1).clamp_min(0).max().item<double>(), 0);
            var rows = w.ScaledQueries().matmul(w.PhiK.transpose(-2, -1)).sum(-1);        // rows of (φQ/I)φKᵀ
            Add(InvariantGroup, "|row sum of (φQ/I)φKᵀ − 1|", (rows - 1).abs().max().item<double>(), 1e-4);
        }
        using (var c = FlowWeights.Compute(qi.narrow(1, 0, 10), ki.narrow(1, 0, 10), causal: true))
        {
            var count = torch.arange(1, 11, dtype: ScalarType.Float64);
            var e = c.ConservedSource.exp();
            Add(InvariantGroup, "causal C_j/(j+1) − softmax over j′ ≤ j", Diff(e / e.cumsum(-1), c.Competition / count), 1e-12);
            Add(InvariantGroup, "A outside (0, 1) (causal)", OutsideOpenUnit(c.Allocation), 0);
        }

        // causality: changing the last 4 tokens leaves the first 8 outputs; permutations (normal)
        var (qs, ks, vs) = (R(1, 12, 2, 4), R(1, 12, 2, 4), R(1, 12, 2, 3));
        var o = FlowAttention.Attend(qs, ks, vs, causal: true);
        var (q2, k2, v2) = (qs.clone(), ks.clone(), vs.clone());
        foreach (var x in new[] { q2, k2, v2 }) x.narrow(1, 8, 4).add_(torch.randn(new long[] { 1, 4, 2, x.shape[3] }, dtype: ScalarType.Float64) * 3);
        var o2 = FlowAttention.Attend(q2, k2, v2, causal: true);
        Add(SymmetryGroup, "causal: prefix change when the future changes", Diff(o2.narrow(1, 0, 8), o.narrow(1, 0, 8)), 1e-12);
        Add(SymmetryGroup, "causal: materialised weights above the diagonal",
            FlowAttention.Materialize(qs, ks, causal: true).triu(1).abs().max().item<double>(), 0);
        var (qp, kp, vp) = (R(1, 9, 2, 4), R(1, 12, 2, 4), R(1, 12, 2, 3));
        var op = FlowAttention.Attend(qp, kp, vp, causal: false);
        var pq = torch.randperm(9); var pk = torch.randperm(12);
        Add(SymmetryGroup, "normal: query permutation (equivariant)",
            Diff(FlowAttention.Attend(qp.index_select(1, pq), kp, vp, causal: false), op.index_select(1, pq)), 1e-12);
        Add(SymmetryGroup, "normal: joint (k, v) permutation (invariant)",
            Diff(FlowAttention.Attend(qp, kp.index_select(1, pk), vp.index_select(1, pk), causal: false), op), 1e-12);
        return new FlowExactness(checks);
    }

    /// <summary>Exactness groups (one claim each).</summary>
    public const string NormalGroup = "normal-equals-naive", CausalGroup = "causal-equals-naive", GradientGroup = "gradients-equal-naive",
        StreamGroup = "stream-equals-forward", InvariantGroup = "flow-identities", SymmetryGroup = "causality-and-permutation";

    /// <summary>How far x lies outside the open interval (0, 1): 0 inside, else the largest distance (NaN stays NaN).</summary>
    static double OutsideOpenUnit(Tensor x)
    {
        double lo = x.min().item<double>(), hi = x.max().item<double>();
        if (double.IsNaN(lo) || double.IsNaN(hi)) return double.NaN;
        return lo > 0 && hi < 1 ? 0 : Math.Max(Math.Max(-lo, hi - 1), double.Epsilon);
    }

    /// <summary>Share of test labels equal to the most frequent training label (at the <c>=</c> positions): the label prior.</summary>
    public static double MajorityAccuracy(Config c, int seed)
    {
        ArgumentNullException.ThrowIfNull(c);
        using var scope = NewDisposeScope();
        using var train = c.Task.Generate(c.Steps * c.BatchSize, 1000 + seed);
        using var test = c.Task.Generate(c.TestCount, 2000 + seed);
        var trainLabels = train.Labels.masked_select(train.Labels.ne(TokenBatch.Ignore));
        long majority = trainLabels.bincount(null, 10).argmax().item<long>();
        var testLabels = test.Labels.masked_select(test.Labels.ne(TokenBatch.Ignore));
        return testLabels.eq(majority).to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>
    /// Trains a TinyGpt backbone with <paramref name="kind"/> mixers (encoder unless <see cref="Config.Causal"/>) on
    /// ListOps-lite batches: the same rows in the same order for every mechanism, seed <paramref name="seed"/>. Accuracy at
    /// <c>=</c> on a held-out draw; row entropies of the attention on the first <see cref="Config.ProbeCount"/> test rows
    /// (query rows up to and including <c>=</c>) before and after training.
    /// </summary>
    public static ListOpsRun TrainListOps(FlowMixerKind kind, Config c, int seed, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        using var scope = NewDisposeScope();
        using var train = c.Task.Generate(c.Steps * c.BatchSize, 1000 + seed, device);
        using var test = c.Task.Generate(c.TestCount, 2000 + seed, device);
        var config = new TinyGptConfig(Layers: c.Layers, DModel: c.DModel, Heads: c.Heads, VocabSize: c.Task.VocabSize,
            Positions: PositionKind.Learned, MaxLength: c.Task.MaxLength);
        torch.manual_seed(seed);
        using var net = new TinyGpt(config, FlowMixers.Factory(kind, c.DModel, c.Heads, c.Causal)).to(device);
        var probe = test.Tokens.narrow(0, 0, Math.Min(c.ProbeCount, c.TestCount));
        var probeRows = probe.ne(ListOpsLite.Pad);                                       // the expression and its '='
        double entropyInit = LayerEntropies(net, probe, probeRows).Average();
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: Math.Max(1, c.Steps / 2));
        string name = $"{kind} {(c.Causal ? "decoder" : "encoder")} (seed {seed})";
        progress?.Report($"training {name}: {net.ParameterCount:N0} parameters");
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)c.BatchSize, (step + 1L) * c.BatchSize, device: device);
            var labels = train.Labels.index_select(0, rows);
            var logits = net.call(train.Tokens.index_select(0, rows));
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), labels.reshape(-1), ignore_index: TokenBatch.Ignore);
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {name}: {p}")));
        net.eval();
        double accuracy;
        using (torch.no_grad()) accuracy = test.Accuracy(net.call(test.Tokens));
        var layers = LayerEntropies(net, probe, probeRows);
        double msPerStep = history.Elapsed.TotalMilliseconds / Math.Max(1, history.Losses.Count);
        progress?.Report($"  {name}: accuracy {accuracy:P1}, row entropy {entropyInit:F3} → {layers.Average():F3} nats, {msPerStep:F0} ms/step");
        return new ListOpsRun(kind, c.Causal, seed, accuracy, history.Losses, msPerStep, net.ParameterCount, entropyInit, layers.Average(), layers);
    }

    static double[][] Rows(Tensor m)
    {
        var x = m.to(ScalarType.Float64).contiguous();
        return Enumerable.Range(0, (int)x.shape[0]).Select(i => x[i].data<double>().ToArray()).ToArray();
    }
}
