namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// S2-Attention's heterogeneous local + vertical-stride block pattern (dkernel's <c>get_sparse_attn_mask</c>).
/// </summary>
/// <remarks>
/// σ = max(1, ⌊s/H⌋) (0 when homogeneous);  for query block i ≥ key block j:
/// M_h[i, j] = (i − j &lt; ℓ) ∨ ((j + h·σ + o) mod s = 0)  — j is the absolute key-block index (causal models),
/// so head h reads the residue class r_h = (−h·σ − o) mod s, and the union of heads covers every distant block iff
/// {r_h} spans all residues (H ≥ s with σ = 1). The last <c>denseHeads</c> heads read every causal block.
/// </remarks>
public static class S2Pattern
{
    /// <summary>Builds the pattern for <paramref name="heads"/> KV heads and sequences up to <paramref name="seqLen"/> tokens.</summary>
    /// <param name="heads">KV heads H (with GQA every query head of a group shares its KV head's pattern).</param>
    /// <param name="seqLen">longest sequence; nb = ⌈seqLen / block⌉ blocks.</param>
    /// <param name="block">tokens per block b.</param>
    /// <param name="localBlocks">ℓ, local window in blocks, the diagonal block included.</param>
    /// <param name="vertStride">s, the vertical stride in key blocks.</param>
    /// <param name="homoHead">every head uses the same residue (σ = 0).</param>
    /// <param name="denseHeads">the last heads that read every causal block.</param>
    /// <param name="offset">o, shifts every head's residue.</param>
    public static BlockMask LocalStride(int heads, int seqLen, int block = 64, int localBlocks = 16, int vertStride = 8,
        bool homoHead = false, int denseHeads = 0, int offset = 0)
    {
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (seqLen <= 0) throw new ArgumentException($"seqLen must be positive, got {seqLen}.", nameof(seqLen));
        if (block <= 0) throw new ArgumentException($"block must be positive, got {block}.", nameof(block));
        if (localBlocks <= 0) throw new ArgumentException($"localBlocks must be ≥ 1 (the diagonal block), got {localBlocks}.", nameof(localBlocks));
        if (vertStride <= 0) throw new ArgumentException($"vertStride must be positive, got {vertStride}.", nameof(vertStride));
        if (denseHeads < 0 || denseHeads > heads) throw new ArgumentException($"denseHeads must be in [0, {heads}], got {denseHeads}.", nameof(denseHeads));
        if (offset < 0) throw new ArgumentException($"offset must be ≥ 0, got {offset}.", nameof(offset));
        int nb = (seqLen + block - 1) / block;
        var residues = Residues(heads, vertStride, homoHead, denseHeads, offset);
        var m = new bool[heads, nb, nb];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < nb; i++)
                for (int j = 0; j <= i; j++)
                    m[h, i, j] = residues[h] is not int r
                        || i - j < localBlocks                                           // local window (diagonal included)
                        || j % vertStride == r;                                          // (j + h·σ + o) mod s = 0 ⇔ j ≡ r_h
        return new BlockMask(m, block, localBlocks);
    }

    /// <summary>r_h = (−h·σ − o) mod s per head, σ = max(1, ⌊s/H⌋) (0 when homogeneous); null for a dense head.</summary>
    public static int?[] Residues(int heads, int vertStride, bool homoHead = false, int denseHeads = 0, int offset = 0)
    {
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (vertStride <= 0) throw new ArgumentException($"vertStride must be positive, got {vertStride}.", nameof(vertStride));
        int sigma = homoHead ? 0 : Math.Max(1, vertStride / heads);                     // head_sliding_step σ
        return Enumerable.Range(0, heads)
            .Select(h => h >= heads - denseHeads ? (int?)null : ((-(h * sigma + offset)) % vertStride + vertStride) % vertStride)
            .ToArray();
    }

    /// <summary>dkernel-style warnings: uncovered distant blocks and KV-cache-inefficient (head, block) pairs; empty when fine.</summary>
    public static IReadOnlyList<string> Warnings(BlockMask mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        var w = new List<string>();
        double c = mask.DistantCoverage();
        if (c < 1) w.Add($"the heads together read only {c:P1} of the distant block pairs (heterogeneous residues need H ≥ s).");
        var bad = mask.KvInefficiencies();
        if (bad.Count > 0)
            w.Add($"{bad.Count} (head, key block) pairs are read by some later queries but not others: " +
                "the KV cache cannot drop them (pattern not KV-cache efficient).");
        return w;
    }
}
