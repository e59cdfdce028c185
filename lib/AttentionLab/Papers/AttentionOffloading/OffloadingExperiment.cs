using System.Diagnostics;
using AttentionLab.Bench.Systems;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>
/// The notebook's experiment: (a) split attention (requests, KV heads, sequence + LSE merge) against the monolithic
/// call; (b) the serving cost model (homogeneous vs offloaded) over context, batch cap and number of memory devices;
/// (c) a real measurement of decode attention time vs KV bytes on this device, grounding the model's attention term.
/// (a) and (b) are instant; (c) and (d) are the parts that take time.
/// </summary>
public sealed class OffloadingExperiment : IPaperExperiment<OffloadingExperiment.Config, OffloadingResult>
{
    OffloadingExperiment() { }

    /// <summary>P27 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(27, "Lamina: attention offloading", "attention-offloading");

    /// <summary>
    /// Sizes and assumptions of one run. Prices are user inputs (the defaults are illustrative: an H20 at half an H100's
    /// hourly price, so 4×H100 and 2×H100 + 4×H20 cost the same); network 50 GB/s (400 Gb/s) per attention device, 10 µs
    /// round trip (the spec names no link figures). Both setups are compared under the same overlap assumption
    /// (<see cref="Overlap"/>; the serial comparison is always computed beside it). Smoke and Full share the (instant) cost
    /// model; Full probes more requests per step. The probe's fit uses
    /// only caches of at least <c>ProbeFitFromContext</c> tokens: smaller ones fit in the CPU's last-level cache (32 MiB
    /// L3 here; Smoke's 16k-token cache is 64 MiB) and are read faster than DRAM.
    /// </summary>
    public sealed record Config(ModelSpec Model, DeviceSpec Compute, DeviceSpec Memory, int HomogeneousDevices, int ModelDevices,
        int AttentionDevices, double NetworkGBs, double NetworkLatencyUs, int[] Contexts, int[] BatchCaps, int BatchCap,
        int[] AttentionDeviceCounts, int SweepContext, int[] ProbeContexts, int ProbeBatch, int ProbeHeads, int ProbeHeadDim,
        int ProbeRepeats, int Seed, int ProbeFitFromContext = 0) : IPaperConfig<Config>
    {
        static readonly int[] contexts = { 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072 };
        static readonly int[] batchCaps = { 16, 32, 64, 128, 256, 512, 1024 };
        static readonly int[] deviceCounts = { 1, 2, 3, 4, 6, 8, 12, 16 };

        public static Config Smoke => new(ModelSpec.Llama70B, DeviceSpec.H100(2.0), DeviceSpec.H20(1.0), HomogeneousDevices: 4,
            ModelDevices: 2, AttentionDevices: 4, NetworkGBs: 50, NetworkLatencyUs: 10, contexts, batchCaps, BatchCap: 1024,
            deviceCounts, SweepContext: 16384, ProbeContexts: new[] { 2048, 4096, 8192, 16384, 32768, 65536, 131072 },
            ProbeBatch: 1, ProbeHeads: 8, ProbeHeadDim: 64, ProbeRepeats: 5, Seed: 0, ProbeFitFromContext: 16384) { Size = "smoke" };

        public static Config Full => Smoke with { ProbeContexts = new[] { 2048, 4096, 8192, 16384, 32768, 65536, 131072 }, ProbeBatch = 8, ProbeRepeats = 10,
            ProbeFitFromContext = 8192, OffloadContexts = new[] { 256, 1024, 4096 }, OffloadBatch = 8, OffloadSteps = 16, Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary>Both setups pipelined (step = the busiest resource, + L·RTT when offloaded) or both serial (step = sum).</summary>
        public bool Overlap { get; init; } = true;

        /// <summary>Cache lengths of the functional offload run (d): a TinyGpt decoding with its attention on another device.</summary>
        public int[] OffloadContexts { get; init; } = { 64, 256, 512 };
        /// <summary>Sequences decoded together in (d).</summary>
        public int OffloadBatch { get; init; } = 2;
        /// <summary>Timed steps per context in (d) (after decoding the rest of the context).</summary>
        public int OffloadSteps { get; init; } = 8;

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Everything on <see cref="HomogeneousDevices"/> compute devices.</summary>
        public ClusterConfig Homogeneous => ClusterConfig.Homogeneous(Compute, HomogeneousDevices, overlap: Overlap);
        /// <summary>Lamina: <see cref="ModelDevices"/> compute devices + <see cref="AttentionDevices"/> memory devices.</summary>
        public ClusterConfig Offloaded =>
            ClusterConfig.Heterogeneous(Compute, ModelDevices, Memory, AttentionDevices, NetworkGBs, NetworkLatencyUs, overlap: Overlap);

        /// <summary>Throws an ArgumentException naming <paramref name="argumentName"/> for an inconsistent config.</summary>
        public Config Validated(string argumentName = "config")
        {
            if (Model is null || Compute is null || Memory is null)
                throw new ArgumentException($"{argumentName}: Model, Compute and Memory must be given.", argumentName);
            Model.Validated(argumentName); Homogeneous.Validated(argumentName); Offloaded.Validated(argumentName);
            void Positive(int[]? values, string name)
            {
                if (values is null || values.Length == 0 || values.Any(v => v <= 0))
                    throw new ArgumentException($"{argumentName}.{name} must be a non-empty list of positive numbers.", argumentName);
            }
            Positive(Contexts, nameof(Contexts)); Positive(BatchCaps, nameof(BatchCaps)); Positive(AttentionDeviceCounts, nameof(AttentionDeviceCounts));
            Positive(ProbeContexts, nameof(ProbeContexts));
            Positive(new[] { BatchCap, SweepContext, ProbeBatch, ProbeHeads, ProbeHeadDim, ProbeRepeats }, "BatchCap/SweepContext/Probe sizes");
            if (OffloadContexts is null || OffloadContexts.Length == 0 || OffloadContexts.Any(n => n <= OffloadSteps) || OffloadBatch <= 0 || OffloadSteps <= 0)
                throw new ArgumentException(
                    $"{argumentName}.{nameof(OffloadContexts)} must be non-empty, each > OffloadSteps (> 0), with OffloadBatch > 0.", argumentName);
            if (ProbeFitFromContext < 0)
                throw new ArgumentException($"{argumentName}.{nameof(ProbeFitFromContext)} must be ≥ 0, got {ProbeFitFromContext}.", argumentName);
            if (ProbeContexts.Where(n => n >= ProbeFitFromContext).Distinct().Count() < 2)
                throw new ArgumentException(
                    $"{argumentName}.{nameof(ProbeContexts)} needs two different lengths ≥ ProbeFitFromContext for a fit.", argumentName);
            return this;
        }
    }

    /// <summary>Runs (a), (b), (c) and (d) on <paramref name="device"/> ((b) is arithmetic; (d) keeps the model on it and the attention on the CPU).</summary>
    public static OffloadingResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        config.Validated(nameof(config));
        var clock = Stopwatch.StartNew();

        progress?.Report("(a) split attention vs the monolithic call");
        var split = SplitErrors(config.Seed, device);

        progress?.Report($"(b) cost model: {config.Homogeneous.Hardware} vs {config.Offloaded.Hardware}, {config.Model.Name}, " +
            $"both {(config.Overlap ? "pipelined" : "serial")}");
        var grid = new List<CostEstimate>();
        foreach (int n in config.Contexts)
            foreach (int b in config.BatchCaps)
            {
                grid.Add(ServingCostModel.AtBatchCap(config.Model, config.Homogeneous, n, b));
                grid.Add(ServingCostModel.AtBatchCap(config.Model, config.Offloaded, n, b));
            }
        var best = Compare(config);
        var other = Compare(config with { Overlap = !config.Overlap });
        var devices = config.AttentionDeviceCounts.Select(a =>
            ServingCostModel.AtBatchCap(config.Model, config.Offloaded.WithAttentionDevices(a), config.SweepContext, config.BatchCap)).ToList();
        var invariants = CheckInvariants(config);

        progress?.Report($"(c) decode attention vs KV bytes on {device.type} " +
            $"(B = {config.ProbeBatch}, H = {config.ProbeHeads}, D = {config.ProbeHeadDim}, float32)");
        var probe = DecodeBandwidthProbe.Measure(config.ProbeContexts, config.ProbeBatch, config.ProbeHeads, config.ProbeHeadDim, device,
            repeats: config.ProbeRepeats, seed: config.Seed, progress: progress);
        var fit = DecodeBandwidthProbe.Fit(probe.Where(p => p.Context >= config.ProbeFitFromContext).ToList());

        progress?.Report($"(d) functional offload: TinyGpt on {device.type}, KV cache and attention on CPU");
        var offload = FunctionalOffload.Run(config.OffloadContexts, config.OffloadBatch, config.OffloadSteps, device, CPU, config.Seed, progress);
        progress?.Report($"done in {clock.Elapsed.TotalSeconds:F1} s");
        return new OffloadingResult(config, split, grid, best, devices, probe, fit, device.type.ToString(), clock.Elapsed.TotalSeconds)
        {
            Offload = offload,
            Pipelined = config.Overlap ? best : other,
            Serial = config.Overlap ? other : best,
            Invariants = invariants,
        };
    }

