using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// A Routing Transformer attention layer (a <see cref="Models.TinyGpt"/> mixer), x [B, T, d] → [B, T, d]: the first
/// <see cref="LocalHeads"/> heads attend over a causal local window, the rest route through online k-means
/// (<see cref="OnlineKMeans"/>) and attend inside their clusters (<see cref="Routing"/>).
/// </summary>
/// <remarks>
/// q, k, v = split(W_qkv x) [B, T, H, D];  local heads: y_t = Σ_{t−L &lt; s ≤ t} softmax(q_t·k_s/√D) v_s
/// routing heads: q̂ = LN(q), k̂ = LN(k) (no scale, no bias; k̂ = q̂ when Q/K are shared); a = q̂·μ − ½‖μ‖²
/// balanced → <see cref="Routing.Attend"/>; nearest → <see cref="Routing.AttendNearest"/> (causal-correct).
/// Training: the first batch initialises μ by k-means (pitfall (c)); every batch then updates μ by EMA (no gradient)
/// and leaves β‖q̂ − sg(μ)‖² in <see cref="AuxLoss"/>. A window larger than T is clamped to T.
/// </remarks>
public sealed class RoutingAttention : nn.Module<Tensor, Tensor>
{
    readonly Linear qkv, proj;
    readonly OnlineKMeans kmeans;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H (local + routing); must divide d.</param>
    /// <param name="clusters">C of each routing head.</param>
    /// <param name="window">w: tokens per cluster (balanced routing).</param>
    /// <param name="causal">causal mask idx_q ≥ idx_k (and a causal local window).</param>
    /// <param name="sharedQk">k̂ = q̂ (the paper's choice for its LM runs): a routed query always sees itself.</param>
    /// <param name="balanced">top-w per cluster (the paper; leaks the future when causal) or nearest centroid (strictly causal).</param>
    /// <param name="localHeads">heads that attend locally instead of routing (0 … H).</param>
    /// <param name="localWindow">L of the local heads.</param>
    /// <param name="decay">λ of the centroid EMA.</param>
    /// <param name="countEpsilon">ε of the scatter-average (official 1e-2).</param>
    public RoutingAttention(int dModel, int heads, int clusters, int window, bool causal = true, bool sharedQk = true, bool balanced = true,
        int localHeads = 0, int localWindow = 16, double decay = 0.999, double countEpsilon = Routing.OfficialCountEpsilon)
        : base(nameof(RoutingAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(clusters, nameof(clusters));
        Guard.Positive(window, nameof(window));
        Guard.Positive(localWindow, nameof(localWindow));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        if (localHeads < 0 || localHeads > heads) throw new ArgumentException($"localHeads must be in [0, {heads}], got {localHeads}.", nameof(localHeads));
        (DModel, Heads, Clusters, Window, Causal, SharedQk, Balanced, LocalHeads, LocalWindow, CountEpsilon) =
            (dModel, heads, clusters, window, causal, sharedQk, balanced, localHeads, localWindow, countEpsilon);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        kmeans = new OnlineKMeans(Math.Max(1, heads - localHeads), clusters, dModel / heads, decay);
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
    /// <summary>Routing heads, H − LocalHeads.</summary>
    public int RoutingHeads => Heads - LocalHeads;
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
        {
            var keep = Causal ? AttentionMasks.SlidingWindow(t, t, LocalWindow, x.device)
                              : (torch.arange(t, device: x.device).unsqueeze(1) - torch.arange(t, device: x.device).unsqueeze(0)).abs() < LocalWindow;
            using var r = ReferenceAttention.Softmax(Heads_(q, 0, LocalHeads), Heads_(k, 0, LocalHeads), Heads_(v, 0, LocalHeads), mask: keep);
            outputs.Add(r.Output.alias());
        }
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
        var ks = qs;
        if (!SharedQk)
        {
            var (s, kIdx) = kmeans.Assign(kn);
            ks = s;
            if (training) kmeans.Update(kn, kIdx);
        }
        int w = (int)Math.Min(Window, q.shape[1]);
        var y = Balanced ? Routing.Attend(qn, kn, v, qs, ks, w, Causal, CountEpsilon)
                         : Routing.AttendNearest(qn, kn, v, qs, ks, Causal, CountEpsilon);
        if (training)
        {
            var aux = kmeans.CommitmentLoss(qn, qIdx);
            AuxLoss?.Dispose();
            AuxLoss = aux.DetachFromDisposeScope();
            kmeans.Update(qn, qIdx);
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
