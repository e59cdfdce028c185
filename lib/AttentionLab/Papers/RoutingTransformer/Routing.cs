using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// Routing attention as functions of q, k, v [B, T, H, D] and the affinities of queries and keys to C centroids
/// [B, H, T, C] (from <see cref="OnlineKMeans.Assign"/>). Balanced routing (official <c>cluster_items</c> /
/// <c>gather_cluster_attention_items</c> / <c>scatter_cluster_items</c>) gathers w tokens per cluster and attends
/// inside the [C, w, w] blocks; the nearest-centroid variant is the causal-correct one.
/// </summary>
/// <remarks>
/// balanced:   I_c = sort(top-w_t a_tc)  (sorted by position, pitfall (d));  J_c likewise from the key affinities
/// per cluster: o_c,i = Σ_{j ∈ J_c, j ≤ i} softmax_j(q_i·k_j/√D) v_j  for i ∈ I_c  (causal: idx_q ≥ idx_k)
/// scatter:    y_i = Σ_{c : i ∈ I_c} o_c,i / (|{c : i ∈ I_c}| + ε)   (official ε = 1e-2; unselected tokens get 0)
/// nearest:    I_c = {i : argmax_c a_ic = c}, J_c = {j : argmax_c b_jc = c} — depends on token i alone, so strictly causal.
/// Cost of the balanced form: O(n·C·d) to route plus O(C·w²·d) = O(n·w·d) to attend; O(n^1.5 d) at C = w = √n.
/// </remarks>
public static class Routing
{
    /// <summary>The official scatter-average's ε: y = Σ o / (count + 1e-2).</summary>
    public const double OfficialCountEpsilon = 1e-2;

