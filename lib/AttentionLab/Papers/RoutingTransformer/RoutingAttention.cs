using AttentionLab.Attention;
using AttentionLab.Core;
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
/// Not built: lucidrains' per-cluster learned memory key/value (<c>num_mem_kv</c>), which that port adds only for causal
/// layers with separate Q/K; the paper's configurations share Q/K and the official code has none. A causal query with no
/// admissible key in its cluster gets 0 from that head (separate Q/K only; with shared Q/K it always has itself).
/// </remarks>
public sealed class RoutingAttention : nn.Module<Tensor, Tensor>
{
    readonly Linear qkv, proj;
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
        : base(nameof(RoutingAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(clusters, nameof(clusters));
        Guard.Positive(window, nameof(window));
        Guard.Positive(localWindow, nameof(localWindow));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        if (localHeads < 0 || localHeads > heads) throw new ArgumentException($"localHeads must be in [0, {heads}], got {localHeads}.", nameof(localHeads));
        (DModel, Heads, Clusters, Window, Causal, SharedQk, Balanced, LocalHeads, LocalWindow, CountEpsilon, MaskSelf) =
            (dModel, heads, clusters, window, causal, sharedQk, balanced, localHeads, localWindow, countEpsilon, maskSelf && sharedQk);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        kmeans = new OnlineKMeans(Math.Max(1, heads - localHeads), clusters, dModel / heads, decay);
        if (relativeLocal && localHeads > 0)
            local_bias = nn.Parameter(torch.zeros(localHeads, LocalBlockAttention.BiasLength(localWindow, causal)));
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
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

    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.call(x).view(b, t, 3, Heads, DModel / Heads).unbind(2);
        var (q, k, v) = (parts[0], parts[1], parts[2]);
        var outputs = new List<Tensor>();
        if (LocalHeads > 0)
            outputs.Add(LocalBlockAttention.Attend(Heads_(q, 0, LocalHeads), Heads_(k, 0, LocalHeads), Heads_(v, 0, LocalHeads), LocalWindow, Causal,
                relativeBias: local_bias));
        if (RoutingHeads > 0)
            outputs.Add(Route(Heads_(q, LocalHeads, RoutingHeads), Heads_(k, LocalHeads, RoutingHeads), Heads_(v, LocalHeads, RoutingHeads)));
        var y = torch.cat(outputs, 2).reshape(b, t, DModel);
        return proj.call(y).MoveToOuterDisposeScope();
    }

    /// <summary>The routing keep-mask [B, H_r, T, T] the routing heads use for x [B, T, d] (for heatmaps; no EMA update).</summary>
    public Tensor RoutingMask(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.call(x).view(b, t, 3, Heads, DModel / Heads).unbind(2);
        var (qn, kn) = Normalized(Heads_(parts[0], LocalHeads, RoutingHeads), Heads_(parts[1], LocalHeads, RoutingHeads));
        var (qs, _) = kmeans.Assign(qn);
        var ks = SharedQk ? qs : kmeans.Assign(kn).Scores;
        return Routing.Mask(qs, ks, (int)Math.Min(Window, t), Balanced, Causal).MoveToOuterDisposeScope();
    }

    /// <summary>The routing heads' query affinities [B, H_r, T, C] for x [B, T, d] (no EMA update).</summary>
    public Tensor Scores(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.call(x).view(b, t, 3, Heads, DModel / Heads).unbind(2);
        var (qn, _) = Normalized(Heads_(parts[0], LocalHeads, RoutingHeads), Heads_(parts[1], LocalHeads, RoutingHeads));
        return kmeans.Assign(qn).Scores.MoveToOuterDisposeScope();
    }

    Tensor Route(Tensor q, Tensor k, Tensor v)
    {
        var (qn, kn) = Normalized(q, k);
        if (training && !kmeans.Initialized) kmeans.Initialize(qn);
        var (qs, qIdx) = kmeans.Assign(qn);
        var (ks, kIdx) = SharedQk ? (qs, qIdx) : kmeans.Assign(kn);
        int w = (int)Math.Min(Window, q.shape[1]);
        double? self = MaskSelf ? Routing.SelfTokenScore : null;
        var y = Balanced ? Routing.Attend(qn, kn, v, qs, ks, w, Causal, CountEpsilon, selfScore: self)
                         : Routing.AttendNearest(qn, kn, v, qs, ks, w, Causal, CountEpsilon, selfScore: self);
        if (training)
        {
            var aux = kmeans.CommitmentLoss(qn, qIdx);                                    // β·mean (q̂ − sg μ)²
            if (!SharedQk) aux = aux + kmeans.CommitmentLoss(kn, kIdx);                   // + the keys' (official: q_loss + k_loss)
            AuxLoss?.Dispose();
            AuxLoss = aux.DetachFromDisposeScope();
            kmeans.Update(qn, qIdx);
            if (!SharedQk) kmeans.Update(kn, kIdx);
        }
        return y;
    }

    (Tensor Q, Tensor K) Normalized(Tensor q, Tensor k)
    {
        var dims = new long[] { q.shape[3] };
        var qn = nn.functional.layer_norm(q, dims);                                       // LN without scale or bias
        return (qn, SharedQk ? qn : nn.functional.layer_norm(k, dims));
    }

    static Tensor Heads_(Tensor x, int start, int count) => x.narrow(2, start, count);

    protected override void Dispose(bool disposing)
    {
        if (disposing) AuxLoss?.Dispose();
        base.Dispose(disposing);
    }
}
