using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// An attentional bias (Miras): the inner loss ℓ(y, v) an associative memory minimises online, with y = M(k) its answer to
/// key k and v the value it should give. <see cref="Loss"/> is what the naive twin differentiates with autograd;
/// <see cref="Gradient"/> is the closed form ∂ℓ/∂y the fast forms use (the two are written independently and tested equal).
/// </summary>
/// <remarks>
/// Shapes: y, v [..., Dv]; δ (a per-token threshold, only for <see cref="HuberBias"/>) [...]. The loss is one number per
/// token [...]; the gradient has y's shape. Conventions: the ℓ2 bias is Titans' ‖M(k) − v‖² (no ½); ℓp with p = 2 and
/// Huber with δ → ∞ reduce to it exactly.
/// </remarks>
public abstract class AttentionalBias
{
    /// <summary>Short name for tables and test names.</summary>
    public abstract string Name { get; }

    /// <summary>True when the loss needs a per-token threshold δ (Huber).</summary>
    public virtual bool NeedsDelta => false;

    /// <summary>ℓ(y, v) per token: y, v [..., Dv] → [...].</summary>
    public abstract Tensor Loss(Tensor y, Tensor v, Tensor? delta = null);

    /// <summary>∂ℓ/∂y in closed form: [..., Dv].</summary>
    public abstract Tensor Gradient(Tensor y, Tensor v, Tensor? delta = null);

    public override string ToString() => Name;

    /// <summary>Titans' ℓ2 bias ‖y − v‖² (Titans, Gated DeltaNet, Miras' TitansLmm preset).</summary>
    public static AttentionalBias L2 { get; } = new L2Bias();

    /// <summary>Dot-product (Hebbian) bias −2⟨y, v⟩: ℓ2 without ‖y‖², the update of linear attention.</summary>
    public static AttentionalBias DotProduct { get; } = new DotProductBias();

    /// <summary>Moneta's smoothed ℓp bias Σ_i ((y_i − v_i)² + ε)^{p/2} (default p = 3, ε = 1e-6).</summary>
    public static AttentionalBias Lp(double p = 3, double eps = 1e-6) => new LpBias(p, eps);

    /// <summary>Yaad's Huber bias with a per-token threshold δ_t (given by the caller).</summary>
    public static AttentionalBias Huber { get; } = new HuberBias();
}

/// <summary>ℓ(y, v) = ‖y − v‖²; ∂ℓ/∂y = 2(y − v).</summary>
public sealed class L2Bias : AttentionalBias
{
    public override string Name => "l2";

    public override Tensor Loss(Tensor y, Tensor v, Tensor? delta = null) => (y - v).square().sum(-1);

    public override Tensor Gradient(Tensor y, Tensor v, Tensor? delta = null) => 2 * (y - v);
}

/// <summary>ℓ(y, v) = −2⟨y, v⟩ (ℓ2 without the ‖y‖² term); ∂ℓ/∂y = −2v: the memory only adds v kᵀ, as linear attention does.</summary>
public sealed class DotProductBias : AttentionalBias
{
    public override string Name => "dot";

    public override Tensor Loss(Tensor y, Tensor v, Tensor? delta = null) => -2 * (y * v).sum(-1);

    public override Tensor Gradient(Tensor y, Tensor v, Tensor? delta = null) => -2 * v;
}

