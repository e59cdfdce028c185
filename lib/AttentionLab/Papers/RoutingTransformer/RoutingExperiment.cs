using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>The mixers of the long-gap recall comparison.</summary>
public enum RoutingVariant
{
    /// <summary>Every head block-local (block L).</summary>
    LocalOnly,
    /// <summary>Half the heads block-local, half routing (balanced, shared Q/K) — the paper's mix.</summary>
    LocalPlusRouting,
    /// <summary>Half block-local, half nearest-centroid routing (the causal-correct variant).</summary>
    LocalPlusNearest,
    /// <summary>Full causal softmax attention.</summary>
    Full,
}

/// <summary>One trained model: accuracy at the MQAR query positions, loss curve, ms per training step.</summary>
public sealed record RoutingRun(RoutingVariant Variant, double Accuracy, IReadOnlyList<double> Losses, double MsPerStep);

/// <summary>
/// The notebook's experiment: (a) the exactness phase on toy tensors (sparse forms vs their dense twins, the k-means update
/// and commitment loss vs their definitions, the self-token rule, the causality probe), (b) EMA k-means on a 2-D Gaussian
/// mixture, (c) long-gap MQAR (gaps ≫ the local block) for local-only, local + routing and full attention at equal budgets,
/// (d) the routing mask of one head of the trained model, (e) forward ms of the sparse layer vs T.
/// </summary>
public sealed class RoutingExperiment : IPaperExperiment<RoutingExperiment.Config, RoutingResult>
{
    RoutingExperiment() { }

    /// <summary>P28 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(28, "Routing Transformer", "routing-transformer");

    /// <summary>
    /// Sizes of one run. Every variant trains with the same model width, steps, batches and schedule. <see cref="LocalBlock"/>:
    /// block L of the local heads; <see cref="MinGain"/>: the accuracy margin of local + routing over local-only (spec §6:
    /// 20 points). Smoke: T = 64 with C·w = 32 &lt; T (a routed query sees a cluster window, not the sequence), 2 layers of
    /// half local, half routing heads, value-first pairs and token shift (see docs/decisions.md), ≈ 25 s on one CPU thread.
    /// Full: the spec's GPU size (n = 4k, C = w = 64).
    /// </summary>
    public sealed record Config(MqarTask Task, int DModel, int Heads, int Layers, int Clusters, int Window, int LocalBlock,
        int Steps, int BatchSize, double LearningRate, int TestCount, RoutingVariant[] Variants, KMeansDemo.Config KMeans,
        int[] SpeedLengths, int MaxReferenceLength, int Seed, double MinGain) : IPaperConfig<Config>
    {
        public static Config Smoke => new(new MqarTask(VocabSize: 32, Length: 64, Pairs: 4, PowerA: 1.0), DModel: 32, Heads: 4, Layers: 2,
            Clusters: 4, Window: 8, LocalBlock: 4, Steps: 300, BatchSize: 32, LearningRate: 1e-2, TestCount: 256,
            new[] { RoutingVariant.LocalOnly, RoutingVariant.LocalPlusRouting, RoutingVariant.LocalPlusNearest, RoutingVariant.Full }, new KMeansDemo.Config(),
            SpeedLengths: new[] { 256, 512, 1024, 2048 }, MaxReferenceLength: 1024, Seed: 0, MinGain: 0.2)
        { Size = "smoke", AssertGain = true, ValueFirst = true, ShiftTokens = true };

        public static Config Full => new(new MqarTask(VocabSize: 256, Length: 4096, Pairs: 32, PowerA: 1.0), DModel: 128, Heads: 8, Layers: 2,
            Clusters: 64, Window: 64, LocalBlock: 64, Steps: 2000, BatchSize: 16, LearningRate: 3e-3, TestCount: 256,
            new[] { RoutingVariant.LocalOnly, RoutingVariant.LocalPlusRouting, RoutingVariant.LocalPlusNearest, RoutingVariant.Full },
            new KMeansDemo.Config(), SpeedLengths: new[] { 1024, 2048, 4096, 8192, 16384 }, MaxReferenceLength: 8192, Seed: 0, MinGain: 0.2)
        { Size = "full", AssertGain = true, ValueFirst = true, ShiftTokens = true };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>Whether this size decides the routing-vs-local claim (the check cell throws when it does not hold).</summary>
        public bool AssertGain { get; init; }

        /// <summary>Context pairs written value first (v k instead of k v); the queries and labels are unchanged.</summary>
        public bool ValueFirst { get; init; }

        /// <summary>Every variant's mixers read token-shifted features (<see cref="TokenShift"/>).</summary>
        public bool ShiftTokens { get; init; }

        /// <summary>Position embeddings of the models (the official models add none: <c>add_timing_signal = False</c>).</summary>
        public PositionKind Positions { get; init; } = PositionKind.Learned;

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;
    }

