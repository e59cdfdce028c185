using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.VAttention;

/// <summary>
/// vAttention's layout with real tensors: one contiguous buffer per K and V, [slots, max_ctx, H, D]; request r owns slot
/// r at a fixed offset and holds len_r tokens, so attention takes (buffer, lengths) and reads keys in place, with no
/// block table and no gather. On CUDA vAttention backs only the touched pages of this buffer (CUDA VMM); TorchSharp
/// cannot wrap a VMM-mapped pointer, so here the buffer is allocated in full and <see cref="MappedBytes"/> reports what
/// on-demand pages of <see cref="PageTokens"/> tokens would back (a computed number, not a measurement).
/// </summary>
/// <remarks>
/// mapped bytes = Σ_r ⌈len_r / page_tokens⌉ · page_tokens · bytes/token; reserved bytes = slots · max_ctx · bytes/token.
/// </remarks>
public sealed class SlotKvCache : IDisposable
{
    Tensor keys, values;                   // [S, max_ctx, H, D] and [S, max_ctx, H, Dv]
    readonly long[] lengths;
    bool disposed;

    /// <param name="slots">batch slots, S.</param>
    /// <param name="maxContext">tokens per slot.</param>
    /// <param name="heads">KV heads, H.</param>
    /// <param name="keyDim">key head dim, D.</param>
    /// <param name="valueDim">value head dim, Dv.</param>
    /// <param name="pageTokens">tokens per page for <see cref="MappedBytes"/> (vAttention maps pages, not tokens).</param>
    /// <param name="dtype">element type.</param>
    /// <param name="device">where the buffers live.</param>
    public SlotKvCache(int slots, int maxContext, long heads, long keyDim, long valueDim, int pageTokens = 32,
        ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Guard.Positive(slots, nameof(slots)); Guard.Positive(maxContext, nameof(maxContext));
        Guard.Positive(heads, nameof(heads)); Guard.Positive(keyDim, nameof(keyDim)); Guard.Positive(valueDim, nameof(valueDim));
        Guard.Positive(pageTokens, nameof(pageTokens));
        PageTokens = pageTokens;
        keys = torch.zeros(new long[] { slots, maxContext, heads, keyDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        values = torch.zeros(new long[] { slots, maxContext, heads, valueDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        lengths = new long[slots];
    }

    /// <summary>Batch slots.</summary>
    public int Slots => lengths.Length;
    /// <summary>Tokens per slot.</summary>
    public long MaxContext => keys.shape[1];
    /// <summary>Tokens per (simulated) page.</summary>
    public int PageTokens { get; }
    /// <summary>Tokens held by each slot.</summary>
    public IReadOnlyList<long> Lengths => lengths;
    /// <summary>H · (D + Dv) · element size.</summary>
    public long BytesPerToken => keys.shape[2] * (keys.shape[3] + values.shape[3]) * keys.ElementSize;
    /// <summary>Σ_r len_r · bytes/token.</summary>
    public long Bytes => lengths.Sum() * BytesPerToken;
    /// <summary>What on-demand pages would back: Σ_r ⌈len_r / page_tokens⌉ · page_tokens · bytes/token.</summary>
    public long MappedBytes => lengths.Sum(l => (l + PageTokens - 1) / PageTokens * PageTokens) * BytesPerToken;
    /// <summary>The whole buffer: slots · max_ctx · bytes/token (what this CPU cache really allocates).</summary>
    public long ReservedBytes => Slots * MaxContext * BytesPerToken;

    /// <summary>Appends k [T, H, D] and v [T, H, Dv] to <paramref name="slot"/>.</summary>
    public void Append(int slot, Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckSlot(slot);
        Guard.Rank(k, 3, nameof(k), "T, H, D");
        Guard.Rank(v, 3, nameof(v), "T, H, Dv");
        if (k.shape[1] != keys.shape[2] || k.shape[2] != keys.shape[3])
            throw new ArgumentException($"k {Guard.ShapeText(k)} does not fit the cache's [T, {keys.shape[2]}, {keys.shape[3]}].", nameof(k));
        if (v.shape[0] != k.shape[0] || v.shape[1] != values.shape[2] || v.shape[2] != values.shape[3])
            throw new ArgumentException(
                $"v {Guard.ShapeText(v)} does not fit k {Guard.ShapeText(k)} and the cache's [T, {values.shape[2]}, {values.shape[3]}].", nameof(v));
        Guard.SameDtype(keys, "the cache", k, nameof(k)); Guard.SameDtype(keys, "the cache", v, nameof(v));
        Guard.SameDevice(keys, "the cache", k, nameof(k)); Guard.SameDevice(keys, "the cache", v, nameof(v));
        long n = k.shape[0];
        if (lengths[slot] + n > MaxContext)
            throw new ArgumentException($"k adds {n} tokens to slot {slot} holding {lengths[slot]}: more than max_ctx {MaxContext}.", nameof(k));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        keys[slot].narrow(0, lengths[slot], n).copy_(k);                                   // slot r, offset len_r: no table
        values[slot].narrow(0, lengths[slot], n).copy_(v);
        lengths[slot] += n;
    }

    /// <summary>Ends the request in <paramref name="slot"/>: its length becomes 0 (stale keys stay but are masked).</summary>
    public void Free(int slot) => lengths[CheckSlot(slot)] = 0;

    /// <summary>Keys [S, Lmax, H, D] and values [S, Lmax, H, Dv] of every slot, Lmax = the longest slot: views, no copy.</summary>
    public (Tensor Keys, Tensor Values) Window()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        long lmax = Math.Max(1, lengths.Max());
        return (keys.narrow(1, 0, lmax), values.narrow(1, 0, lmax));
    }

    /// <summary>One slot's keys [1, len, H, D] and values [1, len, H, Dv] (views).</summary>
    public (Tensor Keys, Tensor Values) Slot(int slot)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckSlot(slot);
        return (keys.narrow(0, slot, 1).narrow(1, 0, lengths[slot]), values.narrow(0, slot, 1).narrow(1, 0, lengths[slot]));
    }

    int CheckSlot(int slot)
    {
        if (slot < 0 || slot >= lengths.Length)
            throw new ArgumentOutOfRangeException(nameof(slot), slot, $"slot must be in [0, {lengths.Length}).");
        return slot;
    }

    /// <summary>Frees both buffers.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        keys.Dispose(); values.Dispose();
    }
}
