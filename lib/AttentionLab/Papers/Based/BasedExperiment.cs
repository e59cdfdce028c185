using System.Diagnostics;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>One point of the training-free probe: a memory, its knobs, N pairs, the floats it holds and its recall.</summary>
public sealed record ProbePoint(string Family, string Name, int FeatureDim, int? Window, int Pairs, long StateFloats, double Recall);

/// <summary>
/// The notebook's experiment: (a) the training-free recall probe across memories and state sizes, (b) zoology-style MQAR
/// models (BaseConv + attention / BASED / sliding window) trained at toy size, (c) decode cost per token (constant
/// state vs growing KV cache) and (d) prefill time vs T.
/// </summary>
public static class BasedExperiment
{
    /// <summary>Sizes of one run. Smoke fits a CPU notebook (≈ 30 s on one thread); Full is for a GPU.</summary>
    public sealed record Config(int[] ProbeFeatureDims, int[] ProbePairs, int[] ProbeWindows, int ProbeTrials,
        BasedMqar.Settings Mqar, MqarModel[] MqarModels, int DecodeLength, int DecodeWindow, int[] PrefillLengths, int PrefillRepeats,
        int MaxReferenceLength, int Seed)
    {
        public static Config Smoke => new(new[] { 4, 8, 16, 24, 32 }, new[] { 32, 64, 128 }, new[] { 8, 16, 32, 64 }, 20,
            new BasedMqar.Settings(Vocab: 64, SeqLen: 32, Pairs: 4, DModel: 32, Steps: 200, BatchSize: 32, LearningRate: 1e-2, TestCount: 256, Seed: 0),
            new[]
            {
                new MqarModel(BasedLayerKind.Attention), new MqarModel(BasedLayerKind.LinearAttention, 4), new MqarModel(BasedLayerKind.LinearAttention, 16),
                new MqarModel(BasedLayerKind.SlidingWindow, 8), new MqarModel(BasedLayerKind.SlidingWindow, 16),
            },
            DecodeLength: 512, DecodeWindow: 64, PrefillLengths: new[] { 256, 512, 1024 }, PrefillRepeats: 2, MaxReferenceLength: 1024, Seed: 0);

        public static Config Full => new(new[] { 4, 8, 16, 24, 32, 48 }, new[] { 32, 64, 128, 256 }, new[] { 8, 16, 32, 64, 128 }, 100,
            new BasedMqar.Settings(Vocab: 8192, SeqLen: 256, Pairs: 32, DModel: 128, Steps: 4000, BatchSize: 256, LearningRate: 3e-3, TestCount: 1000, Seed: 0),
            new[]
            {
                new MqarModel(BasedLayerKind.Attention), new MqarModel(BasedLayerKind.LinearAttention, 8), new MqarModel(BasedLayerKind.LinearAttention, 16),
                new MqarModel(BasedLayerKind.LinearAttention, 24), new MqarModel(BasedLayerKind.SlidingWindow, 16), new MqarModel(BasedLayerKind.SlidingWindow, 32),
                new MqarModel(BasedLayerKind.SlidingWindow, 64), new MqarModel(BasedLayerKind.SlidingWindow, 128),
            },
            DecodeLength: 8192, DecodeWindow: 256, PrefillLengths: new[] { 256, 1024, 4096, 8192 }, PrefillRepeats: 3, MaxReferenceLength: 8192, Seed: 0);

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
        var prefill = BasedBenchmark.Prefill(config.PrefillLengths, repeats: config.PrefillRepeats, maxReferenceLength: config.MaxReferenceLength, device: device);
        Lap("prefill");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new BasedResult(config, probe, runs, decode, prefill, clock.Seconds, clock.Phases);
    }

    /// <summary>The probe grid: Taylor over d′, softmax / identity / elu+1 at d′ = 16, sliding windows at d′ = 16, for every N.</summary>
    public static IReadOnlyList<ProbePoint> Probe(Config c)
    {
        var points = new List<ProbePoint>();
        const int d = 16;
        ProbePoint At(ProbeMixer m, string family, string name, int fd, int n, int? w = null) =>
            new(family, name, fd, w, n, RecallProbe.StateFloats(m, fd, n, w ?? 64), RecallProbe.Capacity(m, fd, n, w ?? 64, trials: c.ProbeTrials, seed: c.Seed));
        foreach (int n in c.ProbePairs)
        {
            foreach (int fd in c.ProbeFeatureDims) points.Add(At(ProbeMixer.Taylor, "based (taylor)", $"taylor d′={fd}", fd, n));
            points.Add(At(ProbeMixer.Softmax, "attention", "softmax (KV cache)", d, n));
            points.Add(At(ProbeMixer.Identity, "linear (identity)", "identity d′=16", d, n));
            points.Add(At(ProbeMixer.EluPlusOne, "linear (elu+1)", "elu+1 d′=16", d, n));
            foreach (int w in c.ProbeWindows) points.Add(At(ProbeMixer.SlidingWindow, "sliding window", $"swa w={w}", d, n, w));
        }
        return points;
    }
}
