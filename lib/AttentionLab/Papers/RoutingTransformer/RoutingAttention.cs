using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// A Routing Transformer attention layer (a <see cref="Models.TinyGpt"/> mixer), x [B, T, d] → [B, T, d]: the first
/// <see cref="LocalHeads"/> heads run block-local attention (<see cref="LocalBlockAttention"/>: own block + the previous
/// one), the rest route through online k-means (<see cref="OnlineKMeans"/>) and attend inside their clusters
/// (<see cref="Routing"/>). Every head is sparse: no T × T matrix is built, so the layer costs O(n·(L + w + C)·d) —
/// O(n^1.5·d) at L, w, C ∝ √n.
/// </summary>
/// <remarks>
/// q, k, v = split(W_qkv x) [B, T, H, D];  local heads: y_i = Σ_{⌊j/L⌋ ∈ {⌊i/L⌋−1, ⌊i/L⌋}, j ≤ i} softmax(q_i·k_j/√D + b_h(i − j)) v_j
/// routing heads: q̂ = LN(q), k̂ = LN(k) (no scale, no bias; k̂ = q̂ when Q/K are shared); a = q̂·μ − ½‖μ‖²
/// balanced → <see cref="Routing.Attend"/>; nearest → <see cref="Routing.AttendNearest"/> (causal-correct).
/// Shared Q/K: s_ii = −5·10⁴ (<see cref="Routing.SelfTokenScore"/>, lucidrains' self-token rule; <c>maskSelf: false</c>
/// gives the official TF behaviour, where q̂_i·q̂_i = D is the largest score a query can have).
/// Training: the first batch initialises μ by k-means (pitfall (c)); every batch then updates μ by EMA (no gradient)
/// and leaves β·mean (q̂ − sg(μ))² (+ the same for k̂ when not shared, as the official code) in <see cref="AuxLoss"/>.
/// A window larger than T is clamped to T.
/// Hooks (the <see cref="AttentionMixer"/> base): hook_q/k/v carry the projected heads (before the routing heads' LN);
/// while a hook listens on the scores or the pattern the layer runs its dense form (the naive twin's masks): hook_attn_scores
/// carries s [B, H, T, T] — local heads q·k/√D + b_h(i − j) in their blocks, routing heads q̂·k̂/√D (s_ii = −5·10⁴ under
/// the self-token rule) on the keys some cluster shows the query — and hook_pattern the weights the output really uses
/// (balanced: the average over a query's clusters, ÷ (count + ε); nearest: softmax ÷ (1 + ε)), so z = A·V.
/// It does not decode token by token (<see cref="CanStream"/> is false): balanced routing ranks the whole sequence.
/// Not built: lucidrains' per-cluster learned memory key/value (<c>num_mem_kv</c>), which that port adds only for causal
/// layers with separate Q/K; the paper's configurations share Q/K and the official code has none. A causal query with no
/// admissible key in its cluster gets 0 from that head (separate Q/K only; with shared Q/K it always has itself).
/// </remarks>
public sealed class RoutingAttention : AttentionMixer
{
    readonly OnlineKMeans kmeans;
    readonly Parameter? local_bias;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H (local + routing); must divide d.</param>
    /// <param name="clusters">C of each routing head.</param>
    /// <param name="window">w: tokens per cluster (balanced routing) or members per chunk (nearest routing: a query sees ≤ 2w keys).</param>
    /// <param name="causal">causal mask idx_q ≥ idx_k (and a causal local window).</param>
    /// <param name="sharedQk">k̂ = q̂ (the paper's choice for its LM runs): a routed query always holds itself as a key.</param>
    /// <param name="balanced">top-w per cluster (the paper; leaks the future when causal) or nearest centroid (strictly causal).</param>
    /// <param name="localHeads">heads that attend locally instead of routing (0 … H).</param>
    /// <param name="localWindow">L, the block of the block-local heads: a causal query sees its own block and the previous
    /// one (between L + 1 and 2L keys), as the official <c>query_shape</c> = <c>memory_flange</c>.</param>
    /// <param name="decay">λ of the centroid EMA.</param>
    /// <param name="countEpsilon">ε of the scatter-average (official 1e-2).</param>
    /// <param name="maskSelf">with shared Q/K, score −5·10⁴ on a token's own key (lucidrains); ignored with separate Q/K.</param>
    /// <param name="relativeLocal">a learned bias b_h(i − j) per local head and distance (zeros at the start), as the official
    /// relative local heads (<c>local_relative</c>).</param>
    public RoutingAttention(int dModel, int heads, int clusters, int window, bool causal = true, bool sharedQk = true, bool balanced = true,
        int localHeads = 0, int localWindow = 16, double decay = 0.999, double countEpsilon = Routing.OfficialCountEpsilon, bool maskSelf = true,
        bool relativeLocal = true)
        : base(nameof(RoutingAttention), dModel, CheckHeads(dModel, heads))
    {
        Guard.Positive(clusters, nameof(clusters));
        Guard.Positive(window, nameof(window));
        Guard.Positive(localWindow, nameof(localWindow));
        if (localHeads < 0 || localHeads > heads) throw new ArgumentException($"localHeads must be in [0, {heads}], got {localHeads}.", nameof(localHeads));
        (Clusters, Window, Causal, SharedQk, Balanced, LocalHeads, LocalWindow, CountEpsilon, MaskSelf) =
            (clusters, window, causal, sharedQk, balanced, localHeads, localWindow, countEpsilon, maskSelf && sharedQk);
        kmeans = new OnlineKMeans(Math.Max(1, heads - localHeads), clusters, dModel / heads, decay);
        if (relativeLocal && localHeads > 0)
            local_bias = nn.Parameter(torch.zeros(localHeads, LocalBlockAttention.BiasLength(localWindow, causal)));
        RegisterComponents();
    }

