using AttentionLab.Bench.Systems;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>
/// Every term of one decode step as <see cref="ServingCostModel"/> estimates it (a simulation from peak figures, not a
/// measurement). Times in ms; bytes per step (one new token for each of <see cref="Batch"/> requests).
/// </summary>
public sealed record CostEstimate(
    string Setup, string Hardware, bool Heterogeneous, int Batch, int Context, int MaxBatch, bool Fits, double PricePerHour,
    double LinearComputeMs, double WeightReadMs, double ModelMs, double AttentionMs, bool AttentionBandwidthBound,
    double NetworkMs, double NetworkLatencyMs, double StepMs, double TokenLatencyMs, double TokensPerSecond, double TokensPerDollar,
    double KvBytesReadPerStep, double NetworkBytesPerStep, double KvBytesHeld)
{
    /// <summary>Share of the serial step (model + attention + network) spent in attention.</summary>
    public double AttentionShare => AttentionMs / (ModelMs + AttentionMs + NetworkMs);
}

/// <summary>
/// Lamina's analytic serving model: per decode step, memory-bandwidth-bound attention, compute- (or weight-read-) bound
/// linear layers, network transfer of q/k/v and o with L round trips of latency, and the batch that memory capacity allows.
/// A simulation from peak device figures: it ranks setups and shows where the crossover lies; it does not predict a
/// measured tokens/s. Both setups are estimated under the same overlap assumption (<see cref="ClusterConfig.Overlap"/>).
/// </summary>
/// <remarks>
/// For batch B, context n, model (L, d, d_kv, P, b), n_m model devices (F_m FLOP/s, β_m B/s, M_m B), n_a attention devices:
/// <code>
/// linear:    t_lin  = max(B·2P / (n_m·F_m),  P·b / (n_m·β_m))            roofline: FLOPs vs one read of the weights
/// attention: t_attn = max(B·n·2·L·d_kv·b / (k·β),  B·4·L·n·d / (k·F))     k devices of the attention side
/// network:   t_net  = B·L·(2d + 2d_kv)·b / (n_a·β_net)                    q, k, v out and o back, both directions
/// latency:   t_lat  = L · RTT                                            one round trip per layer, paid by every step
/// step, pipelined (Overlap): every resource busy at once, the step is the busiest one's time
///            homogeneous  t = max((B·2P + B·4·L·n·d) / (n_m·F_m),  (P·b + B·n·2·L·d_kv·b) / (n_m·β_m))
///            offloaded    t = max(t_lin, t_attn, t_net) + t_lat
/// step, serial (no Overlap):
///            homogeneous  t = t_lin + t_attn
///            offloaded    t = t_lin + t_attn + t_net + t_lat
/// memory:    homogeneous  B_max = ⌊(n_m·M_m·f − P·b) / (n·2·L·d_kv·b)⌋
///            offloaded    B_max = ⌊n_a·M_a·f / (n·2·L·d_kv·b)⌋,  and P·b ≤ n_m·M_m·f
/// economics: tokens/s = B / t;   tokens per $ = tokens/s · 3600 / Σ price per hour
/// </code>
/// The pipelined homogeneous step is the same rule as the offloaded one — each resource's work over its rate, the maximum
/// over resources — applied to devices that do both stages; it lies between max(t_lin, t_attn) and t_lin + t_attn.
/// Not modelled: prefill, tensor-parallel communication among the model devices, kernel efficiency below peak,
/// imbalance between attention devices, scheduling. All are the same for both setups or favour the homogeneous one.
/// </remarks>
public static class ServingCostModel
{
    /// <summary>The most requests of context <paramref name="context"/> whose KV cache fits (0 when the weights do not fit).</summary>
    public static int MaxBatch(ModelSpec model, ClusterConfig config, int context)
    {
        Check(model, config);
        if (context <= 0) throw new ArgumentException($"context must be positive, got {context}.", nameof(context));
        double f = config.UsableMemoryFraction;
        double modelSide = config.ModelDevices * config.ModelDevice.MemoryBytes * f;                 // n_m·M_m·f
        if (model.WeightBytes > modelSide) return 0;                                                 // P·b must fit
        double kvRoom = config.IsHeterogeneous
            ? config.AttentionDevices * config.AttentionDevice!.MemoryBytes * f                      // n_a·M_a·f
            : modelSide - model.WeightBytes;                                                         // n_m·M_m·f − P·b
        double perRequest = model.KvBytesReadPerToken(context);                                      // n·2·L·d_kv·b
        return (int)Math.Min(int.MaxValue, Math.Floor(kvRoom / perRequest));
    }