    /// <summary>A link so fast its time is below float rounding of any step (10¹⁵ GB/s): "no network" for the invariants.</summary>
    const double FreeNetworkGBs = 1e15;

    /// <summary>Both setups of <paramref name="config"/> at every context with the config's batch cap.</summary>
    static List<Comparison> Compare(Config config) => config.Contexts.Select(n => new Comparison(
        ServingCostModel.AtBatchCap(config.Model, config.Homogeneous, n, config.BatchCap),
        ServingCostModel.AtBatchCap(config.Model, config.Offloaded, n, config.BatchCap))).ToList();

    /// <summary>
    /// The cost model's invariants on the config's devices (spec §6): (1) symmetry — serial, with the attention side made
    /// of the same devices as the model side, a free network and no latency, the offloaded step equals the homogeneous one;
    /// (2) more bandwidth, FLOPs or attention devices never lower tokens/s (both overlap settings, a grid of n and B);
    /// (3) the throughput ratio tends to 1 as attention vanishes (same model devices on both sides, free network, no latency).
    /// </summary>
    public static CostModelInvariants CheckInvariants(Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var model = config.Model;
        double symmetryGap = 0;
        int cases = 0, violations = 0;
        foreach (int n in new[] { 512, 4096, 65536 })
            foreach (int b in new[] { 1, 16, 256 })
            {
                var w = new Workload(b, n);
                var homo = ClusterConfig.Homogeneous(config.Compute, config.ModelDevices, overlap: false);
                var twin = ClusterConfig.Heterogeneous(config.Compute, config.ModelDevices, config.Compute, config.ModelDevices, networkGBs: FreeNetworkGBs,
                    networkLatencyUs: 0, overlap: false);
                double h = ServingCostModel.Estimate(model, homo, w).StepMs, t = ServingCostModel.Estimate(model, twin, w).StepMs;
                symmetryGap = Math.Max(symmetryGap, Math.Abs(t - h) / h);
                foreach (bool overlap in new[] { true, false })
                {
                    var off = config.Offloaded with { Overlap = overlap };
                    var hom = config.Homogeneous with { Overlap = overlap };
                    foreach (var (baseline, better) in new (ClusterConfig, ClusterConfig)[]
                    {
                        (off, off with { AttentionDevice = config.Memory with { MemBwGBs = 2 * config.Memory.MemBwGBs } }),
                        (off, off with { NetworkGBs = 4 * config.NetworkGBs }),
                        (off, off with { ModelDevice = config.Compute with { PeakTflops = 2 * config.Compute.PeakTflops } }),
                        (off, off.WithAttentionDevices(2 * config.AttentionDevices)),
                        (hom, hom with { ModelDevice = config.Compute with { MemBwGBs = 2 * config.Compute.MemBwGBs } }),
                        (hom, hom with { ModelDevice = config.Compute with { PeakTflops = 2 * config.Compute.PeakTflops } }),
                    })
                    {
                        cases++;
                        if (!(ServingCostModel.Estimate(model, better, w).TokensPerSecond >= ServingCostModel.Estimate(model, baseline, w).TokensPerSecond))
                            violations++;
                    }
                }
            }
        double vanishing = 0;
        foreach (bool overlap in new[] { true, false })
        {
            var tiny = model with { DKv = 1, DModel = 8 };
            var w = new Workload(64, 16);
            var h = ServingCostModel.Estimate(tiny, ClusterConfig.Homogeneous(config.Compute, config.HomogeneousDevices, overlap: overlap), w);
            var o = ServingCostModel.Estimate(tiny, ClusterConfig.Heterogeneous(config.Compute, config.HomogeneousDevices, config.Memory, 1,
                networkGBs: FreeNetworkGBs, networkLatencyUs: 0, overlap: overlap), w);
            vanishing = Math.Max(vanishing, Math.Abs(o.TokensPerSecond / h.TokensPerSecond - 1));
        }
        return new CostModelInvariants(symmetryGap, cases, violations, vanishing);
    }