    /// <summary>Runs everything, one progress line per phase and per training report.</summary>
    public static RoutingResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        progress?.Report("exactness: sparse forms vs dense twins, k-means update, self-token rule, causality");
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report("k-means demo: 4-component Gaussian mixture");
        var kmeans = KMeansDemo.Run(config.KMeans);
        clock.Lap("k-means demo");
        var runs = new List<RoutingRun>();
        RoutingMap? map = null;
        foreach (var variant in config.Variants)
        {
            progress?.Report($"MQAR: training {variant}");
            var (run, m) = Train(variant, config, device, progress);
            runs.Add(run);
            map ??= m;
            clock.Lap($"train {variant}");
        }
        progress?.Report("speed: forward ms of the sparse layer vs T");
        var speed = RoutingBenchmark.Speed(config.SpeedLengths, maxReferenceLength: config.MaxReferenceLength, device: device);
        clock.Lap("speed");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new RoutingResult(config, exactness, kmeans, runs, map, speed, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// The exactness phase on toy float64 tensors: the balanced and nearest sparse forms and the block-local form against
    /// their dense twins (outputs and input gradients; T = 37, 23, 19 — not multiples of w or L; 2–3 heads; shared Q/K with
    /// the self-token rule and separate Q/K; causal and not); C = 1, w = n against full causal attention; the self-token
    /// rule against attention over the other keys; the EMA update and the commitment loss against their formulas computed
    /// by loops; and the causality probe.
    /// </summary>
    public static RoutingExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64, generator: gen).to(device);
        static Tensor Affinity(Tensor x, Tensor mu) => x.permute(0, 2, 1, 3).matmul(mu.transpose(1, 2).unsqueeze(0));   // [B, H, T, C]

        double balanced = 0, nearest = 0, local = 0;
        var cases = new (int B, int T, int H, int D, int C, int W, int L, bool Shared, bool Causal)[]
        {
            (2, 37, 2, 6, 5, 6, 5, true, true), (1, 23, 3, 5, 4, 4, 6, false, true), (2, 19, 2, 3, 3, 5, 4, true, false),
        };
        foreach (var c in cases)
        {
            var q = R(c.B, c.T, c.H, c.D).requires_grad_();
            var k = c.Shared ? q : R(c.B, c.T, c.H, c.D).requires_grad_();
            var v = R(c.B, c.T, c.H, c.D + 1).requires_grad_();
            var mu = R(c.H, c.C, c.D);
            var qs = Affinity(q.detach(), mu);
            var ks = c.Shared ? qs : Affinity(k.detach(), mu);
            double? self = c.Shared ? Routing.SelfTokenScore : null;
            var inputs = c.Shared ? new[] { q, v } : new[] { q, k, v };
            var g = R(c.B, c.T, c.H, c.D + 1);
            balanced = Math.Max(balanced, Gap(Routing.Attend(q, k, v, qs, ks, c.W, c.Causal, selfScore: self),
                RoutingNaive.Attend(q, k, v, qs, ks, c.W, c.Causal, selfScore: self), g, inputs));
            nearest = Math.Max(nearest, Gap(Routing.AttendNearest(q, k, v, qs, ks, c.W, c.Causal, selfScore: self),
                RoutingNaive.AttendNearest(q, k, v, qs, ks, c.W, c.Causal, selfScore: self), g, inputs));
            var bias = R(c.H, LocalBlockAttention.BiasLength(c.L, c.Causal)).requires_grad_();   // b_h(i − j)
            local = Math.Max(local, Gap(LocalBlockAttention.Attend(q, k, v, c.L, c.Causal, relativeBias: bias),
                RoutingNaive.LocalBlock(q, k, v, c.L, c.Causal, relativeBias: bias), g, inputs.Append(bias).ToArray()));
        }