    /// <summary>One decode step of <paramref name="workload"/> on <paramref name="config"/>; Fits says whether memory allows it.</summary>
    public static CostEstimate Estimate(ModelSpec model, ClusterConfig config, Workload workload)
    {
        Check(model, config);
        ArgumentNullException.ThrowIfNull(workload);
        workload.Validated(nameof(workload));
        double B = workload.Batch, n = workload.Context;
        var m = config.ModelDevice;
        double linCompute = B * model.LinearFlopsPerToken / (config.ModelDevices * m.FlopsPerSecond);   // B·2P / (n_m·F_m)
        double weightRead = model.WeightBytes / (config.ModelDevices * m.BytesPerSecond);              // P·b / (n_m·β_m)
        double tLin = Math.Max(linCompute, weightRead);

        var a = config.AttentionDevice ?? m;
        int k = config.IsHeterogeneous ? config.AttentionDevices : config.ModelDevices;
        double kvRead = B * model.KvBytesReadPerToken(n);                                              // B·n·2·L·d_kv·b
        double attnFlops = B * model.AttentionFlopsPerToken(n);                                        // B·4·L·n·d
        double attnBw = kvRead / (k * a.BytesPerSecond), attnCompute = attnFlops / (k * a.FlopsPerSecond);
        double tAttn = Math.Max(attnBw, attnCompute);

        double netBytes = 0, tNet = 0, tLat = 0;
        if (config.IsHeterogeneous)
        {
            netBytes = B * model.Layers * (2.0 * model.DModel + 2.0 * model.DKv) * model.BytesPerValue;  // B·L·(2d + 2d_kv)·b
            tNet = netBytes / (config.AttentionDevices * config.NetworkGBs * 1e9);
            tLat = model.Layers * config.NetworkLatencyUs * 1e-6;                                       // L·RTT
        }
        double serial = tLin + tAttn + tNet + tLat;
        double step = !config.Overlap ? serial
            : config.IsHeterogeneous ? Math.Max(tLin, Math.Max(tAttn, tNet)) + tLat                   // busiest of three resources + L·RTT
            : Math.Max((B * model.LinearFlopsPerToken + attnFlops) / (config.ModelDevices * m.FlopsPerSecond),  // one set of devices:
                       (model.WeightBytes + kvRead) / (config.ModelDevices * m.BytesPerSecond));       // its compute or its memory
        double tokenLatency = serial;
        double tps = B / step;                                                                         // tokens/s = B / t
        double perDollar = config.PricePerHour > 0 ? tps * 3600 / config.PricePerHour : double.PositiveInfinity;
        int maxBatch = MaxBatch(model, config, workload.Context);
        return new CostEstimate(config.Name, config.Hardware, config.IsHeterogeneous, workload.Batch, workload.Context, maxBatch,
            workload.Batch <= maxBatch, config.PricePerHour, linCompute * 1e3, weightRead * 1e3, tLin * 1e3, tAttn * 1e3, attnBw >= attnCompute,
            tNet * 1e3, tLat * 1e3, step * 1e3, tokenLatency * 1e3, tps, perDollar, kvRead, netBytes, B * model.KvBytesReadPerToken(n));
    }

    /// <summary>
    /// The step with the batch a scheduler would run: min(<paramref name="batchCap"/>, the memory limit). When not even one
    /// request fits, the estimate is for batch 1 with Fits = false.
    /// </summary>
    public static CostEstimate AtBatchCap(ModelSpec model, ClusterConfig config, int context, int batchCap)
    {
        if (batchCap <= 0) throw new ArgumentException($"batchCap must be positive, got {batchCap}.", nameof(batchCap));
        int max = MaxBatch(model, config, context);
        return Estimate(model, config, new Workload(Math.Max(1, Math.Min(batchCap, max)), context));
    }

    /// <summary>
    /// Offloaded over homogeneous throughput per dollar, each at its own batch min(cap, memory limit). &gt; 1: offloading
    /// serves more tokens per $. 0 when the offloaded setup cannot hold one request; +∞ when only the homogeneous one cannot.
    /// </summary>
    public static double Ratio(ModelSpec model, ClusterConfig homogeneous, ClusterConfig offloaded, int context, int batchCap)
    {
        SameOverlap(homogeneous, offloaded);
        var h = AtBatchCap(model, homogeneous, context, batchCap);
        var o = AtBatchCap(model, offloaded, context, batchCap);
        if (!o.Fits) return 0;
        if (!h.Fits) return double.PositiveInfinity;
        return o.TokensPerDollar / h.TokensPerDollar;
    }

