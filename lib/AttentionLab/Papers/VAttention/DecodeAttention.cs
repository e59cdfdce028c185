using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.VAttention;

/// <summary>
/// Attention of the newest Tq tokens of every sequence over its own cache, three ways: over vAttention's contiguous
/// slots (<see cref="Contiguous"/>, reads keys in place), over vLLM's paged pool with a non-paged kernel
/// (<see cref="PagedGather"/>: copy the blocks into a padded tensor first: the "paging tax"), and with a paged-aware
/// loop over block-table columns merging partial softmaxes (<see cref="PagedBlocks"/>). <see cref="VAttentionNaive.Decode"/> is the
/// obviously-correct twin: one reference attention per sequence on its exact-length keys.
/// </summary>
/// <remarks>
/// Length mask: query i (of Tq, end-aligned) of sequence b sees key j iff j &lt; L_b and j ≤ L_b − Tq + i.
/// Block merge: (m, u, w) per block with m = max_j s_j, u = Σ_j e^{s_j−m}, w = Σ_j e^{s_j−m} v_j, combined by
/// <see cref="SoftmaxMonoid.Combine"/>; o = w / u.
/// </remarks>
public static class DecodeAttention
{
    /// <summary>[B, 1, Tq, Lmax] boolean keep-mask from lengths: j &lt; L_b and j ≤ L_b − Tq + i (broadcasts over heads).</summary>
    public static Tensor LengthMask(IReadOnlyList<long> lengths, long tq, long lmax, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        if (lengths.Count == 0) throw new ArgumentException("lengths must not be empty.", nameof(lengths));
        if (lengths.Any(l => l < 0)) throw new ArgumentException("lengths must be ≥ 0.", nameof(lengths));
        Guard.Positive(tq, nameof(tq)); Guard.Positive(lmax, nameof(lmax));
        using var scope = NewDisposeScope();
        var len = torch.tensor(lengths.ToArray(), dtype: ScalarType.Int64, device: device).view(-1, 1, 1);     // L_b
        var i = torch.arange(tq, dtype: ScalarType.Int64, device: device).view(1, -1, 1);
        var j = torch.arange(lmax, dtype: ScalarType.Int64, device: device).view(1, 1, -1);
        var keep = (j < len).logical_and(j <= len - tq + i);                                                   // [B, Tq, Lmax]
        return keep.unsqueeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>q [S, Tq, Hq, D] over the slots of <paramref name="cache"/>, in place (views of the buffers, masked by length).</summary>
    public static AttentionResult Contiguous(SlotKvCache cache, Tensor q, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        CheckQuery(q, cache.Slots, nameof(q));
        using var scope = NewDisposeScope();
        var (k, v) = cache.Window();                                                   // [S, Lmax, H, D]: no copy
        var mask = LengthMask(cache.Lengths, q.shape[1], k.shape[1], q.device);
        return ReferenceAttention.Softmax(q, k, v, scale: scale, mask: mask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// q [B, Tq, Hq, D] over a <see cref="PagedKvCache"/>: gather every sequence's blocks into [B, Lmax, H, D], then the same masked attention.
    /// </summary>
    public static AttentionResult PagedGather(PagedKvCache cache, Tensor q, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        CheckQuery(q, cache.Sequences, nameof(q));
        CheckNotEmpty(cache.Lengths, nameof(cache));
        using var scope = NewDisposeScope();
        using var gathered = cache.Gather();                                          // the copy a non-paged kernel needs
        var mask = LengthMask(cache.Lengths, q.shape[1], gathered.Keys.shape[1], q.device);
        return ReferenceAttention.Softmax(q, gathered.Keys, gathered.Values, scale: scale, mask: mask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// q [B, Tq, Hq, D] over a <see cref="PagedKvCache"/>, one block-table column at a time (block i of every sequence,
    /// [B, β, H, D] by index), merging the partial softmaxes: output [B, Tq, Hq, Dv] and LSE [B, Hq, Tq].
    /// </summary>
    public static (Tensor Output, Tensor LogSumExp) PagedBlocks(PagedKvCache cache, Tensor q, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        CheckQuery(q, cache.Sequences, nameof(q));
        CheckNotEmpty(cache.Lengths, nameof(cache));
        using var scope = NewDisposeScope();
        var (keyPool, valuePool) = cache.Pools();                                     // [blocks, β, H, D]
        int beta = cache.BlockSize, b = cache.Sequences;
        long tq = q.shape[1], hq = q.shape[2], dv = valuePool.shape[3];
        int columns = Enumerable.Range(0, b).Max(s => cache.BlockTable(s).Count);
        var mask = LengthMask(cache.Lengths, tq, (long)columns * beta, q.device);       // [B, 1, Tq, columns·β]
        var state = SoftmaxMonoid.Identity(new[] { (long)b, hq, tq }, dv, q.dtype, q.device);
        for (int c = 0; c < columns; c++)
        {
            using var step = NewDisposeScope();
            var ids = Enumerable.Range(0, b).Select(s => cache.BlockTable(s) is var t && c < t.Count ? (long)t[c] : 0L).ToArray();
            var idx = torch.tensor(ids, dtype: ScalarType.Int64, device: q.device);
            var k = keyPool.index_select(0, idx);                                      // block c of every sequence [B, β, H, D]
            var v = valuePool.index_select(0, idx);
            var (s, vh) = ReferenceAttention.MaskedScores(q, k, v, causal: false, scale, mask.narrow(3, (long)c * beta, beta));  // [B, Hq, Tq, β]
            var m = s.amax(new long[] { -1 });                                         // m = max_j s_j (−∞ if all masked)
            var mSafe = torch.where(m.isneginf(), torch.zeros_like(m), m);
            var p = (s - mSafe.unsqueeze(-1)).exp();                                   // e^{s_j − m}, 0 where masked
            var block = new SoftmaxState(m, p.sum(-1), p.matmul(vh));                 // (m, u, w) of this block
            var merged = SoftmaxMonoid.Combine(state, block);
            state.Dispose();
            state = merged.MoveToOuterDisposeScope();
        }
        var output = SoftmaxMonoid.Output(state).permute(0, 2, 1, 3).contiguous();     // o = w / u → [B, Tq, Hq, Dv]
        var lse = SoftmaxMonoid.LogSumExp(state);
        return (output.MoveToOuterDisposeScope(), lse.MoveToOuterDisposeScope());
    }

    internal static void CheckQuery(Tensor q, int batch, string name)
    {
        Guard.Rank(q, 4, name, "B, Tq, Hq, D");
        Guard.FloatingPoint(q, name);
        if (q.shape[0] != batch) throw new ArgumentException($"{name} batch {q.shape[0]} ≠ the cache's {batch} sequences (q {Guard.ShapeText(q)}).", name);
    }

    static void CheckNotEmpty(IReadOnlyList<long> lengths, string name)
    {
        if (lengths.All(l => l == 0)) throw new ArgumentException("the cache holds no tokens.", name);
    }
}
