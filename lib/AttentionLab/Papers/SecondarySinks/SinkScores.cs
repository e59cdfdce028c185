using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SecondarySinks;

/// <summary>The paper's per-token sink score and its two interventions on an MLP output (injection along a direction, rescaling aligned outputs).</summary>
/// <remarks>
/// Sink score of token j at layer l (spec §2): a_j^{(l)} = mean_h mean_{i ≥ j} A^{l,h}_{i,j} (causal; an encoder averages over
/// every query i), then averaged over the batch. Unlike <see cref="HeadScores.SinkScore"/> the query i = j is kept, as in the
/// paper, and the score is per token (every key j), averaged over heads.
/// Injection (spec §4 ii): m_p^{(l)} ← m_p^{(l)} + α·u at hook <c>blocks.l.hook_mlp_out</c>, u = h_b^{(l)} / ‖h_b^{(l)}‖.
/// Rescaling (the code's steering, spec §2): for i ≥ 3 with cos(m_i^{(l)}, d) &gt; 0.98, m_i ← τ · m_i / ‖m_i‖ (τ = 100 in the code).
/// </remarks>
public static class SinkScores
{
    /// <summary>The code's alignment threshold for marking an MLP output as a sink-maker.</summary>
    public const double AlignedCosine = 0.98;

    /// <summary>The code's default target norm τ.</summary>
    public const double DefaultTau = 100;

    /// <summary>Positions the code never rescales (0–2: the BOS and its neighbours).</summary>
    public const int SkippedPositions = 3;

    /// <summary>Per-token sink scores [L, T] (float64) from patterns [L, B, H, T, T]: mean over heads, queries i ≥ j (all i when not causal), batch.</summary>
    public static Tensor PerToken(Tensor patterns, bool causal = true)
    {
        Guard.Rank(patterns, 5, nameof(patterns), "L, B, H, T, T");
        Guard.FloatingPoint(patterns, nameof(patterns));
        if (patterns.shape[3] != patterns.shape[4])
            throw new ArgumentException($"patterns must be square in the last two dims, got {Guard.ShapeText(patterns)}.", nameof(patterns));
        using var scope = NewDisposeScope();
        long t = patterns.shape[4];
        var a = patterns.to(float64);
        if (!causal) return a.mean(new long[] { 1, 2, 3 }).MoveToOuterDisposeScope();           // mean over b, h, all queries i
        var below = torch.ones(t, t, dtype: float64, device: a.device).tril();                 // i ≥ j
        var count = torch.arange(t, 0, -1, dtype: float64, device: a.device);                  // |{i ≥ j}| = T − j
        var column = (a * below).sum(3);                                                         // Σ_{i ≥ j} A_ij  [L, B, H, T]
        return (column / count).mean(new long[] { 1, 2 }).MoveToOuterDisposeScope();
    }

    /// <summary>Per-token sink scores [L, T] from every layer's hook_pattern in <paramref name="cache"/>.</summary>
    public static Tensor PerToken(ActivationCache cache, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        return PerToken(HeadScores.Patterns(cache), causal).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A hook adding <paramref name="norm"/> · u (u = <paramref name="direction"/> / ‖direction‖) to the MLP output of block
    /// <paramref name="layer"/> at <paramref name="position"/> in every sequence (spec §3 <c>InjectDirection</c>, on <see cref="Interventions.Inject"/>).
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Fn) InjectDirection(IHookedModel model, int layer, int position, Tensor direction,
        double norm)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.Rank(direction, 1, nameof(direction), "d");
        Guard.FloatingPoint(direction, nameof(direction));
        if (!double.IsFinite(norm)) throw new ArgumentException($"norm must be finite, got {norm}.", nameof(norm));
        using var scope = NewDisposeScope();
        double length = direction.to(float64).norm().item<double>();
        if (!(length > 0) || !double.IsFinite(length))
            throw new ArgumentException($"direction must be finite and non-zero, ‖d‖ = {length}.", nameof(direction));
        var unit = (direction / length).detach().clone().DetachFromDisposeScope();              // u = d / ‖d‖ (kept by the hook)
        return Interventions.Inject(model, "mlp_out", layer, position, unit, norm);
    }

    /// <summary>
    /// The code's steering on MLP outputs [B, T, D]: every position i ≥ <paramref name="skip"/> whose output has
    /// cos(m_i, d) &gt; <paramref name="cos"/> is rescaled to norm <paramref name="tau"/>. Returns the new outputs and the mask [B, T] of rescaled positions.
    /// </summary>
    public static (Tensor Output, Tensor Aligned) RescaleAligned(Tensor mlpOut, Tensor direction, double cos = AlignedCosine, double tau = DefaultTau,
        int skip = SkippedPositions)
    {
        Guard.Rank(mlpOut, 3, nameof(mlpOut), "B, T, D");
        Guard.Rank(direction, 1, nameof(direction), "D");
        Guard.FloatingPoint(mlpOut, nameof(mlpOut));
        Guard.Dim(direction, 0, mlpOut.shape[2], nameof(direction), "D of mlpOut");
        if (!(cos >= -1 && cos < 1)) throw new ArgumentException($"cos must be in [−1, 1), got {cos}.", nameof(cos));
        if (!double.IsFinite(tau) || tau < 0) throw new ArgumentException($"tau must be finite and ≥ 0, got {tau}.", nameof(tau));
        if (skip < 0) throw new ArgumentException($"skip must be ≥ 0, got {skip}.", nameof(skip));
        using var scope = NewDisposeScope();
        var d = direction.to(mlpOut.dtype).to(mlpOut.device);
        var norms = mlpOut.norm(-1, keepdim: true);                                              // ‖m_i‖  [B, T, 1]
        var c = (mlpOut * d).sum(-1) / (norms.squeeze(-1) * d.norm());                          // cos(m_i, d)  [B, T]
        var late = torch.arange(mlpOut.shape[1], device: mlpOut.device).ge(skip).unsqueeze(0);  // i ≥ skip
        var aligned = c.gt(cos).logical_and(late);
        var rescaled = mlpOut / norms * tau;                                                     // τ · m_i / ‖m_i‖
        var output = torch.where(aligned.unsqueeze(-1), rescaled, mlpOut);
        return (output.MoveToOuterDisposeScope(), aligned.MoveToOuterDisposeScope());
    }
}
