using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Boolean keep-masks (true = query i may attend to key j), shaped [Tq, Tk] (or [H, Tq, Tk] for per-head stacks),
/// ready for <see cref="ReferenceAttention.Softmax"/>'s <c>mask</c> (it broadcasts them to [B, H, Tq, Tk]).
/// </summary>
/// <remarks>
/// Every mask is end-aligned like <see cref="ReferenceAttention.CausalKeepMask"/>: query row i sits at absolute
/// position p_i = i + (Tk − Tq), so Tq ≤ Tk is required (a decode step is Tq = 1, Tk = tokens so far). Each mask is
/// the elementwise test written next to it; the tests compare every one with a plain loop of the same definition.
/// </remarks>
public static class AttentionMasks
{
    /// <summary>Causal: j ≤ p_i.</summary>
    public static Tensor Causal(long tq, long tk, Device? device = null)
    {
        CheckLengths(tq, tk);
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        return (j <= p).MoveToOuterDisposeScope();                                  // j ≤ p_i
    }

    /// <summary>
    /// The complement of <see cref="Causal"/> (true where key j lies after the query, j &gt; p_i), cached per (Tq, Tk, device)
    /// for the hot paths that only read it (<c>masked_fill_</c>): built once instead of two ranges, a compare and a
    /// <c>logical_not</c> per call. Never handed to callers, who could dispose it; masks above
    /// <see cref="CachedMaskLimit"/> elements are built per call (the cache holds at most <see cref="CachedMaskCount"/>).
    /// </summary>
    internal static Tensor CausalHidden(long tq, long tk, Device? device = null)
    {
        CheckLengths(tq, tk);
        device ??= CPU;
        if (tq * tk > CachedMaskLimit) return BuildCausalHidden(tq, tk, device);
        var key = (tq, tk, device.type, device.index);
        if (causalHiddenCache.TryGetValue(key, out var cached)) return cached;
        if (causalHiddenCache.Count >= CachedMaskCount) causalHiddenCache.Clear();   // dropped, not disposed: a reader may hold one
        var built = BuildCausalHidden(tq, tk, device).DetachFromDisposeScope();
        return causalHiddenCache.GetOrAdd(key, built);
    }

    /// <summary>Largest mask (Tq·Tk elements, one byte each) <see cref="CausalHidden"/> keeps: 64 MiB.</summary>
    internal const long CachedMaskLimit = 64L << 20;

    /// <summary>How many masks <see cref="CausalHidden"/> keeps before it starts again.</summary>
    internal const int CachedMaskCount = 16;

    static readonly System.Collections.Concurrent.ConcurrentDictionary<(long, long, DeviceType, int), Tensor> causalHiddenCache = new();

    static Tensor BuildCausalHidden(long tq, long tk, Device device)
    {
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        return (j > p).MoveToOuterDisposeScope();                                   // j > p_i
    }

    /// <summary>Sliding window: the last <paramref name="window"/> keys up to and including the query, p_i − w &lt; j ≤ p_i.</summary>
    public static Tensor SlidingWindow(long tq, long tk, long window, Device? device = null)
    {
        CheckLengths(tq, tk);
        CheckPositive(window, nameof(window));
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        return ((j <= p) & (p - j < window)).MoveToOuterDisposeScope();             // 0 ≤ p_i − j < w
    }

    /// <summary>
    /// StreamingLLM sink + window: the first <paramref name="sinks"/> keys plus the sliding window,
    /// j ≤ p_i ∧ (j &lt; n_s ∨ p_i − j &lt; w). With <paramref name="sinks"/> = 0 it is <see cref="SlidingWindow"/>.
    /// </summary>
    public static Tensor SinkWindow(long tq, long tk, long sinks, long window, Device? device = null)
    {
        CheckLengths(tq, tk);
        CheckNonNegative(sinks, nameof(sinks));
        CheckPositive(window, nameof(window));
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        return ((j <= p) & ((j < sinks) | (p - j < window))).MoveToOuterDisposeScope(); // j ≤ p_i ∧ (j < n_s ∨ p_i − j < w)
    }

