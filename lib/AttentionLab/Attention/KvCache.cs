using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Keys and values of every token seen so far, [B, T, H, D], for decoding one step at a time. Memory grows
/// linearly with T (capacity doubles when full). Stores detached copies: decoding is inference.
/// </summary>
public sealed class KvCache : IDisposable
{
    Tensor keys, values;   // [B, capacity, H, D] buffers owned by this cache

    public KvCache(long batch, long heads, long keyDim, long valueDim, ScalarType dtype = ScalarType.Float32, Device? device = null, long initialCapacity = 16)
    {
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(keyDim, nameof(keyDim)); Guard.Positive(valueDim, nameof(valueDim));
        Guard.Positive(initialCapacity, nameof(initialCapacity));
        Guard.FloatingDtype(dtype, nameof(dtype));
        keys = torch.zeros(new[] { batch, initialCapacity, heads, keyDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        values = torch.zeros(new[] { batch, initialCapacity, heads, valueDim }, dtype: dtype, device: device).DetachFromDisposeScope();
    }

    /// <summary>Tokens stored.</summary>
    public long Length { get; private set; }
    /// <summary>Bytes of the stored keys and values (Length tokens).</summary>
    public long Bytes => Length * (PerToken(keys) + PerToken(values));
    /// <summary>Bytes of the buffers, including unused capacity.</summary>
    public long AllocatedBytes => keys.size(1) * (PerToken(keys) + PerToken(values));

    static long PerToken(Tensor t) => t.size(0) * t.size(2) * t.size(3) * t.ElementSize;

    /// <summary>Appends k [B, Tnew, H, D] and v [B, Tnew, H, Dv].</summary>
    public void Append(Tensor k, Tensor v)
    {
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Rank(v, 4, nameof(v), "B, T, H, Dv");
        Guard.FloatingPoint(k, nameof(k));
        Guard.FloatingPoint(v, nameof(v));
        if (k.size(0) != keys.size(0) || k.size(2) != keys.size(2) || k.size(3) != keys.size(3))
            throw new ArgumentException($"k {Guard.ShapeText(k)} does not fit the cache's keys {Guard.ShapeText(keys)}.", nameof(k));
        if (v.size(0) != k.size(0) || v.size(1) != k.size(1) || v.size(2) != values.size(2) || v.size(3) != values.size(3))
            throw new ArgumentException(
                $"v {Guard.ShapeText(v)} does not fit k {Guard.ShapeText(k)} and the cache's values {Guard.ShapeText(values)}.", nameof(v));
        long n = k.size(1);
        if (Length + n > keys.size(1)) Grow(Math.Max(2 * keys.size(1), Length + n));
        using var scope = NewDisposeScope();
        using (torch.no_grad())
        {
            keys.narrow(1, Length, n).copy_(k.detach());
            values.narrow(1, Length, n).copy_(v.detach());
        }
        Length += n;
    }

    /// <summary>
    /// Drops tokens [<paramref name="start"/>, start + count) and closes the gap (later tokens move down; the capacity stays):
    /// for caches that forget from the middle (S2's heads drop a block that leaves their window).
    /// </summary>
    public void RemoveRange(long start, long count)
    {
        if (start < 0 || start > Length) throw new ArgumentException($"start {start} must lie in [0, {Length}].", nameof(start));
        if (count < 0 || start + count > Length)
            throw new ArgumentException($"count {count} from {start} runs past the {Length} stored tokens.", nameof(count));
        long tail = Length - start - count;
        if (count > 0 && tail > 0)
        {
            using var scope = NewDisposeScope();
            using (torch.no_grad())
            {
                keys.narrow(1, start, tail).copy_(keys.narrow(1, start + count, tail).clone());     // clone: the ranges may overlap
                values.narrow(1, start, tail).copy_(values.narrow(1, start + count, tail).clone());
            }
        }
        Length -= count;
    }

    /// <summary>The stored keys [B, Length, H, D] (a view; a new handle in the caller's scope).</summary>
    public Tensor Keys => keys.narrow(1, 0, Length);
    /// <summary>The stored values [B, Length, H, Dv].</summary>
    public Tensor Values => values.narrow(1, 0, Length);

    void Grow(long capacity)
    {
        using var scope = NewDisposeScope();
        Tensor Bigger(Tensor old)
        {
            var shape = old.shape.ToArray(); shape[1] = capacity;
            var t = torch.zeros(shape, dtype: old.dtype, device: old.device);
            t.narrow(1, 0, Length).copy_(old.narrow(1, 0, Length));
            return t.DetachFromDisposeScope();
        }
        var (k, v) = (Bigger(keys), Bigger(values));
        keys.Dispose(); values.Dispose();
        (keys, values) = (k, v);
    }

    public void Dispose()
    {
        keys.Dispose(); values.Dispose();
    }
}
