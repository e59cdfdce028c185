namespace AttentionLab.Models;

/// <summary>
/// How H projected key (or value) heads become the S heads a layer caches, and which of them each query head reads:
/// cached head s = Σ_h F[s, h] · head h (a weighted linear fusion, zero outside <see cref="Support"/>), and query head h
/// reads cached head <see cref="SlotOfHead"/>[h]. MHA is the identity (S = H); GQA's conversion (Ainslie et al. 2023,
/// arXiv 2305.13245, §2.1) mean-pools contiguous groups; DHA (Chen et al. 2024, arXiv 2406.06567) fuses heads of
/// non-contiguous groups with learned weights ω (starting at the identity), then collapses each group to its mean.
/// </summary>
/// <remarks>
/// Fusing projected heads equals fusing their weights: Σ_h F[s,h] (x W_h + b_h) = x (Σ_h F[s,h] W_h) + Σ_h F[s,h] b_h, and
/// RoPE is the same linear map for every head, so it commutes with the fusion (DHA §3).
/// </remarks>
public sealed class KvHeadMap
{
    readonly int[] slotOfHead;
    readonly double[,] fusion;
    readonly bool[,] support;

    /// <param name="slotOfHead">Per query head h, the cached head it reads (in 0 … S−1; every slot read by some head).</param>
    /// <param name="fusion">F [S, H]: cached head s = Σ_h F[s, h] · projected head h.</param>
    /// <param name="support">Which F entries may be non-zero (and train); null: every entry.</param>
    public KvHeadMap(IReadOnlyList<int> slotOfHead, double[,] fusion, bool[,]? support = null)
    {
        ArgumentNullException.ThrowIfNull(slotOfHead);
        ArgumentNullException.ThrowIfNull(fusion);
        int h = slotOfHead.Count, s = fusion.GetLength(0);
        if (h == 0) throw new ArgumentException("give the slot of at least one head.", nameof(slotOfHead));
        if (fusion.GetLength(1) != h) throw new ArgumentException($"fusion must be [S, H = {h}], got [{s}, {fusion.GetLength(1)}].", nameof(fusion));
        string slots = string.Join(", ", slotOfHead);
        if (slotOfHead.Any(x => x < 0 || x >= s)) throw new ArgumentException($"slots must lie in 0 … {s - 1}: [{slots}].", nameof(slotOfHead));
        if (Enumerable.Range(0, s).Any(x => !slotOfHead.Contains(x)))
            throw new ArgumentException($"every one of the {s} cached heads must be read by some query head: [{slots}].", nameof(slotOfHead));
        support ??= Full(s, h);
        if (support.GetLength(0) != s || support.GetLength(1) != h)
            throw new ArgumentException($"support must be [{s}, {h}], got [{support.GetLength(0)}, {support.GetLength(1)}].", nameof(support));
        for (int i = 0; i < s; i++)
            for (int j = 0; j < h; j++)
            {
                if (!double.IsFinite(fusion[i, j])) throw new ArgumentException($"fusion[{i}, {j}] = {fusion[i, j]} is not finite.", nameof(fusion));
                if (!support[i, j] && fusion[i, j] != 0)
                    throw new ArgumentException($"fusion[{i}, {j}] = {fusion[i, j]} lies outside the support.", nameof(fusion));
            }
        (this.slotOfHead, this.fusion, this.support) = (slotOfHead.ToArray(), (double[,])fusion.Clone(), (bool[,])support.Clone());
    }

    /// <summary>H, the projected (and query) heads.</summary>
    public int Heads => slotOfHead.Length;
    /// <summary>S, the cached heads.</summary>
    public int Slots => fusion.GetLength(0);
    /// <summary>Per query head, the cached head it reads.</summary>
    public IReadOnlyList<int> SlotOfHead => slotOfHead;
    /// <summary>F [S, H] (a copy).</summary>
    public double[,] Fusion => (double[,])fusion.Clone();
    /// <summary>Where F may be non-zero [S, H] (a copy).</summary>
    public bool[,] Support => (bool[,])support.Clone();