/// <summary>
/// ℓp bias (Moneta), smoothed: ℓ = Σ_i (e_i² + ε)^{p/2} with e = y − v; ∂ℓ/∂e_i = p e_i (e_i² + ε)^{p/2 − 1}.
/// </summary>
/// <remarks>
/// The paper writes the gradient p·sign(e)|e|^{p−1} and smooths sign ≈ tanh(a·e), |e| ≈ √(e² + ε). We smooth inside the
/// loss instead (|e| ≈ √(e² + ε) only), so the update is the exact gradient of a loss the naive twin can differentiate;
/// it tends to p·sign(e)|e|^{p−1} as ε → 0, and with p = 2 it is 2e exactly (the ℓ2 bias) for every ε.
/// </remarks>
public sealed class LpBias : AttentionalBias
{
    public LpBias(double p, double eps)
    {
        if (!(p >= 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "p must be ≥ 1.");
        if (!(eps >= 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be ≥ 0.");
        if (p < 2 && eps == 0) throw new ArgumentOutOfRangeException(nameof(eps), eps, "p < 2 needs eps > 0 (|e|^{p−1} has no derivative at 0).");
        P = p; Eps = eps;
    }

    /// <summary>The exponent p (Moneta: 3).</summary>
    public double P { get; }
    /// <summary>The smoothing ε inside √(e² + ε).</summary>
    public double Eps { get; }

    public override string Name => $"l{P:0.##}";

    public override Tensor Loss(Tensor y, Tensor v, Tensor? delta = null) => ((y - v).square() + Eps).pow(P / 2).sum(-1);

    public override Tensor Gradient(Tensor y, Tensor v, Tensor? delta = null)
    {
        var e = y - v;
        return P == 2 ? 2 * e : P * e * (e.square() + Eps).pow(P / 2 - 1);       // p e (e² + ε)^{p/2−1}
    }
}

/// <summary>
/// Huber bias (Yaad) with a per-token threshold δ: ℓ = ‖e‖² when ‖e‖₂ ≤ δ, else 2δ‖e‖₁ − δ² (e = y − v);
/// ∂ℓ/∂y = 2e, or 2δ·sign(e) beyond the threshold.
/// </summary>
/// <remarks>
/// Miras (Yaad): "if ‖M(k_t) − v_t‖ ≤ δ_t use ∇ℓ2, otherwise δ_t·∇ℓ1", with ℓ2 = ½‖e‖² and ℓ1 = ‖e‖₁. Scaled by 2 here so
/// that the inner branch is the ℓ2 bias ‖e‖² (Titans' convention) and δ → ∞ gives it exactly. As in the paper the switch
/// is on the vector norm and the outer branch is the ℓ1 gradient, so the update jumps at ‖e‖ = δ (the paper's choice).
/// </remarks>
public sealed class HuberBias : AttentionalBias
{
    public override string Name => "huber";

    public override bool NeedsDelta => true;

    public override Tensor Loss(Tensor y, Tensor v, Tensor? delta = null)
    {
        ArgumentNullException.ThrowIfNull(delta);
        var e = y - v;
        var sq = e.square().sum(-1);                                                       // ‖e‖²
        var inside = sq.sqrt() <= delta;                                                   // ‖e‖₂ ≤ δ
        var abs = e * Sign(e).detach();                                                    // |e| = e·sign(e), the sign held: abs's value and slope, NaN kept
        return torch.where(inside, sq, 2 * delta * abs.sum(-1) - delta.square());          // ‖e‖² or 2δ‖e‖₁ − δ²
    }

    public override Tensor Gradient(Tensor y, Tensor v, Tensor? delta = null)
    {
        ArgumentNullException.ThrowIfNull(delta);
        var e = y - v;
        var inside = (e.square().sum(-1, keepdim: true).sqrt() <= delta.unsqueeze(-1));
        return torch.where(inside, 2 * e, 2 * delta.unsqueeze(-1) * Sign(e));                // 2e or 2δ sign(e)
    }

    /// <summary>sign(e) with NaN kept as NaN (torch's sign maps NaN to 0, which would hide a NaN input).</summary>
    static Tensor Sign(Tensor e) => torch.where(e.isnan(), e, e.sign());
}

/// <summary>
/// Retention (Miras): how the memory forgets. The memory keeps an accumulator A per weight matrix and answers with the
/// weights W = R(A). Every retention shares the step A_t = (1 − α_t) A_{t−1} + S_t (S the momentum, or −θ_t ∇ℓ without);
/// the retention chooses the map R and the accumulator's meaning.
/// </summary>
/// <remarks>
///   L2 decay (Titans):      A = W,       R(A) = A                               W_t = (1 − α_t) W_{t−1} + S_t
///   ℓq normalise (Moneta):  A,           R(A) = A / ‖A‖_q^{q−2} (per matrix)    A_t = (1 − α_t) A_{t−1} + S_t
///   KL softmax (Memora):    A = log W,   R(A) = softmax_row(A)                   W_t = softmax((1 − α_t) log W_{t−1} + S_t)
/// Miras writes the keep factor as α_t and the step as η_t; here 1 − α_t is the keep factor (Titans' forget gate) and θ_t
/// the step. Gradients are always taken with respect to W = R(A).
/// </remarks>
public abstract class Retention
{
    /// <summary>Short name for tables and test names.</summary>
    public abstract string Name { get; }

    /// <summary>W = R(A) on one weight matrix per head: A [..., out, in].</summary>
    public abstract Tensor Read(Tensor a);

    /// <summary>
    /// The accumulator in its canonical form (the KL retention keeps A = log W, row-normalised by log-softmax; the others
    /// are canonical already). R(Canonical(A)) = R(A).
    /// </summary>
    public virtual Tensor Canonical(Tensor a) => a;

    public override string ToString() => Name;

    /// <summary>Titans' weight decay: W = A.</summary>
    public static Retention L2Decay { get; } = new L2DecayRetention();

    /// <summary>Memora's KL retention: W = softmax over each row of the accumulator A = log W.</summary>
    public static Retention KlSoftmax { get; } = new KlSoftmaxRetention();

    /// <summary>Moneta's ℓq retention: W = A / ‖A‖_q^{q−2}, the norm over each whole weight matrix (default q = 4).</summary>
    public static Retention LqNormalize(double q = 4, double eps = 1e-6) => new LqRetention(q, eps);
}

/// <summary>W = A.</summary>
public sealed class L2DecayRetention : Retention
{
    public override string Name => "l2-decay";

    public override Tensor Read(Tensor a) => a;
}

/// <summary>W = softmax_row(A) with A = log W (rows: the last dimension, so each output of M(k) = W k weighs the key's entries).</summary>
public sealed class KlSoftmaxRetention : Retention
{
    public override string Name => "kl-softmax";

    public override Tensor Read(Tensor a) => a.softmax(-1);

    public override Tensor Canonical(Tensor a) => torch.nn.functional.log_softmax(a, -1);
}

/// <summary>
/// W = A / max(‖A‖_q, ε)^{q−2}, ‖A‖_q = (Σ |a|^q)^{1/q} over the whole matrix of one head. The clamp keeps A = 0 at W = 0
/// (and its gradient finite) for q &gt; 2.
/// </summary>
public sealed class LqRetention : Retention
{
    public LqRetention(double q, double eps)
    {
        if (!(q >= 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "q must be ≥ 1.");
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be > 0.");
        Q = q; Eps = eps;
    }

    /// <summary>The norm's exponent q (Moneta: 4).</summary>
    public double Q { get; }
    /// <summary>Lower clamp of ‖A‖_q.</summary>
    public double Eps { get; }

    public override string Name => $"lq{Q:0.##}";

    public override Tensor Read(Tensor a)
    {
        if (Q == 2) return a;                                                              // ‖A‖^0 = 1
        var sum = a.abs().pow(Q).sum(new long[] { -2, -1 }, keepdim: true);                 // Σ |a|^q
        return a / sum.clamp_min(Math.Pow(Eps, Q)).pow((Q - 2) / Q);                        // A / max(‖A‖_q, ε)^{q−2}
    }
}
