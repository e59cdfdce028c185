using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>FreeSwim's naive twins: the window's keep-mask by loops over every pair, and dense attention under it.</summary>
public static class FreeSwimNaive
{
    /// <summary>
    /// The naive twin: the dense [N, N] keep-mask by plain loops over every (query, key) pair, testing the remarks'
    /// inequalities literally (float-free). O(N²) — small grids only.
    /// </summary>
    public static Tensor WindowMask(WindowKind kind, int t, int h, int w, int dh, int dw)
    {
        WindowMasks.Check(t, h, w, dh, dw);
        int n = t * h * w;
        var m = new bool[(long)n * n];
        for (int q = 0; q < n; q++)
        {
            int qy = q % (h * w) / w, qx = q % w;
            int db = Math.Max(0, dh - qy), du = Math.Max(0, dh + qy - h + 1), dr = Math.Max(0, dw - qx), dl = Math.Max(0, dw + qx - w + 1);
            if (kind != WindowKind.Inward) db = du = dr = dl = 0;
            for (int k = 0; k < n; k++)
            {
                int ky = k % (h * w) / w, kx = k % w;                                 // k's frame is never tested
                m[(long)q * n + k] = kind == WindowKind.Full ||
                    (ky <= qy + dh + db && ky >= qy - dh - du && kx <= qx + dw + dr && kx >= qx - dw - dl);
            }
        }
        return torch.tensor(m, new long[] { n, n });
    }

    /// <summary>The naive twin: dense reference attention with the window's O(N²) keep-mask (outputs, probabilities, LSE).</summary>
    public static AttentionResult WindowAttention(Tensor q, Tensor k, Tensor v, WindowIndex window, double? scale = null)
    {
        FreeSwim.WindowAttention.Validate(q, k, v, window);
        using var scope = NewDisposeScope();
        var mask = window.ToDense().to(q.device);
        return ReferenceAttention.Softmax(q, k, v, scale: scale, mask: mask).MoveToOuterDisposeScope();
    }
}
