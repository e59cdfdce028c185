using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// One point of the training-free probe: a memory, its knobs, N pairs, the floats it holds and its recall.
/// <paramref name="WindowKeys"/>: the pairs a sliding window keeps (the spec's w; null for the other memories).
/// </summary>
public sealed record ProbePoint(string Family, string Name, int FeatureDim, int? WindowKeys, int Pairs, long StateFloats, double Recall);

/// <summary>
/// The notebook's experiment: (0) exactness on toy tensors — the Taylor kernel, every form of BASED linear attention
/// against the naive quadratic twin (values, h0 carry, gradients), positivity, causality, and the sliding window in
/// Based's window_size convention; (a) the training-free recall probe across memories and state sizes; (b) zoology-style
/// MQAR models (BaseConv + attention / BASED / pure linear / sliding window) trained at toy size; (c) decode cost per
/// token (constant state vs growing KV cache) and (d) prefill time vs T.
/// </summary>
public sealed class BasedExperiment : IPaperExperiment<BasedExperiment.Config, BasedResult>
{
    BasedExperiment() { }

    /// <summary>P13 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(13, "BASED: linear attention + sliding windows balance recall and throughput", "based");

    /// <summary>
    /// Sizes of one run. Smoke fits a one-thread CPU notebook; Full is for a GPU. <c>ProbeWindowKeys</c>: the sliding
    /// windows of the probe, in stored pairs (keys). The MQAR models' window knob is in keys too (the spec's w).
    /// </summary>
    public sealed record Config(int[] ProbeFeatureDims, int[] ProbePairs, int[] ProbeWindowKeys, int ProbeTrials,
        BasedMqar.Settings Mqar, MqarModel[] MqarModels, int DecodeLength, int DecodeWindow, int[] PrefillLengths, int PrefillRepeats,
        int MaxReferenceLength, int Seed) : IPaperConfig<Config>
    {
        /// <summary>
        /// The spec's smoke MQAR (vocab 256, T = 64, 4 pairs, d = 64, 2 layers, ≈ 300 steps) at lr 5e-3 (see docs/decisions.md):
        /// attention, BASED d′ = 4 and 16, pure linear (elu+1, d′ = 15: BASED d′ = 4's state) and a window of 8 keys (the
        /// window with the state closest to BASED d′ = 4's).
        /// </summary>
        public static Config Smoke => new(new[] { 4, 8, 16, 24, 32 }, new[] { 32, 64, 128 }, new[] { 8, 16, 32, 64 }, 20,
            new BasedMqar.Settings(Vocab: 256, SeqLen: 64, Pairs: 4, DModel: 64, Steps: 300, BatchSize: 32, LearningRate: 5e-3, TestCount: 256, Seed: 0),
            new[]
            {
                new MqarModel(BasedLayerKind.Attention), new MqarModel(BasedLayerKind.LinearAttention, 4), new MqarModel(BasedLayerKind.LinearAttention, 16),
                new MqarModel(BasedLayerKind.PlainLinearAttention, 15), new MqarModel(BasedLayerKind.SlidingWindow, 8),
            },
            DecodeLength: 512, DecodeWindow: 64, PrefillLengths: new[] { 256, 512, 1024 }, PrefillRepeats: 2, MaxReferenceLength: 1024,
            Seed: 0) { Size = "smoke" };

        public static Config Full => new(new[] { 4, 8, 16, 24, 32, 48 }, new[] { 32, 64, 128, 256 }, new[] { 8, 16, 32, 64, 128 }, 100,
            new BasedMqar.Settings(Vocab: 8192, SeqLen: 256, Pairs: 32, DModel: 128, Steps: 4000, BatchSize: 256, LearningRate: 3e-3, TestCount: 1000, Seed: 0),
            new[]
            {
                new MqarModel(BasedLayerKind.Attention), new MqarModel(BasedLayerKind.LinearAttention, 8), new MqarModel(BasedLayerKind.LinearAttention, 16),
                new MqarModel(BasedLayerKind.LinearAttention, 24), new MqarModel(BasedLayerKind.PlainLinearAttention, 45),
                new MqarModel(BasedLayerKind.PlainLinearAttention, 153),
                new MqarModel(BasedLayerKind.SlidingWindow, 16), new MqarModel(BasedLayerKind.SlidingWindow, 32),
                new MqarModel(BasedLayerKind.SlidingWindow, 64), new MqarModel(BasedLayerKind.SlidingWindow, 128),
            },
            DecodeLength: 8192, DecodeWindow: 256, PrefillLengths: new[] { 256, 1024, 4096, 8192 }, PrefillRepeats: 3, MaxReferenceLength: 8192,
            Seed: 0) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;
    }

    /// <summary>Runs everything on <paramref name="device"/>, one progress line per phase and per training report.</summary>
    public static BasedResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        void Lap(string phase) => clock.Lap(phase);

