using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AffineScaled;

/// <summary>
/// The naive twin of affine-scaled attention: one query row at a time, written straight from the paper's equations
/// (softmax with its max subtracted, then a_j = α P_j + (α_ma − α) / N, then Σ_j a_j v_j). Slow, float64-capable, differentiable.
/// </summary>
public static class AffineScaledNaive
{
    /// <summary>z [B, T, H, Dv] from q, k [B, T, H, D], v [B, T, H, Dv], α [B, T, H], α_ma [H], causal.</summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor alpha, Tensor alphaMa, BiasNorm norm = BiasNorm.VisibleKeys)
    {
        long b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3);
        var rows = new List<Tensor>();
        for (long bi = 0; bi < b; bi++)
            for (long i = 0; i < t; i++)
                for (long hi = 0; hi < h; hi++)
                {
                    var qi = q[bi, i, hi];                                              // [D]
                    var keys = k[bi, TensorIndex.Slice(0, i + 1), hi];                  // k_0 … k_i  [i+1, D]
                    var s = keys.matmul(qi) / Math.Sqrt(d);                             // s_j = q_i·k_j / √D
                    var e = (s - s.max()).exp();
                    var p = e / e.sum();                                                // P_j = softmax_j(s)
                    var a = alpha[bi, i, hi];
                    var m = alphaMa[hi];
                    if (norm == BiasNorm.VisibleKeys)
                    {
                        var w = a * p + (m - a) / (i + 1);                              // a_j = α P_j + (α_ma − α) / (i + 1), j ≤ i
                        rows.Add(w.matmul(v[bi, TensorIndex.Slice(0, i + 1), hi]));
                    }
                    else
                    {
                        var beta = (m - a) / t;                                         // β = (α_ma − α) / T on every key
                        var z = (a * p + beta).matmul(v[bi, TensorIndex.Slice(0, i + 1), hi]);
                        if (i + 1 < t) z = z + beta * v[bi, TensorIndex.Slice(i + 1, t), hi].sum(dim: 0);   // future keys get β too
                        rows.Add(z);
                    }
                }
        return torch.stack(rows).view(b, t, h, -1);
    }

    /// <summary>
    /// The whole layer by rows: the mixer's own projections (W_QKV, W_α, W_O) around <see cref="Attention"/> with its current α_ma:
    /// x [B, T, d] → [B, T, d]. Does not update the EMA.
    /// </summary>
    public static Tensor Layer(AffineScaledAttention mixer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        long b = x.size(0), t = x.size(1);
        var all = torch.nn.functional.linear(x, mixer.Qkv.weight!, mixer.Qkv.bias);
        var parts = all.split(new[] { mixer.Heads * (long)mixer.KeyDim, mixer.Heads * (long)mixer.KeyDim, mixer.Heads * (long)mixer.ValueDim }, -1);
        var q = parts[0].reshape(b, t, mixer.Heads, mixer.KeyDim);
        var k = parts[1].reshape(b, t, mixer.Heads, mixer.KeyDim);
        var v = parts[2].reshape(b, t, mixer.Heads, mixer.ValueDim);
        var alpha = (torch.nn.functional.linear(x, mixer.AlphaProj.weight!, mixer.AlphaProj.bias) * 0.1 + 0.5).clamp(0.0, 1.0);   // φ
        var z = Attention(q, k, v, alpha, mixer.AlphaMa.detach().to(x.dtype), mixer.Norm);
        return torch.nn.functional.linear(z.reshape(b, t, -1), mixer.Proj.weight!, mixer.Proj.bias);
    }
}