    static int CheckHeads(int dModel, int heads)
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        return heads;
    }

    public int Clusters { get; }
    public int Window { get; }
    public bool Causal { get; }
    public bool SharedQk { get; }
    public bool Balanced { get; }
    public int LocalHeads { get; }
    public int LocalWindow { get; }
    public double CountEpsilon { get; }
    /// <summary>True when the self-token rule is on (shared Q/K and <c>maskSelf</c>).</summary>
    public bool MaskSelf { get; }
    /// <summary>Routing heads, H − LocalHeads.</summary>
    public int RoutingHeads => Heads - LocalHeads;
    /// <summary>The local heads' relative bias [LocalHeads, distances], or null.</summary>
    public Tensor? LocalBias => local_bias;
    /// <summary>The routing heads' centroids.</summary>
    public OnlineKMeans KMeans => kmeans;
    /// <summary>The commitment loss of the last training forward (a scalar owned by this module), or null.</summary>
    public Tensor? AuxLoss { get; private set; }
    /// <summary>False: routing assigns clusters over the whole sequence, so the layer has no token-by-token decode.</summary>
    public override bool CanStream => false;

    /// <summary>The routed heads of one forward: normalised q̂, k̂ [B, T, H_r, D], affinities [B, H_r, T, C] and nearest clusters.</summary>
    sealed record Routed(Tensor Q, Tensor K, Tensor QScores, Tensor KScores, Tensor QIndex, Tensor KIndex);

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        Routed? routed = RoutingHeads > 0 ? Route(Heads_(q, LocalHeads, RoutingHeads), Heads_(k, LocalHeads, RoutingHeads), fit: training) : null;
        var z = PatternObserved ? Dense(q, k, v, routed) : Sparse(q, k, v, routed);
        if (training && routed is not null) Commit(routed);
        return z;
    }

    /// <summary>The fast form: block-local heads and routing heads, no T × T matrix.</summary>
    Tensor Sparse(Tensor q, Tensor k, Tensor v, Routed? routed)
    {
        var outputs = new List<Tensor>();
        if (LocalHeads > 0)
            outputs.Add(LocalBlockAttention.Attend(Heads_(q, 0, LocalHeads), Heads_(k, 0, LocalHeads), Heads_(v, 0, LocalHeads), LocalWindow, Causal,
                relativeBias: local_bias));
        if (routed is not null)
        {
            var vr = Heads_(v, LocalHeads, RoutingHeads);
            int w = WindowFor(q.shape[1]);
            double? self = MaskSelf ? Routing.SelfTokenScore : null;
            outputs.Add(Balanced ? Routing.Attend(routed.Q, routed.K, vr, routed.QScores, routed.KScores, w, Causal, CountEpsilon, selfScore: self)
                                 : Routing.AttendNearest(routed.Q, routed.K, vr, routed.QScores, routed.KScores, w, Causal, CountEpsilon, selfScore: self));
        }
        return outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 2);
    }

    /// <summary>The dense form while the scores or the pattern are observed: s → hook_attn_scores, A → hook_pattern, z = A·V.</summary>
    Tensor Dense(Tensor q, Tensor k, Tensor v, Routed? routed)
    {
        long t = q.shape[1];
        int w = WindowFor(t);
        var scores = new List<Tensor>();
        if (LocalHeads > 0)
            scores.Add(RoutingNaive.LocalBlockScores(Heads_(q, 0, LocalHeads), Heads_(k, 0, LocalHeads), LocalWindow, Causal, relativeBias: local_bias));
        Tensor? mq = null, mk = null;
        if (routed is not null)
        {
            Tensor keep;
            if (Balanced)
            {
                (mq, mk) = (Routing.Membership(routed.QScores, w, balanced: true), Routing.Membership(routed.KScores, w, balanced: true));
                keep = RoutingNaive.UnionMask(mq, mk, Causal);
            }
            else keep = RoutingNaive.NearestMask(routed.QScores, routed.KScores, w, Causal);
            scores.Add(RoutingNaive.MaskedScores(routed.Q, routed.K, keep, selfScore: MaskSelf ? Routing.SelfTokenScore : null));
        }
        var s = hook_attn_scores.call(torch.cat(scores, 1));                              // [B, H, T, T]
        var patterns = new List<Tensor>();
        if (LocalHeads > 0) patterns.Add(ReferenceAttention.Normalize(s.narrow(1, 0, LocalHeads)).Probabilities);
        if (routed is not null)
        {
            var sr = s.narrow(1, LocalHeads, RoutingHeads);
            patterns.Add(Balanced ? RoutingNaive.BalancedPattern(sr, mq!, mk!, Causal, CountEpsilon)
                                  : ReferenceAttention.Normalize(sr).Probabilities / (1 + CountEpsilon));
        }
        var pattern = hook_pattern.call(torch.cat(patterns, 1));
        return Combine(pattern, v);
    }

    /// <summary>Routing needs the whole sequence's clusters: plain attention by position is not this layer's.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys) =>
        throw new NotSupportedException("RoutingAttention scores depend on the clustering of the whole sequence: call forward, not Attend.");

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        throw new NotSupportedException("RoutingAttention does not decode token by token (CanStream is false): run forward over the sequence.");

    /// <summary>The routing keep-mask [B, H_r, T, T] the routing heads use for x [B, T, d] (for heatmaps; no EMA update).</summary>
    public Tensor RoutingMask(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var routed = RoutedHeads(x);
        return Routing.Mask(routed.QScores, routed.KScores, WindowFor(x.shape[1]), Balanced, Causal).MoveToOuterDisposeScope();
    }

    /// <summary>The routing heads' query affinities a = q̂·μ − ½‖μ‖² [B, H_r, T, C] for x [B, T, d] (no EMA update).</summary>
    public Tensor ClusterAffinities(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        return RoutedHeads(x).QScores.MoveToOuterDisposeScope();
    }

    Routed RoutedHeads(Tensor x)
    {
        if (RoutingHeads == 0) throw new InvalidOperationException("this layer has no routing heads (localHeads = heads).");
        var (q, k, _) = Project(x);
        return Route(Heads_(q, LocalHeads, RoutingHeads), Heads_(k, LocalHeads, RoutingHeads), fit: false);
    }

    /// <summary>q̂ = LN(q), k̂ = LN(k) (or q̂), their affinities and nearest clusters; the first training batch initialises μ by k-means.</summary>
    Routed Route(Tensor q, Tensor k, bool fit)
    {
        var dims = new long[] { q.shape[3] };
        var qn = nn.functional.layer_norm(q, dims);                                       // LN without scale or bias
        var kn = SharedQk ? qn : nn.functional.layer_norm(k, dims);
        if (fit && !kmeans.Initialized) kmeans.Initialize(qn);
        var (qs, qIdx) = kmeans.Assign(qn);
        var (ks, kIdx) = SharedQk ? (qs, qIdx) : kmeans.Assign(kn);
        return new Routed(qn, kn, qs, ks, qIdx, kIdx);
    }

    /// <summary>
    /// Training: AuxLoss = β·mean (q̂ − sg μ)² (+ the keys' with separate Q/K, as the official q_loss + k_loss), then the EMA update of μ.
    /// </summary>
    void Commit(Routed r)
    {
        var aux = kmeans.CommitmentLoss(r.Q, r.QIndex);
        if (!SharedQk) aux = aux + kmeans.CommitmentLoss(r.K, r.KIndex);
        AuxLoss?.Dispose();
        AuxLoss = aux.DetachFromDisposeScope();
        kmeans.Update(r.Q, r.QIndex);
        if (!SharedQk) kmeans.Update(r.K, r.KIndex);
    }

    int WindowFor(long length) => (int)Math.Min(Window, length);

    static Tensor Heads_(Tensor x, int start, int count) => x.narrow(2, start, count);

    protected override void Dispose(bool disposing)
    {
        if (disposing) AuxLoss?.Dispose();
        base.Dispose(disposing);
    }
}
