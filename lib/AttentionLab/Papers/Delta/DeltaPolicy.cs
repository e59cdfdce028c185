using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>What a layer does at a DELTA decode step.</summary>
public enum LayerRole
{
    /// <summary>Full attention over the whole cache.</summary>
    Full,
    /// <summary>Full attention, and its probabilities pick the page set of the following sparse layers.</summary>
    Delta,
    /// <summary>Attends only to the pages picked by the nearest preceding Δ-layer at this step.</summary>
    Sparse,
}

/// <summary>
/// DELTA's layer roles and per-step page selection (Entezari Zarch et al. 2025; hoenza/DELTA
/// <c>page_selector_v2.py</c>, <c>model.py</c>). Layers in <see cref="FullLayers"/> attend fully, layers in
/// <see cref="DeltaLayers"/> attend fully and select pages, every other layer is sparse and uses the selection of the
/// nearest preceding Δ-layer. The full KV cache is never evicted; the selection is recomputed at every step.
/// </summary>
/// <remarks>
/// Pages of P tokens: page p holds tokens [pP, (p+1)P). With n tokens there are N = ⌈n/P⌉ pages.
/// Selection from page scores s_p (<see cref="PageScores.MaxOverHeads"/>):
///   s′_p = +∞ for the last L pages (p ≥ N − L);  s′_p = s_p − 1e-7·p otherwise (tie-break: earlier page wins);
///   S = sort(top-min(K, N)_p s′_p)  — K = budget pages, L = recent pages, kept in logical (page index) order.
/// L ≥ 1 so the current token's (possibly partial) page is always attended.
/// </remarks>
public sealed class DeltaPolicy
{
    readonly HashSet<int> full, delta;

    /// <param name="fullLayers">layers that attend fully (repo: 0 1 2 of the prefix).</param>
    /// <param name="deltaLayers">layers that attend fully and select pages (repo: 2 14 22); may also appear in
    /// <paramref name="fullLayers"/> (the repo lists them there).</param>
    /// <param name="pageSize">P tokens per page (repo 16).</param>
    /// <param name="budgetPages">K pages attended by sparse layers (repo 64).</param>
    /// <param name="recentPages">L most recent pages always selected (repo 8); at least 1 and at most K.</param>
    public DeltaPolicy(int[] fullLayers, int[] deltaLayers, int pageSize = 16, int budgetPages = 64, int recentPages = 8)
    {
        ArgumentNullException.ThrowIfNull(fullLayers);
        ArgumentNullException.ThrowIfNull(deltaLayers);
        if (fullLayers.Any(l => l < 0)) throw new ArgumentException($"fullLayers must be ≥ 0, got [{string.Join(", ", fullLayers)}].", nameof(fullLayers));
        if (deltaLayers.Any(l => l < 0))
            throw new ArgumentException($"deltaLayers must be ≥ 0, got [{string.Join(", ", deltaLayers)}].", nameof(deltaLayers));
        Guard.Positive(pageSize, nameof(pageSize));
        Guard.Positive(budgetPages, nameof(budgetPages));
        if (recentPages < 1 || recentPages > budgetPages)
            throw new ArgumentException(
                $"recentPages must be in [1, budgetPages = {budgetPages}] (the current page must be attended), got {recentPages}.", nameof(recentPages));
        delta = new HashSet<int>(deltaLayers);
        full = new HashSet<int>(fullLayers.Where(l => !delta.Contains(l)));
        (PageSize, BudgetPages, RecentPages) = (pageSize, budgetPages, recentPages);
    }

    /// <summary>All <paramref name="layers"/> full: DELTA must then equal the full decode.</summary>
    public static DeltaPolicy AllFull(int layers, int pageSize = 16, int budgetPages = 64, int recentPages = 8) =>
        new(Enumerable.Range(0, layers).ToArray(), Array.Empty<int>(), pageSize, budgetPages, recentPages);

