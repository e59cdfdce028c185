using AttentionLab.Plots;
using Plotly.NET;

namespace AttentionLab.Papers.AttentionOffloading;

public sealed partial record OffloadingResult
{
    static string K(int n) => n >= 1024 ? $"{n / 1024}k" : n.ToString();

    /// <summary>Stacked bars: linear (GEMM), attention, network and L·RTT ms per step for both setups at a few contexts (the
    /// serial sum; pipelined, a step is the busiest resource plus L·RTT — see the step_ms column).</summary>
    public GenericChart TimeBreakdownChart(IReadOnlyList<int>? contexts = null)
    {
        var pick = (contexts ?? new[] { Best[0].Context, Best[Best.Count / 2].Context, Best[^1].Context }).ToList();
        var rows = pick.SelectMany(n => Best.Where(c => c.Context == n).SelectMany(c => new[] { c.Homogeneous, c.Offloaded })).ToList();
        if (rows.Count == 0) throw new ArgumentException("none of these contexts was estimated.", nameof(contexts));
        var names = rows.Select(r => $"{r.Hardware} · {K(r.Context)} · B={r.Batch}").ToList();
        return BarCharts.Stacked(names, new[]
        {
            new BarSegment("linear layers (GEMM / weight read)", rows.Select(r => r.ModelMs).ToList()),
            new BarSegment("attention (KV read)", rows.Select(r => r.AttentionMs).ToList()),
            new BarSegment("network (q, k, v out; o back)", rows.Select(r => r.NetworkMs).ToList()),
            new BarSegment("network latency (L round trips)", rows.Select(r => r.NetworkLatencyMs).ToList()),
        }, "Modelled time per decode step by stage (each setup at its own batch; serial sum)", "ms per step");
    }

    /// <summary>(d) measured: ms per decode step on each side of the split (model device, attention device, copies), per cache length.</summary>
    public GenericChart OffloadTimeChart()
    {
        if (Offload.Count == 0) throw new InvalidOperationException("the functional offload run (d) has no points.");
        return BarCharts.Stacked(Offload.Select(p => $"n = {K(p.Context)}").ToList(), new[]
        {
            new BarSegment("model device (embed, projections, MLP)", Offload.Select(p => p.MsCompute).ToList()),
            new BarSegment("attention device (append + attend)", Offload.Select(p => p.MsAttention).ToList()),
            new BarSegment("copies both ways", Offload.Select(p => p.MsTransfer).ToList()),
        }, $"Measured time per decode step, TinyGpt with offloaded attention (both sides on {ProbeDevice} here)", "ms per step");
    }

    /// <summary>(d) measured: bytes over the link per token (flat) vs KV bytes the attention side reads (∝ n).</summary>
    public GenericChart OffloadTrafficChart()
    {
        if (Offload.Count == 0) throw new InvalidOperationException("the functional offload run (d) has no points.");
        var ns = Offload.Select(p => (double)p.Context).ToArray();
        return Charts.Lines(new[]
        {
            new Series("link bytes per token (measured)", ns, Offload.Select(p => p.NetworkBytesPerToken).ToArray()),
            new Series("(2d + 2d_kv)·bytes·layers (formula)", ns, Offload.Select(p => p.FormulaBytesPerToken).ToArray()),
            new Series("KV bytes read per token", ns, Offload.Select(p => p.KvBytesReadPerToken).ToArray()),
        }, "TinyGpt offload: what crosses the link vs what the attention side reads", "cache length n", "bytes per token", logX: true, logY: true);
    }

    /// <summary>Per token and layer: network bytes (constant) vs KV bytes read (∝ n), log-log.</summary>
    public GenericChart TrafficChart()
    {
        var m = Config.Model;
        var ns = Config.Contexts.Select(n => (double)n).ToArray();
        return Charts.Lines(new[]
        {
            new Series("network (2d + 2d_kv)·b", ns, ns.Select(_ => (2.0 * m.DModel + 2.0 * m.DKv) * m.BytesPerValue).ToArray()),
            new Series("KV read 2·n·d_kv·b", ns, ns.Select(n => 2.0 * n * m.DKv * m.BytesPerValue).ToArray()),
        }, $"Bytes per token per layer ({m.Name})", "context n (tokens)", "bytes", logX: true, logY: true);
    }

    /// <summary>Offloaded/homogeneous tokens per $ vs context: one line per batch cap, and the config's cap.</summary>
    public GenericChart RatioChart()
    {
        var ns = Config.Contexts.Select(n => (double)n).ToArray();
        var series = Config.BatchCaps.Select(b => new Series($"batch cap {b}", ns, Config.Contexts.Select(n => GridRatio(n, b)).ToArray())).ToList();
        series.Add(new Series("ratio = 1", ns, ns.Select(_ => 1.0).ToArray()));
        return Charts.Lines(series, $"Tokens per $: {Config.Offloaded.Hardware} over {Config.Homogeneous.Hardware}", "context n (tokens)", "ratio", logX: true);
    }

