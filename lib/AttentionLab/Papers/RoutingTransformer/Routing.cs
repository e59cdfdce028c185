using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// Routing attention as functions of q, k, v [B, T, H, D] and the affinities of queries and keys to C centroids
/// [B, H, T, C] (from <see cref="OnlineKMeans.Assign"/>). Both forms are sparse: they gather the members of each cluster
/// into fixed-size windows and attend inside them, never building a T × T matrix. Balanced routing (official
/// <c>gather_cluster_attention_items</c> / <c>scatter_cluster_items</c>) takes the top-w tokens per cluster; the
/// nearest-centroid variant puts every token in its nearest cluster only and is strictly causal.
/// Dense twins: <see cref="RoutingNaive"/>.
/// </summary>
/// <remarks>
/// balanced:   I_c = sort(top-w_t a_tc)  (sorted by position, pitfall (d));  J_c likewise from the key affinities
/// per cluster: o_c,i = Σ_{j ∈ J_c, j ≤ i} softmax_j(s_ij) v_j  for i ∈ I_c  (causal: idx_q ≥ idx_k)
/// s_ij = q_i·k_j/√D, except s_ii = −5·10⁴ under the self-token rule (shared Q/K; lucidrains' TOKEN_SELF_ATTN_VALUE):
/// a token attends to itself only when no other key is admissible.
/// scatter:    y_i = Σ_{c : i ∈ I_c} o_c,i / (|{c : i ∈ I_c}| + ε)   (official ε = 1e-2; unselected tokens get 0)
/// Cost of the balanced form: O(n·C·d) to route plus O(C·w²·d) = O(n·w·d) at C·w = n; O(n^1.5 d) at C = w = √n.
/// nearest:    c(i) = argmax_c a_ic, c′(j) = argmax_c b_jc; m(j) = |{j′ &lt; j : c′(j′) = c′(j)}| (rank of key j in its cluster);
/// r(i) = |{j ≤ i : c′(j) = c(i)}|, g(i) = max(0, ⌊(r(i) − 1)/w⌋) (the key chunk that holds query i's latest key);
/// query i sees key j ⇔ c′(j) = c(i) ∧ ⌊m(j)/w⌋ ∈ {g(i) − 1, g(i)} (and g(i) + 1 when not causal) ∧ (j ≤ i when causal).
/// Every quantity depends on positions ≤ i only, so the causal form is strictly causal; each query sees at most 2w keys.
/// With w ≥ the largest cluster it is plain attention inside each nearest cluster. y_i = o_i / (1 + ε) (each token is routed once).
/// </remarks>
public static class Routing
{
    /// <summary>The official scatter-average's ε: y = Σ o / (count + 1e-2).</summary>
    public const double OfficialCountEpsilon = 1e-2;

