using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>What one offloaded decode run moved and spent (totals over steps and layers).</summary>
/// <param name="Steps">decode steps (tokens per sequence).</param>
/// <param name="Layers">attention layers.</param>
/// <param name="BytesToAttention">q, k, v sent to the attention device.</param>
/// <param name="BytesToModel">attention outputs sent back.</param>
/// <param name="MsTotal">wall time of all steps.</param>
/// <param name="MsAttention">attention on the attention device (append, scores, softmax, mix).</param>
/// <param name="MsTransfer">copies both ways.</param>
public sealed record TransferStats(long Steps, int Layers, long BytesToAttention, long BytesToModel, double MsTotal, double MsAttention, double MsTransfer)
{
    /// <summary>Everything else: embeddings, projections, norms, MLPs, unembedding on the model device.</summary>
    public double MsCompute => Math.Max(0, MsTotal - MsAttention - MsTransfer);
    /// <summary>Both directions, per decode step and layer (all sequences of the batch).</summary>
    public double BytesPerStepPerLayer => (BytesToAttention + BytesToModel) / (double)(Steps * Layers);
}

/// <summary>
/// Lamina's split in code (P27 §3): a <see cref="TinyGpt"/> whose projections, norms and MLPs run on the model device
/// while every layer's KV cache and attention run on the attention device. Per step and layer q_t, k_t, v_t go over and
/// z_t comes back — (2·d_model + 2·d_kv)·bytes per token, whatever the context — while the attention device reads
/// 2·n·d_kv·bytes of cache. On a machine with one device both sides are the CPU and the bytes are counted, not sent.
/// </summary>
public sealed class OffloadedDecoder : IDisposable
{
    readonly TinyGpt model;
    readonly TinyGptState state;
    readonly TransferMeter meter = new();
    readonly Stopwatch total = new();

    /// <param name="model">the model, already on <paramref name="modelDevice"/>; every mixer must be a <see cref="CausalSelfAttention"/>.</param>
    /// <param name="modelDevice">where the model's weights are.</param>
    /// <param name="attentionDevice">where the KV caches and the attention go.</param>
    /// <param name="batch">sequences decoded together.</param>
    public OffloadedDecoder(TinyGpt model, Device modelDevice, Device attentionDevice, long batch)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(modelDevice);
        ArgumentNullException.ThrowIfNull(attentionDevice);
        Guard.Positive(batch, nameof(batch));
        var weights = model.parameters().First();
        if (weights.device.type != modelDevice.type || weights.device.index != modelDevice.index && modelDevice.index >= 0)
            throw new ArgumentException(
                $"the model's weights are on {weights.device}, not on modelDevice {modelDevice}; move it first (model.to(modelDevice)).", nameof(model));
        var layers = new List<MixerState>();
        try
        {
            foreach (var (block, i) in model.Blocks.Select((b, i) => (b, i)))
            {
                if (block.Mixer is CausalSelfAttention { Kind: AttentionKind.SinkLogit })
                    throw new ArgumentException($"block {i} is a SinkLogit layer (its learned logit lives on the model device); " +
                                                "offloading supports the other kinds.", nameof(model));
                layers.Add(block.Mixer is CausalSelfAttention a ? RemoteKvState.Create(a, batch, weights.dtype, attentionDevice, meter)
                    : throw new ArgumentException($"offloading needs CausalSelfAttention mixers; block {i} has {block.Mixer.GetType().Name}.", nameof(model)));
            }
        }
        catch { foreach (var l in layers) l.Dispose(); throw; }
        (this.model, ModelDevice, AttentionDevice, Batch) = (model, modelDevice, attentionDevice, batch);
        state = new TinyGptState(layers);
    }

    public Device ModelDevice { get; }
    public Device AttentionDevice { get; }
    public long Batch { get; }
    /// <summary>Tokens decoded so far.</summary>
    public long Position => state.Position;
    /// <summary>KV bytes held on the attention device.</summary>
    public long KvBytes => state.Bytes;

    /// <summary>One token per sequence, ids [B] on the model device → logits [B, V] (the same as local decoding).</summary>
    public Tensor Step(Tensor tokens)
    {
        Guard.Rank(tokens, 1, nameof(tokens), "B");
        if (tokens.shape[0] != Batch)
            throw new ArgumentException($"tokens must hold {Batch} ids (one per sequence), got {Guard.ShapeText(tokens)}.", nameof(tokens));
        total.Start();
        try { return model.Step(tokens, state); }
        finally
        {
            if (ModelDevice.type == DeviceType.CUDA) torch.cuda.synchronize();
            total.Stop();
        }
    }

    /// <summary>Totals so far.</summary>
    public TransferStats Stats => new(state.Position, model.Blocks.Count, meter.BytesToAttention, meter.BytesToModel,
        total.Elapsed.TotalMilliseconds, meter.Attention.TotalMilliseconds, meter.Transfer.TotalMilliseconds);

    /// <summary>The formula: (2·d_model + 2·d_kv)·bytes per token and layer (q and z are d_model wide, k and v d_kv each).</summary>
    public static long BytesPerTokenPerLayer(TinyGptConfig config, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(config);
        using var probe = torch.empty(1, dtype: dtype);
        return (2L * config.DModel + 2L * config.DModel) * probe.ElementSize;   // TinyGpt is multi-head: d_kv = d_model
    }

    public void Dispose() => state.Dispose();
}

