namespace AttentionLab.Papers.VAttention;

/// <summary>How a serving system reserves KV memory: the three policies <see cref="KvMemorySimulator"/> compares.</summary>
public abstract record MemoryPolicy
{
    /// <summary>Label in tables and plots.</summary>
    public abstract string Name { get; }

    /// <summary>Orca / FasterTransformer style: every request reserves <paramref name="maxContext"/> tokens up front.</summary>
    public static MemoryPolicy Static(int maxContext) => new StaticPolicy(maxContext);
    /// <summary>vLLM's PagedAttention: blocks of <paramref name="blockTokens"/> tokens from a shared pool, a block table per request.</summary>
    public static MemoryPolicy Paged(int blockTokens) => new PagedPolicy(blockTokens);
    /// <summary>vAttention: a virtual slot per request, physical pages of <paramref name="pageBytes"/> mapped on demand per layer × {K, V}.</summary>
    public static MemoryPolicy Virtual(long pageBytes, bool deferredReclaim = true) => new VirtualPolicy(pageBytes, deferredReclaim);

    /// <summary>The allocator that carries this policy out on one budget.</summary>
    public abstract KvAllocator Create(GpuBudget budget, KvGeometry geometry, int maxBatch, int maxContext);
}

/// <summary>See <see cref="MemoryPolicy.Static"/>.</summary>
public sealed record StaticPolicy(int MaxContext) : MemoryPolicy
{
    /// <inheritdoc/>
    public override string Name => $"static ({MaxContext} tokens)";
    /// <inheritdoc/>
    public override KvAllocator Create(GpuBudget budget, KvGeometry geometry, int maxBatch, int maxContext) =>
        new StaticAllocator(Name, budget, geometry, MaxContext);
}

/// <summary>See <see cref="MemoryPolicy.Paged"/>.</summary>
public sealed record PagedPolicy(int BlockTokens) : MemoryPolicy
{
    /// <inheritdoc/>
    public override string Name => $"paged ({BlockTokens}-token blocks)";
    /// <inheritdoc/>
    public override KvAllocator Create(GpuBudget budget, KvGeometry geometry, int maxBatch, int maxContext) =>
        new PagedAllocator(Name, budget, geometry, BlockTokens);
}

/// <summary>See <see cref="MemoryPolicy.Virtual"/>.</summary>
public sealed record VirtualPolicy(long PageBytes, bool DeferredReclaim) : MemoryPolicy
{
    /// <inheritdoc/>
    public override string Name => $"vAttention ({Size(PageBytes)} pages{(DeferredReclaim ? "" : ", eager unmap")})";
    /// <inheritdoc/>
    public override KvAllocator Create(GpuBudget budget, KvGeometry geometry, int maxBatch, int maxContext) =>
        new VirtualAllocator(Name, budget, geometry, PageBytes, maxBatch, maxContext, DeferredReclaim);

    static string Size(long bytes) => bytes >= 1 << 20 && bytes % (1 << 20) == 0 ? $"{bytes >> 20} MB" : $"{bytes >> 10} KB";
}
