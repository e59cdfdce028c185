using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>Which spatial window a query sees.</summary>
public enum WindowKind
{
    /// <summary>Every token (plain full attention).</summary>
    Full,
    /// <summary>The centred (2d_h+1)×(2d_w+1) window cut off at the borders: border queries see fewer keys (the pitfall).</summary>
    Clipped,
    /// <summary>FreeSwim's inward sliding window: shifted inward at the borders so every query sees the same number of keys.</summary>
    Inward,
}

/// <summary>
/// A spatial window as gather indices: for query n, keys Indices[n, 0..K) of which Valid[n, ·] are real (the rest is
/// padding, index 0, masked). Query and key tokens are numbered n = (t·H + y)·W + x on a T×H×W grid. Owns its tensors.
/// </summary>
public sealed class WindowIndex : IDisposable
{
    internal WindowIndex(WindowKind kind, TokenGrid grid, int dh, int dw, Tensor indices, Tensor valid, int[] counts)
    {
        Kind = kind; Grid = grid; HalfHeight = dh; HalfWidth = dw; Indices = indices; Valid = valid; counts_ = counts;
    }

    readonly int[] counts_;

    /// <summary>Full, clipped or inward.</summary>
    public WindowKind Kind { get; }
    /// <summary>The T×H×W token grid.</summary>
    public TokenGrid Grid { get; }
    /// <summary>d_h: the window is 2d_h + 1 rows tall.</summary>
    public int HalfHeight { get; }
    /// <summary>d_w: the window is 2d_w + 1 columns wide.</summary>
    public int HalfWidth { get; }
    /// <summary>Key token of each (query, slot), [N, K] int64; padding slots hold 0.</summary>
    public Tensor Indices { get; }
    /// <summary>True where a slot holds a real key, [N, K] bool.</summary>
    public Tensor Valid { get; }
    /// <summary>K: key slots per query (the largest window).</summary>
    public long Slots => Indices.shape[1];
    /// <summary>Keys each query attends to (its receptive field), length N.</summary>
    public IReadOnlyList<int> KeysPerQuery => counts_;

    /// <summary>The dense keep-mask [N, N] bool (true = query i may attend to key j). O(N²): the naive twin, for small grids.</summary>
    public Tensor ToDense()
    {
        using var scope = NewDisposeScope();
        long n = Grid.Tokens;
        var counts = torch.zeros(n, n, dtype: ScalarType.Int32, device: Indices.device)
            .scatter_add_(1, Indices, Valid.to(ScalarType.Int32));     // padding slots add 0 at key 0
        var dense = counts > 0;
        return dense.MoveToOuterDisposeScope();
    }

    /// <summary>Query <paramref name="query"/>'s keys as an [H, W] map: number of frames in which each position is a key (T when seen, 0 when not).</summary>
    public Tensor QueryMap(int query)
    {
        if (query < 0 || query >= Grid.Tokens) throw new ArgumentOutOfRangeException(nameof(query), query, $"query must be in [0, {Grid.Tokens}).");
        var map = new float[Grid.PerFrame];
        var idx = Indices[query].cpu().data<long>().ToArray();
        var ok = Valid[query].cpu().data<bool>().ToArray();
        for (int s = 0; s < idx.Length; s++) if (ok[s]) map[idx[s] % Grid.PerFrame] += 1;
        return torch.tensor(map, new long[] { Grid.Height, Grid.Width });
    }

    public void Dispose() { Indices.Dispose(); Valid.Dispose(); }
}

