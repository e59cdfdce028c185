using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Moh;

/// <summary>How <see cref="MixtureOfHeadAttention"/> computes its routed heads.</summary>
public enum MohPath
{
    /// <summary>
    /// Each routed head attends only from the tokens that chose it: per (sequence, routed head) the chosen query rows are
    /// gathered (padded to the largest count C), scored against the keys, and scattered back. Cost of the routed heads
    /// ∝ B·E·C·T instead of B·E·T², i.e. about the active heads' share of dense attention when the router is balanced.
    /// </summary>
    Gather,
    /// <summary>Every head attends from every token, then unchosen heads are multiplied by 0: the cost of dense MHA (no saving).</summary>
    Masked,
}

/// <summary>
/// The gates of one call: per token the final weight of every head (<see cref="Gates"/>), which heads ran
/// (<see cref="Active"/>), the parts before the two-way balance (<see cref="SharedGates"/>, <see cref="RoutedGates"/>),
/// the balance α (<see cref="Balance"/>), the router's probabilities over routed heads and its 0/1 choice, and the
/// load-balance loss L_b. Tensors live in the caller's dispose scope.
/// </summary>
/// <param name="Gates">g [B, T, H]: α1·shared gates, then α2·routed gates (0 for an unchosen routed head).</param>
/// <param name="Active">[B, T, H] 0/1 in the input's dtype: 1 where the head contributes (every shared head, the top-K routed ones).</param>
/// <param name="SharedGates">[B, T, h_s] before α: softmax(W_s x)·h_s (h_s &gt; 1), the constant 1 (h_s = 1).</param>
/// <param name="RoutedGates">[B, T, E] before α: top-K of softmax(W_r x), renormalised over the kept heads, times K.</param>
/// <param name="Balance">α [B, T, 2] = 2·softmax(W_h x) with both groups present; (1, 1) otherwise.</param>
/// <param name="Probabilities">p [B·T, E] = softmax(W_r x) over the routed heads.</param>
/// <param name="RoutedMask">[B·T, E] 0/1: the top-K routed heads of each token.</param>
/// <param name="AuxLoss">L_b = E²·mean_i(P_i f_i) (a scalar; 0 without routed heads).</param>
public sealed record MohRouting(Tensor Gates, Tensor Active, Tensor SharedGates, Tensor RoutedGates, Tensor Balance, Tensor Probabilities,
    Tensor RoutedMask, Tensor AuxLoss) : IDisposable
{
    Tensor[] All => new[] { Gates, Active, SharedGates, RoutedGates, Balance, Probabilities, RoutedMask, AuxLoss };

    /// <summary>Moves every tensor to the dispose scope outside the current one; returns this routing.</summary>
    public MohRouting MoveToOuterDisposeScope()
    {
        foreach (var t in All) t.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Takes every tensor out of the dispose scopes (the holder disposes it); returns this routing.</summary>
    public MohRouting DetachFromDisposeScope()
    {
        foreach (var t in All) t.DetachFromDisposeScope();
        return this;
    }

    public void Dispose()
    {
        foreach (var t in All) t.Dispose();
    }
}

/// <summary>
/// MoH, mixture-of-head attention (Jin, Zhu, Yuan, Yan 2024, arXiv 2410.11842): multi-head attention written as a sum over
/// heads, Σ_i H_i W_O^i, becomes a gated sum Σ_i g_i(x_t) H_i W_O^i in which the first h_s heads are shared (always on)
/// and each token picks K of the other E = H − h_s heads with a router. A mixer on <see cref="AttentionMixer"/>: the
/// projections, head split, scores and hooks are the base's; MoH changes which heads run (<see cref="Mix"/>) and their
/// weights in the output (<see cref="Output"/>). Gates as the official ViT code (SkyworkAI/MoH, MoH-ViT/attention.py).
/// </summary>
/// <remarks>
/// p_t = softmax(W_r x_t) ∈ Δ^E, S_t = topK(p_t)                           (routed heads h_s … H−1)
/// g^r_{t,i} = K · p_{t,i} / Σ_{j∈S_t} p_{t,j} for i ∈ S_t, else 0          (routed gates sum to K)
/// g^s_t = h_s · softmax(W_s x_t) (h_s &gt; 1), g^s_t = 1 (h_s = 1)         (shared gates sum to h_s)
/// [α1, α2] = 2 · softmax(W_h x_t)  (only when both groups exist)
/// y_t = Σ_{i&lt;h_s} α1 g^s_{t,i} H_{t,i} W_O^i + Σ_{i∈S_t} α2 g^r_{t,i} H_{t,i} W_O^i + b_O
/// L_b = E² · mean_i(P_i f_i), P_i = mean_t p_{t,i}, f_i = mean_t 1[i ∈ S_t]     (Σ_i f_i = K; uniform p ⇒ L_b = K)
/// Active heads per token: (h_s + K)/H. Routing reads x_t only, so it is causal. W_r, W_s, W_h have no bias.
/// hook_z carries the per-head outputs H_{t,i} before the gates, 0 where a routed head did not run (decode steps compute
/// every head; the gate 0 removes the unchosen ones). <see cref="LastRouting"/> keeps the gates of the last forward call.
/// </remarks>
public sealed class MixtureOfHeadAttention : AttentionMixer
{
    readonly Linear? w_r, w_s, w_h;
    MohRouting? current;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H, shared and routed together.</param>
    /// <param name="shared">h_s, the always-on heads (the first h_s), 0 … H.</param>
    /// <param name="topK">K, routed heads per token: 1 … E with E = H − h_s &gt; 0; 0 when every head is shared.</param>
    /// <param name="path">How the routed heads are computed (<see cref="MohPath.Gather"/> by default).</param>
    /// <param name="keyDim">Dk per head (default d / H).</param>
    /// <param name="valueDim">Dv per head (default d / H).</param>
    public MixtureOfHeadAttention(int dModel, int heads, int shared, int topK, MohPath path = MohPath.Gather, int? keyDim = null, int? valueDim = null)
        : base(nameof(MixtureOfHeadAttention), dModel, heads, keyDim, valueDim)
    {
        if (shared < 0 || shared > heads) throw new ArgumentException($"shared must be in 0 … heads = {heads}, got {shared}.", nameof(shared));
        int routed = heads - shared;
        if (routed == 0 && topK != 0) throw new ArgumentException($"every head is shared, so topK must be 0, got {topK}.", nameof(topK));
        if (routed > 0 && (topK < 1 || topK > routed))
            throw new ArgumentException($"topK must be in 1 … E = heads − shared = {routed}, got {topK}.", nameof(topK));
        if (!Enum.IsDefined(path)) throw new ArgumentException($"path {(int)path} is not a known MohPath.", nameof(path));
        (Shared, Routed, TopK, Path) = (shared, routed, topK, path);
        if (routed > 0) w_r = nn.Linear(dModel, routed, hasBias: false);
        if (shared > 1) w_s = nn.Linear(dModel, shared, hasBias: false);
        if (shared > 0 && routed > 0) w_h = nn.Linear(dModel, 2, hasBias: false);
        RegisterComponents();
    }

    /// <summary>h_s.</summary>
    public int Shared { get; }
    /// <summary>E = H − h_s.</summary>
    public int Routed { get; }
    /// <summary>K.</summary>
    public int TopK { get; }
    public MohPath Path { get; }
    /// <summary>(h_s + K) / H: the share of heads each token uses.</summary>
    public double ActiveRatio => (Shared + TopK) / (double)Heads;

    /// <summary>W_r [E, d] (null without routed heads).</summary>
    public Linear? RouterWeight => w_r;
    /// <summary>W_s [h_s, d] (null for h_s ≤ 1).</summary>
    public Linear? SharedWeight => w_s;
    /// <summary>W_h [2, d] (null unless both groups exist).</summary>
    public Linear? BalanceWeight => w_h;

    /// <summary>
    /// The routing of the last forward call, owned by the mixer (the next forward call or Dispose frees it): read it after the
    /// model's forward pass, e.g. add β·L_b to the loss (its autograd graph is kept).
    /// </summary>
    public MohRouting? LastRouting { get; private set; }

    /// <summary>The gates for x [B, T, d] (see <see cref="MohRouting"/>), in the caller's dispose scope.</summary>
    public MohRouting Route(Tensor x)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        long b = x.size(0), t = x.size(1), n = b * t;
        var flat = x.reshape(n, DModel);
        var opts = (dtype: x.dtype, device: x.device);
        Tensor probs, routedMask, routed, aux;
        if (Routed > 0)
        {
            var routing = ExpertRouter.Select(w_r!.call(flat), TopK);                   // p = softmax(W_r x), S = topK, renormalised
            probs = routing.Probabilities;
            routedMask = routing.Mask();                                                // 1[i ∈ S_t]
            routed = routing.DenseGates() * TopK;                                       // K · p_i / Σ_{j∈S} p_j
            aux = LoadBalanceLoss.Compute(probs, routedMask);                           // E · Σ_i f_i P_i = E² · mean_i f_i P_i
        }
        else
        {
            probs = torch.zeros(n, 0, dtype: opts.dtype, device: opts.device);
            routedMask = probs.clone();
            routed = probs.clone();
            aux = torch.zeros(Array.Empty<long>(), dtype: opts.dtype, device: opts.device);
        }
        var shared = Shared > 1 ? torch.softmax(w_s!.call(flat), -1) * Shared           // h_s · softmax(W_s x)
                                : torch.ones(n, Shared, dtype: opts.dtype, device: opts.device);   // h_s = 1: the constant 1 (or no column)
        var balance = w_h is null ? torch.ones(n, 2, dtype: opts.dtype, device: opts.device)
                                  : torch.softmax(w_h.call(flat), -1) * 2;              // [α1, α2] = 2 · softmax(W_h x)
        var gates = torch.cat(new[] { shared * balance.narrow(1, 0, 1), routed * balance.narrow(1, 1, 1) }, 1);
        var active = torch.cat(new[] { torch.ones(n, Shared, dtype: opts.dtype, device: opts.device), routedMask.to(opts.dtype) }, 1);
        return new MohRouting(gates.view(b, t, Heads), active.view(b, t, Heads), shared.view(b, t, Shared), routed.view(b, t, Routed),
            balance.view(b, t, 2), probs, routedMask, aux).MoveToOuterDisposeScope();
    }

    /// <summary>x [B, T, d] → y [B, T, d]; records <see cref="LastRouting"/>.</summary>
    public override Tensor forward(Tensor x)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        var routing = Route(x);
        current = routing;
        Tensor y;
        try { y = base.forward(x); }
        finally { current = null; }
        LastRouting?.Dispose();
        LastRouting = routing.DetachFromDisposeScope();
        return y.MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { LastRouting?.Dispose(); LastRouting = null; }
        base.Dispose(disposing);
    }

    /// <summary>
    /// z [B, T, H, Dv]: the shared heads by the base's dense attention; the routed heads only from the tokens that chose them
    /// (<see cref="MohPath.Gather"/>), or every head dense and then masked (<see cref="MohPath.Masked"/>, also taken while a
    /// hook listens on the scores or pattern, which are dense T×T by definition).
    /// </summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var routing = current ?? Route(x);
        if (Path == MohPath.Masked || PatternObserved || Routed == 0)
            return base.Mix(q, k, v, x) * routing.Active.unsqueeze(-1);                 // dense, unchosen heads zeroed
        var pos = torch.arange(q.size(1), device: q.device);
        var zRouted = GatherRouted(q.narrow(2, Shared, Routed), k.narrow(2, Shared, Routed), v.narrow(2, Shared, Routed),
            routing.Active.narrow(2, Shared, Routed));
        if (Shared == 0) return zRouted;
        var zShared = Attend(q.narrow(2, 0, Shared), k.narrow(2, 0, Shared), v.narrow(2, 0, Shared), pos, pos).Z;
        return torch.cat(new[] { zShared, zRouted }, 2);
    }

    /// <summary>
    /// Routed heads by gather/scatter: for each sequence b and routed head e, the rows {t : e ∈ S_t} (padded to the largest
    /// count C with unchosen rows whose result is replaced by 0) attend causally over the keys; the results go back to
    /// their rows. q, k [B, T, E, Dk], v [B, T, E, Dv], active [B, T, E] 0/1 → z [B, T, E, Dv] (0 where unchosen).
    /// </summary>
    static Tensor GatherRouted(Tensor q, Tensor k, Tensor v, Tensor active)
    {
        long b = q.size(0), t = q.size(1), e = q.size(2), dk = q.size(3), dv = v.size(3);
        var chosen = active.permute(0, 2, 1).gt(0.5);                                   // [B, E, T]
        var tIdx = torch.arange(t, device: q.device);
        var (_, order) = torch.where(chosen, tIdx, tIdx + t).sort(-1);                  // chosen rows first, in time order
        var counts = chosen.sum(-1);                                                    // [B, E]
        long c = counts.max().item<long>();                                             // C: the most rows any (b, e) needs
        var zeros = torch.zeros(b, e, t, dv, dtype: v.dtype, device: v.device);
        if (c == 0) return zeros.permute(0, 2, 1, 3);
        var rows = order.narrow(-1, 0, c);                                              // [B, E, C]
        var valid = torch.arange(c, device: q.device).lt(counts.unsqueeze(-1)).unsqueeze(-1);   // [B, E, C, 1]
        var qh = q.permute(0, 2, 1, 3);                                                 // [B, E, T, Dk]
        var kh = k.permute(0, 2, 1, 3);
        var vh = v.permute(0, 2, 1, 3);
        var qg = qh.gather(2, rows.unsqueeze(-1).expand(b, e, c, dk));                  // q_t for the chosen t: [B, E, C, Dk]
        var s = qg.matmul(kh.transpose(-2, -1)) * (1.0 / Math.Sqrt(dk));               // q_t·k_j / √Dk: [B, E, C, T]
        s = s.masked_fill(tIdx.view(1, 1, 1, t) > rows.unsqueeze(-1), double.NegativeInfinity);   // j ≤ t only
        var a = torch.softmax(s, -1).matmul(vh);                                        // Σ_j A_tj v_j
        var z = torch.where(valid, a, torch.zeros_like(a));                             // padding → 0 (where, not ×0: a NaN stays out)
        return zeros.scatter(2, rows.unsqueeze(-1).expand(b, e, c, dv), z).permute(0, 2, 1, 3);   // back to rows: [B, T, E, Dv]
    }

    /// <summary>y = Σ_i g_i · z_i W_O^i + b_O = (z ⊙ g) W_O: the gates multiply each head's output before W_O.</summary>
    protected override Tensor Output(Tensor z, Tensor x)
    {
        var gates = (current ?? Route(x)).Gates;                                        // decode steps route their token here
        return base.Output(z * gates.unsqueeze(-1), x);
    }

    void CheckInput(Tensor x)
    {
        Guard.NotNull(x, nameof(x));
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.FloatingPoint(x, nameof(x));
        if (x.size(2) != DModel) throw new ArgumentException($"x has width {x.size(2)}, the mixer d = {DModel}: {Guard.ShapeText(x)}.", nameof(x));
    }
}
