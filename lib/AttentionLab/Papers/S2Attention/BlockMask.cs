using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// A causal per-head block pattern: <see cref="Allows"/>(h, i, j) says whether query block i of KV head h may read key
/// block j (j ≤ i). Heads are KV heads: with grouped-query attention every query head of a group uses its KV head's pattern.
/// Plain arrays, no tensors, so nothing to dispose.
/// </summary>
/// <remarks>
/// Token level: keep(h, p, j) = M_h[⌊p/b⌋, ⌊j/b⌋] ∧ j ≤ p (causality also inside the diagonal block).
/// KV-cache efficiency: once key block j leaves the local window of every later query block, whether it is read must not
/// depend on the query block any more; then a head's cache holds only its stride blocks plus the last ℓ blocks.
/// </remarks>
public sealed class BlockMask
{
    readonly bool[,,] blocks;

    /// <param name="blocks">[H, nb, nb] keep flags (query block, key block); entries above the diagonal are ignored.</param>
    /// <param name="blockSize">tokens per block b.</param>
    /// <param name="localBlocks">ℓ, the local window in blocks (diagonal included); used for the distant-coverage count.</param>
    public BlockMask(bool[,,] blocks, int blockSize, int localBlocks)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        if (blocks.GetLength(0) == 0 || blocks.GetLength(1) == 0 || blocks.GetLength(1) != blocks.GetLength(2))
            throw new ArgumentException(
                $"blocks must be [H > 0, nb > 0, nb], got [{blocks.GetLength(0)}, {blocks.GetLength(1)}, {blocks.GetLength(2)}].", nameof(blocks));
        if (blockSize <= 0) throw new ArgumentException($"blockSize must be positive, got {blockSize}.", nameof(blockSize));
        if (localBlocks <= 0) throw new ArgumentException($"localBlocks must be positive, got {localBlocks}.", nameof(localBlocks));
        for (int h = 0; h < blocks.GetLength(0); h++)
            for (int i = 0; i < blocks.GetLength(1); i++)
                if (!blocks[h, i, i])
                    throw new ArgumentException(
                        $"head {h}, query block {i} misses its diagonal block: its first token would see no key (softmax NaN).", nameof(blocks));
        this.blocks = (bool[,,])blocks.Clone();
        BlockSize = blockSize;
        LocalBlocks = localBlocks;
    }

    /// <summary>KV heads H.</summary>
    public int Heads => blocks.GetLength(0);
    /// <summary>Blocks nb (the longest sequence is nb · b tokens).</summary>
    public int Blocks => blocks.GetLength(1);
    /// <summary>Tokens per block b.</summary>
    public int BlockSize { get; }
    /// <summary>Local window ℓ in blocks, diagonal included.</summary>
    public int LocalBlocks { get; }
    /// <summary>Longest sequence the pattern covers, nb · b.</summary>
    public int MaxLength => Blocks * BlockSize;

    /// <summary>M_h[i, j]: query block i of head h reads key block j (false above the diagonal).</summary>
    public bool Allows(int head, int queryBlock, int keyBlock) => keyBlock <= queryBlock && blocks[head, queryBlock, keyBlock];

    /// <summary>The key blocks query block i of head h reads, ascending.</summary>
    public int[] KeyBlocks(int head, int queryBlock) =>
        Enumerable.Range(0, queryBlock + 1).Where(j => blocks[head, queryBlock, j]).ToArray();

    /// <summary>Token-level keep-mask [H, T, T] (bool): M_h[⌊p/b⌋, ⌊j/b⌋] ∧ (j ≤ p when causal). Without
    /// <paramref name="causal"/> the diagonal block is kept whole (the mistake the token-level test catches).</summary>
    public Tensor ToDense(int seqLen, bool causal = true, Device? device = null)
    {
        CheckLength(seqLen, nameof(seqLen));
        var keep = new bool[Heads * seqLen * seqLen];
        for (int h = 0; h < Heads; h++)
            for (int p = 0; p < seqLen; p++)
                for (int j = 0; j < seqLen; j++)
                    keep[(h * seqLen + p) * seqLen + j] = (!causal || j <= p) && Allows(h, p / BlockSize, j / BlockSize);
        return torch.tensor(keep, new long[] { Heads, seqLen, seqLen }, device: device);
    }

    /// <summary>Fraction of causal block pairs (j ≤ i) that at least one head reads (1.0 = the union of heads covers all).</summary>
    public double Coverage() => UnionFraction(minGap: 0);

    /// <summary>Coverage of the distant pairs only (i − j ≥ ℓ, outside every local window); 1/s for a homogeneous stride.</summary>
    public double DistantCoverage() => UnionFraction(minGap: LocalBlocks);

    /// <summary>Fraction of causal token pairs head h reads at length T (its attention FLOP fraction vs dense causal).</summary>
    public double Density(int head, int seqLen)
    {
        CheckLength(seqLen, nameof(seqLen));
        long kept = 0;
        for (int p = 0; p < seqLen; p++) kept += AttendedTokens(head, p);
        return kept / (seqLen * (seqLen + 1) / 2.0);
    }

    /// <summary>Mean of <see cref="Density(int, int)"/> over heads.</summary>
    public double Density(int seqLen) => Enumerable.Range(0, Heads).Average(h => Density(h, seqLen));

    /// <summary>Keys query position p of head h reads: |{j ≤ p : M_h[⌊p/b⌋, ⌊j/b⌋]}|.</summary>
    public long AttendedTokens(int head, int position)
    {
        CheckLength(position + 1, nameof(position));
        int i = position / BlockSize;
        long n = 0;
        for (int j = 0; j <= i; j++)
            if (blocks[head, i, j]) n += j < i ? BlockSize : position - i * BlockSize + 1;
        return n;
    }

    /// <summary>
    /// Tokens head h's KV cache must hold after T tokens: the columns the last row (p = T − 1) reads. For a KV-cache
    /// efficient pattern no later query needs an older token outside this set, so this is the head's cache size.
    /// </summary>
    public long[] KvTokensPerHead(int seqLen) => Enumerable.Range(0, Heads).Select(h => AttendedTokens(h, seqLen - 1)).ToArray();

    /// <summary>
    /// The (head, key block) pairs that break KV-cache efficiency: key block j, outside the local window, read by some
    /// later query block but skipped by an earlier one (so it cannot be dropped, yet is not in the head's stride set).
    /// Empty for absolute strides (dkernel warns otherwise; see <see cref="S2Pattern.Warnings"/>).
    /// </summary>
    public IReadOnlyList<(int Head, int KeyBlock)> KvInefficiencies()
    {
        var bad = new List<(int, int)>();
        for (int h = 0; h < Heads; h++)
            for (int j = 0; j < Blocks; j++)
            {
                var reads = Enumerable.Range(j + LocalBlocks, Math.Max(0, Blocks - j - LocalBlocks)).Select(i => blocks[h, i, j]).ToArray();
                if (reads.Length > 0 && reads.Distinct().Count() > 1) bad.Add((h, j));
            }
        return bad;
    }

    double UnionFraction(int minGap)
    {
        long pairs = 0, covered = 0;
        for (int i = 0; i < Blocks; i++)
            for (int j = 0; j + minGap <= i; j++)
            {
                pairs++;
                for (int h = 0; h < Heads; h++)
                    if (blocks[h, i, j]) { covered++; break; }
            }
        return pairs == 0 ? 1.0 : (double)covered / pairs;
    }

    void CheckLength(int seqLen, string name)
    {
        if (seqLen <= 0 || seqLen > MaxLength)
            throw new ArgumentException($"{name}: length {seqLen} must be in [1, {MaxLength}] (nb = {Blocks} blocks of {BlockSize}).", name);
    }
}