    /// <summary>MHA: S = H, F = I, head h reads its own head.</summary>
    public static KvHeadMap Identity(int heads)
    {
        if (heads < 1) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        return FromGroups(Enumerable.Range(0, heads).ToArray());
    }

    /// <summary>GQA's conversion: G contiguous groups of H/G heads, each cached head the mean of its group's heads.</summary>
    public static KvHeadMap MeanPool(int heads, int groups)
    {
        if (heads < 1) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (groups < 1 || heads % groups != 0) throw new ArgumentException($"groups must divide heads {heads}, got {groups}.", nameof(groups));
        return FromGroups(Enumerable.Range(0, heads).Select(h => h / (heads / groups)).ToArray());
    }

    /// <summary>Any partition (groups numbered 0 … G−1, non-contiguous allowed): each cached head the mean of its group's heads.</summary>
    public static KvHeadMap FromGroups(IReadOnlyList<int> groupOfHead)
    {
        ArgumentNullException.ThrowIfNull(groupOfHead);
        int h = groupOfHead.Count, g = groupOfHead.Count == 0 ? 0 : groupOfHead.Max() + 1;
        var f = new double[g, h];
        var m = new bool[g, h];
        for (int j = 0; j < h; j++)
        {
            if (groupOfHead[j] < 0) throw new ArgumentException($"groups must be ≥ 0: [{string.Join(", ", groupOfHead)}].", nameof(groupOfHead));
            int size = groupOfHead.Count(x => x == groupOfHead[j]);
            (f[groupOfHead[j], j], m[groupOfHead[j], j]) = (1.0 / size, true);                // F[g, h] = 1/|g| for h ∈ g
        }
        return new KvHeadMap(groupOfHead, f, m);
    }

    /// <summary>
    /// DHA's fusion stage: every head keeps its own cached head (S = H), fused from the heads of its group with weights ω
    /// that start at the identity (the model is unchanged) and may train only inside the group (the support).
    /// </summary>
    public static KvHeadMap Decoupled(IReadOnlyList<int> groupOfHead)
    {
        ArgumentNullException.ThrowIfNull(groupOfHead);
        int h = groupOfHead.Count;
        var f = new double[h, h];
        var m = new bool[h, h];
        for (int i = 0; i < h; i++)
        {
            f[i, i] = 1;                                                                        // ω = I
            for (int j = 0; j < h; j++) m[i, j] = groupOfHead[i] == groupOfHead[j];              // ω_ij may train for j in i's group
        }
        return new KvHeadMap(Enumerable.Range(0, h).ToArray(), f, m);
    }

    /// <summary>
    /// DHA's collapse: from trained decoupled weights ω [H, H] to one cached head per group, F[g, ·] = mean_{i ∈ g} ω[i, ·]
    /// (the mean of the group's fused heads); query head h then reads its group.
    /// </summary>
    public static KvHeadMap Collapse(double[,] omega, IReadOnlyList<int> groupOfHead)
    {
        ArgumentNullException.ThrowIfNull(omega);
        var pool = FromGroups(groupOfHead);
        int h = pool.Heads, g = pool.Slots;
        if (omega.GetLength(0) != h || omega.GetLength(1) != h) throw new ArgumentException($"omega must be [{h}, {h}].", nameof(omega));
        var f = new double[g, h];
        var m = new bool[g, h];
        for (int i = 0; i < h; i++)
        {
            int gi = groupOfHead[i], size = groupOfHead.Count(x => x == gi);
            for (int j = 0; j < h; j++)
            {
                f[gi, j] += omega[i, j] / size;                                                  // mean_{i∈g} ω[i, j]
                m[gi, j] |= groupOfHead[j] == gi;
            }
        }
        return new KvHeadMap(groupOfHead, f, Union(m, f));
    }

    static bool[,] Union(bool[,] m, double[,] f)
    {
        var u = (bool[,])m.Clone();
        for (int i = 0; i < f.GetLength(0); i++) for (int j = 0; j < f.GetLength(1); j++) u[i, j] |= f[i, j] != 0;
        return u;
    }

    static bool[,] Full(int s, int h)
    {
        var m = new bool[s, h];
        for (int i = 0; i < s; i++) for (int j = 0; j < h; j++) m[i, j] = true;
        return m;
    }
}