    /// <summary>Network bytes one token sends and receives per layer over the cache bytes it reads: (2d + 2d_kv) / (2·n·d_kv).</summary>
    public static double NetworkToMemoryRatio(ModelSpec model, int context)
    {
        ArgumentNullException.ThrowIfNull(model);
        model.Validated(nameof(model));
        if (context <= 0) throw new ArgumentException($"context must be positive, got {context}.", nameof(context));
        return (2.0 * model.DModel + 2.0 * model.DKv) / (2.0 * context * model.DKv);
    }

    /// <summary>
    /// Both setups at every (context, batch cap): one row per setup and cell with every cost term (see <see cref="ToDataFrame"/>).
    /// </summary>
    public static DataFrame Estimate(ModelSpec model, ClusterConfig homogeneous, ClusterConfig offloaded, IEnumerable<int> contexts, IEnumerable<int> batchCaps)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        ArgumentNullException.ThrowIfNull(batchCaps);
        SameOverlap(homogeneous, offloaded);
        var ns = contexts.ToArray();
        var bs = batchCaps.ToArray();
        if (ns.Length == 0) throw new ArgumentException("contexts must not be empty.", nameof(contexts));
        if (bs.Length == 0) throw new ArgumentException("batchCaps must not be empty.", nameof(batchCaps));
        var rows = new List<CostEstimate>();
        foreach (int n in ns)
            foreach (int b in bs)
            {
                rows.Add(AtBatchCap(model, homogeneous, n, b));
                rows.Add(AtBatchCap(model, offloaded, n, b));
            }
        return ToDataFrame(rows);
    }

    /// <summary>One row per estimate, every term as a column (times in ms, bytes in GB = 10⁹ B).</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<CostEstimate> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        return new DataFrame(
            new StringDataFrameColumn("setup", rows.Select(r => r.Hardware)),
            new Int32DataFrameColumn("context", rows.Select(r => r.Context)),
            new Int32DataFrameColumn("batch", rows.Select(r => r.Batch)),
            new Int32DataFrameColumn("max_batch", rows.Select(r => r.MaxBatch)),
            new BooleanDataFrameColumn("fits", rows.Select(r => r.Fits)),
            new DoubleDataFrameColumn("linear_ms", rows.Select(r => r.ModelMs)),
            new DoubleDataFrameColumn("attention_ms", rows.Select(r => r.AttentionMs)),
            new DoubleDataFrameColumn("network_ms", rows.Select(r => r.NetworkMs)),
            new DoubleDataFrameColumn("latency_ms", rows.Select(r => r.NetworkLatencyMs)),
            new DoubleDataFrameColumn("step_ms", rows.Select(r => r.StepMs)),
            new DoubleDataFrameColumn("kv_read_gb", rows.Select(r => r.KvBytesReadPerStep / 1e9)),
            new DoubleDataFrameColumn("network_gb", rows.Select(r => r.NetworkBytesPerStep / 1e9)),
            new DoubleDataFrameColumn("tokens_per_s", rows.Select(r => r.TokensPerSecond)),
            new DoubleDataFrameColumn("price_per_h", rows.Select(r => r.PricePerHour)),
            new DoubleDataFrameColumn("tokens_per_dollar", rows.Select(r => r.TokensPerDollar)));
    }

    /// <summary>
    /// Throws an ArgumentException (naming <paramref name="offloaded"/>) when the two setups are estimated under different
    /// overlap assumptions: pipelining one side and not the other would favour it.
    /// </summary>
    public static void SameOverlap(ClusterConfig homogeneous, ClusterConfig offloaded)
    {
        ArgumentNullException.ThrowIfNull(homogeneous);
        ArgumentNullException.ThrowIfNull(offloaded);
        if (homogeneous.Overlap != offloaded.Overlap)
            throw new ArgumentException(
                $"both setups must use the same overlap assumption (homogeneous Overlap = {homogeneous.Overlap}, offloaded Overlap = {offloaded.Overlap}).",
                nameof(offloaded));
    }

    static void Check(ModelSpec model, ClusterConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        model.Validated(nameof(model));
        config.Validated(nameof(config));
    }
}
