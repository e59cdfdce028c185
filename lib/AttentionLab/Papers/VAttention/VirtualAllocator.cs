namespace AttentionLab.Papers.VAttention;

/// <summary>
/// vAttention's allocator, simulated: a virtual buffer [max_batch, max_ctx, H_kv, D] per layer and per tensor
/// (address space only), a batch slot per request at a fixed offset, and physical pages mapped on demand so that
/// slot r holds ⌈len_r · H_kv·D·bytes / page⌉ pages in each of the 2·L buffers (the guarantee of <c>step(seq_lens)</c>).
/// With deferred reclamation a finished request's pages stay mapped to its slot and the next request placed there
/// reuses them (no map calls); pages of free slots are unmapped only when another request needs the memory.
/// </summary>
/// <remarks>
/// Physical bytes = 2·L · Σ_slots pages_s · page. Internal fragmentation per active request ≤ 2·L · (page_tokens − 1)
/// tokens' rows (<see cref="PageMath.FragmentationBoundBytes"/>). One map call per page per layer tensor.
/// </remarks>
public sealed class VirtualAllocator : KvAllocator
{
    readonly long[] mapped;                // pages per tensor mapped to each slot
    readonly int?[] owner;                 // request id in each slot (null = free)
    readonly Dictionary<int, int> slotOf = new();
    readonly long poolPages;               // ⌊budget / page⌋ physical pages in all
    long mappedPages;                      // Σ_s 2L · mapped_s

    /// <param name="name">label.</param>
    /// <param name="budget">KV budget.</param>
    /// <param name="geometry">KV shape.</param>
    /// <param name="pageBytes">physical page size (2 MB with stock CUDA VMM; 64–256 KB with the paper's driver).</param>
    /// <param name="maxBatch">batch slots (the virtual buffers' first dimension).</param>
    /// <param name="maxContext">tokens per slot (the virtual buffers' second dimension).</param>
    /// <param name="deferredReclaim">keep a finished request's pages for the next request in its slot.</param>
    public VirtualAllocator(string name, GpuBudget budget, KvGeometry geometry, long pageBytes, int maxBatch, int maxContext, bool deferredReclaim)
        : base(name, budget, geometry)
    {
        if (maxBatch <= 0) throw new ArgumentException($"maxBatch must be positive, got {maxBatch}.", nameof(maxBatch));
        if (maxContext <= 0) throw new ArgumentException($"maxContext must be positive, got {maxContext}.", nameof(maxContext));
        PageTokens = PageMath.PageTokens(geometry, pageBytes);                          // validates pageBytes
        PageBytes = pageBytes;
        MaxContext = maxContext;
        DeferredReclaim = deferredReclaim;
        mapped = new long[maxBatch];
        owner = new int?[maxBatch];
        poolPages = Budget.KvBytes / pageBytes;
    }

    /// <summary>Physical page size in bytes.</summary>
    public long PageBytes { get; }
    /// <summary>Tokens per page in one layer tensor: page / (H_kv · D · bytes).</summary>
    public long PageTokens { get; }
    /// <summary>Tokens per slot.</summary>
    public int MaxContext { get; }
    /// <summary>Whether finished requests' pages are kept for reuse.</summary>
    public bool DeferredReclaim { get; }
    /// <summary>Batch slots.</summary>
    public int Slots => mapped.Length;
    /// <inheritdoc/>
    public override long ReservedBytes => mappedPages * PageBytes;
    /// <summary>max_batch · max_ctx · bytes/token of address space (no physical memory).</summary>
    public override long VirtualBytes => (long)Slots * MaxContext * Geometry.BytesPerToken;
    /// <summary>
    /// Mapped bytes no running request needs, which the allocator unmaps on demand: all pages of free slots (deferred
    /// reclamation) and the pages of a reused slot beyond ⌈len / page_tokens⌉.
    /// </summary>
    public long ReclaimableBytes => Enumerable.Range(0, Slots).Sum(s => Excess(s)) * Geometry.Tensors * PageBytes;

    long Excess(int slot) => owner[slot] is int id ? Math.Max(0, mapped[slot] - PagesPerTensor(Lengths[id])) : mapped[slot];

    /// <inheritdoc/>
    public override long CapacityAt(long tokens) =>
        tokens > MaxContext ? 0 : Math.Min(Slots, poolPages / (Geometry.Tensors * PagesPerTensor(tokens)));

    /// <summary>
    /// Pages per layer tensor mapped to each slot and the tokens of its request (−1 for a free slot): the occupancy the
    /// notebook draws as a heatmap.
    /// </summary>
    public (long[] MappedPages, long[] Tokens) Snapshot() =>
        (mapped.ToArray(), owner.Select(o => o is int id ? Lengths[id] : -1L).ToArray());

    long PagesPerTensor(long tokens) => PageMath.CeilDiv(tokens, PageTokens);            // ⌈len / page_tokens⌉

    /// <inheritdoc/>
    protected override bool Admit(int id, long tokens)
    {
        if (tokens > MaxContext) return false;
        // A free slot, preferring the one with the most pages still mapped (deferred reclamation reuses them).
        int slot = -1;
        for (int s = 0; s < Slots; s++)
            if (owner[s] is null && (slot < 0 || mapped[s] > mapped[slot])) slot = s;
        if (slot < 0 || !EnsurePages(slot, PagesPerTensor(tokens))) return false;
        owner[slot] = id;
        slotOf[id] = slot;
        return true;
    }

    /// <inheritdoc/>
    protected override bool Grow(int id, long from, long to) => to <= MaxContext && EnsurePages(slotOf[id], PagesPerTensor(to));

    /// <inheritdoc/>
    protected override void Free(int id, long tokens)
    {
        int slot = slotOf[id];
        slotOf.Remove(id);
        owner[slot] = null;                                                               // the slot's length is cleared
        if (!DeferredReclaim) Unmap(slot, mapped[slot]);
    }

    /// <summary>
    /// step(seq_lens) for one slot: map pages until it holds <paramref name="pages"/> per tensor. When the pool is short,
    /// reclaim first the pages of free slots, then the excess pages of other running slots.
    /// </summary>
    bool EnsurePages(int slot, long pages)
    {
        long missing = Geometry.Tensors * Math.Max(0, pages - mapped[slot]);
        if (missing == 0) return true;
        if (mappedPages + missing > poolPages)
        {
            for (int s = 0; s < Slots && mappedPages + missing > poolPages; s++)
                if (owner[s] is null && s != slot && mapped[s] > 0) Unmap(s, mapped[s]);
            for (int s = 0; s < Slots && mappedPages + missing > poolPages; s++)
                if (owner[s] is not null && s != slot && Excess(s) > 0) Unmap(s, Excess(s));
            if (mappedPages + missing > poolPages) return false;
        }
        mapped[slot] = pages;
        mappedPages += missing;
        AllocationCalls += missing;                                                      // one cuMemMap per page per layer tensor
        return true;
    }

    void Unmap(int slot, long pagesPerTensor)
    {
        long pages = Geometry.Tensors * pagesPerTensor;
        mappedPages -= pages;
        FreeCalls += pages;
        mapped[slot] -= pagesPerTensor;
    }
}