        // C = 1, w = n, ε = 0: every token in the one cluster, so routing is full causal attention (spec §6)
        var (q1, k1, v1) = (R(2, 11, 3, 5), R(2, 11, 3, 5), R(2, 11, 3, 4));
        var s1 = R(2, 3, 11, 1);
        using var full = ReferenceAttention.Softmax(q1, k1, v1, causal: true);
        double oneCluster = MaxAbs(Routing.Attend(q1, k1, v1, s1, s1, 11, causal: true, countEpsilon: 0), full.Output);

        // self-token rule: with shared Q/K and w = T, nearest routing is attention over the earlier keys of the query's
        // cluster, excluding itself — or its own value alone when it has no earlier key
        var qs2 = R(1, 20, 2, 4);
        var vs2 = R(1, 20, 2, 3);
        var a2 = Affinity(qs2, R(2, 3, 4));
        var sameCluster = Routing.Membership(a2, 1, balanced: false).to(ScalarType.Float32);             // [B, H, C, T]
        var same = sameCluster.transpose(2, 3).matmul(sameCluster) > 0;                                   // c(i) = c(j)
        var others = same & torch.ones(20, 20, dtype: ScalarType.Bool, device: device).tril(-1);          // j < i, same cluster
        var lonely = others.any(-1, keepdim: true).logical_not();
        var expectedMask = others | (lonely & torch.eye(20, dtype: ScalarType.Bool, device: device));
        using var byHand = ReferenceAttention.Softmax(qs2, qs2, vs2, mask: expectedMask);
        var ruled = Routing.AttendNearest(qs2, qs2, vs2, a2, a2, 20, selfScore: Routing.SelfTokenScore);
        double selfRule = MaxAbs(ruled, byHand.Output / (1 + Routing.OfficialCountEpsilon));
        var unruled = Routing.AttendNearest(qs2, qs2, vs2, a2, a2, 20);
        double withoutRule = MaxAbs(unruled, byHand.Output / (1 + Routing.OfficialCountEpsilon));

