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
    readonly KvCache far;
    readonly List<long> farPositions = new();
    Tensor nearKeys, nearValues;                                                          // [B, Ln, 1, D]
    long nearStart;                                                                       // absolute position of near's first token
    readonly int block, localBlocks, stride;

    internal S2HeadCache(long batch, long keyDim, long valueDim, int? residue, int block, int localBlocks, int stride, ScalarType dtype, Device device)
    {
        Residue = residue;
        (this.block, this.localBlocks, this.stride) = (block, localBlocks, stride);
        far = new KvCache(batch, 1, keyDim, valueDim, dtype, device);
        nearKeys = torch.zeros(new[] { batch, 0L, 1L, keyDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        nearValues = torch.zeros(new[] { batch, 0L, 1L, valueDim }, dtype: dtype, device: device).DetachFromDisposeScope();
    }

    /// <summary>The head's stride residue r (null: a dense head that keeps everything).</summary>
    public int? Residue { get; }
    /// <summary>Tokens appended so far.</summary>
    public long Seen { get; private set; }
    /// <summary>Tokens held now.</summary>
    public long Held => far.Length + nearKeys.shape[1];
    /// <summary>Bytes of the held keys and values.</summary>
    public long Bytes => far.Bytes + (nearKeys.numel() + nearValues.numel()) * nearKeys.ElementSize;

    /// <summary>Absolute positions of the held tokens, ascending.</summary>
    public long[] HeldPositions() => farPositions.Concat(Enumerable.Range(0, (int)nearKeys.shape[1]).Select(i => nearStart + i)).ToArray();

    /// <summary>Held keys [B, L, 1, D] and values [B, L, 1, Dv] in position order (new handles in the caller's scope).</summary>
    public (Tensor Keys, Tensor Values) Contents() =>
        far.Length == 0 ? (nearKeys.alias(), nearValues.alias()) : (torch.cat(new[] { far.Keys, nearKeys }, 1), torch.cat(new[] { far.Values, nearValues }, 1));

    /// <summary>Appends token t's k [B, 1, 1, D], v [B, 1, 1, Dv]; then drops what the next query (position t + 1) cannot read.</summary>
    public void Append(Tensor k, Tensor v)
    {
        using (var scope = NewDisposeScope())
        using (torch.no_grad())
        {
            var (nk, nv) = (torch.cat(new[] { nearKeys, k.detach() }, 1).DetachFromDisposeScope(),
                torch.cat(new[] { nearValues, v.detach() }, 1).DetachFromDisposeScope());
            nearKeys.Dispose(); nearValues.Dispose();
            (nearKeys, nearValues) = (nk, nv);
        }
        Seen++;
        if (Residue is not int r) return;                                                  // dense head: keep everything
        long windowStart = Math.Max(0, Seen / block - localBlocks + 1) * block;           // first token of block i − ℓ + 1, i = ⌊(t+1)/b⌋
        while (nearStart < windowStart)                                                    // the oldest near block leaves the window
        {
            long j = nearStart / block;
            using var scope = NewDisposeScope();
            if (j % stride == r)                                                           // on the stride: read by every later query
            {
                far.Append(nearKeys.narrow(1, 0, block), nearValues.narrow(1, 0, block));
                for (int i = 0; i < block; i++) farPositions.Add(nearStart + i);
            }
            long rest = nearKeys.shape[1] - block;
            var (nk, nv) = (nearKeys.narrow(1, block, rest).clone().DetachFromDisposeScope(),
                nearValues.narrow(1, block, rest).clone().DetachFromDisposeScope());
            nearKeys.Dispose(); nearValues.Dispose();
            (nearKeys, nearValues) = (nk, nv);
            nearStart += block;
        }
    }

    public void Dispose()
    {
        far.Dispose();
        nearKeys.Dispose();
        nearValues.Dispose();
    }
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
        if (k.shape[2] != Heads.Count) throw new ArgumentException($"state has {Heads.Count} heads, the mixer's k {Guard.ShapeText(k)}.", "state");
        using var scope = NewDisposeScope();
        var outs = new Tensor[Heads.Count];
        for (int h = 0; h < Heads.Count; h++)
        {
            var (kh, vh) = (k.narrow(2, h, 1), v.narrow(2, h, 1));
            var (keys, values) = Heads[h].Contents();
            using var r = ReferenceAttention.Softmax(q.narrow(2, h, 1), torch.cat(new[] { keys, kh }, 1), torch.cat(new[] { values, vh }, 1), causal: false);
            outs[h] = r.Output.alias();
            Heads[h].Append(kh, vh);                                                         // then prune for position t + 1
        }
        Advance();
        return torch.cat(outs, 2).MoveToOuterDisposeScope();
    }

    public override void Dispose() { foreach (var h in Heads) h.Dispose(); }
}