/// <summary>
/// FreeSwim's inward sliding-window mask (official <c>init_mask_flex</c>) and the clipped window it fixes, built as gather
/// indices [N, K] — never the O(N²) dense mask, which exists only as <see cref="WindowIndex.ToDense"/> and
/// <see cref="FreeSwimNaive.WindowMask"/> for tests and pictures.
/// </summary>
/// <remarks>
/// Query (t, y, x) on a T×H×W grid, half-sizes d_h, d_w (FreeSwim: d_h = H_native/2, d_w = W_native/2):
/// <code>
///   key (t′, y′, x′) is visible  ⇔  y − d_h − d_u ≤ y′ ≤ y + d_h + d_b  ∧  x − d_w − d_l ≤ x′ ≤ x + d_w + d_r    (any t′)
///   d_b = max(0, d_h − y),  d_u = max(0, d_h + y − H + 1),  d_r = max(0, d_w − x),  d_l = max(0, d_w + x − W + 1)
/// </code>
/// The shifts slide the window inward at the borders, so with H ≥ 2d_h+1 and W ≥ 2d_w+1 every query sees exactly
/// T(2d_h+1)(2d_w+1) keys; with H ≤ 2d_h+1 and W ≤ 2d_w+1 every query sees everything (= full attention). The clipped
/// window drops the shifts (d_b = d_u = d_r = d_l = 0): border queries lose up to three quarters of their field.
/// Time is never windowed: every frame t′ is visible.
/// </remarks>
public static class WindowMasks
{
    /// <summary>Inward sliding window (FreeSwim).</summary>
    public static WindowIndex InwardSliding(int t, int h, int w, int dh, int dw, Device? device = null) => Build(WindowKind.Inward, t, h, w, dh, dw, device);

    /// <summary>Centred window clipped at the borders (the ablation).</summary>
    public static WindowIndex Clipped(int t, int h, int w, int dh, int dw, Device? device = null) => Build(WindowKind.Clipped, t, h, w, dh, dw, device);

    /// <summary>Every key (K = N).</summary>
    public static WindowIndex Full(int t, int h, int w, Device? device = null) => Build(WindowKind.Full, t, h, w, h, w, device);

    /// <summary>The window of <paramref name="kind"/>.</summary>
    public static WindowIndex Of(WindowKind kind, int t, int h, int w, int dh, int dw, Device? device = null) => Build(kind, t, h, w, dh, dw, device);

    /// <summary>Inclusive row (or column) range of a query at <paramref name="y"/> on an axis of <paramref name="size"/>, half-size d.</summary>
    public static (int Lo, int Hi) Range(WindowKind kind, int y, int size, int d)
    {
        if (kind == WindowKind.Full) return (0, size - 1);
        int below = kind == WindowKind.Inward ? Math.Max(0, d - y) : 0;              // d_b = max(0, d_h − y)
        int above = kind == WindowKind.Inward ? Math.Max(0, d + y - size + 1) : 0;   // d_u = max(0, d_h + y − H + 1)
        return (Math.Max(0, y - d - above), Math.Min(size - 1, y + d + below));      // y − d_h − d_u ≤ y′ ≤ y + d_h + d_b, inside the grid
    }

    internal static void Check(int t, int h, int w, int dh, int dw)
    {
        Guard.Positive(t, nameof(t)); Guard.Positive(h, nameof(h)); Guard.Positive(w, nameof(w));
        if (dh < 0) throw new ArgumentOutOfRangeException(nameof(dh), dh, "dh must be ≥ 0.");
        if (dw < 0) throw new ArgumentOutOfRangeException(nameof(dw), dw, "dw must be ≥ 0.");
        if ((long)t * h * w > int.MaxValue / 4) throw new ArgumentException($"grid {t}×{h}×{w} is too large.", nameof(t));
    }

    static WindowIndex Build(WindowKind kind, int t, int h, int w, int dh, int dw, Device? device)
    {
        Check(t, h, w, dh, dw);
        int n = t * h * w, perFrame = h * w;
        int slots = t * Math.Min(h, 2 * dh + 1) * Math.Min(w, 2 * dw + 1);      // the largest window (every inward one)
        if (kind == WindowKind.Full) slots = n;
        var idx = new long[(long)n * slots];
        var ok = new bool[(long)n * slots];
        var counts = new int[n];
        for (int q = 0; q < n; q++)
        {
            int qy = q % perFrame / w, qx = q % w;
            var (y0, y1) = Range(kind, qy, h, dh);
            var (x0, x1) = Range(kind, qx, w, dw);
            int s = 0;
            long row = (long)q * slots;
            for (int f = 0; f < t; f++)                                             // every frame: time is not windowed
                for (int y = y0; y <= y1; y++)
                    for (int x = x0; x <= x1; x++) { idx[row + s] = f * perFrame + y * w + x; ok[row + s] = true; s++; }
            counts[q] = s;
        }
        var dev = device ?? CPU;
        return new WindowIndex(kind, new TokenGrid(t, h, w), dh, dw,
            torch.tensor(idx, new long[] { n, slots }).to(dev), torch.tensor(ok, new long[] { n, slots }).to(dev), counts);
    }
}