    /// <summary>The ratio over (context, batch cap) as a heatmap (rows = batch caps).</summary>
    public GenericChart RatioHeatmap() => Charts.Heatmap(
        Config.BatchCaps.Select(b => Config.Contexts.Select(n => GridRatio(n, b)).ToArray()).ToList(),
        "Tokens-per-$ ratio (offloaded / homogeneous); > 1 favours offloading",
        xLabels: Config.Contexts.Select(K).ToList(), yLabels: Config.BatchCaps.Select(b => b.ToString()).ToList(), xTitle: "context", yTitle: "batch cap");

    /// <summary>Tokens per $ vs batch cap for both setups at one context (default: the sweep context).</summary>
    public GenericChart BatchSweepChart(int? context = null)
    {
        int n = context ?? Config.SweepContext;
        var rows = Grid.Where(r => r.Context == n).ToList();
        if (rows.Count == 0) throw new ArgumentException($"context {n} was not estimated.", nameof(context));
        var caps = Config.BatchCaps.Select(b => (double)b).ToArray();
        Series Of(bool hetero) =>
            new(rows.First(r => r.Heterogeneous == hetero).Hardware, caps, rows.Where(r => r.Heterogeneous == hetero).Select(r => r.TokensPerDollar).ToArray());
        return Charts.Lines(new[] { Of(false), Of(true) }, $"Tokens per $ vs batch cap at context {K(n)} (flat once memory caps the batch)",
            "batch cap", "tokens per $", logX: true);
    }

    /// <summary>Tokens/s and tokens per $ (relative to one device) vs number of attention devices at the sweep context.</summary>
    public GenericChart DeviceSweepChart()
    {
        var a = Config.AttentionDeviceCounts.Select(x => (double)x).ToArray();
        var homo = Best.FirstOrDefault(c => c.Context == Config.SweepContext)?.Homogeneous
                   ?? ServingCostModel.AtBatchCap(Config.Model, Config.Homogeneous, Config.SweepContext, Config.BatchCap);
        return Charts.Lines(new[]
        {
            new Series("offloaded tokens/s ÷ homogeneous", a, DeviceSweep.Select(r => r.TokensPerSecond / homo.TokensPerSecond).ToArray()),
            new Series("offloaded tokens per $ ÷ homogeneous", a, DeviceSweep.Select(r => r.TokensPerDollar / homo.TokensPerDollar).ToArray()),
        }, $"{Config.ModelDevices}×{Config.Compute.Name} + a×{Config.Memory.Name} at context {K(Config.SweepContext)} vs {Config.Homogeneous.Hardware}",
            "attention devices a", "ratio");
    }

    /// <summary>Measured decode attention time vs KV bytes (log-log, fitted slope in the legend) and the fitted line.</summary>
    public GenericChart ProbeChart()
    {
        var fitted = Probe.Where(p => p.Context >= Config.ProbeFitFromContext).ToList();
        var cached = Probe.Where(p => p.Context < Config.ProbeFitFromContext).ToList();
        Series Of(string name, IReadOnlyList<ProbePoint> ps, Func<ProbePoint, double> y) =>
            new(name, ps.Select(p => p.KvBytes / 1048576.0).ToArray(), ps.Select(y).ToArray());
        var series = new List<Series> { Of($"measured on {ProbeDevice}, fitted range (min of repeats)", fitted, p => p.MinMs) };
        if (cached.Count > 0) series.Add(Of("measured, smaller caches (not fitted)", cached, p => p.MinMs));
        series.Add(Of($"t₀ + bytes / {Fit.BandwidthGBs:F1} GB/s", Probe, p => Fit.PredictMs(p.KvBytes)));
        var (chart, _) = AnalysisCharts.LogLogWithSlopes(series, "Decode attention time vs KV cache bytes (slope 1 = bandwidth-bound)", "KV cache (MiB)",
            "ms per step");
        return chart;
    }

    double GridRatio(int context, int cap)
    {
        var h = Grid.First(r => !r.Heterogeneous && r.Context == context && r.Batch == Math.Max(1, Math.Min(cap, r.MaxBatch)));
        var o = Grid.First(r => r.Heterogeneous && r.Context == context && r.Batch == Math.Max(1, Math.Min(cap, r.MaxBatch)));
        return new Comparison(h, o).Ratio;
    }
}
