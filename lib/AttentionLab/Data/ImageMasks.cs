using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>One 8-connected component of a boolean mask: pixel count and bounding box (inclusive).</summary>
public readonly record struct Component(int Area, int Top, int Left, int Bottom, int Right)
{
    /// <summary>Bounding-box area (Bottom − Top + 1)(Right − Left + 1).</summary>
    public int BoxArea => (Bottom - Top + 1) * (Right - Left + 1);
}

/// <summary>Image and mask utilities: foreground threshold, 8-connected components, edge sharpness.</summary>
public static class ImageMasks
{
    /// <summary>Foreground of an image [C, H, W] in [−1, 1] on a −1 background: max_c x_c &gt; <paramref name="threshold"/>; [H, W] bool.</summary>
    public static Tensor Foreground(Tensor image, double threshold = 0)
    {
        Guard.Rank(image, 3, nameof(image), "C, H, W");
        Guard.FloatingPoint(image, nameof(image));
        using var scope = NewDisposeScope();
        return (image.amax(new long[] { 0 }) > threshold).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// 8-connected components of a boolean mask [H, W] (flood fill with an explicit stack), largest first; components
    /// with fewer than <paramref name="minArea"/> pixels are dropped (speckle).
    /// </summary>
    public static IReadOnlyList<Component> Components(Tensor mask, int minArea = 1)
    {
        Guard.Rank(mask, 2, nameof(mask), "H, W");
        if (mask.dtype != ScalarType.Bool) throw new ArgumentException($"mask must be boolean, got {mask.dtype}.", nameof(mask));
        int h = (int)mask.shape[0], w = (int)mask.shape[1];
        var on = mask.cpu().contiguous().data<bool>().ToArray();
        var label = new bool[h * w];
        var result = new List<Component>();
        var stack = new Stack<int>();
        for (int start = 0; start < on.Length; start++)
        {
            if (!on[start] || label[start]) continue;
            int area = 0, top = h, left = w, bottom = -1, right = -1;
            stack.Push(start); label[start] = true;
            while (stack.Count > 0)
            {
                int p = stack.Pop(), r = p / w, c = p % w;
                area++; top = Math.Min(top, r); bottom = Math.Max(bottom, r); left = Math.Min(left, c); right = Math.Max(right, c);
                for (int dr = -1; dr <= 1; dr++)
                    for (int dc = -1; dc <= 1; dc++)
                    {
                        int rr = r + dr, cc = c + dc;
                        if (rr < 0 || rr >= h || cc < 0 || cc >= w) continue;
                        int q = rr * w + cc;
                        if (on[q] && !label[q]) { label[q] = true; stack.Push(q); }
                    }
            }
            if (area >= minArea) result.Add(new Component(area, top, left, bottom, right));
        }
        return result.OrderByDescending(c => c.Area).ToList();
    }

    /// <summary>Number of 8-connected components with at least <paramref name="minArea"/> pixels.</summary>
    public static int ConnectedComponents(Tensor mask, int minArea = 1) => Components(mask, minArea).Count;

    /// <summary>
    /// Edge sharpness of an image [C, H, W]: the <paramref name="quantile"/> quantile of the per-pixel gradient magnitude
    /// g = max_c √((∂x)² + (∂y)²) with forward differences. A hard edge jumps in one pixel (g ≈ 2 for a −1 → +1 step), a
    /// blurred edge spreads the jump over several pixels, so g's upper quantile drops. Resolution-free: it is per pixel.
    /// </summary>
    public static double EdgeSharpness(Tensor image, double quantile = 0.98)
    {
        Guard.Rank(image, 3, nameof(image), "C, H, W");
        if (!(quantile > 0 && quantile <= 1)) throw new ArgumentOutOfRangeException(nameof(quantile), quantile, "quantile must be in (0, 1].");
        using var scope = NewDisposeScope();
        var x = image.to(ScalarType.Float64, CPU);
        long h = x.shape[1], w = x.shape[2];
        if (h < 2 || w < 2) return 0;
        var gx = x.narrow(2, 1, w - 1).narrow(1, 0, h - 1) - x.narrow(2, 0, w - 1).narrow(1, 0, h - 1);
        var gy = x.narrow(1, 1, h - 1).narrow(2, 0, w - 1) - x.narrow(1, 0, h - 1).narrow(2, 0, w - 1);
        var g = (gx.square() + gy.square()).sqrt().amax(new long[] { 0 }).flatten();
        return g.quantile(quantile).item<double>();
    }
}
