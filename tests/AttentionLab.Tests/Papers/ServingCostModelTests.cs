using AttentionLab.Bench.Systems;
using AttentionLab.Papers.AttentionOffloading;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// The cost model's formulas on the spec's worked examples (expected values derived here from the inputs, never pasted
/// outputs), its invariants (monotonicity, ratio → 1 as attention vanishes) and its bad-input errors.
/// </summary>
public class ServingCostModelTests(Xunit.Abstractions.ITestOutputHelper output)
{
    const double Rel = 1e-12;
    static readonly DeviceSpec H100 = DeviceSpec.H100(2.0), H20 = DeviceSpec.H20(1.0);
    static readonly ModelSpec M70 = ModelSpec.Llama70B;

    static void Close(double expected, double actual, string what) =>
        Assert.True(Math.Abs(expected - actual) <= Rel * Math.Abs(expected) + 1e-15, $"{what}: expected {expected}, got {actual}");

    [Fact]
    public void GeometryMatchesTheSpecsWorkedExamples()
    {
        // P44's example: 32 layers × 8 KV heads × 128 × 2 B × 2 (K and V) = 128 KiB per token
        Assert.Equal(32.0 * 8 * 128 * 2 * 2, ModelSpec.Llama8B.KvBytesPerToken);
        Assert.Equal(131072, ModelSpec.Llama8B.KvBytesPerToken);
        // the spec's traffic ratio (2d + 2d_kv) / (2·n·d_kv)
        Close((2.0 * 8192 + 2 * 1024) / (2.0 * 4096 * 1024), ServingCostModel.NetworkToMemoryRatio(M70, 4096), "traffic ratio");
        // ridge points of the spec's devices: 989/3.35 and 148/4.0 FLOP per byte
        Close(989e12 / 3350e9, H100.RidgeFlopsPerByte, "H100 ridge");
        Close(148e12 / 4000e9, H20.RidgeFlopsPerByte, "H20 ridge");
        // decode attention's arithmetic intensity 4·L·n·d / (n·2·L·d_kv·b) = 2d/(d_kv·b) = 8 for GQA-8 bf16: below both ridges
        double intensity = M70.AttentionFlopsPerToken(4096) / M70.KvBytesReadPerToken(4096);
        Close(2.0 * 8192 / (1024 * 2), intensity, "attention intensity");
        Assert.True(intensity < H20.RidgeFlopsPerByte && intensity < H100.RidgeFlopsPerByte);
    }

    [Fact]
    public void HomogeneousStepIsLinearPlusAttention()
    {
        var homo = ClusterConfig.Homogeneous(H100, 4, overlap: false);
        const int B = 64, n = 4096;
        var e = ServingCostModel.Estimate(M70, homo, new Workload(B, n));
        double lin = Math.Max(B * 2 * 70e9 / (4 * 989e12), 70e9 * 2 / (4 * 3350e9));        // max(FLOPs, weight read)
        double attn = B * (n * 2.0 * 80 * 1024 * 2) / (4 * 3350e9);                          // KV bytes / bandwidth
        Close(lin * 1e3, e.ModelMs, "linear ms");
        Close(attn * 1e3, e.AttentionMs, "attention ms");
        Assert.True(e.AttentionBandwidthBound);
        Assert.Equal(0, e.NetworkMs);
        Close((lin + attn) * 1e3, e.StepMs, "step ms");
        Close(B / (lin + attn), e.TokensPerSecond, "tokens/s");
        Close(B / (lin + attn) * 3600 / (4 * 2.0), e.TokensPerDollar, "tokens per $");
        // memory: ⌊(4·80 GB·0.9 − 140 GB) / (n · 2·80·1024·2 B)⌋
        int max = (int)Math.Floor((4 * 80e9 * 0.9 - 140e9) / (n * 2.0 * 80 * 1024 * 2));
        Assert.Equal(max, e.MaxBatch);
        Assert.True(e.Fits);
        Assert.False(ServingCostModel.Estimate(M70, homo, new Workload(max + 1, n)).Fits);
        Assert.Equal(0, ServingCostModel.MaxBatch(M70, ClusterConfig.Homogeneous(H100, 1), n));   // 140 GB of weights on one 80 GB card
    }

    [Fact]
    public void PipelinedHomogeneousStepIsTheBusierOfComputeAndMemory()
    {
        // the same rule as the offloaded side: each resource's work over its rate, the largest of them
        var homo = ClusterConfig.Homogeneous(H100, 4);
        foreach (var (B, n) in new[] { (64, 4096), (1024, 1024), (8, 131072) })
        {
            var e = ServingCostModel.Estimate(M70, homo, new Workload(B, n));
            double flops = B * 2 * 70e9 + B * 4.0 * 80 * n * 8192;                             // linear + attention FLOPs
            double bytes = 70e9 * 2 + B * (n * 2.0 * 80 * 1024 * 2);                            // weights + KV read
            double step = Math.Max(flops / (4 * 989e12), bytes / (4 * 3350e9));
            Close(step * 1e3, e.StepMs, $"pipelined homogeneous step at B={B}, n={n}");
            Assert.True(e.StepMs >= Math.Max(e.ModelMs, e.AttentionMs) && e.StepMs <= e.ModelMs + e.AttentionMs + 1e-12, "between max and sum of the stages");
            Close(B / step * 3600 / (4 * 2.0), e.TokensPerDollar, "tokens per $");
        }
    }

