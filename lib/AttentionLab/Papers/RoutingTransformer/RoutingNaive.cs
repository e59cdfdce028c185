using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// The naive twins of the sparse forms: each builds the dense T × T keep-mask straight from the definition (ranks, counts,
/// ⌊·/w⌋ arithmetic — no gather, sort or scatter) and runs one dense masked softmax over all pairs. Float64-capable;
/// O(T²) or O(C·T²). For tests, the exactness phase and small heatmaps.
/// </summary>
/// <remarks>
/// balanced: i ∈ I_c ⇔ |{s : a_sc &gt; a_ic}| &lt; w;   M_c[i, j] = [i ∈ I_c] ∧ [j ∈ J_c] ∧ [j ≤ i]
///           y_i = Σ_c [i ∈ I_c] · softmax_{j : M_c[i,j]}(s_ij) v_j / (Σ_c [i ∈ I_c] + ε)
/// nearest:  M[i, j] = [c(i) = c′(j)] ∧ [⌊m(j)/w⌋ ∈ {g(i) − 1, g(i) (, g(i) + 1)}] ∧ [j ≤ i]   (see <see cref="Routing"/>)
/// local:    M[i, j] = [⌊j/L⌋ ∈ {⌊i/L⌋ − 1, ⌊i/L⌋ (, ⌊i/L⌋ + 1)}] ∧ [j ≤ i]
/// s_ij = q_i·k_j/√D, with s_ii = selfScore when the self-token rule is on.
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
        double countEpsilon = Routing.OfficialCountEpsilon, double? scale = null, double? selfScore = null)
    {
        Routing.Check(q, k, v, qScores, kScores, countEpsilon);
        using var scope = NewDisposeScope();
        var mq = Membership(qScores, window);                                             // [B, H, C, T]
        var mk = Membership(kScores, window);
        var keep = UnionMask(mq, mk, causal);
        var pattern = BalancedPattern(MaskedScores(q, k, keep, scale, selfScore), mq, mk, causal, countEpsilon);
        return Combine(pattern, v).MoveToOuterDisposeScope();
    }

    /// <summary>∃c: i ∈ I_c ∧ j ∈ J_c (∧ j ≤ i): the keys some cluster shows query i, [B, H, T, T], from memberships [B, H, C, T].</summary>
    public static Tensor UnionMask(Tensor queryMembership, Tensor keyMembership, bool causal)
    {
        Guard.Rank(queryMembership, 4, nameof(queryMembership), "B, H, C, T");
        Guard.Rank(keyMembership, 4, nameof(keyMembership), "B, H, C, T");
        using var scope = NewDisposeScope();
        var keep = (queryMembership.unsqueeze(-1) & keyMembership.unsqueeze(-2)).any(2);   // [B, H, T, T]
        if (causal) keep &= AttentionMasks.Causal(queryMembership.shape[3], keyMembership.shape[3], queryMembership.device);
        return keep.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The balanced routing pattern [B, H, T, T] from scores s (−∞ outside the union mask) and memberships [B, H, C, T]:
    /// A_ij = Σ_c [i ∈ I_c] · softmax_{j : M_c[i,j]}(s_ij) / (Σ_c [i ∈ I_c] + ε), and 0 for a query no cluster holds.
    /// </summary>
    public static Tensor BalancedPattern(Tensor scores, Tensor queryMembership, Tensor keyMembership, bool causal, double countEpsilon)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, T, T");
        using var scope = NewDisposeScope();
        long tq = scores.shape[2], tk = scores.shape[3];
        var keep = queryMembership.unsqueeze(-1) & keyMembership.unsqueeze(-2);          // M_c [B, H, C, T, T]
        if (causal) keep &= AttentionMasks.Causal(tq, tk, scores.device);
        var (p, _) = ReferenceAttention.Normalize(scores.unsqueeze(2).masked_fill(keep.logical_not(), double.NegativeInfinity));
        var inQ = queryMembership.unsqueeze(-1).to(scores.dtype);                        // [i ∈ I_c]  [B, H, C, T, 1]
        var sum = (p * inQ).sum(2);                                                       // Σ_c [i ∈ I_c] softmax_c
        var count = inQ.sum(2);                                                           // [B, H, T, 1]
        return torch.where(count > 0, sum / (count + countEpsilon).clamp_min(1e-30), torch.zeros_like(sum)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The nearest-centroid keep-mask [B, H, T, T] from the definition: same cluster, key chunk ⌊m(j)/w⌋ within one
    /// chunk behind the query's g(i) (or one ahead when not causal), and j ≤ i when causal.
    /// </summary>
    public static Tensor NearestMask(Tensor qScores, Tensor kScores, int window, bool causal = true)
    {
        Guard.Rank(qScores, 4, nameof(qScores), "B, H, T, C");
        Guard.Rank(kScores, 4, nameof(kScores), "B, H, T, C");
        Guard.Positive(window, nameof(window));
        using var scope = NewDisposeScope();
        long t = qScores.shape[2], clusters = qScores.shape[3];
        var qc = qScores.argmax(-1);                                                      // c(i)   [B, H, T]
        var kc = kScores.argmax(-1);                                                      // c′(j)
        var before = nn.functional.one_hot(kc, clusters).cumsum(2);                      // |{j′ ≤ t : c′(j′) = c}|   [B, H, T, C]
        var m = before.gather(3, kc.unsqueeze(-1)).squeeze(-1) - 1;                      // m(j): earlier keys of j's cluster
        var r = before.gather(3, qc.unsqueeze(-1)).squeeze(-1);                          // r(i)
        var g = torch.where(r > 0, (r - 1).div(window, rounding_mode: RoundingMode.floor), torch.zeros_like(r));   // g(i)
        var keyChunk = m.div(window, rounding_mode: RoundingMode.floor).unsqueeze(-2);    // ⌊m(j)/w⌋  [B, H, 1, T]
        var lag = g.unsqueeze(-1) - keyChunk;                                             // g(i) − ⌊m(j)/w⌋
        var keep = (qc.unsqueeze(-1) == kc.unsqueeze(-2)) & (lag <= 1) & (lag >= (causal ? 0 : -1));
        if (causal) keep &= AttentionMasks.Causal(t, t, qScores.device);
        return keep.MoveToOuterDisposeScope();
    }

    /// <summary>Nearest-centroid routing attention, dense under <see cref="NearestMask"/>, divided by (1 + ε).</summary>
    public static Tensor AttendNearest(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, int window, bool causal = true,
        double countEpsilon = Routing.OfficialCountEpsilon, double? scale = null, double? selfScore = null)
    {
        Routing.Check(q, k, v, qScores, kScores, countEpsilon);
        using var scope = NewDisposeScope();
        var keep = NearestMask(qScores, kScores, window, causal);
        var (p, _) = ReferenceAttention.Normalize(MaskedScores(q, k, keep, scale, selfScore));
        return (Combine(p, v) / (1 + countEpsilon)).MoveToOuterDisposeScope();
    }

    /// <summary>The block-local keep-mask [T, T]: key block within one behind the query's (one ahead when not causal), j ≤ i when causal.</summary>
    public static Tensor LocalBlockMask(long length, int block, bool causal = true, Device? device = null)
    {
        Guard.Positive(length, nameof(length));
        Guard.Positive(block, nameof(block));
        using var scope = NewDisposeScope();
        var i = torch.arange(length, device: device).unsqueeze(1);
        var j = torch.arange(length, device: device).unsqueeze(0);
        var lag = i.div(block, rounding_mode: RoundingMode.floor) - j.div(block, rounding_mode: RoundingMode.floor);   // ⌊i/L⌋ − ⌊j/L⌋
        var keep = (lag <= 1) & (lag >= (causal ? 0 : -1));
        if (causal) keep &= j <= i;
        return keep.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Block-local attention, dense under <see cref="LocalBlockMask"/>, with b_h(i − j) from <paramref name="relativeBias"/>
    /// [H, distances] added to every kept score: q, k [B, T, H, D], v [B, T, H, Dv] → [B, T, H, Dv].
    /// </summary>
    public static Tensor LocalBlock(Tensor q, Tensor k, Tensor v, int block, bool causal = true, double? scale = null, Tensor? relativeBias = null)
    {
        Guard.Qkv(q, k, v);
        using var scope = NewDisposeScope();
        var (p, _) = ReferenceAttention.Normalize(LocalBlockScores(q, k, block, causal, scale, relativeBias));
        return Combine(p, v).MoveToOuterDisposeScope();
    }

    /// <summary>The block-local heads' scores [B, H, T, T]: q_i·k_j/√D + b_h(i − j) under <see cref="LocalBlockMask"/>, −∞ elsewhere.</summary>
    public static Tensor LocalBlockScores(Tensor q, Tensor k, int block, bool causal = true, double? scale = null, Tensor? relativeBias = null)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        LocalBlockAttention.CheckBias(relativeBias, q.shape[2], block, causal);
        using var scope = NewDisposeScope();
        long t = q.shape[1];
        var keep = LocalBlockMask(t, block, causal, q.device);
        var s = Scaled(q, k, scale);
        if (relativeBias is not null)
        {
            var i = torch.arange(t, device: q.device).unsqueeze(1);
            var j = torch.arange(t, device: q.device).unsqueeze(0);
            var index = (i - j + LocalBlockAttention.BiasOffset(block, causal)).clamp(0, relativeBias.shape[1] - 1);   // outside the window: masked anyway
            s = s + relativeBias.index_select(1, index.flatten()).view(-1, t, t).unsqueeze(0).to(q.dtype);         // + b_h(i − j)
        }
        return s.masked_fill(keep.logical_not(), double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Scores [B, H, T, T] under a keep-mask [B, H, T, T]: q_i·k_j/√D, s_ii = <paramref name="selfScore"/> when given, −∞ where not kept.
    /// </summary>
    public static Tensor MaskedScores(Tensor q, Tensor k, Tensor keep, double? scale = null, double? selfScore = null)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        using var scope = NewDisposeScope();
        var s = Scaled(q, k, scale);
        if (selfScore is { } self) s = s.masked_fill(torch.eye(q.shape[1], k.shape[1], dtype: ScalarType.Bool, device: q.device), self);
        return s.masked_fill(keep.logical_not(), double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    static Tensor Scaled(Tensor q, Tensor k, double? scale) =>
        q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (scale ?? 1.0 / Math.Sqrt(q.shape[3]));   // q_i·k_j/√D  [B, H, T, T]

    /// <summary>z_i = Σ_j A_ij v_j: [B, T, H, Dv] from A [B, H, T, T] and v [B, T, H, Dv].</summary>
    static Tensor Combine(Tensor pattern, Tensor v) => pattern.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);
}
