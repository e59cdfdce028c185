using AttentionLab.Attention;
using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// BASED's rows of the parity benchmark (<see cref="Parity"/>): the engine's chunked form on the packed Taylor map and
/// fla's decomposition against the same algorithms written as bare TorchSharp ops (docs/benchmarks.md, "Parity").
/// </summary>
public static class BasedParity
{
    /// <summary>BASED's projected q/k width d′.</summary>
    const int FeatureDim = 16;

    /// <summary>The two BASED cases at batch 1, <paramref name="heads"/> heads, q/k of d′ = 16 and v of <paramref name="dim"/>, float32, chunk 64.</summary>
    public static IReadOnlyList<ParityCase> Cases(int heads = 4, int dim = 64, Device? device = null) =>
    [
        new("BASED chunked (linear engine, Taylor φ packed)",
            (t, grad) => [.. Qkv(t, heads, dim, device, grad), TaylorCoefficients(FeatureDim, device),
                AttentionMasks.Causal(Parity.Chunk, Parity.Chunk, device).to(ScalarType.Float32).view(1, 1, 1, Parity.Chunk, Parity.Chunk)],
            x => [BasedAttention.Linear(LinearForm.Chunked, x[0], x[1], x[2], chunkSize: Parity.Chunk).Output],
            x => [ParityBareOps.Chunked(TaylorPacked(Parity.Heads(x[0]), x[3]), TaylorPacked(Parity.Heads(x[1]), x[3]), Parity.Heads(x[2]),
                Parity.Chunk, x[4], null, null, null, normalize: true, eps: BasedAttention.DefaultEps).permute(0, 2, 1, 3).contiguous()],
            "φ = [1, x, x_m x_n≥m] ⊙ c; per chunk (φQ φKᵀ ⊙ tril) V and row sums batched; loop: += φQ S, φQ·z; ÷ (den + ε)" + Parity.Contiguous),
        new("BASED fla decomposition",
            (t, grad) => [.. Qkv(t, heads, dim, device, grad), AttentionMasks.Causal(Parity.Chunk, Parity.Chunk, device).logical_not()],
            x => [BasedAttention.TaylorChunked(x[0], x[1], x[2], Parity.Chunk).Output],
            x => [BareTaylorChunked(x[0].permute(0, 2, 1, 3), x[1].permute(0, 2, 1, 3), x[2].permute(0, 2, 1, 3), Parity.Chunk, x[3],
                BasedAttention.DefaultEps).permute(0, 2, 1, 3).contiguous()],
            "per chunk: masked 1 + s + s²/2 kernel, + A₀ + q̃A₁ + ½(q̃⊗q̃)A₂ (and v → 1), into a preallocated output; sums carried" + Parity.Contiguous),
    ];

    /// <summary>BASED's q, k [1, T, H, d′ = 16] and v [1, T, H, D].</summary>
    static Tensor[] Qkv(int t, int heads, int dim, Device? device, bool grad)
    {
        var g = new Generator((ulong)t + 1);
        Tensor Draw(int width) => torch.randn([1, t, heads, width], generator: g).to(device ?? CPU).requires_grad_(grad);
        return [Draw(FeatureDim), Draw(FeatureDim), Draw(dim)];
    }

    /// <summary>
    /// fla's BASED decomposition for one configuration: per chunk the masked quadratic kernel 1 + s + s²/2 plus the
    /// order-0/1/2 running sums read by q̃, q̃⊗q̃; q̃ = q/√d′. Returns [B, H, T, Dv].
    /// </summary>
    internal static Tensor BareTaylorChunked(Tensor q, Tensor k, Tensor v, int chunk, Tensor hidden, double eps)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3];
        var qt = q / Math.Sqrt(d);
        bool track = ParityBareOps.Tracks(q, k, v);
        var o = track ? null : torch.empty([b, t, h, dv], dtype: v.dtype, device: v.device).permute(0, 2, 1, 3);   // [B, H, T, Dv] view of the output layout
        var chunks = new List<Tensor>();
        Tensor Z(params long[] shape) => torch.zeros(shape, dtype: v.dtype, device: v.device);
        var (a0, c0, a1, b1, a2, b2) = (Z(b, h, 1, dv), 0.0, Z(b, h, d, dv), Z(b, h, d, 1), Z(b, h, d * d, dv), Z(b, h, d * d, 1));
        for (long start = 0; start < t; start += chunk)
        {
            long len = Math.Min(chunk, t - start);
            var (qc, kc, vc) = (qt.narrow(2, start, len), k.narrow(2, start, len), v.narrow(2, start, len));
            var s = qc.matmul(kc.transpose(-2, -1));
            var kernel = s.square().mul_(0.5).add_(s).add_(1.0).masked_fill_(hidden.narrow(0, 0, len).narrow(1, 0, len), 0.0);
            var qq = (qc.unsqueeze(-1) * qc.unsqueeze(-2)).flatten(-2);
            var num = kernel.matmul(vc).add_(a0).add_(qc.matmul(a1)).add_(qq.matmul(a2).mul_(0.5));
            var den = kernel.sum(-1, keepdim: true).add_(c0).add_(qc.matmul(b1)).add_(qq.matmul(b2).mul_(0.5));
            if (track) chunks.Add(num.div_(den.add_(eps))); else o!.narrow(2, start, len).copy_(num.div_(den.add_(eps)));
            var kk = (kc.unsqueeze(-1) * kc.unsqueeze(-2)).flatten(-2);
            (a0, c0, a1, b1) = (a0 + vc.sum(2, keepdim: true), c0 + len, a1 + kc.transpose(-2, -1).matmul(vc), b1 + kc.sum(2).unsqueeze(-1));
            (a2, b2) = (a2 + kk.transpose(-2, -1).matmul(vc), b2 + kk.sum(2).unsqueeze(-1));
        }
        return o ?? torch.cat(chunks, 2);
    }

    /// <summary>The packed Taylor φ as bare ops: [1, x, x_m x_{n≥m}] ⊙ coefficients (precomputed row).</summary>
    internal static Tensor TaylorPacked(Tensor x, Tensor coefficients)
    {
        long d = x.shape[^1];
        var parts = new List<Tensor> { torch.ones_like(x.narrow(-1, 0, 1)), x };
        for (long m = 0; m < d; m++) parts.Add(x.narrow(-1, m, 1) * x.narrow(-1, m, d - m));
        return torch.cat(parts, -1).mul_(coefficients);
    }

    /// <summary>The packed Taylor map's coefficient row for d′ (the map's own cached row: a constant, not part of the timed ops).</summary>
    internal static Tensor TaylorCoefficients(int d, Device? device) =>
        FeatureMaps.Taylor(d, packSymmetric: true).Coefficients(ScalarType.Float32, device ?? CPU).alias();   // a handle the scope may dispose
}