    /// <summary>
    /// Balanced top-w token indices per cluster [B, H, C, w], sorted by position, from affinities [B, H, T, C].
    /// Each cluster holds exactly w tokens; a token may sit in several clusters or in none.
    /// </summary>
    public static Tensor TopWindow(Tensor scores, int window)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, T, C");
        CheckWindow(window, scores.shape[2]);
        using var scope = NewDisposeScope();
        var top = scores.transpose(2, 3).topk(window, dim: -1).indexes;                 // top-w_t a_tc   [B, H, C, w]
        return top.sort(-1).Values.MoveToOuterDisposeScope();                           // sorted by position
    }

    /// <summary>
    /// Balanced routing attention, the fast gather form. q, k [B, T, H, D], v [B, T, H, Dv]; qScores, kScores [B, H, T, C]
    /// (pass the same tensor for shared Q/K). Returns y [B, T, H, Dv].
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, int window, bool causal = true,
        double countEpsilon = OfficialCountEpsilon, double? scale = null)
    {
        Check(q, k, v, qScores, kScores, countEpsilon);
        CheckWindow(window, q.shape[1]);
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], dv = v.shape[3], c = qScores.shape[3];
        var qi = TopWindow(qScores, window);                                              // I_c [B, H, C, w]
        var ki = ReferenceEquals(qScores, kScores) ? qi : TopWindow(kScores, window);     // J_c
        var qg = Gather(q, qi);                                                           // [B, H, C, w, D]
        var kg = Gather(k, ki);
        var vg = Gather(v, ki);
        var s = qg.matmul(kg.transpose(-1, -2)) * (scale ?? 1.0 / Math.Sqrt(d));           // q_i·k_j/√D   [B, H, C, w, w]
        if (causal) s = s.masked_fill(qi.unsqueeze(-1) < ki.unsqueeze(-2), double.NegativeInfinity);   // keep idx_q ≥ idx_k
        var (p, _) = ReferenceAttention.Normalize(s);                                     // a query with no admissible key → 0
        var o = p.matmul(vg);                                                             // o_c,i   [B, H, C, w, Dv]
        var flat = qi.reshape(b, h, c * window);
        var sum = torch.zeros(b, h, t, dv, dtype: v.dtype, device: v.device)
            .scatter_add(2, flat.unsqueeze(-1).expand(-1, -1, -1, dv), o.reshape(b, h, c * window, dv));   // Σ_c o_c,i
        var count = torch.zeros(b, h, t, dtype: v.dtype, device: v.device)
            .scatter_add(2, flat, torch.ones(b, h, c * window, dtype: v.dtype, device: v.device));         // |{c : i ∈ I_c}|
        var y = sum / (count + countEpsilon).clamp_min(1e-30).unsqueeze(-1);              // ÷ (count + ε); count 0 ⇒ sum 0
        return y.permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Membership [B, H, C, T] (true = token t is routed to cluster c) from affinities [B, H, T, C]: balanced top-w when
    /// <paramref name="balanced"/>, else the nearest centroid (argmax_c).
    /// </summary>
    public static Tensor Membership(Tensor scores, int window, bool balanced)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, T, C");
        using var scope = NewDisposeScope();
        Tensor member;
        if (balanced)
        {
            var idx = TopWindow(scores, window);
            member = torch.zeros(scores.shape[0], scores.shape[1], scores.shape[3], scores.shape[2], dtype: ScalarType.Bool, device: scores.device)
                .scatter(3, idx, torch.ones_like(idx, dtype: ScalarType.Bool));
        }
        else member = nn.functional.one_hot(scores.argmax(-1), scores.shape[3]).transpose(2, 3).to(ScalarType.Bool);
        return member.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The routing keep-mask [B, H, T, T]: i sees j when some cluster holds query i and key j (and j ≤ i when causal).
    /// For the nearest-centroid variant this is exactly what routing attention computes (each token in one cluster).
    /// </summary>
    public static Tensor Mask(Tensor qScores, Tensor kScores, int window, bool balanced, bool causal = true)
    {
        using var scope = NewDisposeScope();
        var mq = Membership(qScores, window, balanced).to(ScalarType.Float32);           // [B, H, C, T]
        var mk = Membership(kScores, window, balanced).to(ScalarType.Float32);
        var keep = mq.transpose(2, 3).matmul(mk) > 0;                                    // ∃c: i ∈ I_c ∧ j ∈ J_c
        if (causal) keep &= AttentionMasks.Causal(qScores.shape[2], kScores.shape[2], qScores.device);
        return keep.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Nearest-centroid (unbalanced) routing attention, the causal-correct variant: dense softmax attention under
    /// <see cref="Mask"/> (each token sits in exactly one cluster, so its output is its own cluster's attention over
    /// (1 + ε)). q, k [B, T, H, D], v [B, T, H, Dv] → [B, T, H, Dv].
    /// </summary>
    public static Tensor AttendNearest(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, bool causal = true,
        double countEpsilon = OfficialCountEpsilon, double? scale = null)
    {
        Check(q, k, v, qScores, kScores, countEpsilon);
        using var scope = NewDisposeScope();
        var keep = Mask(qScores, kScores, 1, balanced: false, causal);
        using var r = ReferenceAttention.Softmax(q, k, v, causal: false, scale: scale, mask: keep);
        return (r.Output / (1 + countEpsilon)).MoveToOuterDisposeScope();
    }

    /// <summary>x [B, T, H, D] at indices [B, H, C, w] → [B, H, C, w, D].</summary>
    static Tensor Gather(Tensor x, Tensor idx)
    {
        long b = idx.shape[0], h = idx.shape[1], c = idx.shape[2], w = idx.shape[3], d = x.shape[3];
        var flat = idx.reshape(b, h, c * w).unsqueeze(-1).expand(-1, -1, -1, d);
        return x.permute(0, 2, 1, 3).gather(2, flat).reshape(b, h, c, w, d);
    }

    internal static void Check(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, double countEpsilon)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Rank(v, 4, nameof(v), "B, T, H, Dv");
        Guard.Rank(qScores, 4, nameof(qScores), "B, H, T, C");
        Guard.Rank(kScores, 4, nameof(kScores), "B, H, T, C");
        Guard.FloatingPoint(q, nameof(q));
        if (!q.shape.SequenceEqual(k.shape)) throw new ArgumentException($"k must have q's shape {Guard.ShapeText(q)}, got {Guard.ShapeText(k)}.", nameof(k));
        if (!v.shape.Take(3).SequenceEqual(q.shape.Take(3))) throw new ArgumentException($"v must be [B, T, H, Dv] with q's B, T, H {Guard.ShapeText(q)}, got {Guard.ShapeText(v)}.", nameof(v));
        var expected = new[] { q.shape[0], q.shape[2], q.shape[1] };
        if (!qScores.shape.Take(3).SequenceEqual(expected)) throw new ArgumentException($"qScores must be [B, H, T, C] = [{string.Join(", ", expected)}, C], got {Guard.ShapeText(qScores)}.", nameof(qScores));
        if (!kScores.shape.SequenceEqual(qScores.shape)) throw new ArgumentException($"kScores must have qScores' shape {Guard.ShapeText(qScores)}, got {Guard.ShapeText(kScores)}.", nameof(kScores));
        if (!(countEpsilon >= 0)) throw new ArgumentException($"countEpsilon must be ≥ 0, got {countEpsilon}.", nameof(countEpsilon));
    }

    static void CheckWindow(int window, long t)
    {
        if (window <= 0 || window > t) throw new ArgumentException($"window must be in [1, T = {t}], got {window}.", nameof(window));
    }
}