        progress?.Report("exactness: Taylor kernel, forms vs the naive twin, gradients, causality, Based's window convention");
        var exactness = Exactness(device, config.Seed);
        Lap("exactness");
        progress?.Report($"probe: {config.ProbeTrials} trials per point");
        var probe = Probe(config);
        Lap("probe");
        var runs = new List<MqarRun>();
        foreach (var model in config.MqarModels)
        {
            progress?.Report($"MQAR: training {model.Name}");
            runs.Add(BasedMqar.Train(model, config.Mqar, device, progress));
        }
        Lap("MQAR");
        progress?.Report($"decode: {config.DecodeLength} tokens, one at a time");
        var decode = BasedBenchmark.Decode(config.DecodeLength, window: config.DecodeWindow, device: device);
        Lap("decode");
        progress?.Report($"prefill: T = {string.Join(", ", config.PrefillLengths)}");
        var prefill = BasedBenchmark.Prefill(config.PrefillLengths, repeats: config.PrefillRepeats, maxReferenceLength: config.MaxReferenceLength,
            device: device);
        Lap("prefill");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new BasedResult(config, exactness, probe, runs, decode, prefill, clock.Seconds, clock.Phases);
    }

    /// <summary>The probe grid: Taylor over d′, softmax / identity / elu+1 at d′ = 16, sliding windows at d′ = 16, for every N.</summary>
    public static IReadOnlyList<ProbePoint> Probe(Config c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var points = new List<ProbePoint>();
        const int d = 16;
        ProbePoint At(ProbeMixer m, string family, string name, int fd, int n, int? w = null) =>
            new(family, name, fd, w, n, RecallProbe.StateFloats(m, fd, n, w ?? 64),
                RecallProbe.Capacity(m, fd, n, w ?? 64, trials: c.ProbeTrials, seed: c.Seed));
        foreach (int n in c.ProbePairs)
        {
            foreach (int fd in c.ProbeFeatureDims) points.Add(At(ProbeMixer.Taylor, "based (taylor)", $"taylor d′={fd}", fd, n));
            points.Add(At(ProbeMixer.Softmax, "attention", "softmax (KV cache)", d, n));
            points.Add(At(ProbeMixer.Identity, "linear (identity)", "identity d′=16", d, n));
            points.Add(At(ProbeMixer.EluPlusOne, "linear (elu+1)", "elu+1 d′=16", d, n));
            foreach (int w in c.ProbeWindowKeys) points.Add(At(ProbeMixer.SlidingWindow, "sliding window", $"swa w={w}", d, n, w));
        }
        return points;
    }

    /// <summary>
    /// The exactness phase on toy tensors (B = 1, T = 21 — not a multiple of the chunk 8 —, H = 2, d′ = 5, Dv = 3):
    /// the Taylor kernel and packed vs full maps; every form (engine parallel / recurrent / chunked packed, chunked full,
    /// fla's decomposition) against the naive quadratic twin in float64 and float32, and continued from its own state after
    /// 13 tokens (h0 carry-in); their gradients (float64); the smallest kernel value on spread-out inputs; causality
    /// (perturbing tokens after t leaves outputs up to t unchanged); and the sliding window built from Based's
    /// window_size W against flash-attn's window (W // 2, 0) written out row by row.
    /// </summary>
    public static BasedExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        const int T = 21, H = 2, Dk = 5, Dv = 3, C = 8, Split = 13;
        Tensor R(params long[] shape) => torch.randn(shape, generator: gen, dtype: float64).to(device);
        var q = R(1, T, H, Dk);
        var k = R(1, T, H, Dk);
        var v = R(1, T, H, Dv);

        // the kernel: φ(q)·φ(k) = 1 + s + s²/2 with s = q·k/√d′, for the full and the packed map
        var qa = q.reshape(-1, Dk);
        var ka = k.reshape(-1, Dk);
        var s = qa.matmul(ka.t()) / Math.Sqrt(Dk);
        var kernel = 1 + s + s.square() / 2;
        var full = FeatureMaps.Taylor(Dk, packSymmetric: false);
        var packed = FeatureMaps.Taylor(Dk, packSymmetric: true);
        var viaFull = full.Apply(qa).matmul(full.Apply(ka).t());
        var viaPacked = packed.Apply(qa).matmul(packed.Apply(ka).t());
        double kernelError = Math.Max((viaFull - kernel).abs().max().item<double>(), (viaPacked - kernel).abs().max().item<double>());
        double packedVsFull = (viaPacked - viaFull).abs().max().item<double>();

        var forms = new (string Name, Func<Tensor, Tensor, Tensor, LinearState?, LinearAttentionResult> Run)[]
        {
            ("parallel (packed φ)", (q_, k_, v_, h_) => BasedAttention.Linear(LinearForm.Parallel, q_, k_, v_, h_, chunkSize: C)),
            ("recurrent (packed φ)", (q_, k_, v_, h_) => BasedAttention.Linear(LinearForm.Recurrent, q_, k_, v_, h_, chunkSize: C)),
            ("chunked (packed φ)", (q_, k_, v_, h_) => BasedAttention.Linear(LinearForm.Chunked, q_, k_, v_, h_, chunkSize: C)),
            ("chunked (full φ)", (q_, k_, v_, h_) => BasedAttention.Linear(LinearForm.Chunked, q_, k_, v_, h_, packSymmetric: false, chunkSize: C)),
            ("fla decomposition (no φ)", (q_, k_, v_, h_) => BasedAttention.TaylorChunked(q_, k_, v_, C, h_)),
        };
        var naive = BasedNaive.Attention(q, k, v);
        var errors = new List<BasedFormError>();
        foreach (var (name, run) in forms)
        {
            errors.Add(new BasedFormError(name, "float64", "output", ErrorStats.Of(run(q, k, v, null).Output, naive)));
            errors.Add(new BasedFormError(name, "float32", "output",
                ErrorStats.Of(run(q.to(float32), k.to(float32), v.to(float32), null).Output.to(float64), naive)));
            // h0 carry-in: the first 13 tokens, then the other 8 from that state
            var first = run(q.narrow(1, 0, Split), k.narrow(1, 0, Split), v.narrow(1, 0, Split), null);
            var second = run(q.narrow(1, Split, T - Split), k.narrow(1, Split, T - Split), v.narrow(1, Split, T - Split), first.FinalState);
            errors.Add(new BasedFormError(name, "float64", "h0 carry", ErrorStats.Of(torch.cat(new[] { first.Output, second.Output }, 1), naive)));
        }

        // gradients of Σ y ⊙ w with respect to q, k, v (float64)
        var w = R(1, T, H, Dv);
        Tensor[] Grads(Func<Tensor, Tensor, Tensor, Tensor> run)
        {
            using var g = NewDisposeScope();
            var leaves = new[] { q, k, v }.Select(x => x.detach().clone().requires_grad_(true)).ToArray();
            var loss = (run(leaves[0], leaves[1], leaves[2]) * w).sum();
            return Gradients.Of(new[] { loss }, leaves).Select(x => x.detach().MoveToOuterDisposeScope()).ToArray();
        }
        var reference = Grads((q_, k_, v_) => BasedNaive.Attention(q_, k_, v_));
        var gradients = new List<BasedFormError>();
        string[] names = { "dq", "dk", "dv" };
        foreach (var (name, run) in forms)
        {
            var g = Grads((q_, k_, v_) => run(q_, k_, v_, null).Output);
            for (int i = 0; i < names.Length; i++) gradients.Add(new BasedFormError(name, "float64", names[i], ErrorStats.Of(g[i], reference[i])));
        }

        // K ≥ 1/2 > 0 on spread-out inputs (q, k × 4): the smallest kernel value
        double minKernel = BasedAttention.Kernel(q.permute(0, 2, 1, 3) * 4, k.permute(0, 2, 1, 3) * 4).min().item<double>();

        // causality: change every token after t = 9; outputs up to t must not move (every form)
        const int Cut = 9;
        var after = torch.arange(T, device: device).gt(Cut).view(1, T, 1, 1);
        var (q2, k2, v2) = (torch.where(after, R(1, T, H, Dk), q), torch.where(after, R(1, T, H, Dk), k), torch.where(after, R(1, T, H, Dv), v));
        double causal = forms.Max(f => (f.Run(q2, k2, v2, null).Output - f.Run(q, k, v, null).Output).narrow(1, 0, Cut + 1).abs().max().item<double>());

        // Based's SlidingAttention(window_size = W) → flash-attn window (W // 2, 0): query i attends keys i − W//2 … i
        double window = 0;
        foreach (int size in new[] { 7, 8, 64 })
        {
            var ours = SlidingWindowAttention.Attend(q, k, v, BasedWindow.KeysOfWindowSize(size));
            for (int i = 0; i < T; i++)
            {
                int from = Math.Max(0, i - size / 2), n = i - from + 1;
                var scores = q[0, i].unsqueeze(1).matmul(k[0].narrow(0, from, n).permute(1, 2, 0)).squeeze(1) / Math.Sqrt(Dk);       // [H, n]
                var row = scores.softmax(-1).unsqueeze(1).matmul(v[0].narrow(0, from, n).permute(1, 0, 2)).squeeze(1);              // [H, Dv]
                window = Math.Max(window, (ours[0, i] - row).abs().max().item<double>());
            }
        }
        return new BasedExactness(kernelError, packedVsFull, errors, gradients, minKernel, causal, window);
    }
}