        var (update, commitment, commitmentRatio) = KMeansDefinition(device, gen);
        double leakBalanced = CausalityProbe.FutureLeak(balanced: true, seed: seed);
        double leakNearest = CausalityProbe.FutureLeak(balanced: false, seed: seed);
        double leakMixer = MixerLeak(device, seed);
        return new RoutingExactness(balanced, nearest, local, oneCluster, selfRule, withoutRule, update, commitment, commitmentRatio,
            leakBalanced, leakNearest, leakMixer);
    }

    /// <summary>max |fast − naive| over the outputs and the gradients of Σ g ⊙ y with respect to the inputs.</summary>
    static double Gap(Tensor fast, Tensor naive, Tensor g, Tensor[] inputs)
    {
        double gap = MaxAbs(fast, naive);
        var gf = Gradients.Of(new[] { (fast * g).sum() }, inputs);
        var gn = Gradients.Of(new[] { (naive * g).sum() }, inputs);
        for (int i = 0; i < gf.Length; i++) gap = Math.Max(gap, MaxAbs(gf[i], gn[i]));
        return gap;
    }

    static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().to(ScalarType.Float64).item<double>();

    /// <summary>
    /// Two EMA updates of a float64 <see cref="OnlineKMeans"/> against the update written out with loops (counts, sums,
    /// Laplace smoothing), and the commitment loss against β·mean (x − μ_c)² by loops; also loss ÷ (β · mean_t ‖x − μ‖²) = 1/D.
    /// </summary>
    static (double Update, double Commitment, double Ratio) KMeansDefinition(Device device, Generator gen)
    {
        const int b = 2, t = 9, h = 2, c = 3, d = 4;
        const double decay = 0.9, beta = 1e-4, eps = OnlineKMeans.LaplaceEpsilon;
        using var km = new OnlineKMeans(h, c, d, decay, beta);
        km.to(ScalarType.Float64).to(device);
        km.SetMeans(torch.randn(new long[] { h, c, d }, dtype: ScalarType.Float64, generator: gen).to(device));
        var count = new double[h, c];
        var sum = new double[h, c, d];
        var mu0 = km.Means.cpu().data<double>().ToArray();
        for (int hh = 0; hh < h; hh++)
            for (int cc = 0; cc < c; cc++)
            {
                count[hh, cc] = 1;
                for (int dd = 0; dd < d; dd++) sum[hh, cc, dd] = mu0[(hh * c + cc) * d + dd];
            }
        double worst = 0, commitment = 0, ratio = 0;
        for (int step = 0; step < 2; step++)
        {
            var x = torch.randn(new long[] { b, t, h, d }, dtype: ScalarType.Float64, generator: gen).to(device);
            var (_, idx) = km.Assign(x);
            var xs = x.cpu().data<double>().ToArray();
            var ids = idx.cpu().data<long>().ToArray();
            var mu = km.Means.cpu().data<double>().ToArray();
            double loss = km.CommitmentLoss(x, idx).cpu().item<double>(), sq = 0;
            var n = new double[h, c];
            var s = new double[h, c, d];
            for (int bb = 0; bb < b; bb++) for (int tt = 0; tt < t; tt++) for (int hh = 0; hh < h; hh++)
            {
                int cc = (int)ids[(bb * h + hh) * t + tt];                                 // idx [B, H, T]
                n[hh, cc] += 1;
                for (int dd = 0; dd < d; dd++)
                {
                    double xv = xs[((bb * t + tt) * h + hh) * d + dd];                     // x [B, T, H, D]
                    s[hh, cc, dd] += xv;
                    sq += Math.Pow(xv - mu[(hh * c + cc) * d + dd], 2);
                }
            }
            double expectedLoss = beta * sq / (b * t * h * d);                              // β · mean over every element
            commitment = Math.Max(commitment, Math.Abs(loss - expectedLoss) / expectedLoss);
            ratio = loss / (beta * sq / (b * t * h));                                       // vs the sum over D: 1/D
            km.Update(x, idx);
            var got = km.Means.cpu().data<double>().ToArray();
            for (int hh = 0; hh < h; hh++)
            {
                double total = 0;
                for (int cc = 0; cc < c; cc++) { count[hh, cc] = decay * count[hh, cc] + (1 - decay) * n[hh, cc]; total += count[hh, cc]; }
                for (int cc = 0; cc < c; cc++)
                {
                    double smoothed = (count[hh, cc] + eps) / (total + c * eps) * total;
                    for (int dd = 0; dd < d; dd++)
                    {
                        sum[hh, cc, dd] = decay * sum[hh, cc, dd] + (1 - decay) * s[hh, cc, dd];
                        worst = Math.Max(worst, Math.Abs(got[(hh * c + cc) * d + dd] - sum[hh, cc, dd] / smoothed));
                    }
                }
            }
        }
        return (worst, commitment, ratio);
    }

    /// <summary>
    /// The whole mixer (nearest routing + block-local heads) after one training step: max change of outputs at t &lt; 12 when t ≥ 12 is redrawn.
    /// </summary>
    static double MixerLeak(Device device, int seed)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        using var attn = new RoutingAttention(16, 2, clusters: 3, window: 3, balanced: false, localHeads: 1, localWindow: 4);
        attn.to(device);
        var x = torch.randn(1, 32, 16).to(device);
        using (torch.no_grad()) attn.call(x);                                             // training forward: k-means start + one EMA step
        attn.eval();
        var x2 = x.clone();
        x2.narrow(1, 12, 20).copy_(torch.randn(1, 20, 16).to(device));
        using var noGrad = torch.no_grad();
        return (attn.call(x) - attn.call(x2)).narrow(1, 0, 12).abs().max().item<float>();
    }

    /// <summary>The mixer of every layer for <paramref name="variant"/> (behind a <see cref="TokenShift"/> when the config shifts tokens).</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Mixers(RoutingVariant variant, Config c) => _ =>
        c.ShiftTokens ? new TokenShift(Mixer(variant, c)) : Mixer(variant, c);

    static nn.Module<Tensor, Tensor> Mixer(RoutingVariant variant, Config c) => variant switch
    {
        RoutingVariant.LocalOnly => new RoutingAttention(c.DModel, c.Heads, c.Clusters, c.Window, localHeads: c.Heads, localWindow: c.LocalBlock),
        RoutingVariant.LocalPlusRouting or RoutingVariant.LocalPlusNearest => new RoutingAttention(c.DModel, c.Heads, c.Clusters, c.Window,
            balanced: variant == RoutingVariant.LocalPlusRouting, localHeads: c.Heads / 2, localWindow: c.LocalBlock, decay: 0.99),
        RoutingVariant.Full => new CausalSelfAttention(c.DModel, c.Heads),
        _ => throw new ArgumentException($"unknown variant {variant}.", nameof(variant)),
    };

    static (RoutingRun Run, RoutingMap? Map) Train(RoutingVariant variant, Config c, Device device, IProgress<string>? progress)
    {
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        using var train = Generate(c, c.Steps * c.BatchSize, c.Seed, device);
        using var test = Generate(c, c.TestCount, c.Seed + 1, device);
        var config = new TinyGptConfig(Layers: c.Layers, DModel: c.DModel, Heads: c.Heads, VocabSize: c.Task.VocabSize, Mlp: false,
            Positions: c.Positions, MaxLength: c.Task.Length);
        torch.manual_seed(c.Seed);
        using var net = new TinyGpt(config, Mixers(variant, c)).to(device);
        var routing = net.modules().OfType<RoutingAttention>().ToList();
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: Math.Max(1, c.Steps / 3));
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)c.BatchSize, (step + 1L) * c.BatchSize, device: device);
            var logits = net.call(train.Tokens.index_select(0, rows));
            var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), train.Labels.index_select(0, rows).reshape(-1),
                ignore_index: TokenBatch.Ignore);
            foreach (var r in routing.Where(r => r.AuxLoss is not null)) loss = loss + r.AuxLoss!;   // + β·mean (q̂ − sg μ)²
            return loss;
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {variant}: {p}")));
        double msPerStep = clock.Elapsed.TotalMilliseconds / c.Steps;
        net.eval();
        double accuracy;
        RoutingMap? map = null;
        using (torch.no_grad())
        {
            accuracy = test.Accuracy(net.call(test.Tokens));
            if (routing.LastOrDefault(r => r.RoutingHeads > 0) is { } layer) map = SortedMask(net, layer, test.Tokens.narrow(0, 0, 8));
        }
        progress?.Report($"  {variant}: accuracy {accuracy:P1}, {clock.Elapsed.TotalSeconds:F1} s");
        return (new RoutingRun(variant, accuracy, history.Losses, msPerStep), map);
    }

    /// <summary>MQAR sequences of the config; with <see cref="Config.ValueFirst"/> each context pair k_i v_i becomes v_i k_i.</summary>
    public static MqarBatch Generate(Config c, int count, int seed, Device device)
    {
        var batch = c.Task.Generate(count, seed, device);
        if (!c.ValueFirst) return batch;
        using var scope = NewDisposeScope();
        var perm = Enumerable.Range(0, c.Task.Length).Select(i => (long)(i < 2 * c.Task.Pairs ? i ^ 1 : i)).ToArray();   // 2i ↔ 2i + 1 in the context
        var swapped = new MqarBatch(batch.Tokens.index_select(1, torch.tensor(perm, device: device)), batch.Labels.clone(), batch.Gaps.clone());
        batch.Dispose();
        return swapped;
    }

    /// <summary>
    /// The first routing head's keep-mask on the first of <paramref name="tokens"/>, rows and columns sorted by (nearest
    /// cluster, position), and the share of causal pairs (i, j ≤ i) its keep-mask holds over all <paramref name="tokens"/>.
    /// </summary>
    static RoutingMap SortedMask(TinyGpt net, RoutingAttention layer, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        Tensor? input = null;
        var hook = layer.register_forward_pre_hook((m, x) => { input?.Dispose(); input = x.detach().clone().DetachFromDisposeScope(); return x; });
        net.call(tokens);
        hook.remove();
        using var captured = input!;
        var all = layer.RoutingMask(captured);                                            // [B, H_r, T, T]
        long n = all.shape[2];
        double causalPairs = n * (n + 1) / 2.0 * all.shape[0] * all.shape[1];
        double density = all.sum().item<long>() / causalPairs;
        double keysPerQuery = all.sum(-1).to(ScalarType.Float64).mean().item<double>();
        var mask = all.select(0, 0).select(0, 0).to(ScalarType.Float32);                  // [T, T]
        var order = layer.ClusterAffinities(captured).argmax(-1).select(0, 0).select(0, 0);          // nearest cluster of t
        var perm = (order * n + torch.arange(n)).argsort();
        var sorted = mask.index_select(0, perm).index_select(1, perm);
        var data = sorted.data<float>().ToArray();
        var result = new float[n, n];
        for (long i = 0; i < n; i++) for (long j = 0; j < n; j++) result[i, j] = data[i * n + j];
        return new RoutingMap(result, density, keysPerQuery);
    }
}
