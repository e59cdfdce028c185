namespace AttentionLab.Papers.VAttention;

/// <summary>
/// Bookkeeping of one memory policy (no tensors: a simulation). Requests are admitted with their prompt, grow one
/// token per decode step and are released when done. <see cref="UsedBytes"/> = Σ_r len_r · bytes/token is what the
/// tokens need; <see cref="ReservedBytes"/> is the physical memory the policy holds for them;
/// used ≤ reserved ≤ budget always holds (the tests check it at every step).
/// </summary>
public abstract class KvAllocator
{
    /// <summary>Lengths of the requests that hold memory now, by request id.</summary>
    protected readonly Dictionary<int, long> Lengths = new();

    /// <param name="name">label in tables.</param>
    /// <param name="budget">the GPU memory left for KV.</param>
    /// <param name="geometry">the model's KV shape.</param>
    protected KvAllocator(string name, GpuBudget budget, KvGeometry geometry)
    {
        ArgumentNullException.ThrowIfNull(budget);
        ArgumentNullException.ThrowIfNull(geometry);
        Name = name;
        Budget = budget.Validate();
        Geometry = geometry.Validate();
    }

    /// <summary>Label in tables and plots.</summary>
    public string Name { get; }
    /// <summary>The budget it allocates from.</summary>
    public GpuBudget Budget { get; }
    /// <summary>The model's KV shape.</summary>
    public KvGeometry Geometry { get; }
    /// <summary>Requests holding memory now.</summary>
    public int Active => Lengths.Count;
    /// <summary>Σ_r len_r · bytes/token.</summary>
    public long UsedBytes => Lengths.Values.Sum() * Geometry.BytesPerToken;
    /// <summary>Physical bytes held (for vAttention with deferred reclamation, pages of free slots included).</summary>
    public abstract long ReservedBytes { get; }
    /// <summary>Allocation events so far: a buffer per request (static), a block (paged), a page mapped per layer tensor (vAttention).</summary>
    public long AllocationCalls { get; protected set; }
    /// <summary>Release events so far: buffers freed, blocks returned, pages unmapped.</summary>
    public long FreeCalls { get; protected set; }
    /// <summary>Virtual address space reserved (vAttention only; 0 for the others).</summary>
    public virtual long VirtualBytes => 0;

    /// <summary>Admits request <paramref name="id"/> with <paramref name="tokens"/> tokens; false (nothing changed) when it does not fit.</summary>
    public bool TryAdmit(int id, long tokens)
    {
        if (Lengths.ContainsKey(id)) throw new ArgumentException($"request {id} is already admitted.", nameof(id));
        if (tokens <= 0) throw new ArgumentException($"tokens must be positive, got {tokens}.", nameof(tokens));
        if (!Admit(id, tokens)) return false;
        Lengths[id] = tokens;
        return true;
    }

    /// <summary>Grows request <paramref name="id"/> to <paramref name="tokens"/> tokens; false (nothing changed) when memory is short.</summary>
    public bool TryGrow(int id, long tokens)
    {
        if (!Lengths.TryGetValue(id, out long old)) throw new ArgumentException($"request {id} is not admitted.", nameof(id));
        if (tokens < old) throw new ArgumentException($"tokens {tokens} is below the request's length {old}.", nameof(tokens));
        if (!Grow(id, old, tokens)) return false;
        Lengths[id] = tokens;
        return true;
    }

    /// <summary>Releases request <paramref name="id"/> (finished or preempted).</summary>
    public void Release(int id)
    {
        if (!Lengths.Remove(id, out long len)) throw new ArgumentException($"request {id} is not admitted.", nameof(id));
        Free(id, len);
    }

    /// <summary>How many requests of <paramref name="tokens"/> tokens each fit at once (the "max batch" of this policy at that length).</summary>
    public abstract long CapacityAt(long tokens);