    /// <summary>lucidrains' <c>TOKEN_SELF_ATTN_VALUE</c>: with shared Q/K a token's score on its own key is set to −5·10⁴.</summary>
    public const double SelfTokenScore = -5e4;

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
    /// (pass the same tensor for shared Q/K). <paramref name="selfScore"/>: the score a query gets on its own position
    /// (<see cref="SelfTokenScore"/> for shared Q/K as in lucidrains; null = no rule, as the official TF code).
    /// Returns y [B, T, H, Dv].
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, int window, bool causal = true,
        double countEpsilon = OfficialCountEpsilon, double? scale = null, double? selfScore = null)
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
        var qPos = qi.unsqueeze(-1);
        var kPos = ki.unsqueeze(-2);
        if (selfScore is { } self) s = s.masked_fill(qPos == kPos, self);                  // s_ii = −5·10⁴
        if (causal) s = s.masked_fill(qPos < kPos, double.NegativeInfinity);              // keep idx_q ≥ idx_k
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
    /// Nearest-centroid routing attention, the sparse chunked form (strictly causal when <paramref name="causal"/>):
    /// keys are sorted by (cluster, position) and cut into chunks of w members; each query attends to the keys of its
    /// own cluster in the chunk holding its latest key and the chunk before (see the remarks of <see cref="Routing"/>),
    /// as a batch of [w, 2w] attentions. q, k [B, T, H, D], v [B, T, H, Dv]; qScores, kScores [B, H, T, C] → [B, T, H, Dv].
    /// </summary>
    public static Tensor AttendNearest(Tensor q, Tensor k, Tensor v, Tensor qScores, Tensor kScores, int window, bool causal = true,
        double countEpsilon = OfficialCountEpsilon, double? scale = null, double? selfScore = null)
    {
        Check(q, k, v, qScores, kScores, countEpsilon);
        Guard.Positive(window, nameof(window));
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], dv = v.shape[3], clusters = qScores.shape[3];
        int w = window;
        var qc = qScores.argmax(-1);                                                      // c(i)   [B, H, T]
        var kc = ReferenceEquals(qScores, kScores) ? qc : kScores.argmax(-1);             // c′(j)
        var keys = Chunks(kc, clusters, w);                                               // key chunks of w members per cluster
        long keyChunks = keys.Chunks;
        var r = nn.functional.one_hot(kc, clusters).cumsum(2).gather(3, qc.unsqueeze(-1)).squeeze(-1);   // r(i) = |{j ≤ i : c′(j) = c(i)}|
        var g = torch.where(r > 0, (r - 1).div(w, rounding_mode: RoundingMode.floor), torch.zeros_like(r));  // g(i)
        var queryGroup = (keys.Offset.gather(2, qc) + g).clamp_max(keyChunks - 1);       // global key chunk of query i
        var queries = Chunks(queryGroup, keyChunks, w);                                   // queries grouped by key chunk, w per chunk
        long queryChunks = queries.Chunks;

        var qTok = queries.SlotToken.view(b, h, queryChunks, w);                          // token in each query slot (−1 empty)
        var group = queries.ChunkGroup;                                                   // key chunk g of each query chunk  [B, H, NQ]
        var offsets = causal ? new long[] { -1, 0 } : new long[] { -1, 0, 1 };
        var keyTok = keys.SlotToken.view(b, h, keyChunks, w);
        var windowTok = torch.cat(offsets.Select(o =>
        {
            var chunk = group + o;                                                        // chunk g − 1, g (, g + 1)
            var inRange = (chunk >= 0) & (chunk < keyChunks) & (group >= 0);
            var tok = keyTok.gather(2, chunk.clamp(0, keyChunks - 1).unsqueeze(-1).expand(-1, -1, -1, w));
            return torch.where(inRange.unsqueeze(-1), tok, torch.full_like(tok, -1));
        }).ToArray(), 3);                                                                 // [B, H, NQ, |offsets|·w]

        var qValid = qTok >= 0;
        var kValid = windowTok >= 0;
        var qIdx = qTok.clamp_min(0);
        var kIdx = windowTok.clamp_min(0);
        var qg = GatherFlat(q, qIdx);                                                     // [B, H, NQ, w, D]
        var kg = GatherFlat(k, kIdx);                                                     // [B, H, NQ, 2w, D]
        var vg = GatherFlat(v, kIdx);
        var sameCluster = qc.gather(2, qIdx.flatten(2)).view(qIdx.shape).unsqueeze(-1) ==
                          kc.gather(2, kIdx.flatten(2)).view(kIdx.shape).unsqueeze(-2);   // c(i) = c′(j)
        var keep = qValid.unsqueeze(-1) & kValid.unsqueeze(-2) & sameCluster;
        var qPos = qIdx.unsqueeze(-1);
        var kPos = kIdx.unsqueeze(-2);
        if (causal) keep &= kPos <= qPos;                                                 // j ≤ i
        var s = qg.matmul(kg.transpose(-1, -2)) * (scale ?? 1.0 / Math.Sqrt(d));           // [B, H, NQ, w, 2w]
        if (selfScore is { } self) s = s.masked_fill(qPos == kPos, self);
        s = s.masked_fill(keep.logical_not(), double.NegativeInfinity);
        var (p, _) = ReferenceAttention.Normalize(s);
        var o = p.matmul(vg).reshape(b, h, queryChunks * w, dv);                          // empty slots: o = 0
        var y = torch.zeros(b, h, t, dv, dtype: v.dtype, device: v.device)
            .scatter_add(2, qIdx.reshape(b, h, queryChunks * w).unsqueeze(-1).expand(-1, -1, -1, dv), o);   // each token in one slot
        return (y / (1 + countEpsilon)).permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Tokens grouped into chunks: slot → token [B, H, chunks·w] (−1 = empty), chunk → group [B, H, chunks], group → first chunk [B, H, G].
    /// </summary>
    internal sealed record ChunkLayout(Tensor SlotToken, Tensor ChunkGroup, Tensor Offset, long Chunks);

    /// <summary>
    /// Sorts tokens by (group, position) and lays each group out in ⌈n_g / w⌉ chunks of w slots: the slot of the token
    /// with rank ρ in group g is (offset_g)·w + ρ, offset_g = Σ_{g′ &lt; g} ⌈n_g′ / w⌉. The chunk count is the largest over B, H.
    /// </summary>
    internal static ChunkLayout Chunks(Tensor group, long groups, int w)
    {
        long b = group.shape[0], h = group.shape[1], t = group.shape[2];
        var device = group.device;
        var counts = torch.zeros(b, h, groups, dtype: ScalarType.Int64, device: device)
            .scatter_add(2, group, torch.ones_like(group));                              // n_g
        var chunks = (counts + (w - 1)).div(w, rounding_mode: RoundingMode.floor);        // ⌈n_g / w⌉
        var offset = chunks.cumsum(2) - chunks;                                           // first chunk of g
        var start = counts.cumsum(2) - counts;                                            // first sorted index of g
        var order = (group * t + torch.arange(t, device: device)).argsort(-1);           // tokens by (g, position)
        var sortedGroup = group.gather(2, order);
        var rank = torch.arange(t, device: device) - start.gather(2, sortedGroup);       // ρ
        var slot = offset.gather(2, sortedGroup) * w + rank;
        long total = Math.Max(1L, chunks.sum(2).max().item<long>());
        var slotToken = torch.full(new long[] { b, h, total * w }, -1L, dtype: ScalarType.Int64, device: device).scatter(2, slot, order);
        var first = slotToken.view(b, h, total, w).select(-1, 0);                         // a chunk's first slot is always filled
        var chunkGroup = torch.where(first >= 0, group.gather(2, first.clamp_min(0)), torch.full_like(first, -1));
        return new ChunkLayout(slotToken, chunkGroup, offset, total);
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
    /// The routing keep-mask [B, H, T, T] (dense; for heatmaps and the naive twins): balanced — i sees j when some cluster
    /// holds query i and key j; nearest — the chunk rule of <see cref="AttendNearest"/>; and j ≤ i when causal.
    /// </summary>
    public static Tensor Mask(Tensor qScores, Tensor kScores, int window, bool balanced, bool causal = true)
    {
        Guard.Rank(qScores, 4, nameof(qScores), "B, H, T, C");
        if (!balanced) return RoutingNaive.NearestMask(qScores, kScores, window, causal);
        using var scope = NewDisposeScope();
        var mq = Membership(qScores, window, balanced);                                   // [B, H, C, T]
        var mk = Membership(kScores, window, balanced);
        return RoutingNaive.UnionMask(mq, mk, causal).MoveToOuterDisposeScope();          // ∃c: i ∈ I_c ∧ j ∈ J_c (∧ j ≤ i)
    }

    /// <summary>x [B, T, H, D] at indices [B, H, C, w] → [B, H, C, w, D].</summary>
    static Tensor Gather(Tensor x, Tensor idx) => GatherFlat(x, idx);

    /// <summary>x [B, T, H, D] at indices [B, H, …] → [B, H, …, D].</summary>
    internal static Tensor GatherFlat(Tensor x, Tensor idx)
    {
        long b = idx.shape[0], h = idx.shape[1], d = x.shape[3];
        var flat = idx.reshape(b, h, -1).unsqueeze(-1).expand(-1, -1, -1, d);
        var shape = idx.shape.Append(d).ToArray();
        return x.permute(0, 2, 1, 3).gather(2, flat).reshape(shape);
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
        if (!v.shape.Take(3).SequenceEqual(q.shape.Take(3)))
            throw new ArgumentException($"v must be [B, T, H, Dv] with q's B, T, H {Guard.ShapeText(q)}, got {Guard.ShapeText(v)}.", nameof(v));
        var expected = new[] { q.shape[0], q.shape[2], q.shape[1] };
        if (!qScores.shape.Take(3).SequenceEqual(expected))
            throw new ArgumentException($"qScores must be [B, H, T, C] = [{string.Join(", ", expected)}, C], got {Guard.ShapeText(qScores)}.", nameof(qScores));
        if (!kScores.shape.SequenceEqual(qScores.shape))
            throw new ArgumentException($"kScores must have qScores' shape {Guard.ShapeText(qScores)}, got {Guard.ShapeText(kScores)}.", nameof(kScores));
        if (!(countEpsilon >= 0)) throw new ArgumentException($"countEpsilon must be ≥ 0, got {countEpsilon}.", nameof(countEpsilon));
    }

    static void CheckWindow(int window, long t)
    {
        if (window <= 0 || window > t) throw new ArgumentException($"window must be in [1, T = {t}], got {window}.", nameof(window));
    }
}