    [Fact]
    public void OffloadedStepIsTheSlowestOfModelAttentionAndNetwork()
    {
        var off = ClusterConfig.Heterogeneous(H100, 2, H20, 4, networkGBs: 50, networkLatencyUs: 10);
        const int B = 200, n = 8192;
        var e = ServingCostModel.Estimate(M70, off, new Workload(B, n));
        double lin = Math.Max(B * 2 * 70e9 / (2 * 989e12), 140e9 / (2 * 3350e9));
        double attn = B * (n * 2.0 * 80 * 1024 * 2) / (4 * 4000e9);
        double netBytes = B * 80 * (2.0 * 8192 + 2 * 1024) * 2;                               // B·L·(2d + 2d_kv)·b
        double net = netBytes / (4 * 50e9);
        Close(netBytes, e.NetworkBytesPerStep, "network bytes");
        Close(net * 1e3, e.NetworkMs, "network ms");
        Close(80 * 10e-6 * 1e3, e.NetworkLatencyMs, "latency ms");
        Close((Math.Max(lin, Math.Max(attn, net)) + 80 * 10e-6) * 1e3, e.StepMs, "pipelined step: busiest stage + L·RTT");
        Close((lin + attn + net + 80 * 10e-6) * 1e3, e.TokenLatencyMs, "token latency");
        Assert.Equal((int)Math.Floor(4 * 96e9 * 0.9 / (n * 2.0 * 80 * 1024 * 2)), e.MaxBatch);
        Close(2 * 2.0 + 4 * 1.0, e.PricePerHour, "price");
        var serial = ServingCostModel.Estimate(M70, off with { Overlap = false }, new Workload(B, n));
        Close((lin + attn + net + 80 * 10e-6) * 1e3, serial.StepMs, "serial step: every stage + L·RTT");
        Assert.True(serial.TokensPerSecond < e.TokensPerSecond);
        // the latency is paid per step: 30 µs round trips add L·30 µs to both forms
        var slow = ServingCostModel.Estimate(M70, off with { NetworkLatencyUs = 30 }, new Workload(B, n));
        Close((Math.Max(lin, Math.Max(attn, net)) + 80 * 30e-6) * 1e3, slow.StepMs, "pipelined step with 30 µs RTT");
    }

    [Fact]
    public void SerialStepsAreTheSameModelOnBothSides()
    {
        // offloaded onto copies of the model devices, with a free network and no latency: the serial steps coincide
        var homo = ClusterConfig.Homogeneous(H100, 2, overlap: false);
        var twin = ClusterConfig.Heterogeneous(H100, 2, H100, 2, networkGBs: 1e15, networkLatencyUs: 0, overlap: false);
        foreach (var (B, n) in new[] { (1, 512), (64, 4096), (200, 65536) })
        {
            var w = new Workload(B, n);
            Close(ServingCostModel.Estimate(M70, homo, w).StepMs, ServingCostModel.Estimate(M70, twin, w).StepMs, $"serial twin at B={B}, n={n}");
        }
        // pipelined, the twin has twice the devices: never slower
        var homoP = homo with { Overlap = true };
        var twinP = twin with { Overlap = true };
        Assert.True(ServingCostModel.Estimate(M70, twinP, new Workload(64, 4096)).StepMs
            <= ServingCostModel.Estimate(M70, homoP, new Workload(64, 4096)).StepMs);
        // comparing a pipelined setup with a serial one is refused
        Assert.Equal("offloaded", Assert.Throws<ArgumentException>(() => ServingCostModel.Ratio(M70, homo, twinP, 4096, 64)).ParamName);
        Assert.Equal("offloaded", Assert.Throws<ArgumentException>(() => ServingCostModel.Estimate(M70, homoP, twin, new[] { 1024 }, new[] { 8 })).ParamName);
    }

    [Fact]
    public void MoreBandwidthOrComputeNeverLowersThroughput()
    {
        foreach (bool overlap in new[] { true, false })
        foreach (int n in new[] { 512, 4096, 65536 })
            foreach (int b in new[] { 1, 16, 256 })
            {
                var off = ClusterConfig.Heterogeneous(H100, 2, H20, 4, overlap: overlap);
                var homo = ClusterConfig.Homogeneous(H100, 4, overlap: overlap);
                var w = new Workload(b, n);
                foreach (var (name, baseCfg, better) in new (string, ClusterConfig, ClusterConfig)[]
                {
                    ("attention bandwidth", off, off with { AttentionDevice = H20 with { MemBwGBs = 8000 } }),
                    ("network bandwidth", off, off with { NetworkGBs = 400 }),
                    ("model FLOPs", off, off with { ModelDevice = H100 with { PeakTflops = 2000 } }),
                    ("model bandwidth", homo, homo with { ModelDevice = H100 with { MemBwGBs = 4800 } }),
                    ("attention devices", off, off.WithAttentionDevices(8)),
                })
                    Assert.True(ServingCostModel.Estimate(M70, better, w).TokensPerSecond >= ServingCostModel.Estimate(M70, baseCfg, w).TokensPerSecond,
                        $"more {name} lowered throughput at n={n}, B={b}, overlap {overlap}");
            }
    }

