using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.PreplanAnchor;

/// <summary>
/// GRPO with critical-token credit (P10 spec §2; Shao et al. 2024's group-relative advantage):
/// <code>
/// Â_i     = (R_i − mean_g R) / (std_g R + ε)                    (per group of G rollouts of one prompt; std unbiased, as TRL's GRPO)
/// w_t     = 1 + γ · 𝟙[t ∈ critical],  then w ← w / mean_t w      (renormalised: mean_t w_t = 1 per response)
/// Â_{i,t} = Â_i · w_t
/// L       = −(1/G) Σ_i (1/|o_i|) Σ_t min(ρ_{i,t} Â_{i,t}, clip(ρ_{i,t}, 1 − ε_c, 1 + ε_c) Â_{i,t}),  ρ = π_θ / π_old
/// </code>
/// No KL term (β = 0; see docs/decisions.md). With one update per batch ρ = 1 and the gradient is REINFORCE's with Â_{i,t}.
/// </summary>
public static class Grpo
{
    /// <summary>ε in the advantage's denominator.</summary>
    public const double Epsilon = 1e-4;

    /// <summary>Group-relative advantages [N] of rewards [N] laid out as N/G consecutive groups of <paramref name="groupSize"/>.</summary>
    public static Tensor SequenceAdvantages(Tensor rewards, int groupSize)
    {
        Guard.Rank(rewards, 1, nameof(rewards), "N");
        if (groupSize < 2 || rewards.size(0) % groupSize != 0)
            throw new ArgumentException($"groupSize must be ≥ 2 and divide N = {rewards.size(0)}, got {groupSize}.", nameof(groupSize));
        using var scope = NewDisposeScope();
        var g = rewards.reshape(-1, groupSize);
        var adv = (g - g.mean(new long[] { 1 }, keepdim: true)) / (g.std(1, unbiased: true, keepdim: true) + Epsilon);
        return adv.reshape(-1).MoveToOuterDisposeScope();
    }

    /// <summary>Token weights [N, n] from critical flags [N, n]: 1 + γ·flag, renormalised to mean 1 per response when asked.</summary>
    public static Tensor TokenWeights(Tensor critical, double gamma, bool renormalise = true)
    {
        Guard.Rank(critical, 2, nameof(critical), "N, n");
        if (!(gamma >= 0) || double.IsInfinity(gamma)) throw new ArgumentException($"gamma must be finite and ≥ 0, got {gamma}.", nameof(gamma));
        using var scope = NewDisposeScope();
        var w = 1 + gamma * critical.to(ScalarType.Float32);
        if (renormalise) w = w / w.mean(new long[] { 1 }, keepdim: true);
        return w.MoveToOuterDisposeScope();
    }

    /// <summary>Token advantages [N, n] = Â_i [N] · w_t [N, n].</summary>
    public static Tensor TokenAdvantages(Tensor sequenceAdvantages, Tensor weights)
    {
        Guard.Rank(sequenceAdvantages, 1, nameof(sequenceAdvantages), "N");
        Guard.Rank(weights, 2, nameof(weights), "N, n");
        if (weights.size(0) != sequenceAdvantages.size(0))
            throw new ArgumentException($"weights has {weights.size(0)} rows, the advantages {sequenceAdvantages.size(0)}.", nameof(weights));
        using var scope = NewDisposeScope();
        return (sequenceAdvantages.unsqueeze(1) * weights).MoveToOuterDisposeScope();
    }

    /// <summary>The clipped surrogate loss (scalar) of log-probabilities [N, n] under the policy (with gradient) and the rollout policy.</summary>
    public static Tensor Loss(Tensor logProbs, Tensor oldLogProbs, Tensor tokenAdvantages, double clip = 0.2)
    {
        Guard.Rank(logProbs, 2, nameof(logProbs), "N, n");
        if (!oldLogProbs.shape.SequenceEqual(logProbs.shape) || !tokenAdvantages.shape.SequenceEqual(logProbs.shape))
            throw new ArgumentException($"oldLogProbs {Guard.ShapeText(oldLogProbs)} and tokenAdvantages {Guard.ShapeText(tokenAdvantages)} must match " +
                $"logProbs {Guard.ShapeText(logProbs)}.", nameof(tokenAdvantages));
        if (!(clip > 0 && clip < 1)) throw new ArgumentException($"clip must be in (0, 1), got {clip}.", nameof(clip));
        using var scope = NewDisposeScope();
        var ratio = (logProbs - oldLogProbs.detach()).exp();
        var surrogate = torch.minimum(ratio * tokenAdvantages, ratio.clamp(1 - clip, 1 + clip) * tokenAdvantages);
        return (-surrogate.mean(new long[] { 1 }).mean()).MoveToOuterDisposeScope();
    }
}
