using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// One head's pruned KV cache: the keys and values of the tokens its pattern can still read. Stride blocks that left the
/// local window sit in <c>far</c> (kept forever); the window — blocks i − ℓ + 1 … i of the next query block i — sits in
/// <c>near</c>. When the next query enters a new block, the oldest near block leaves the window: it moves to <c>far</c>
/// if it lies on the head's stride (j ≡ r mod s), else it is dropped for good (no later query of this head reads it).
/// A dense head (residue null) keeps every token.
/// </summary>
/// <remarks>
/// Held after t tokens = {j &lt; t : the query at position t reads j}: with i = ⌊t/b⌋ and c = max(0, i − ℓ + 1),
/// |held| = (t − c·b) + b·|{j &lt; c : j ≡ r (mod s)}| ≈ ℓ·b + t/s  (<see cref="S2SelfAttention.HeldTokens"/>).
/// Every held key is read by the next query, so a step attends to the whole head cache without a mask.
/// </remarks>
public sealed class S2HeadCache : IDisposable
{
    readonly KvCache held;                                                                // [B, L, 1, D]: far tokens, then the near window
    readonly List<long> positions = new();                                                // absolute position of each held token
    long farCount;                                                                        // held tokens before the window (stride blocks)
    long nearStart;                                                                       // absolute position of the window's first token
    readonly int block, localBlocks, stride;

    internal S2HeadCache(long batch, long keyDim, long valueDim, int? residue, int block, int localBlocks, int stride, ScalarType dtype, Device device)
    {
        Residue = residue;
        (this.block, this.localBlocks, this.stride) = (block, localBlocks, stride);
        held = new KvCache(batch, 1, keyDim, valueDim, dtype, device, initialCapacity: Math.Max(16, (localBlocks + 1L) * block));
    }

    /// <summary>The head's stride residue r (null: a dense head that keeps everything).</summary>
    public int? Residue { get; }
    /// <summary>Tokens appended so far.</summary>
    public long Seen { get; private set; }
    /// <summary>Tokens held now.</summary>
    public long Held => held.Length;
    /// <summary>Bytes of the held keys and values.</summary>
    public long Bytes => held.Bytes;

    /// <summary>Absolute positions of the held tokens, ascending.</summary>
    public long[] HeldPositions() => positions.ToArray();

    /// <summary>Held keys [B, L, 1, D] and values [B, L, 1, Dv] in position order (views; new handles in the caller's scope).</summary>
    public (Tensor Keys, Tensor Values) Contents() => (held.Keys, held.Values);

    /// <summary>Appends token t's k [B, 1, 1, D], v [B, 1, 1, Dv]; then drops what the next query (position t + 1) cannot read.</summary>
    public void Append(Tensor k, Tensor v)
    {
        Push(k, v);
        Prune();
    }

    /// <summary>Appends token t (the query at t reads everything held then).</summary>
    internal void Push(Tensor k, Tensor v)
    {
        held.Append(k, v);
        positions.Add(Seen++);
    }

    /// <summary>Drops what the query at position <see cref="Seen"/> cannot read: window blocks that left it and lie off the stride.</summary>
    internal void Prune()
    {
        if (Residue is not int r) return;                                                  // dense head: keep everything
        long windowStart = Math.Max(0, Seen / block - localBlocks + 1) * block;           // first token of block i − ℓ + 1, i = ⌊(t+1)/b⌋
        for (; nearStart < windowStart; nearStart += block)                                // the oldest window block leaves the window
        {
            if (nearStart / block % stride == r) { farCount += block; continue; }          // on the stride: read by every later query
            held.RemoveRange(farCount, block);                                             // off the stride: no later query reads it
            positions.RemoveRange((int)farCount, block);
        }
    }

    public void Dispose() => held.Dispose();
}

/// <summary>
/// The streaming state of <see cref="S2SelfAttention"/>: one <see cref="S2HeadCache"/> per head, each holding only the KV
/// blocks its pattern can ever read again (its stride blocks plus the local window). Bytes are the sum over heads — S2's
/// real decode working set (the paper: the KV cache reduction comes "as a free meal").
/// </summary>
/// <remarks>A step: append (k_t, v_t) to every head's cache, attend over all it holds — every held key is read by this
/// query — z_h = softmax(q_h K_hᵀ / √D) V_h, then drop what the next query cannot read, and count the token.</remarks>
public sealed class S2KvState : AttentionState
{
    internal S2KvState(IReadOnlyList<S2HeadCache> heads) => Heads = heads;

    /// <summary>One pruned cache per head.</summary>
    public IReadOnlyList<S2HeadCache> Heads { get; }
    public override long Bytes => Heads.Sum(h => h.Bytes);

    /// <summary>q, k [B, 1, H, D], v [B, 1, H, Dv] of the new token → z [B, 1, H, Dv].</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (k.size(2) != Heads.Count) throw new ArgumentException($"state has {Heads.Count} heads, the mixer's k {Guard.ShapeText(k)}.", "state");
        using var scope = NewDisposeScope();
        var outs = new Tensor[Heads.Count];
        for (int h = 0; h < Heads.Count; h++)
        {
            Heads[h].Push(k.narrow(2, h, 1), v.narrow(2, h, 1));                            // the query at t reads every held token and t
            var (keys, values) = Heads[h].Contents();
            outs[h] = OneQuery(q.narrow(2, h, 1), keys, values);                             // z_h = softmax(q_h K_hᵀ / √D) V_h
            Heads[h].Prune();                                                                // then drop what t + 1 cannot read
        }
        Advance();
        return torch.cat(outs, 2).MoveToOuterDisposeScope();
    }

    /// <summary>One query q [B, 1, 1, D] over every key of one head, K [B, L, 1, D], V [B, L, 1, Dv] → [B, 1, 1, Dv] (no mask: all are visible).</summary>
    static Tensor OneQuery(Tensor q, Tensor keys, Tensor values)
    {
        var s = q.squeeze(2).matmul(keys.squeeze(2).transpose(1, 2)) * (1.0 / Math.Sqrt(q.size(3)));   // [B, 1, L]
        return s.softmax(-1).matmul(values.squeeze(2)).unsqueeze(2);
    }

    public override void Dispose() { foreach (var h in Heads) h.Dispose(); }
}
