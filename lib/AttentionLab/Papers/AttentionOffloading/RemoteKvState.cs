using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>
/// Bytes and time of attention offloading (Lamina): what crosses between the model device and the attention device, and
/// how long the attention and the transfers take. One meter is shared by every layer of a decode run.
/// </summary>
public sealed class TransferMeter
{
    /// <summary>Bytes sent to the attention device (q_t, k_t, v_t per layer and step).</summary>
    public long BytesToAttention { get; internal set; }
    /// <summary>Bytes sent back to the model device (the attention output z_t).</summary>
    public long BytesToModel { get; internal set; }
    /// <summary>Wall time of the attention itself (append + scores + softmax + mix) on the attention device.</summary>
    public TimeSpan Attention { get; internal set; }
    /// <summary>Wall time of the copies both ways.</summary>
    public TimeSpan Transfer { get; internal set; }
    /// <summary>Zeroes every counter.</summary>
    public void Reset() { BytesToAttention = BytesToModel = 0; Attention = Transfer = TimeSpan.Zero; }
}

/// <summary>
/// The KV cache of one attention layer on another device than its projections (Lamina's split): per step q_t, k_t, v_t
/// go over, the layer's own attention (<see cref="AttentionMixer.Attend"/>) runs there over the cache, z_t comes back —
/// 4·d values per token and layer for multi-head attention, independent of the context length.
/// </summary>
public sealed class RemoteKvState : AttentionState
{
    readonly CausalSelfAttention attention;

    RemoteKvState(CausalSelfAttention attention, KvCache cache, Device device, TransferMeter meter) : base(attention) =>
        (this.attention, Cache, Device, Meter) = (attention, cache, device, meter);

    /// <summary>An empty remote state of <paramref name="attention"/> for <paramref name="batch"/> sequences.</summary>
    /// <param name="attention">The layer (its projections stay on the model's device).</param>
    /// <param name="batch">B.</param>
    /// <param name="dtype">dtype of the cache.</param>
    /// <param name="attentionDevice">where the KV cache and the attention run.</param>
    /// <param name="meter">counts bytes and time (shared across layers); a new one when null.</param>
    public static RemoteKvState Create(CausalSelfAttention attention, long batch, ScalarType dtype, Device attentionDevice, TransferMeter? meter = null)
    {
        ArgumentNullException.ThrowIfNull(attention);
        Guard.Positive(batch, nameof(batch));
        ArgumentNullException.ThrowIfNull(attentionDevice);
        if (attention.Kind == AttentionKind.SinkLogit)
            throw new ArgumentException("a SinkLogit layer keeps a learned logit on the model device; offloading supports the other kinds.", nameof(attention));
        var cache = new KvCache(batch, attention.Heads, attention.KeyDim, attention.ValueDim, dtype, attentionDevice);
        return new RemoteKvState(attention, cache, attentionDevice, meter ?? new TransferMeter());
    }

    /// <summary>The cache (un-rotated keys) on <see cref="Device"/>.</summary>
    public KvCache Cache { get; }
    /// <summary>The attention device.</summary>
    public Device Device { get; }
    /// <summary>The run's counters.</summary>
    public TransferMeter Meter { get; }
    public override long Bytes => Cache.Bytes;

    /// <summary>q, k, v [B, 1, H, Dh] on the model device → z [B, 1, H, Dh] on the model device, attention on <see cref="Device"/>.</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var home = q.device;
        var clock = Stopwatch.StartNew();
        var (qa, ka, va) = (q.to(Device), k.to(Device), v.to(Device));               // → attention device
        Sync(Device);
        Meter.Transfer += clock.Elapsed;
        Meter.BytesToAttention += SizeOf(qa) + SizeOf(ka) + SizeOf(va);
        clock.Restart();
        Cache.Append(ka, va);                                                       // append before attending (causality)
        long tk = Cache.Length;
        var keyPos = torch.arange(tk, device: Device);
        var (z, _) = attention.Attend(qa, Cache.Keys, Cache.Values, keyPos.narrow(0, tk - 1, 1), keyPos, cachedKeys: true);
        Sync(Device);
        Meter.Attention += clock.Elapsed;
        clock.Restart();
        var back = z.to(home);                                                      // ← model device
        Sync(home);
        Meter.Transfer += clock.Elapsed;
        Meter.BytesToModel += SizeOf(back);
        Advance();
        return back;
    }

    public override void Dispose() => Cache.Dispose();

    static long SizeOf(Tensor t) => t.NumberOfElements * t.ElementSize;

    static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
    }
}