    [Fact]
    public void RatioTendsToOneAsAttentionVanishes()
    {
        // same four model devices on both sides; the offloaded one adds an attention device and a free, latency-free network
        var homo = ClusterConfig.Homogeneous(H100, 4);
        var off = ClusterConfig.Heterogeneous(H100, 4, H20, 1, networkGBs: 1e6, networkLatencyUs: 0);
        double previous = double.PositiveInfinity;
        foreach (int dkv in new[] { 1024, 64, 4, 1 })
        {
            var model = M70 with { DKv = dkv, DModel = dkv * 8 };
            var w = new Workload(64, 16);
            var h = ServingCostModel.Estimate(model, homo, w);
            var o = ServingCostModel.Estimate(model, off, w);
            double gap = Math.Abs(o.TokensPerSecond / h.TokensPerSecond - 1);
            Assert.True(gap <= previous, $"throughput ratio moves away from 1 as attention shrinks (d_kv = {dkv})");
            previous = gap;
        }
        Assert.True(previous < 1e-4, $"throughput ratio {previous} from 1 with negligible attention");
    }

    [Fact]
    public void SmokeConfigTablesHaveEveryRow()
    {
        // the ratio's verdict is a claim (tests/expected-claims.csv); here only the tables, and the ratios for the log
        var c = OffloadingExperiment.Config.Smoke;
        foreach (bool overlap in new[] { true, false })
        {
            var cc = c with { Overlap = overlap };
            output.WriteLine($"overlap {overlap}: " + string.Join(", ",
                c.Contexts.Select(n => $"{n}: {ServingCostModel.Ratio(cc.Model, cc.Homogeneous, cc.Offloaded, n, cc.BatchCap):F3}")));
        }
        var df = ServingCostModel.Estimate(c.Model, c.Homogeneous, c.Offloaded, c.Contexts, c.BatchCaps);
        Assert.Equal(2L * c.Contexts.Length * c.BatchCaps.Length, df.Rows.Count);
        Assert.Contains("tokens_per_dollar", df.Columns.Select(x => x.Name));
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        var homo = ClusterConfig.Homogeneous(H100, 4);
        Assert.Equal("device", Assert.Throws<ArgumentException>(() => (H100 with { MemBwGBs = -1 }).Validated()).ParamName);
        Assert.Equal("device", Assert.Throws<ArgumentException>(() => DeviceSpec.H20(double.NaN)).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => ServingCostModel.Estimate(M70 with { Layers = 0 }, homo, new Workload(1, 1))).ParamName);
        Assert.Equal("config", Assert.Throws<ArgumentException>(
            () => ServingCostModel.Estimate(M70, homo with { ModelDevices = 0 }, new Workload(1, 1))).ParamName);
        Assert.Equal("config", Assert.Throws<ArgumentException>(() => ClusterConfig.Heterogeneous(H100, 2, H20, 0)).ParamName);
        Assert.Equal("config", Assert.Throws<ArgumentException>(() => ClusterConfig.Heterogeneous(H100, 2, H20, 4, networkGBs: 0)).ParamName);
        Assert.Equal("config", Assert.Throws<ArgumentException>(() => ClusterConfig.Homogeneous(H100, 2, usableMemoryFraction: 1.5)).ParamName);
        Assert.Equal("workload", Assert.Throws<ArgumentException>(() => ServingCostModel.Estimate(M70, homo, new Workload(0, 10))).ParamName);
        Assert.Equal("workload", Assert.Throws<ArgumentException>(() => ServingCostModel.Estimate(M70, homo, new Workload(4, -1))).ParamName);
        Assert.Equal("context", Assert.Throws<ArgumentException>(() => ServingCostModel.MaxBatch(M70, homo, 0)).ParamName);
        Assert.Equal("batchCap", Assert.Throws<ArgumentException>(() => ServingCostModel.AtBatchCap(M70, homo, 10, 0)).ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentException>(() => homo.WithAttentionDevices(2)).ParamName);
        Assert.Equal("contexts", Assert.Throws<ArgumentException>(() => ServingCostModel.Estimate(M70, homo, homo, Array.Empty<int>(), new[] { 1 })).ParamName);
        Assert.Equal("config", Assert.Throws<ArgumentException>(
            () => (OffloadingExperiment.Config.Smoke with { ProbeContexts = new[] { 64, 64 } }).Validated()).ParamName);
        Assert.Equal("config", Assert.Throws<ArgumentException>(
            () => (OffloadingExperiment.Config.Smoke with { Contexts = new[] { 0 } }).Validated()).ParamName);
    }
}