    /// <summary>
    /// max |split − monolithic| of output and LSE for each partition, and of the plain average (the pitfall), in float64
    /// and float32 from the same inputs: 5 requests, 8 query heads over 4 KV heads, 37 cached tokens, head dim 12.
    /// </summary>
    public static IReadOnlyList<SplitError> SplitErrors(int seed, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator((ulong)seed);
        // awkward sizes: 5 requests, 8 query heads over 4 KV heads (GQA), 37 cached tokens, head dim 12
        var q64 = torch.randn(new long[] { 5, 1, 8, 12 }, generator: gen, dtype: ScalarType.Float64);
        var k64 = torch.randn(new long[] { 5, 37, 4, 12 }, generator: gen, dtype: ScalarType.Float64) * 2;
        var v64 = torch.randn(new long[] { 5, 37, 4, 12 }, generator: gen, dtype: ScalarType.Float64);
        double Err(Tensor a, Tensor b) => (a - b).abs().max().ToDouble();
        var rows = new List<SplitError>();
        foreach (var dtype in new[] { ScalarType.Float64, ScalarType.Float32 })
        {
            string name = dtype == ScalarType.Float64 ? "float64" : "float32";
            var (q, k, v) = (q64.to(dtype, device), k64.to(dtype, device), v64.to(dtype, device));
            var (o, lse) = SplitAttention.Monolithic(q, k, v);
            foreach (var (partition, parts, run) in new (string, int, Func<Tensor, Tensor, Tensor, int, (Tensor, Tensor)>)[]
                { ("by requests", 3, SplitAttention.ByRequests), ("by KV heads", 4, SplitAttention.ByHeads),
                    ("by sequence (LSE merge)", 3, SplitAttention.BySequence) })
            {
                var (so, sl) = run(q, k, v, parts);
                rows.Add(new SplitError(partition, parts, Err(so, o), Err(sl, lse), name));
            }
            rows.Add(new SplitError("by sequence (plain average: wrong)", 3, Err(SplitAttention.BySequenceAveraged(q, k, v, 3), o), double.NaN, name));
        }
        return rows;
    }
}
