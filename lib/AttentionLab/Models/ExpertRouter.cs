using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>How a router turns logits into mixture weights.</summary>
public enum RouterMode
{
    /// <summary>Keep the k largest of softmax(logits) per token (optionally renormalised to sum to 1); the others get 0.</summary>
    TopK,
    /// <summary>Every expert, weighted by softmax(logits) (BAM's soft mixture of attention; the gates sum to 1).</summary>
    Soft,
}

/// <summary>
/// The routing of N tokens over E experts: router logits and probabilities p = softmax(logits) [N, E], and per token the
/// chosen experts <see cref="Indices"/> [N, k] with their <see cref="Gates"/> [N, k] (k = E for a soft mixture).
/// </summary>
public sealed record Routing(Tensor Logits, Tensor Probabilities, Tensor Indices, Tensor Gates)
{
    /// <summary>E.</summary>
    public long Experts => Logits.shape[1];
    /// <summary>k, experts per token.</summary>
    public long K => Indices.shape[1];

    /// <summary>The gates as a dense [N, E] matrix (0 for experts a token does not use); differentiable in the gates.</summary>
    public Tensor DenseGates()
    {
        using var scope = NewDisposeScope();
        return torch.zeros_like(Probabilities).scatter(1, Indices, Gates).MoveToOuterDisposeScope();
    }

