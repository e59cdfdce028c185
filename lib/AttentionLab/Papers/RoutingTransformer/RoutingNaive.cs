using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// The naive twin of <see cref="Routing.Attend"/>: membership by rank (token t is in cluster c when fewer than w tokens
/// have a strictly higher affinity), then one dense masked softmax attention per cluster over all T×T pairs, summed and
/// divided by (count + ε). O(C·T²); float64-capable; no gather, no sort.
/// </summary>
/// <remarks>
/// i ∈ I_c ⇔ |{s : a_sc &gt; a_ic}| &lt; w;   M_c[i, j] = [i ∈ I_c] ∧ [j ∈ J_c] ∧ [j ≤ i]
/// y_i = Σ_c [i ∈ I_c] · softmax_{j : M_c[i,j]}(q_i·k_j/√D) v_j / (Σ_c [i ∈ I_c] + ε)
/// </remarks>
public static class RoutingNaive
{
    /// <summary>Membership [B, H, C, T] by rank: fewer than w tokens with a strictly higher affinity (no ties assumed).</summary>
    public static Tensor Membership(Tensor scores, int window)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, T, C");
        using var scope = NewDisposeScope();
        var a = scores.transpose(2, 3);                                                   // [B, H, C, T]
        var higher = (a.unsqueeze(-2) > a.unsqueeze(-1)).sum(-1);                         // |{s : a_sc > a_tc}|  [B, H, C, T]
        return (higher < window).MoveToOuterDisposeScope();
    }

    /// <summary>Balanced routing attention, dense with per-cluster masks: q, k [B, T, H, D], v [B, T, H, Dv] → [B, T, H, Dv].</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, int window, bool causal = true,
        double countEpsilon = Routing.OfficialCountEpsilon, double? scale = null)
    {
        Routing.Check(q, k, v, qScores, kScores, countEpsilon);
        using var scope = NewDisposeScope();
        var mq = Membership(qScores, window);                                             // [B, H, C, T]
        var mk = Membership(kScores, window);
        long t = q.shape[1], clusters = qScores.shape[3];
        var sum = torch.zeros(q.shape[0], t, q.shape[2], v.shape[3], dtype: v.dtype, device: v.device);
        var count = torch.zeros(q.shape[0], t, q.shape[2], 1, dtype: v.dtype, device: v.device);
        for (long c = 0; c < clusters; c++)
        {
            var inQ = mq.select(2, c);                                                    // [B, H, T]
            var keep = inQ.unsqueeze(-1) & mk.select(2, c).unsqueeze(-2);                 // M_c [B, H, T, T]
            if (causal) keep &= AttentionMasks.Causal(t, t, q.device);
            using var r = ReferenceAttention.Softmax(q, k, v, causal: false, scale: scale, mask: keep);
            var w = inQ.permute(0, 2, 1).unsqueeze(-1).to(v.dtype);                      // [i ∈ I_c]  [B, T, H, 1]
            sum += r.Output * w;
            count += w;
        }
        return torch.where(count > 0, sum / (count + countEpsilon).clamp_min(1e-30), torch.zeros_like(sum)).MoveToOuterDisposeScope();
    }
}