    /// <summary>Reserves memory for a new request.</summary>
    protected abstract bool Admit(int id, long tokens);
    /// <summary>Reserves memory for growth from <paramref name="from"/> to <paramref name="to"/> tokens.</summary>
    protected abstract bool Grow(int id, long from, long to);
    /// <summary>Returns a request's memory.</summary>
    protected abstract void Free(int id, long tokens);
}

/// <summary>Every request reserves max_ctx · bytes/token at admission; waste = Σ_r (max_ctx − len_r) · bytes/token.</summary>
public sealed class StaticAllocator : KvAllocator
{
    readonly long perRequest;

    /// <param name="name">label.</param>
    /// <param name="budget">KV budget.</param>
    /// <param name="geometry">KV shape.</param>
    /// <param name="maxContext">tokens reserved per request.</param>
    public StaticAllocator(string name, GpuBudget budget, KvGeometry geometry, int maxContext) : base(name, budget, geometry)
    {
        if (maxContext <= 0) throw new ArgumentException($"maxContext must be positive, got {maxContext}.", nameof(maxContext));
        MaxContext = maxContext;
        perRequest = maxContext * geometry.BytesPerToken;                              // max_ctx · bytes/token
    }

    /// <summary>Tokens reserved per request.</summary>
    public int MaxContext { get; }
    /// <inheritdoc/>
    public override long ReservedBytes => Active * perRequest;
    /// <inheritdoc/>
    public override long CapacityAt(long tokens) => tokens > MaxContext ? 0 : Budget.KvBytes / perRequest;

    /// <inheritdoc/>
    protected override bool Admit(int id, long tokens)
    {
        if (tokens > MaxContext || ReservedBytes + perRequest > Budget.KvBytes) return false;
        AllocationCalls++;
        return true;
    }

    /// <inheritdoc/>
    protected override bool Grow(int id, long from, long to) => to <= MaxContext;
    /// <inheritdoc/>
    protected override void Free(int id, long tokens) => FreeCalls++;
}

/// <summary>
/// A pool of ⌊budget / (β · bytes/token)⌋ blocks of β tokens (all layers); a request of length L holds ⌈L/β⌉ blocks,
/// wasting at most β − 1 token slots.
/// </summary>
public sealed class PagedAllocator : KvAllocator
{
    readonly long blockBytes;
    long usedBlocks;

    /// <param name="name">label.</param>
    /// <param name="budget">KV budget.</param>
    /// <param name="geometry">KV shape.</param>
    /// <param name="blockTokens">tokens per block, β.</param>
    public PagedAllocator(string name, GpuBudget budget, KvGeometry geometry, int blockTokens) : base(name, budget, geometry)
    {
        if (blockTokens <= 0) throw new ArgumentException($"blockTokens must be positive, got {blockTokens}.", nameof(blockTokens));
        BlockTokens = blockTokens;
        blockBytes = blockTokens * geometry.BytesPerToken;
        PoolBlocks = Budget.KvBytes / blockBytes;                                      // ⌊budget / (β · bytes/token)⌋
    }

    /// <summary>Tokens per block, β.</summary>
    public int BlockTokens { get; }
    /// <summary>Blocks in the pool.</summary>
    public long PoolBlocks { get; }
    /// <inheritdoc/>
    public override long ReservedBytes => usedBlocks * blockBytes;
    /// <inheritdoc/>
    public override long CapacityAt(long tokens) => PoolBlocks / Blocks(tokens);

    long Blocks(long tokens) => PageMath.CeilDiv(tokens, BlockTokens);                // ⌈L/β⌉

    /// <inheritdoc/>
    protected override bool Admit(int id, long tokens) => Take(Blocks(tokens));
    /// <inheritdoc/>
    protected override bool Grow(int id, long from, long to) => Take(Blocks(to) - Blocks(from));
    /// <inheritdoc/>
    protected override void Free(int id, long tokens)
    {
        long blocks = Blocks(tokens);
        usedBlocks -= blocks;
        FreeCalls += blocks;
    }

    bool Take(long blocks)
    {
        if (usedBlocks + blocks > PoolBlocks) return false;
        usedBlocks += blocks;
        AllocationCalls += blocks;
        return true;
    }
}
