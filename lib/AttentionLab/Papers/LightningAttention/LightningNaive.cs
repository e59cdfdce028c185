using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// The naive twins of LightningAttention: the paper's definition written out (explicit weights, loops), float64-capable, never fast.
/// The project's rule: every paper folder keeps its naive twins in a <c>…Naive</c> class of its own file.
/// </summary>
public static class LightningNaive
{

    /// <summary>
    /// The naive twin: O = [(Q Kᵀ) ⊙ D] V over the whole sequence with D_ts = λ^{t−s} for t ≥ s and 0 above the diagonal
    /// (built tril → exp → tril in log space), plus λ^{t+1} q_t S_{−1} from h0; hT = Σ_s λ^{T−1−s} k_sᵀ v_s + λ^T S_{−1}.
    /// O(T²) memory; float64 stays float64. Arguments as <see cref="LightningAttention.Forward"/>.
    /// </summary>
    public static LinearAttentionResult Attention(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null)
    {
        LightningAttention.Validate(q, k, v, logDecay, h0);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(q.dtype);
        long t = q.shape[1];
        var (qh, kh, vh) = (LightningAttention.Heads(q, acc), LightningAttention.Heads(k, acc), LightningAttention.Heads(v, acc));   // [B, H, T, ·]
        var ld = LinearAttention.HeadLogDecay(logDecay, acc) ?? torch.zeros(1, q.shape[2], 1, 1, dtype: acc, device: q.device); // no decay: log λ = 0
        var mask = LightningAttention.Mask(t, ld);                                                                    // D [1, H, T, T]
        var o = (qh.matmul(kh.transpose(-2, -1)) * mask).matmul(vh);                               // [(Q Kᵀ) ⊙ D] V
        var pos = torch.arange(t, dtype: acc, device: q.device).unsqueeze(-1);                     // t as a column
        var toEnd = ((t - 1 - pos) * ld).exp();                                                     // λ^{T−1−s}
        var s = (kh * toEnd).transpose(-2, -1).matmul(vh);                                          // Σ_s λ^{T−1−s} k_sᵀ v_s
        if (h0 is not null)
        {
            var s0 = h0.S.to(acc);
            o = o + qh.matmul(s0) * ((pos + 1) * ld).exp();                                          // + λ^{t+1} q_t S_{−1}
            s = s + (ld * t).exp() * s0;                                                            // + λ^T S_{−1}
        }
        var output = o.permute(0, 2, 1, 3).to(q.dtype).contiguous();
        return new LinearAttentionResult(output, new LinearState(s.contiguous())).MoveToOuterDisposeScope();
    }
}
