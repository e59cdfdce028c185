using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>What one decode step reads at context n: full attention vs landmark memory (one layer, float32).</summary>
/// <param name="N">ordinary tokens in the context.</param>
/// <param name="Inserted">positions with landmarks, n + ⌊n/ℓ_b⌋.</param>
/// <param name="FullTokens">keys full attention touches (all positions).</param>
/// <param name="LandmarkTokens">S′ landmark keys scored + k(ℓ_b+1) retrieved + the current partial block.</param>
/// <param name="FullKvBytes">K and V bytes full attention reads.</param>
/// <param name="LandmarkKvBytes">landmark keys (K only) + retrieved blocks' K and V + the current block's K and V.</param>
public sealed record LandmarkCostRow(int N, long Inserted, long FullTokens, long LandmarkTokens, long FullKvBytes, long LandmarkKvBytes)
{
    public double TokenRatio => FullTokens / (double)LandmarkTokens;
}

/// <summary>
/// The paper's cost accounting (§8 of the spec): attended tokens per query ≈ k(ℓ_b+1) + chunk + n/ℓ_b landmarks, against
/// n for full attention; bytes read per decode step per layer. The last token sits in a partial block of
/// c = ((N−1) mod (ℓ_b+1)) + 1 positions; S′ = (N − c)/(ℓ_b+1) blocks are stored. <see cref="LandmarkRun"/> counts the same.
/// </summary>
public static class LandmarkCost
{
    public static LandmarkCostRow At(int n, int blockSize, int topK, int heads, int headDim)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be ≥ 1.");
        Core.Guard.Positive(blockSize, nameof(blockSize));
        if (topK < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "topK must be ≥ 0.");
        long l = blockSize + 1, inserted = LandmarkTokens.InsertedLength(n, blockSize);
        long chunk = (inserted - 1) % l + 1, stored = (inserted - chunk) / l, k = Math.Min(topK, stored);
        long perKey = 4L * heads * headDim;                                               // one key (or value), all heads
        long scored = k > 0 ? stored : 0;
        return new LandmarkCostRow(n, inserted, inserted, scored + k * l + chunk, 2 * perKey * inserted,
            perKey * scored + 2 * perKey * (k * l + chunk));
    }

    public static IReadOnlyList<LandmarkCostRow> Sweep(IEnumerable<int> lengths, int blockSize, int topK, int heads, int headDim) =>
        lengths.Select(n => At(n, blockSize, topK, heads, headDim)).ToList();

    public static DataFrame ToDataFrame(IReadOnlyList<LandmarkCostRow> rows) => new(
        new Int32DataFrameColumn("n", rows.Select(r => r.N)),
        new Int64DataFrameColumn("full_tokens", rows.Select(r => r.FullTokens)),
        new Int64DataFrameColumn("landmark_tokens", rows.Select(r => r.LandmarkTokens)),
        new DoubleDataFrameColumn("token_ratio", rows.Select(r => Math.Round(r.TokenRatio, 2))),
        new Int64DataFrameColumn("full_kv_bytes", rows.Select(r => r.FullKvBytes)),
        new Int64DataFrameColumn("landmark_kv_bytes", rows.Select(r => r.LandmarkKvBytes)));
}
