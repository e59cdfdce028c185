using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// S2-Attention as a sequence mixer x [B, T, d] → [B, T, d]: projections around <see cref="BlockSparseAttention"/> with
/// the local + vertical-stride pattern of <see cref="S2Pattern.LocalStride"/> (one pattern per head; heterogeneous by
/// default). It streams with a pruned per-head KV cache (<see cref="S2KvState"/>): each head keeps only the blocks its
/// pattern can ever read again — its stride residue blocks plus the local window, about t/s + ℓ·b tokens instead of t.
/// <see cref="NewFullState"/> keeps the whole cache and masks per head instead: the twin the pruned decode is checked against.
/// </summary>
/// <remarks>
/// q, k, v = split(W_qkv x) [B, T, H, d/H];  y = W_O concat_h BlockSparse_h(q, k, v)  with head h reading key block j
/// from query block i iff j ≤ i ∧ (i − j &lt; ℓ ∨ j ≡ r_h mod s) (token-causal inside the diagonal block).
/// Decode: held_h(t) = {j &lt; t : head h at position t reads j}; |held_h(t)| = (t − c·b) + b·|{j &lt; c : j ≡ r_h mod s}|,
/// c = max(0, ⌊t/b⌋ − ℓ + 1)  (<see cref="HeldTokens"/>).  No positions here: TinyGpt's embeddings carry them.
/// </remarks>
public sealed class S2SelfAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear qkv, proj;
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
        : base(nameof(S2SelfAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(block, nameof(block));
        Guard.Positive(localBlocks, nameof(localBlocks));
        Guard.Positive(vertStride, nameof(vertStride));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        if (denseHeads < 0 || denseHeads > heads) throw new ArgumentException($"denseHeads must be in [0, {heads}], got {denseHeads}.", nameof(denseHeads));
        (DModel, Heads, Block, LocalBlocks, VertStride, HomoHead, DenseHeads) = (dModel, heads, block, localBlocks, vertStride, homoHead, denseHeads);
        residues = S2Pattern.Residues(heads, vertStride, homoHead, denseHeads);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
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

    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(x);
        var (o, _) = BlockSparseAttention.Forward(q, k, v, Pattern((int)x.shape[1]));
        return proj.call(o.reshape(x.shape[0], x.shape[1], DModel)).MoveToOuterDisposeScope();
    }

    /// <summary>An empty pruned per-head cache (<see cref="S2KvState"/>): the decode working set S2 really needs.</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device)
    {
        Guard.Positive(batch, nameof(batch));
        long dh = DModel / Heads;
        return new S2KvState(Enumerable.Range(0, Heads).Select(h => new S2HeadCache(batch, dh, dh, residues[h], Block, LocalBlocks, VertStride, dtype, device)).ToArray());
    }

    /// <summary>An empty full KV cache (every token, every head), masked per head at each step: the pruned cache's twin.</summary>
    public MixerState NewFullState(long batch, ScalarType dtype, Device device) =>
        new FullCacheState(new KvCache(batch, Heads, DModel / Heads, DModel / Heads, dtype, device));

    /// <summary>
    /// One token. Pruned state: append (k_t, v_t) to every head's cache, attend over all it holds (all of it is read by this
    /// query), then drop what the next query cannot read. Full state: append to the full cache and mask per head.
    /// </summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(xT.unsqueeze(1));                                             // [B, 1, H, Dh]
        Tensor o;
        if (state is S2KvState pruned)
        {
            if (pruned.Heads.Count != Heads) throw new ArgumentException($"state has {pruned.Heads.Count} heads, the mixer {Heads}.", nameof(state));
            var outs = new Tensor[Heads];
            for (int h = 0; h < Heads; h++)
            {
                var cache = pruned.Heads[h];
                var (kh, vh) = (k.narrow(2, h, 1), v.narrow(2, h, 1));
                var (keys, values) = cache.Contents();
                keys = torch.cat(new[] { keys, kh }, 1);                                     // held keys + this token's
                values = torch.cat(new[] { values, vh }, 1);
                using var r = ReferenceAttention.Softmax(q.narrow(2, h, 1), keys, values, causal: false);
                outs[h] = r.Output.alias();
                cache.Append(kh, vh);                                                        // then prune for position t + 1
            }
            o = torch.cat(outs, 2);
        }
        else if (state is FullCacheState s)
        {
            s.Cache.Append(k, v);
            long position = s.Cache.Length - 1;
            var keep = new bool[Heads * (position + 1)];
            for (int h = 0; h < Heads; h++)
                for (long key = 0; key <= position; key++) keep[h * (position + 1) + key] = Reads(h, position, key);
            var mask = torch.tensor(keep, new long[] { 1, Heads, 1, position + 1 }, device: xT.device);
            using var r = ReferenceAttention.Softmax(q, s.Cache.Keys, s.Cache.Values, causal: false, mask: mask);
            o = r.Output.alias();
        }
        else throw new ArgumentException($"state must come from S2SelfAttention.NewState or NewFullState, got {state?.GetType().Name}.", nameof(state));
        state.Advance();
        return proj.call(o.reshape(xT.shape[0], DModel)).MoveToOuterDisposeScope();
    }

    (Tensor Q, Tensor K, Tensor V) Split(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.call(x).view(b, t, 3, Heads, DModel / Heads).unbind(2);
        return (parts[0], parts[1], parts[2]);
    }

    /// <summary>The full KV cache (every head keeps every key): the twin of the pruned <see cref="S2KvState"/>.</summary>
    sealed class FullCacheState(KvCache cache) : MixerState
    {
        public KvCache Cache { get; } = cache;
        public override long Bytes => Cache.Bytes;
        public override void Dispose() => Cache.Dispose();
    }
}
