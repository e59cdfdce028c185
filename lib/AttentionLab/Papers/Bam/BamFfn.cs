using AttentionLab.Models;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>
/// The FFN-MoE of a BAM/BTX block: a <see cref="MixtureOfExperts"/> (top-k, renormalised gates, no token dropped) that keeps
/// the load-balance loss of its last forward pass alive past the model's dispose scopes (<see cref="LastAuxLoss"/>, still in the
/// autograd graph, for the training loss) and a detached copy of its router probabilities (<see cref="LastProbabilities"/>).
/// </summary>
/// <remarks>y_t = Σ_{i∈topk} g_{t,i} E_i(x_t), g = softmax over the kept logits;  L_aux = E · Σ_i f_i P_i (Switch).</remarks>
public sealed class BamFfn : nn.Module<Tensor, Tensor>
{
    readonly MixtureOfExperts moe;
    Tensor? aux, probs;

    public BamFfn(MixtureOfExperts moe) : base(nameof(BamFfn))
    {
        ArgumentNullException.ThrowIfNull(moe);
        this.moe = moe;
        RegisterComponents();
    }

    /// <summary>The mixture.</summary>
    public MixtureOfExperts Moe => moe;

    /// <summary>L_aux of the last forward pass (owned here until the next one; add α·L_aux to the loss).</summary>
    public Tensor? LastAuxLoss => aux;

    /// <summary>p = softmax(W_f x) [N, E] of the last forward pass's tokens (detached, owned here).</summary>
    public Tensor? LastProbabilities => probs;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var result = moe.Forward(x);
        aux?.Dispose();
        probs?.Dispose();
        aux = result.AuxLoss.DetachFromDisposeScope();
        probs = result.Routing.Probabilities.detach().clone().DetachFromDisposeScope();
        return result.Output.MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            aux?.Dispose();
            probs?.Dispose();
        }
        base.Dispose(disposing);
    }
}