    /// <summary>The 0/1 dispatch mask [N, E]: 1 where expert i is among token t's k.</summary>
    public Tensor Mask()
    {
        using var scope = NewDisposeScope();
        return torch.zeros_like(Probabilities).scatter(1, Indices, torch.ones_like(Gates)).detach().MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A token router: logits = x W_r (W_r [E, d], no bias, as Switch), then top-k gates (renormalised or raw) or a soft
/// mixture over all E experts (<see cref="RouterMode"/>). Used by MoE FFNs (BAM/BTX), mixtures of attention experts (BAM)
/// and mixtures of heads (MoH).
/// </summary>
/// <remarks>
/// p_t = softmax(W_r x_t) ∈ Δ^E
/// TopK, renormalised: S_t = topk(p_t, k), g_{t,i} = p_{t,i} / Σ_{j∈S_t} p_{t,j} = softmax over the k kept logits (Mixtral, BAM)
/// TopK, raw:          g_{t,i} = p_{t,i} for i ∈ S_t (Switch, k = 1: the gate keeps the router's gradient)
/// Soft:               g_t = p_t (every expert)
/// </remarks>
public sealed class ExpertRouter : nn.Module<Tensor, Tensor>
{
    readonly Linear w_r;

    /// <param name="dModel">d.</param>
    /// <param name="experts">E.</param>
    /// <param name="topK">k (ignored, = E, for <see cref="RouterMode.Soft"/>).</param>
    /// <param name="mode">Top-k or soft.</param>
    /// <param name="renormalise">Top-k gates renormalised to sum to 1 (default) or the raw probabilities.</param>
    /// <param name="zeroInit">W_r = 0 (every expert equally likely at the start; BAM allows random or zero).</param>
    public ExpertRouter(int dModel, int experts, int topK = 1, RouterMode mode = RouterMode.TopK, bool renormalise = true, bool zeroInit = false)
        : base(nameof(ExpertRouter))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(experts, nameof(experts));
        CheckMode(mode, topK, experts);
        (Experts, TopK, Mode, Renormalise) = (experts, mode == RouterMode.Soft ? experts : topK, mode, renormalise);
        w_r = nn.Linear(dModel, experts, hasBias: false);
        if (zeroInit) using (torch.no_grad()) w_r.weight!.zero_();
        RegisterComponents();
    }

    /// <summary>E.</summary>
    public int Experts { get; }
    /// <summary>k (E for a soft router).</summary>
    public int TopK { get; }
    public RouterMode Mode { get; }
    /// <summary>True: kept gates sum to 1.</summary>
    public bool Renormalise { get; }
    /// <summary>W_r [E, d].</summary>
    public Linear Weight => w_r;

    /// <summary>logits = x W_rᵀ: [..., E].</summary>
    public override Tensor forward(Tensor x) => w_r.call(x);

    /// <summary>Routes x [..., d] (flattened to N tokens): see <see cref="Select"/>.</summary>
    public Routing Route(Tensor x)
    {
        Guard.NotNull(x, nameof(x));
        if (x.dim() < 1 || x.shape[^1] != w_r.weight!.shape[1])
            throw new ArgumentException($"x must end in the router width {w_r.weight!.shape[1]}, got {Guard.ShapeText(x)}.", nameof(x));
        using var scope = NewDisposeScope();
        var logits = call(x.reshape(-1, x.shape[^1]));
        var r = Select(logits, TopK, Mode, Renormalise);
        return new Routing(r.Logits.MoveToOuterDisposeScope(), r.Probabilities.MoveToOuterDisposeScope(), r.Indices.MoveToOuterDisposeScope(),
            r.Gates.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Routing from logits [N, E] (kept as the routing's Logits): p = softmax(logits); top-k by <c>topk</c> on the logits (the same order as p), gates
    /// softmax over the kept logits (renormalised) or p gathered (raw); soft: every expert with gate p.
    /// </summary>
    public static Routing Select(Tensor logits, int topK, RouterMode mode = RouterMode.TopK, bool renormalise = true)
    {
        Guard.Rank(logits, 2, nameof(logits), "N tokens, E experts");
        Guard.FloatingPoint(logits, nameof(logits));
        long n = logits.shape[0], e = logits.shape[1];
        CheckMode(mode, topK, e);
        using var scope = NewDisposeScope();
        var probs = torch.softmax(logits, -1);                                          // p_t = softmax(W_r x_t)
        Tensor indices, gates;
        if (mode == RouterMode.Soft)
            (indices, gates) = (torch.arange(e, device: logits.device).unsqueeze(0).expand(n, e).contiguous(), probs.view(n, e));   // own handle
        else
        {
            var (top, idx) = logits.topk(topK, dim: -1);                                // S_t: the k largest logits = the k largest p
            indices = idx;
            gates = renormalise ? torch.softmax(top, -1)                                // p_i / Σ_{j∈S} p_j
                                : probs.gather(1, idx);                                 // p_i
        }
        // logits stay the caller's tensor (moving them out again would lift them past the caller's scope)
        return new Routing(logits, probs.MoveToOuterDisposeScope(), indices.MoveToOuterDisposeScope(), gates.MoveToOuterDisposeScope());
    }

    static void CheckMode(RouterMode mode, long topK, long experts)
    {
        if (!Enum.IsDefined(mode)) throw new ArgumentException($"mode {(int)mode} is not a known RouterMode.", nameof(mode));
        if (mode == RouterMode.TopK && (topK < 1 || topK > experts))
            throw new ArgumentException($"topK must be in 1 … E = {experts}, got {topK}.", nameof(topK));
    }
}

/// <summary>
/// The auxiliary load-balance loss of Switch Transformers (Fedus, Zoph and Shazeer 2021, arXiv 2101.03961, eqs. 4–6;
/// GShard, Lepikhin et al. 2020, uses the same product of dispatch fraction and mean gate), extended to top-k as MoH's code
/// does: L = E · Σ_i f_i · P_i, with f_i the fraction of tokens that use expert i and P_i the mean router probability.
/// </summary>
/// <remarks>
/// f_i = (1/N) Σ_t 1[i ∈ S_t]   (Σ_i f_i = k; not differentiable)      P_i = (1/N) Σ_t p_{t,i}   (carries the gradient)
/// L = E · Σ_i f_i P_i  (= E²·mean_i f_i P_i, MoH's form).  Uniform routing (p = 1/E, every expert used by k/E of the
/// tokens): L = k; top-1 Switch: L = 1 at balance, E when every token picks one expert with p = 1. Multiply by a
/// coefficient (Switch: α = 0.01) and add to the task loss. Implementations that want 1 at balance for top-k divide by k.
/// </remarks>
public static class LoadBalanceLoss
{
    /// <summary>L from the routing's probabilities and dispatch mask.</summary>
    public static Tensor Compute(Routing routing)
    {
        ArgumentNullException.ThrowIfNull(routing);
        using var scope = NewDisposeScope();
        return Compute(routing.Probabilities, routing.Mask()).MoveToOuterDisposeScope();
    }

    /// <summary>L = E · Σ_i f_i P_i from probabilities p [N, E] and a 0/1 mask [N, E] (a scalar).</summary>
    public static Tensor Compute(Tensor probabilities, Tensor mask)
    {
        Guard.Rank(probabilities, 2, nameof(probabilities), "N tokens, E experts");
        Guard.Rank(mask, 2, nameof(mask), "N tokens, E experts");
        if (!probabilities.shape.SequenceEqual(mask.shape))
            throw new ArgumentException($"mask {Guard.ShapeText(mask)} must match probabilities {Guard.ShapeText(probabilities)}.", nameof(mask));
        using var scope = NewDisposeScope();
        var f = mask.detach().to(probabilities.dtype).mean(new long[] { 0 });           // f_i
        var p = probabilities.mean(new long[] { 0 });                                   // P_i
        return ((f * p).sum() * probabilities.shape[1]).MoveToOuterDisposeScope();      // E · Σ_i f_i P_i
    }
}