/// <summary>One context length of the functional offload run.</summary>
/// <param name="Context">tokens in the cache when the timed steps start.</param>
/// <param name="NetworkBytesPerToken">measured bytes both ways per token (all layers).</param>
/// <param name="FormulaBytesPerToken">(2d + 2d_kv)·bytes·layers.</param>
/// <param name="KvBytesReadPerToken">2·n·d_kv·bytes·layers: what the attention device reads per token.</param>
/// <param name="MsCompute">model-device work per step.</param>
/// <param name="MsAttention">attention-device work per step.</param>
/// <param name="MsTransfer">copies per step.</param>
/// <param name="MaxAbsVsLocal">max |offloaded − local| logits over the timed steps.</param>
public sealed record OffloadPoint(int Context, double NetworkBytesPerToken, double FormulaBytesPerToken, double KvBytesReadPerToken,
    double MsCompute, double MsAttention, double MsTransfer, double MaxAbsVsLocal);

/// <summary>Part (b) of the notebook: decode a random-weight TinyGpt with the attention offloaded, against local decoding.</summary>
public static class FunctionalOffload
{
    /// <summary>The toy model: 2 layers, d 64, 4 heads, RoPE, MLP; random weights (the bytes and the equality do not need training).</summary>
    public static TinyGptConfig ModelConfig(int maxLength) =>
        new(Layers: 2, DModel: 64, Heads: 4, VocabSize: 64, Positions: PositionKind.Rope, MaxLength: maxLength);

    /// <summary>For each context n: prefill n − steps tokens by decoding them, then time <paramref name="steps"/> steps.</summary>
    public static IReadOnlyList<OffloadPoint> Run(IReadOnlyList<int> contexts, int batch, int steps, Device modelDevice, Device attentionDevice, int seed = 0,
        IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        if (contexts.Count == 0 || contexts.Any(n => n <= steps))
            throw new ArgumentException($"contexts must be non-empty and each > steps = {steps}.", nameof(contexts));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(steps, nameof(steps));
        var config = ModelConfig(contexts.Max());
        torch.manual_seed(seed);
        using var model = new TinyGpt(config);
        model.to(modelDevice).eval();
        using var noGrad = torch.no_grad();
        var points = new List<OffloadPoint>();
        foreach (int n in contexts)
        {
            using var scope = NewDisposeScope();
            var tokens = torch.randint(config.VocabSize, new long[] { batch, n }, generator: new Generator((ulong)(seed + n)), device: CPU).to(modelDevice);
            using var offloaded = new OffloadedDecoder(model, modelDevice, attentionDevice, batch);
            using var local = model.NewState(batch);
            for (int t = 0; t < n - steps; t++) { offloaded.Step(tokens.select(1, t)); model.Step(tokens.select(1, t), local); }
            var before = offloaded.Stats;
            double maxAbs = 0;
            for (int t = n - steps; t < n; t++)
            {
                var a = offloaded.Step(tokens.select(1, t));
                var b = model.Step(tokens.select(1, t), local);
                maxAbs = Math.Max(maxAbs, (a - b).abs().max().ToDouble());
            }
            var after = offloaded.Stats;
            double perStep(double x) => x / steps;
            long layers = config.Layers, dtypeBytes = sizeof(float);
            double midContext = n - steps / 2.0;
            points.Add(new OffloadPoint(n,
                (after.BytesToAttention + after.BytesToModel - before.BytesToAttention - before.BytesToModel) / (double)(steps * batch),
                OffloadedDecoder.BytesPerTokenPerLayer(config) * (double)layers,
                2 * midContext * config.DModel * dtypeBytes * layers,
                perStep(after.MsCompute - before.MsCompute), perStep(after.MsAttention - before.MsAttention), perStep(after.MsTransfer - before.MsTransfer),
                maxAbs));
            progress?.Report($"n = {n}: " +
                $"{points[^1].NetworkBytesPerToken:N0} B/token over the link vs {points[^1].KvBytesReadPerToken:N0} B/token of KV read; " +
                $"max |Δlogit| vs local {maxAbs:E1}");
        }
        return points;
    }

    /// <summary>Columns: context, network and KV bytes per token, the formula, ms per step by part, max |Δ| vs local.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<OffloadPoint> points) => new(
        new Int32DataFrameColumn("context", points.Select(p => p.Context)),
        new DoubleDataFrameColumn("network_bytes_per_token", points.Select(p => p.NetworkBytesPerToken)),
        new DoubleDataFrameColumn("formula_bytes_per_token", points.Select(p => p.FormulaBytesPerToken)),
        new DoubleDataFrameColumn("kv_bytes_read_per_token", points.Select(p => p.KvBytesReadPerToken)),
        new DoubleDataFrameColumn("ms_compute", points.Select(p => p.MsCompute)),
        new DoubleDataFrameColumn("ms_attention", points.Select(p => p.MsAttention)),
        new DoubleDataFrameColumn("ms_transfer", points.Select(p => p.MsTransfer)),
        new DoubleDataFrameColumn("max_abs_vs_local", points.Select(p => p.MaxAbsVsLocal)));
}
