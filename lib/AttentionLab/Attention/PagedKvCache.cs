using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Keys and values of several sequences of different lengths in one pool of fixed-size blocks (vLLM's
/// PagedAttention layout). Each sequence has a block table: logical token t of sequence b lives in pool block
/// table_b[⌊t/β⌋] at offset t mod β. Blocks are taken from a free list on demand and returned by <see cref="Free"/>;
/// the pool doubles when it runs out. Stores detached copies (decoding is inference). Owns its tensors.
/// </summary>
/// <remarks>
/// Memory: a sequence of length L holds ⌈L/β⌉ blocks, wasting at most β − 1 token slots (internal fragmentation),
/// against the contiguous cache's unused capacity. <see cref="Bytes"/> = Σ_b L_b · bytes/token;
/// <see cref="AllocatedBytes"/> = Σ_b ⌈L_b/β⌉ · β · bytes/token; <see cref="PoolBytes"/> = the whole pool.
/// </remarks>
public sealed class PagedKvCache : IDisposable
{
    Tensor keyPool, valuePool;                        // [blocks, β, H, D] and [blocks, β, H, Dv]
    readonly List<int>[] tables;
    readonly long[] lengths;
    readonly Stack<int> free = new();
    bool disposed;

    /// <param name="sequences">number of sequences (the batch).</param>
    /// <param name="heads">KV heads, H.</param>
    /// <param name="keyDim">key head dim, D.</param>
    /// <param name="valueDim">value head dim, Dv.</param>
    /// <param name="blockSize">tokens per block, β.</param>
    /// <param name="initialBlocks">blocks in the pool at the start (it doubles when needed).</param>
    /// <param name="dtype">element type of keys and values.</param>
    /// <param name="device">where the pool lives.</param>
    public PagedKvCache(int sequences, long heads, long keyDim, long valueDim, int blockSize = 16, int initialBlocks = 16,
        ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Guard.Positive(sequences, nameof(sequences)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(keyDim, nameof(keyDim)); Guard.Positive(valueDim, nameof(valueDim));
        Guard.Positive(blockSize, nameof(blockSize)); Guard.Positive(initialBlocks, nameof(initialBlocks));
        Guard.FloatingDtype(dtype, nameof(dtype));
        BlockSize = blockSize;
        keyPool = torch.zeros(new long[] { initialBlocks, blockSize, heads, keyDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        valuePool = torch.zeros(new long[] { initialBlocks, blockSize, heads, valueDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        tables = Enumerable.Range(0, sequences).Select(_ => new List<int>()).ToArray();
        lengths = new long[sequences];
        for (int blk = initialBlocks - 1; blk >= 0; blk--) free.Push(blk);
    }

    public int BlockSize { get; }
    public int Sequences => tables.Length;
    /// <summary>Blocks in the pool (used + free).</summary>
    public int PoolBlocks => (int)keyPool.shape[0];
    /// <summary>Blocks held by sequences.</summary>
    public int UsedBlocks => PoolBlocks - free.Count;
    public long Length(int sequence) => lengths[CheckSequence(sequence)];
    public IReadOnlyList<long> Lengths => lengths;
    /// <summary>The pool blocks of <paramref name="sequence"/>, in logical order.</summary>
    public IReadOnlyList<int> BlockTable(int sequence) => tables[CheckSequence(sequence)];

    /// <summary>Bytes of one token of one sequence: H·(D + Dv)·element size.</summary>
    public long BytesPerToken => keyPool.shape[2] * (keyPool.shape[3] + valuePool.shape[3]) * keyPool.ElementSize;
    /// <summary>Bytes of the stored tokens, Σ_b L_b · bytes/token.</summary>
    public long Bytes => lengths.Sum() * BytesPerToken;
    /// <summary>Bytes of the blocks held by sequences, Σ_b ⌈L_b/β⌉ · β · bytes/token.</summary>
    public long AllocatedBytes => UsedBlocks * BlockSize * BytesPerToken;
    /// <summary>Bytes of the whole pool, free blocks included.</summary>
    public long PoolBytes => PoolBlocks * BlockSize * BytesPerToken;

    /// <summary>Appends k [Tnew, H, D] and v [Tnew, H, Dv] to one sequence.</summary>
    public void Append(int sequence, Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckSequence(sequence);
        Guard.Rank(k, 3, nameof(k), "T, H, D");
        Guard.Rank(v, 3, nameof(v), "T, H, Dv");
        Guard.FloatingPoint(k, nameof(k));
        Guard.FloatingPoint(v, nameof(v));
        if (k.shape[1] != keyPool.shape[2] || k.shape[2] != keyPool.shape[3])
            throw new ArgumentException($"k {Guard.ShapeText(k)} does not fit the cache's [T, {keyPool.shape[2]}, {keyPool.shape[3]}].", nameof(k));
        if (v.shape[0] != k.shape[0] || v.shape[1] != valuePool.shape[2] || v.shape[2] != valuePool.shape[3])
            throw new ArgumentException(
                $"v {Guard.ShapeText(v)} does not fit k {Guard.ShapeText(k)} and the cache's [T, {valuePool.shape[2]}, {valuePool.shape[3]}].", nameof(v));
        Guard.SameDtype(keyPool, "the cache", k, nameof(k)); Guard.SameDtype(keyPool, "the cache", v, nameof(v));
        Guard.SameDevice(keyPool, "the cache", k, nameof(k)); Guard.SameDevice(keyPool, "the cache", v, nameof(v));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        long n = k.shape[0], done = 0;
        var table = tables[sequence];
        while (done < n)
        {
            long t = lengths[sequence], offset = t % BlockSize;                           // slot t mod β
            if (offset == 0) table.Add(TakeBlock());                                       // a new block every β tokens
            long chunk = Math.Min(n - done, BlockSize - offset);
            int block = table[(int)(t / BlockSize)];                                       // table_b[⌊t/β⌋]
            keyPool[block].narrow(0, offset, chunk).copy_(k.narrow(0, done, chunk));
            valuePool[block].narrow(0, offset, chunk).copy_(v.narrow(0, done, chunk));
            lengths[sequence] += chunk; done += chunk;
        }
    }

    /// <summary>One sequence as contiguous keys [1, L, H, D] and values [1, L, H, Dv] (copies).</summary>
    public (Tensor Keys, Tensor Values) Gather(int sequence)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckSequence(sequence);
        using var scope = NewDisposeScope();
        var idx = torch.tensor(tables[sequence].Select(b => (long)b).ToArray(), dtype: ScalarType.Int64, device: keyPool.device);
        Tensor One(Tensor pool)
        {
            var rows = pool.index_select(0, idx);                                          // [nb, β, H, D]
            return rows.reshape(1, -1, pool.shape[2], pool.shape[3]).narrow(1, 0, lengths[sequence]).contiguous();
        }
        var (k, v) = (One(keyPool), One(valuePool));
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// All sequences padded to the longest: keys [B, Lmax, H, D], values [B, Lmax, H, Dv] (zeros after each length),
    /// lengths [B] (int64) and a key mask [B, 1, 1, Lmax] (true where j &lt; L_b) that broadcasts to [B, H, Tq, Lmax].
    /// </summary>
    public PagedGather Gather()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var scope = NewDisposeScope();
        var device = keyPool.device;
        long b = Sequences, lmax = lengths.Max();
        int maxBlocks = tables.Max(t => t.Count);
        var table = new long[b * maxBlocks];                                               // padded with block 0 (masked below)
        for (int s = 0; s < b; s++) for (int i = 0; i < tables[s].Count; i++) table[s * maxBlocks + i] = tables[s][i];
        var idx = torch.tensor(table, dtype: ScalarType.Int64, device: device);
        var lens = torch.tensor(lengths, dtype: ScalarType.Int64, device: device);
        var keep = torch.arange(lmax, dtype: ScalarType.Int64, device: device).unsqueeze(0) < lens.unsqueeze(1); // j < L_b  [B, Lmax]
        Tensor All(Tensor pool)
        {
            var rows = pool.index_select(0, idx).reshape(b, maxBlocks * BlockSize, pool.shape[2], pool.shape[3]).narrow(1, 0, lmax);
            return rows.masked_fill(keep.logical_not().view(b, lmax, 1, 1), 0).contiguous();
        }
        return new PagedGather(All(keyPool), All(valuePool), lens, keep.view(b, 1, 1, lmax)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The key pool [blocks, β, H, D] and value pool [blocks, β, H, Dv] as views (new handles in the caller's scope), for
    /// block-wise kernels that read through <see cref="BlockTable"/> instead of gathering. A view of the pool as it is
    /// now: an <see cref="Append"/> that grows the pool replaces it.
    /// </summary>
    public (Tensor Keys, Tensor Values) Pools()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return (keyPool.alias(), valuePool.alias());
    }

    /// <summary>Returns the blocks of <paramref name="sequence"/> to the pool; its length becomes 0.</summary>
    public void Free(int sequence)
    {
        CheckSequence(sequence);
        foreach (var blk in Enumerable.Reverse(tables[sequence])) free.Push(blk);
        tables[sequence].Clear();
        lengths[sequence] = 0;
    }

    int TakeBlock()
    {
        if (free.Count == 0) GrowPool();
        return free.Pop();
    }

    void GrowPool()
    {
        using var scope = NewDisposeScope();
        int old = PoolBlocks;
        Tensor Bigger(Tensor pool)
        {
            var shape = pool.shape.ToArray(); shape[0] = 2 * old;
            var t = torch.zeros(shape, dtype: pool.dtype, device: pool.device);
            t.narrow(0, 0, old).copy_(pool);
            return t.DetachFromDisposeScope();
        }
        var (k, v) = (Bigger(keyPool), Bigger(valuePool));
        keyPool.Dispose(); valuePool.Dispose();
        (keyPool, valuePool) = (k, v);
        for (int blk = 2 * old - 1; blk >= old; blk--) free.Push(blk);
    }

    int CheckSequence(int sequence)
    {
        if (sequence < 0 || sequence >= tables.Length)
            throw new ArgumentOutOfRangeException(nameof(sequence), sequence, $"sequence must be in [0, {tables.Length}).");
        return sequence;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        keyPool.Dispose(); valuePool.Dispose();
    }
}

/// <summary>A padded batch gathered from a <see cref="PagedKvCache"/>; owns its tensors.</summary>
public sealed class PagedGather : IDisposable
{
    public PagedGather(Tensor keys, Tensor values, Tensor lengths, Tensor keyMask)
    {
        Keys = keys; Values = values; Lengths = lengths; KeyMask = keyMask;
    }

    /// <summary>[B, Lmax, H, D], zero after each sequence's length.</summary>
    public Tensor Keys { get; }
    /// <summary>[B, Lmax, H, Dv], zero after each sequence's length.</summary>
    public Tensor Values { get; }
    /// <summary>[B] int64.</summary>
    public Tensor Lengths { get; }
    /// <summary>[B, 1, 1, Lmax] boolean, true where j &lt; L_b: pass as ReferenceAttention's mask.</summary>
    public Tensor KeyMask { get; }

    public PagedGather MoveToOuterDisposeScope()
    {
        Keys.MoveToOuterDisposeScope(); Values.MoveToOuterDisposeScope(); Lengths.MoveToOuterDisposeScope(); KeyMask.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Keys.Dispose(); Values.Dispose(); Lengths.Dispose(); KeyMask.Dispose();
    }
}
