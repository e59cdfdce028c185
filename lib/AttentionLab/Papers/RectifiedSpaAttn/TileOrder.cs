namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>
/// Locality-preserving token orders for a video latent of T frames × H rows × W columns (raster index
/// r = (f·H + y)·W + x). Block-sparse attention pools B consecutive tokens, so the order decides how compact a block is:
/// along a Hilbert curve consecutive tokens are spatial (and temporal) neighbours, and a block is a small box.
/// </summary>
/// <remarks>
/// Hilbert curve on the enclosing 2^m cube (Skilling 2004, "Programming the Hilbert curve": index → transposed form →
/// Gray decode → undo excess work), visiting only the points inside the grid ("Hilbert with skipping"). For sides
/// that are powers of two and a cube-shaped grid this is the Hilbert curve; for other sizes consecutive tokens may be a
/// jump apart where the curve leaves the grid, but every dyadic sub-box the curve fills stays contiguous, which is the
/// property pooling needs. The official repo uses the generalised Hilbert ("gilbert") curve of arbitrary cuboids
/// instead (utils/jenga_gilbert.py); both are locality-preserving, ours is shorter and exact on the power-of-two grids
/// the notebook uses (see docs/decisions.md).
/// </remarks>
public static class TileOrder
{
    /// <summary>Order of an H × W frame: element i is the raster index y·W + x of the i-th token along the curve.</summary>
    public static int[] Hilbert2D(int h, int w)
    {
        Check(h, nameof(h)); Check(w, nameof(w));
        return Curve(new[] { h, w });
    }

    /// <summary>Order of a T × H × W video: element i is the raster index (f·H + y)·W + x of the i-th token along the curve.</summary>
    public static int[] Hilbert3D(int t, int h, int w)
    {
        Check(t, nameof(t)); Check(h, nameof(h)); Check(w, nameof(w));
        return Curve(new[] { t, h, w });
    }

    /// <summary>Raster order (no reordering), the baseline a locality-preserving order is compared against.</summary>
    public static int[] Raster(int t, int h, int w)
    {
        Check(t, nameof(t)); Check(h, nameof(h)); Check(w, nameof(w));
        return Enumerable.Range(0, t * h * w).ToArray();
    }

    /// <summary>
    /// Spatial neighbour blocks for a token order: [nb, nb], true when some token of block I and some token of block J
    /// are within Chebyshev distance <paramref name="radius"/> on the (f, y, x) grid. The diagonal is always true.
    /// The repo adds these blocks to every query block's critical set (block_neighbor_list).
    /// </summary>
    public static bool[,] NeighbourBlocks(int[] order, int t, int h, int w, int block, int radius = 1)
    {
        ArgumentNullException.ThrowIfNull(order);
        Check(t, nameof(t)); Check(h, nameof(h)); Check(w, nameof(w)); Check(block, nameof(block));
        if (radius < 0) throw new ArgumentException($"radius must be ≥ 0, got {radius}.", nameof(radius));
        int n = t * h * w;
        if (order.Length != n || order.Distinct().Count() != n || order.Any(r => r < 0 || r >= n))
            throw new ArgumentException($"order must be a permutation of 0 … {n - 1}.", nameof(order));
        int nb = (n + block - 1) / block;
        var blockOf = new int[n];                                       // raster index → block of its curve position
        for (int i = 0; i < n; i++) blockOf[order[i]] = i / block;
        var nbr = new bool[nb, nb];
        for (int f = 0; f < t; f++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int bi = blockOf[(f * h + y) * w + x];
                    for (int df = -radius; df <= radius; df++)
                        for (int dy = -radius; dy <= radius; dy++)
                            for (int dx = -radius; dx <= radius; dx++)
                            {
                                int g = f + df, yy = y + dy, xx = x + dx;
                                if (g < 0 || g >= t || yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                                nbr[bi, blockOf[(g * h + yy) * w + xx]] = true;
                            }
                }
        return nbr;
    }

    static int[] Curve(int[] sides)
    {
        int n = sides.Length, bits = 0;
        while ((1 << bits) < sides.Max()) bits++;
        long total = 1L << (bits * n);
        int count = sides.Aggregate(1, (a, s) => a * s);
        var order = new List<int>(count);
        var x = new int[n];
        for (long index = 0; index < total && order.Count < count; index++)
        {
            ToAxes(index, bits, x);
            bool inside = true;
            for (int a = 0; a < n; a++) inside &= x[a] < sides[a];
            if (!inside) continue;
            int r = 0;
            for (int a = 0; a < n; a++) r = r * sides[a] + x[a];         // raster index, axis 0 slowest
            order.Add(r);
        }
        return order.ToArray();
    }

    /// <summary>Hilbert index → coordinates (Skilling's TransposetoAxes), n axes of <paramref name="bits"/> bits.</summary>
    static void ToAxes(long index, int bits, int[] x)
    {
        int n = x.Length;
        Array.Clear(x);
        for (int l = 0; l < bits; l++)                                  // transposed form: bit l·n + a (from the top) → axis a
            for (int a = 0; a < n; a++)
            {
                int bit = (int)((index >> (bits * n - 1 - (l * n + a))) & 1);
                x[a] |= bit << (bits - 1 - l);
            }
        if (bits == 0) return;
        int top = 1 << bits;
        int t = x[n - 1] >> 1;                                          // Gray decode: H ^ (H / 2)
        for (int i = n - 1; i > 0; i--) x[i] ^= x[i - 1];
        x[0] ^= t;
        for (int q = 2; q != top; q <<= 1)                              // undo excess work
        {
            int p = q - 1;
            for (int i = n - 1; i >= 0; i--)
                if ((x[i] & q) != 0) x[0] ^= p;
                else { t = (x[0] ^ x[i]) & p; x[0] ^= t; x[i] ^= t; }
        }
    }

    static void Check(int v, string name)
    {
        if (v <= 0) throw new ArgumentException($"{name} must be positive, got {v}.", name);
    }
}
