using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SynapticResonance;

/// <summary>
/// [ours] The resonance memory of P40 in its fast forms (the paper gives no equations; spec §2's operationalisation): a
/// relevance-gated Hebbian fast-weight memory, i.e. gated linear attention / a fast-weight programmer (Schmidhuber 1992;
/// Ba et al. 2016) whose write strength is a "resonance" gate between the token and a slow context trace.
/// </summary>
/// <remarks>
/// Per sequence, with x_t [d] the mixer's input, q_t, k_t, v_t [H, D] its heads and φ = elu + 1:
///   c_t = γ c_{t−1} + (1 − γ) x_t,  c_{−1} = 0                     (context trace; parallel: c_t = Σ_{s≤t} (1−γ) γ^{t−s} x_s)
///   r_t = σ(a · cos(x_t, c_{t−1}) + b)                             (resonance; cos = x·c / max(‖x‖‖c‖, ε), so r_0 = σ(b))
///   S_t = λ_h S_{t−1} + η_h r_t φ(v_t) φ(k_t)ᵀ,  S_{−1} = 0         (fast weights, [Dv, D] per head)
///   m_t = S_{t−1} φ(q_t) / √D                                      (read of the PRE-update state: causal)
/// The read goes through the shared engine <see cref="LinearAttention"/> with keys and values shifted by one token
/// (k′_t = φ(k_{t−1}), v′_t = η r_{t−1} φ(v_{t−1}), both 0 at t = 0) and log-decay log λ_h, so the engine's
/// o_t = Σ_{s≤t} λ^{t−s} (q′_t·k′_s) v′_s is exactly Σ_{s≤t−1} λ^{t−1−s} η r_s (φ(q_t)·φ(k_s)) φ(v_s) / √D = m_t.
/// </remarks>
public static class SynapticResonanceOps
{
    /// <summary>ε of the cosine's denominator.</summary>
    public const double CosineEps = 1e-8;

    /// <summary>c_{t−1} [B, T, d]: the trace before token t (0 at t = 0), from x [B, T, d] and γ (a 0-dim tensor in (0, 1)).</summary>
    public static Tensor PreviousTrace(Tensor x, Tensor gamma)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        long t = x.size(1);
        var idx = torch.arange(t, dtype: x.dtype, device: x.device);
        var lag = (idx.unsqueeze(1) - idx.unsqueeze(0));                                   // t − s
        var lower = lag.ge(0).to(x.dtype);
        var weights = (lag.clamp_min(0) * gamma.log()).exp() * (1 - gamma) * lower;         // (1−γ) γ^{t−s}, s ≤ t
        var c = torch.einsum("ts,bsd->btd", weights, x);                                   // c_t
        var zero = torch.zeros(new[] { x.size(0), 1, x.size(2) }, dtype: x.dtype, device: x.device);
        return torch.cat(new[] { zero, c.narrow(1, 0, t - 1) }, 1).MoveToOuterDisposeScope();
    }

    /// <summary>cos(x, c) = x·c / max(‖x‖‖c‖, ε) over the last dim.</summary>
    public static Tensor Cosine(Tensor x, Tensor c) =>
        (x * c).sum(-1) / (x.norm(-1, false, 2) * c.norm(-1, false, 2)).clamp_min(CosineEps);

    /// <summary>r [B, T] = σ(a · cos(x_t, c_{t−1}) + b).</summary>
    public static Tensor Resonance(Tensor x, Tensor a, Tensor b, Tensor gamma)
    {
        using var scope = NewDisposeScope();
        return torch.sigmoid(a * Cosine(x, PreviousTrace(x, gamma)) + b).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// m [B, T, H, Dv] = S_{t−1} φ(q_t)/√D by the engine's <paramref name="form"/>, from q, k [B, T, H, D], v [B, T, H, Dv],
    /// r [B, T], log λ [H] (≤ 0) and η [H] (≥ 0).
    /// </summary>
    public static Tensor Read(Tensor q, Tensor k, Tensor v, Tensor r, Tensor logLambda, Tensor eta, LinearForm form = LinearForm.Chunked, int chunkSize = 64)
    {
        Validate(q, k, v, r, logLambda, eta);
        using var scope = NewDisposeScope();
        var phiQ = Phi(q) / Math.Sqrt(q.size(3));
        var written = eta.view(1, 1, -1, 1) * r.unsqueeze(-1).unsqueeze(-1) * Phi(v);   // η_h r_t φ(v_t)
        var kShift = Shift(Phi(k));
        var vShift = Shift(written);
        var options = LinearAttentionOptions.Default with { ChunkSize = chunkSize };
        var result = LinearAttention.Run(form, phiQ, kShift, vShift, logLambda, options: options);   // its final state dies with the scope
        return result.Output.MoveToOuterDisposeScope();
    }

    /// <summary>φ(x) = elu(x) + 1 (positive features).</summary>
    public static Tensor Phi(Tensor x) => torch.nn.functional.elu(x, 1.0, false) + 1;

    /// <summary>x shifted one token later along dim 1, zero at t = 0.</summary>
    public static Tensor Shift(Tensor x)
    {
        var zero = torch.zeros_like(x.narrow(1, 0, 1));
        return torch.cat(new[] { zero, x.narrow(1, 0, x.size(1) - 1) }, 1);
    }

    /// <summary>Shape checks shared with <see cref="SynapticResonanceNaive"/>; ArgumentException names the argument.</summary>
    public static void Validate(Tensor q, Tensor k, Tensor v, Tensor r, Tensor logLambda, Tensor eta)
    {
        Guard.Qkv(q, k, v);
        Guard.Rank(r, 2, nameof(r), "B, T");
        if (r.size(0) != q.size(0) || r.size(1) != q.size(1))
            throw new ArgumentException($"r must be [B, T] = [{q.size(0)}, {q.size(1)}], got {Guard.ShapeText(r)}.", nameof(r));
        Guard.Rank(logLambda, 1, nameof(logLambda), "H");
        Guard.Dim(logLambda, 0, q.size(2), nameof(logLambda), "heads");
        Guard.Rank(eta, 1, nameof(eta), "H");
        Guard.Dim(eta, 0, q.size(2), nameof(eta), "heads");
    }
}
