using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// S2-Attention as a sequence mixer x [B, T, d] → [B, T, d] on the library's mixer base (projections, head split, hooks,
/// W_O): the local + vertical-stride pattern of <see cref="S2Pattern.LocalStride"/> (one pattern per head; heterogeneous by
/// default) computed by <see cref="BlockSparseAttention"/>. While a hook listens on the pattern it runs the dense masked
/// form instead (the naive twin), so <c>hook_pattern</c> carries the T×T weights. It streams with a pruned per-head KV
/// cache (<see cref="S2KvState"/>): each head keeps only the blocks its pattern can ever read again — its stride residue
/// blocks plus the local window, about t/s + ℓ·b tokens instead of t. <see cref="NewFullState"/> keeps the whole cache and
/// masks per head through <see cref="Scores"/>: the twin the pruned decode is checked against.
/// </summary>
/// <remarks>
/// q, k, v = split(W_qkv x) [B, T, H, d/H];  y = W_O concat_h BlockSparse_h(q, k, v)  with head h reading key block j
/// from query block i iff j ≤ i ∧ (i − j &lt; ℓ ∨ j ≡ r_h mod s) (token-causal inside the diagonal block).
/// Decode: held_h(t) = {j &lt; t : head h at position t reads j}; |held_h(t)| = (t − c·b) + b·|{j &lt; c : j ≡ r_h mod s}|,
/// c = max(0, ⌊t/b⌋ − ℓ + 1)  (<see cref="HeldTokens"/>).  No positions here: TinyGpt's embeddings carry them.
/// </remarks>
public sealed class S2SelfAttention : AttentionMixer
{
    readonly int?[] residues;
    BlockMask? pattern;                                                                      // built for the longest T seen

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d. Heterogeneous residues cover every distant block when H ≥ s.</param>
    /// <param name="block">tokens per block b.</param>
    /// <param name="localBlocks">ℓ, the local window in blocks (diagonal included).</param>
    /// <param name="vertStride">s, the vertical stride in key blocks.</param>
    /// <param name="homoHead">every head reads the same residue (the homogeneous baseline).</param>
    /// <param name="denseHeads">the last heads read every causal block (dkernel's num_dense_heads).</param>
    public S2SelfAttention(int dModel, int heads, int block = 4, int localBlocks = 2, int vertStride = 2, bool homoHead = false, int denseHeads = 0)
        : base(nameof(S2SelfAttention), dModel, heads)
    {
        Guard.Positive(block, nameof(block));
        Guard.Positive(localBlocks, nameof(localBlocks));
        Guard.Positive(vertStride, nameof(vertStride));
        if (denseHeads < 0 || denseHeads > heads) throw new ArgumentException($"denseHeads must be in [0, {heads}], got {denseHeads}.", nameof(denseHeads));
        (Block, LocalBlocks, VertStride, HomoHead, DenseHeads) = (block, localBlocks, vertStride, homoHead, denseHeads);
        residues = S2Pattern.Residues(heads, vertStride, homoHead, denseHeads);
        RegisterComponents();
    }

    public int Block { get; }
    public int LocalBlocks { get; }
    public int VertStride { get; }
    public bool HomoHead { get; }
    public int DenseHeads { get; }
    /// <summary>r_h per head (null: dense head).</summary>
    public IReadOnlyList<int?> Residues => residues;

    /// <summary>The block pattern for sequences of up to <paramref name="seqLen"/> tokens (cached; rebuilt when T grows).</summary>
    public BlockMask Pattern(int seqLen)
    {
        Guard.Positive(seqLen, nameof(seqLen));
        if (pattern is null || pattern.MaxLength < seqLen)
            pattern = S2Pattern.LocalStride(Heads, seqLen, Block, LocalBlocks, VertStride, HomoHead, DenseHeads);
        return pattern;
    }

    /// <summary>Whether head <paramref name="head"/> at query position <paramref name="query"/> reads key position <paramref name="key"/>.</summary>
    public bool Reads(int head, long query, long key)
    {
        if (key > query || key < 0) return false;
        long i = query / Block, j = key / Block;
        return residues[head] is not int r || i - j < LocalBlocks || j % VertStride == r;
    }

    /// <summary>
    /// Tokens head <paramref name="head"/> must hold after <paramref name="seen"/> tokens: the earlier keys the next query
    /// (position t = seen) reads. (t − c·b) + b·|{j &lt; c : j ≡ r mod s}|, c = max(0, ⌊t/b⌋ − ℓ + 1); t for a dense head.
    /// </summary>
    public long HeldTokens(int head, long seen)
    {
        if (head < 0 || head >= Heads) throw new ArgumentException($"head must be in [0, {Heads}), got {head}.", nameof(head));
        if (seen < 0) throw new ArgumentException($"seen must be ≥ 0, got {seen}.", nameof(seen));
        if (residues[head] is not int r) return seen;
        long c = Math.Max(0, seen / Block - LocalBlocks + 1);                                // first block of the next query's window
        long strideBlocks = c > r ? (c - 1 - r) / VertStride + 1 : 0;                       // j < c with j ≡ r (mod s)
        return seen - c * Block + strideBlocks * Block;
    }

    /// <summary>The block-sparse form; while a hook listens on the pattern, the dense masked form (the hooks see A).</summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x) =>
        PatternObserved ? base.Mix(q, k, v, x) : BlockSparseAttention.Forward(q, k, v, Pattern((int)q.shape[1])).Output;

    /// <summary>s_ij = q_i·k_j / √D, −∞ where j &gt; i or head h's pattern skips key block ⌊j/b⌋ from query block ⌊i/b⌋.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = base.Scores(q, k, qPos, kPos, cachedKeys);                                                // causal, [B, H, Tq, Tk]
        var qb = qPos.div(Block, rounding_mode: RoundingMode.floor).view(1, -1, 1);
        var kb = kPos.div(Block, rounding_mode: RoundingMode.floor).view(1, 1, -1);
        var local = (qb - kb) < LocalBlocks;                                                  // i − j < ℓ
        var r = torch.tensor(residues.Select(x => (long)(x ?? -1)).ToArray(), device: q.device).view(-1, 1, 1);
        var keep = local | (kb.remainder(VertStride) == r) | (r < 0);                         // ∨ j ≡ r_h (mod s) ∨ dense head: [H, Tq, Tk]
        return s.masked_fill(keep.logical_not().unsqueeze(0), double.NegativeInfinity);
    }

    /// <summary>An empty pruned per-head cache (<see cref="S2KvState"/>): the decode working set S2 really needs.</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        new S2KvState(Enumerable.Range(0, Heads)
            .Select(h => new S2HeadCache(batch, KeyDim, ValueDim, residues[h], Block, LocalBlocks, VertStride, dtype, device)).ToArray());

    /// <summary>An empty full KV cache (every token, every head), masked per head by <see cref="Scores"/> at each step: the pruned cache's twin.</summary>
    public MixerState NewFullState(long batch, ScalarType dtype, Device device)
    {
        Guard.Positive(batch, nameof(batch));
        ArgumentNullException.ThrowIfNull(device);
        return new KvCacheState(this, new KvCache(batch, Heads, KeyDim, ValueDim, dtype, device));
    }
}
