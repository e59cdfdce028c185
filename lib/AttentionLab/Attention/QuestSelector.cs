using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Quest-style query-aware page selection (Tang et al. 2024, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM
/// Inference"): the cache is cut into pages of <see cref="PageSize"/> tokens; each page is summarised per KV head by the
/// elementwise minimum and maximum of its keys; the new query reads the <see cref="BudgetPages"/> − 1 pages with the
/// largest upper bound on q·k, plus the page it is being written into. Per layer: every layer selects for itself (the
/// per-layer baseline DELTA compares against). Nothing is evicted.
/// </summary>
/// <remarks>
/// Page p with keys K_p:  m_p = min_{j∈p} k_j,  M_p = max_{j∈p} k_j  (per dimension);
/// bound U_p(q) = Σ_i max(q_i m_{p,i}, q_i M_{p,i}) ≥ max_{j∈p} q·k_j  (each term bounds q_i k_{j,i} over the page);
/// GQA: U is summed over the query heads of a KV head's group (one selection per KV head, like the KV cache it reads).
/// J_t = ⋃_{p ∈ TopK(U, budget − 1)} p ∪ {last page}; full attention while the cache holds ≤ budget pages.
/// Quest keeps m and M incrementally per page; this reference recomputes them from the keys each step (O(n·D), the same
/// selection).
/// </remarks>
public sealed class QuestSelector : IKvSelector
{
    /// <param name="pageSize">P: tokens per page.</param>
    /// <param name="budgetPages">pages read per step, the current page included (≥ 2: one selected page at least).</param>
    public QuestSelector(int pageSize, int budgetPages)
    {
        Guard.Positive(pageSize, nameof(pageSize));
        if (budgetPages < 2)
            throw new ArgumentException($"budgetPages must be ≥ 2 (the current page plus one selected page), got {budgetPages}.", nameof(budgetPages));
        (PageSize, BudgetPages) = (pageSize, budgetPages);
    }

    public int PageSize { get; }
    public int BudgetPages { get; }
    public string Name => $"quest(P={PageSize}, K={BudgetPages})";

    public Tensor? Select(KvSelectQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        long n = query.Count, pages = (n + PageSize - 1) / PageSize;
        if (pages <= BudgetPages) return null;                                          // everything fits the budget
        if (query.Query is null || query.Keys is null)
            throw new ArgumentException("Quest selection needs the step's query and the cached keys (KvSelectQuery.Query and .Keys).", nameof(query));
        using var scope = NewDisposeScope();
        var bound = PageBounds(query.Query, query.Keys, PageSize);                      // U [B, Hkv, pages − 1]
        var top = bound.topk(BudgetPages - 1, dim: -1).indexes.sort(-1).Values;          // the best full pages, ascending
        long b = query.Batch, hkv = query.KvHeads, lastStart = (pages - 1) * PageSize;
        var within = torch.arange(PageSize, dtype: ScalarType.Int64, device: query.Device);
        var chosen = (top.unsqueeze(-1) * PageSize + within).flatten(-2);                // tokens of the chosen pages
        var current = torch.arange(lastStart, n, dtype: ScalarType.Int64, device: query.Device).expand(b, hkv, n - lastStart);
        return torch.cat(new[] { chosen, current }, -1).MoveToOuterDisposeScope();       // J_t, ascending
    }

    /// <summary>Quest never learns from probabilities: the bound is all it needs.</summary>
    public void Observe(Tensor probabilities) { }

    /// <summary>
    /// U [B, Hkv, pages − 1]: the upper bounds of every full page before the current one, for query q [B, Hq, D] and keys
    /// [B, n, Hkv, D] (Σ over the query heads of each group).
    /// </summary>
    public static Tensor PageBounds(Tensor query, Tensor keys, int pageSize)
    {
        Guard.Rank(query, 3, nameof(query), "B, Hq, D");
        Guard.Rank(keys, 4, nameof(keys), "B, n, Hkv, D");
        Guard.Positive(pageSize, nameof(pageSize));
        long b = keys.shape[0], n = keys.shape[1], hkv = keys.shape[2], d = keys.shape[3], hq = query.shape[1];
        if (query.shape[0] != b || query.shape[2] != d || hq % hkv != 0)
            throw new ArgumentException(
                $"query {Guard.ShapeText(query)} must be [B = {b}, Hq (a multiple of {hkv}), D = {d}] for keys {Guard.ShapeText(keys)}.", nameof(query));
        long full = (n - 1) / pageSize;                                                  // pages strictly before the current one
        if (full == 0) return torch.zeros(new[] { b, hkv, 0L }, dtype: query.dtype, device: query.device);
        using var scope = NewDisposeScope();
        var paged = keys.narrow(1, 0, full * pageSize).reshape(b, full, pageSize, hkv, d);
        var lo = paged.amin(2).unsqueeze(3);                                             // m_p [B, pages, Hkv, 1, D]
        var hi = paged.amax(2).unsqueeze(3);                                             // M_p
        var q = query.to(keys.dtype).view(b, 1, hkv, hq / hkv, d);                       // [B, 1, Hkv, G, D]
        var bound = torch.maximum(q * lo, q * hi).sum(-1).sum(-1);                       // Σ_g Σ_i max(q_i m_i, q_i M_i) [B, pages, Hkv]
        return bound.permute(0, 2, 1).contiguous().MoveToOuterDisposeScope();
    }
}