    /// <summary>
    /// The repo's derivation from <c>FULL_CACHE_LAYERS</c>: a listed layer whose next layer is not listed is a Δ-layer;
    /// the other listed layers are full. E.g. 28 layers, [0, 1, 2, 14, 22] → full {0, 1}, Δ {2, 14, 22}.
    /// </summary>
    public static DeltaPolicy FromFullCacheLayers(int layers, int[] fullCacheLayers, int pageSize = 16, int budgetPages = 64, int recentPages = 8)
    {
        Guard.Positive(layers, nameof(layers));
        ArgumentNullException.ThrowIfNull(fullCacheLayers);
        var set = new HashSet<int>(fullCacheLayers);
        if (set.Any(l => l < 0 || l >= layers))
            throw new ArgumentException($"fullCacheLayers must lie in [0, {layers}), got [{string.Join(", ", fullCacheLayers)}].", nameof(fullCacheLayers));
        var deltas = set.Where(l => l + 1 < layers && !set.Contains(l + 1)).OrderBy(l => l).ToArray();
        return new DeltaPolicy(set.Except(deltas).OrderBy(l => l).ToArray(), deltas, pageSize, budgetPages, recentPages);
    }

    public int PageSize { get; }
    public int BudgetPages { get; }
    public int RecentPages { get; }
    /// <summary>Full layers (Δ-layers excluded), ascending.</summary>
    public IReadOnlyList<int> FullLayers => full.OrderBy(l => l).ToArray();
    /// <summary>Δ-layers, ascending.</summary>
    public IReadOnlyList<int> DeltaLayers => delta.OrderBy(l => l).ToArray();
    /// <summary>Short name for tables.</summary>
    public string Name => delta.Count == 0 ? "full" : $"delta(K={BudgetPages}, P={PageSize}, L={RecentPages})";

    /// <summary>The role of <paramref name="layer"/>.</summary>
    public LayerRole Role(int layer) => delta.Contains(layer) ? LayerRole.Delta : full.Contains(layer) ? LayerRole.Full : LayerRole.Sparse;

    /// <summary>Throws unless every sparse layer of a <paramref name="layers"/>-layer model has a preceding Δ-layer.</summary>
    public void CheckLayers(int layers, string name)
    {
        if (full.Concat(delta).Any(l => l >= layers))
            throw new ArgumentException(
                $"policy names layers ≥ {layers}: full [{string.Join(", ", FullLayers)}], Δ [{string.Join(", ", DeltaLayers)}].", name);
        for (int l = 0; l < layers; l++)
            if (Role(l) == LayerRole.Sparse && !delta.Any(d => d < l))
                throw new ArgumentException($"sparse layer {l} has no preceding Δ-layer (Δ = [{string.Join(", ", DeltaLayers)}]).", name);
    }

    /// <summary>Pages ⌈n / P⌉ for <paramref name="tokens"/> tokens.</summary>
    public long Pages(long tokens) => (tokens + PageSize - 1) / PageSize;

    /// <summary>Selected pages [B, min(K, N)] int64, ascending, from page scores [B, N].</summary>
    public Tensor SelectPages(Tensor pageScores)
    {
        Guard.Rank(pageScores, 2, nameof(pageScores), "B, pages");
        Guard.FloatingPoint(pageScores, nameof(pageScores));
        using var scope = NewDisposeScope();
        long n = pageScores.shape[1], k = Math.Min(BudgetPages, n);
        if (n == 0) throw new ArgumentException("pageScores must hold at least one page.", nameof(pageScores));
        var p = torch.arange(n, dtype: ScalarType.Float64, device: pageScores.device);
        var s = pageScores.to(ScalarType.Float64) - 1e-7 * p;                                   // s_p − 1e-7·p (tie-break)
        var recent = (p >= n - RecentPages).unsqueeze(0).expand_as(s);                          // p ≥ N − L
        s = s.masked_fill(recent, double.PositiveInfinity);                                      // recency window forced in
        var top = s.topk((int)k, dim: 1).indexes;                                                // top-min(K, N)
        return top.sort(dim: 1).Values.MoveToOuterDisposeScope();                                // logical order
    }

    /// <summary>
    /// Token indices [B, min(K, N)·P − pad] of the selected pages <paramref name="pages"/> [B, K′] for <paramref name="tokens"/> tokens (the partial last
    /// page trimmed).
    /// </summary>
    public Tensor TokenIndices(Tensor pages, long tokens)
    {
        Guard.Rank(pages, 2, nameof(pages), "B, K′");
        using var scope = NewDisposeScope();
        long b = pages.shape[0], kp = pages.shape[1];
        var idx = (pages.unsqueeze(-1) * PageSize + torch.arange(PageSize, dtype: ScalarType.Int64, device: pages.device)).view(b, kp * PageSize);
        long pad = Pages(tokens) * PageSize - tokens;                                            // the last page is always selected, and last
        return idx.narrow(1, 0, kp * PageSize - pad).MoveToOuterDisposeScope();
    }
}