    /// <summary>
    /// Sparse Transformer "strided" pattern (Child et al. 2019), both heads' sets in one mask: the previous
    /// <paramref name="local"/> keys and every <paramref name="stride"/>-th key back,
    /// j ≤ p_i ∧ (p_i − j &lt; l ∨ (p_i − j) mod s = 0).
    /// </summary>
    public static Tensor Strided(long tq, long tk, long local, long stride, Device? device = null)
    {
        CheckLengths(tq, tk);
        CheckPositive(local, nameof(local));
        CheckPositive(stride, nameof(stride));
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        var d = p - j;
        return ((d >= 0) & ((d < local) | (d.remainder(stride) == 0))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Sparse Transformer "fixed" pattern: keys in the query's own block of size <paramref name="block"/>, plus the
    /// last <paramref name="summary"/> columns of every block (the summary cells),
    /// j ≤ p_i ∧ (⌊j/ℓ⌋ = ⌊p_i/ℓ⌋ ∨ j mod ℓ ≥ ℓ − c).
    /// </summary>
    public static Tensor Fixed(long tq, long tk, long block, long summary, Device? device = null)
    {
        CheckLengths(tq, tk);
        CheckPositive(block, nameof(block));
        if (summary < 0 || summary > block)
            throw new ArgumentException($"summary must be in [0, block = {block}], got {summary}.", nameof(summary));
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        var sameBlock = FloorDiv(j, block) == FloorDiv(p, block);                  // ⌊j/ℓ⌋ = ⌊p_i/ℓ⌋
        var summaryCol = j.remainder(block) >= block - summary;                    // j mod ℓ ≥ ℓ − c
        return ((j <= p) & (sameBlock | summaryCol)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Block-local + vertical stride (S2-Attention style) for one head: with key block b_j = ⌊j/β⌋ and query block
    /// b_i = ⌊p_i/β⌋, a key is visible when its block is one of the <paramref name="localBlocks"/> blocks ending at the
    /// query's block (0 ≤ b_i − b_j &lt; L; |b_i − b_j| &lt; L when not causal) or b_j mod s = r (the head's residue);
    /// when <paramref name="causal"/>, also j ≤ p_i.
    /// </summary>
    public static Tensor BlockLocalVerticalStride(long tq, long tk, long blockSize, long localBlocks, long stride, long residue,
        bool causal = true, Device? device = null)
    {
        CheckLengths(tq, tk);
        CheckBlockArgs(blockSize, localBlocks, stride);
        if (residue < 0 || residue >= stride)
            throw new ArgumentException($"residue must be in [0, stride = {stride}), got {residue}.", nameof(residue));
        using var scope = NewDisposeScope();
        var (p, j) = Grid(tq, tk, device);
        var gap = FloorDiv(p, blockSize) - FloorDiv(j, blockSize);                  // b_i − b_j
        var local = causal ? (gap >= 0) & (gap < localBlocks) : gap.abs() < localBlocks;
        var vertical = FloorDiv(j, blockSize).remainder(stride) == residue;        // b_j mod s = r
        var keep = local | vertical;
        if (causal) keep &= j <= p;
        return keep.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Per-head stack [H, Tq, Tk] of <see cref="BlockLocalVerticalStride"/>: head h uses residue
    /// <paramref name="residues"/>[h], by default h mod s, so the heads together cover every key block.
    /// </summary>
    public static Tensor BlockLocalVerticalStridePerHead(long tq, long tk, int heads, long blockSize, long localBlocks, long stride,
        IReadOnlyList<long>? residues = null, bool causal = true, Device? device = null)
    {
        CheckLengths(tq, tk);
        CheckPositive(heads, nameof(heads));
        CheckBlockArgs(blockSize, localBlocks, stride);
        if (residues is not null && residues.Count != heads)
            throw new ArgumentException($"residues has {residues.Count} entries but there are {heads} heads.", nameof(residues));
        for (int h = 0; h < heads; h++)
        {
            long r = residues?[h] ?? h % stride;
            if (r < 0 || r >= stride)
                throw new ArgumentException($"residues[{h}] = {r} must be in [0, stride = {stride}).", nameof(residues));
        }
        using var scope = NewDisposeScope();
        var masks = Enumerable.Range(0, heads)
            .Select(h => BlockLocalVerticalStride(tq, tk, blockSize, localBlocks, stride, residues?[h] ?? h % stride, causal, device))
            .ToArray();
        return torch.stack(masks, 0).MoveToOuterDisposeScope();
    }

    /// <summary>Fraction of entries kept: |{mask = true}| / numel (over all heads for a stack).</summary>
    public static double Density(Tensor mask)
    {
        Guard.NotNull(mask, nameof(mask));
        if (mask.dtype != ScalarType.Bool) throw new ArgumentException($"mask must be boolean, got {mask.dtype}.", nameof(mask));
        if (mask.numel() == 0) throw new ArgumentException("mask is empty.", nameof(mask));
        using var scope = NewDisposeScope();
        return mask.to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>p_i = i + (Tk − Tq) as a column [Tq, 1] and j as a row [1, Tk] (int64).</summary>
    static (Tensor P, Tensor J) Grid(long tq, long tk, Device? device) =>
        (torch.arange(tq, dtype: ScalarType.Int64, device: device).unsqueeze(1) + (tk - tq),
         torch.arange(tk, dtype: ScalarType.Int64, device: device).unsqueeze(0));

    static Tensor FloorDiv(Tensor x, long d) => x.div(d, rounding_mode: RoundingMode.floor);

    static void CheckLengths(long tq, long tk)
    {
        if (tq <= 0) throw new ArgumentException($"tq must be positive, got {tq}.", nameof(tq));
        if (tk <= 0) throw new ArgumentException($"tk must be positive, got {tk}.", nameof(tk));
        if (tq > tk) throw new ArgumentException($"tq = {tq} > tk = {tk}: queries are end-aligned to the keys, so tq ≤ tk.", nameof(tq));
    }

    static void CheckBlockArgs(long blockSize, long localBlocks, long stride)
    {
        CheckPositive(blockSize, nameof(blockSize));
        CheckPositive(localBlocks, nameof(localBlocks));
        CheckPositive(stride, nameof(stride));
    }

    static void CheckPositive(long value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive, got {value}.", name);
    }

    static void CheckNonNegative(long value, string name)
    {
        if (value < 0) throw new ArgumentException($"{name} must be ≥ 0, got {value}.", name);
    }
}
