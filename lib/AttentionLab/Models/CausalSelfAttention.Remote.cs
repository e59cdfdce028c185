using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Bytes and time of attention offloading (Lamina, P27): what crosses between the model device and the attention
/// device, and how long the attention and the transfers take. One meter is shared by every layer of a decode run.
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

public sealed partial class CausalSelfAttention
{
    /// <summary>
    /// A streaming state whose KV cache and attention live on <paramref name="attentionDevice"/> while the projections
    /// stay on the model's device (Lamina's split): per step q_t, k_t, v_t go over, z_t comes back — 4·d values per token
    /// and layer for multi-head attention, independent of the context length.
    /// </summary>
    /// <param name="batch">B.</param>
    /// <param name="dtype">dtype of the cache.</param>
    /// <param name="attentionDevice">where the KV cache and the attention run.</param>
    /// <param name="meter">counts bytes and time (shared across layers); a new one when null.</param>
    public RemoteKvState NewRemoteState(long batch, ScalarType dtype, Device attentionDevice, TransferMeter? meter = null)
    {
        Guard.Positive(batch, nameof(batch));
        ArgumentNullException.ThrowIfNull(attentionDevice);
        if (kind == AttentionKind.SinkLogit)
            throw new ArgumentException("a SinkLogit layer keeps a learned logit on the model device; offloading supports the other kinds.", nameof(attentionDevice));
        return new RemoteKvState(this, new KvCache(batch, Heads, KeyDim, ValueDim, dtype, attentionDevice), attentionDevice, meter ?? new TransferMeter());
    }

    /// <summary>q, k, v [B, 1, H, Dh] on the model device → z [B, 1, H, Dh] on the model device, attention on the state's device.</summary>
    Tensor StepRemote(Tensor q, Tensor k, Tensor v, RemoteKvState r)
    {
        var home = q.device;
        var clock = Stopwatch.StartNew();
        var (qa, ka, va) = (q.to(r.Device), k.to(r.Device), v.to(r.Device));      // → attention device
        Sync(r.Device);
        r.Meter.Transfer += clock.Elapsed;
        r.Meter.BytesToAttention += Bytes(qa) + Bytes(ka) + Bytes(va);
        clock.Restart();
        r.Cache.Append(ka, va);                                                     // append before attending (causality)
        long tk = r.Cache.Length;
        var keyPos = torch.arange(tk, device: r.Device);
        var (z, _) = Attend(qa, r.Cache.Keys, r.Cache.Values, keyPos.narrow(0, tk - 1, 1), keyPos);
        Sync(r.Device);
        r.Meter.Attention += clock.Elapsed;
        clock.Restart();
        var back = z.to(home);                                                      // ← model device
        Sync(home);
        r.Meter.Transfer += clock.Elapsed;
        r.Meter.BytesToModel += Bytes(back);
        return back;
    }

    static long Bytes(Tensor t) => t.NumberOfElements * t.ElementSize;

    static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
    }

    /// <summary>The KV cache of one attention layer on another device than its projections (attention offloading).</summary>
    public sealed class RemoteKvState : AttentionState
    {
        readonly CausalSelfAttention attention;

        public RemoteKvState(CausalSelfAttention attention, KvCache cache, Device device, TransferMeter meter) : base(attention) =>
            (this.attention, Cache, Device, Meter) = (attention, cache, device, meter);
        /// <summary>The cache (un-rotated keys) on <see cref="Device"/>.</summary>
        public KvCache Cache { get; }
        /// <summary>The attention device.</summary>
        public Device Device { get; }
        /// <summary>The run's counters.</summary>
        public TransferMeter Meter { get; }
        public override long Bytes => Cache.Bytes;
        public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
        {
            var z = attention.StepRemote(q, k, v, this);
            Advance();
            return z;
        }
        public override void Dispose() => Cache.Dispose();
    }
}
