using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>What an MoE layer returns: y [B, T, d], the routing of its B·T tokens, and the load-balance loss L_aux.</summary>
public sealed record MoeOutput(Tensor Output, Routing Routing, Tensor AuxLoss);

/// <summary>
/// A mixture-of-experts FFN: E experts, each a <see cref="TinyMlp"/>, and an <see cref="ExpertRouter"/>; each token runs
/// only through its k experts (dispatch by index, gather back by <c>index_add</c>), with no capacity limit (no token is
/// dropped). The dense loop over every expert is its naive twin (<see cref="MixtureOfExpertsNaive"/>).
/// </summary>
/// <remarks>
/// y_t = Σ_{i ∈ S_t} g_{t,i} · FFN_i(x_t)          (S_t, g from the router; soft: S_t = all experts, g = p_t)
/// L_aux = E · Σ_i f_i P_i                          (<see cref="LoadBalanceLoss"/>)
/// Dispatch: for each expert i, the tokens {t : i ∈ S_t} are gathered, run through FFN_i once, scaled by their gates
/// and added back at their rows; an expert that receives no token is not run (its parameters get no gradient).
/// </remarks>
public sealed class MixtureOfExperts : nn.Module<Tensor, Tensor>
{
    readonly ExpertRouter router;
    readonly ModuleList<TinyMlp> experts;

    /// <summary>E fresh experts of width <paramref name="hidden"/> and a fresh router.</summary>
    public MixtureOfExperts(int dModel, int hidden, int experts, int topK, RouterMode mode = RouterMode.TopK, bool renormalise = true)
        : this(Enumerable.Range(0, Math.Max(experts, 0)).Select(_ => new TinyMlp(dModel, hidden)).ToList(),
               new ExpertRouter(dModel, experts, topK, mode, renormalise))
    {
    }

    /// <summary>Given experts (e.g. copies of a dense FFN, or the FFNs of N branched models) and a router over them.</summary>
    public MixtureOfExperts(IReadOnlyList<TinyMlp> experts, ExpertRouter router) : base(nameof(MixtureOfExperts))
    {
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(router);
        if (experts.Count == 0) throw new ArgumentException("give at least one expert.", nameof(experts));
        if (experts.Count != router.Experts)
            throw new ArgumentException($"the router routes over {router.Experts} experts, {experts.Count} were given.", nameof(router));
        long d = router.Weight.weight!.shape[1];
        for (int i = 0; i < experts.Count; i++)
            if (experts[i].In.weight!.shape[1] != d || experts[i].Out.weight!.shape[0] != d)
                throw new ArgumentException($"expert {i} maps {experts[i].In.weight!.shape[1]} → {experts[i].Out.weight!.shape[0]}, the router's width is {d}.",
                    nameof(experts));
        this.router = router;
        this.experts = new ModuleList<TinyMlp>(experts.ToArray());
        RegisterComponents();
    }

    public ExpertRouter Router => router;
    public IReadOnlyList<TinyMlp> Experts => experts.ToList();
    /// <summary>d.</summary>
    public long DModel => router.Weight.weight!.shape[1];

    /// <summary>
    /// L_aux of the last <c>forward</c> call, still in the autograd graph: add α·L_aux to the loss. The module owns it until
    /// its next forward call (or its disposal), so it survives the dispose scopes of the models around it (a TinyGpt's
    /// forward pass has its own scope, which would otherwise free it before the training step reads it).
    /// </summary>
    public Tensor? LastAuxLoss { get; private set; }

    /// <summary>x [B, T, d] → y [B, T, d] (records <see cref="LastAuxLoss"/>).</summary>
    public override Tensor forward(Tensor x)
    {
        var result = Forward(x);
        LastAuxLoss?.Dispose();
        LastAuxLoss = result.AuxLoss.DetachFromDisposeScope();
        return result.Output;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { LastAuxLoss?.Dispose(); LastAuxLoss = null; }
        base.Dispose(disposing);
    }

    /// <summary>x [..., d] → y [..., d], the routing of the flattened tokens and L_aux.</summary>
    public MoeOutput Forward(Tensor x)
    {
        Guard.NotNull(x, nameof(x));
        if (x.dim() < 2 || x.shape[^1] != DModel) throw new ArgumentException($"x must be [..., {DModel}], got {Guard.ShapeText(x)}.", nameof(x));
        using var scope = NewDisposeScope();
        var flat = x.reshape(-1, DModel);
        var routing = router.Route(flat);
        var y = Dispatch(flat, routing, (i, xs) => experts[i].call(xs)).reshape(x.shape);
        var aux = LoadBalanceLoss.Compute(routing);
        return new MoeOutput(y.MoveToOuterDisposeScope(),
            new Routing(routing.Logits.MoveToOuterDisposeScope(), routing.Probabilities.MoveToOuterDisposeScope(),
                routing.Indices.MoveToOuterDisposeScope(), routing.Gates.MoveToOuterDisposeScope()),
            aux.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// y_t = Σ_{i∈S_t} g_{t,i} expert(i, x_t) for x [N, d] by dispatch and gather: each expert runs once on the tokens
    /// routed to it (none: not run). <paramref name="expert"/>(i, x_sub [M, d]) → [M, d_out].
    /// </summary>
    public static Tensor Dispatch(Tensor x, Routing routing, Func<int, Tensor, Tensor> expert)
    {
        Guard.Rank(x, 2, nameof(x), "N tokens, d");
        ArgumentNullException.ThrowIfNull(routing);
        ArgumentNullException.ThrowIfNull(expert);
        if (routing.Indices.shape[0] != x.shape[0])
            throw new ArgumentException($"routing covers {routing.Indices.shape[0]} tokens, x has {x.shape[0]}.", nameof(routing));
        using var scope = NewDisposeScope();
        Tensor? y = null;
        for (int i = 0; i < routing.Experts; i++)
        {
            var hit = routing.Indices.eq(i);                                            // [N, k]: slot of expert i per token
            var tokens = hit.any(1).nonzero().squeeze(1);                               // {t : i ∈ S_t}
            if (tokens.shape[0] == 0) continue;                                         // an expert with no token is not run
            var gate = (routing.Gates * hit).sum(1).index_select(0, tokens);            // g_{t,i} (i occurs once in S_t)
            var out_i = expert(i, x.index_select(0, tokens)) * gate.unsqueeze(1);       // g_{t,i} · FFN_i(x_t)
            y ??= torch.zeros(new[] { x.shape[0], out_i.shape[1] }, dtype: out_i.dtype, device: out_i.device);
            y = y.index_add(0, tokens, out_i, 1.0);                                         // Σ back at the tokens' rows
        }
        return (y ?? torch.zeros_like(x)).MoveToOuterDisposeScope();
    }
}
