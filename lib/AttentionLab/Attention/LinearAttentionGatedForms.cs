using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// The arithmetic of the linear-attention forms with a per-token log-decay gate g (a data-dependent decay, GLA / Mamba-2 /
/// Titans' forgetting gate): the same head-major layout as <see cref="LinearAttentionForms"/> (φq, φk [..., L, F],
/// v [..., L, Dv], S [..., F, Dv], z [..., F]) with g [..., L] — one log λ_t ≤ 0 per token and head, clamped to
/// ≥ <see cref="LinearAttentionForms.LogDecayFloor"/>.
/// </summary>
/// <remarks>
/// Recurrence: S_t = λ_t S_{t−1} + φk_t v_tᵀ, z_t = λ_t z_{t−1} + φk_t, λ_t = e^{g_t}. For one block of length L from (S₀, z₀)
/// and positions 0 … L−1 inside it, with the segment sums Γ_ij = Σ_{j&lt;s≤i} g_s (Γ_ii = 0) and the prefix sums c_i = Σ_{s≤i} g_s:
///   intra  o_i  ⟵ Σ_{j≤i} e^{Γ_ij} (φq_i·φk_j) v_j           = ((φQ φKᵀ) ⊙ D) V,   D_ij = e^{Γ_ij} for i ≥ j, else 0
///   inter  o_i  ⟵ e^{c_i} φq_iᵀ S₀
///   state  S_L  = e^{c_{L−1}} S₀ + Σ_j e^{Γ_{L−1,j}} φk_j v_jᵀ,   z_L likewise with v → 1.
/// With g_t = log λ_h for every t these are λ^{i−j}, λ^{i+1}, λ^{L−1−j} and λ^L: the per-head forms.
/// Numerics: every exponent is a sum of g's (≤ 0), never a difference c_i − c_j: Γ is built as a cumulative sum of a masked
/// copy of g (Mamba-2's stable "segsum"), so no e^{positive} is formed and a reset (g = −∞, clamped to −10⁴) inside a block
/// does not cancel digits of the exponents after it (c_i − c_j near −10⁴ would lose 10⁴·ε: 6·10⁻⁴ in float32).
/// Above the diagonal Γ is −∞ before the exp, so D stays lower-triangular with exact zeros.
/// </remarks>
static class LinearAttentionGatedForms
{
    /// <summary>Γ [.., L, L]: Γ_ij = Σ_{j&lt;s≤i} g_s for i ≥ j (0 on the diagonal), −∞ above it; g [.., L].</summary>
    internal static Tensor SegmentSums(Tensor g)
    {
        long length = g.shape[^1];
        var ones = torch.ones(length, length, dtype: ScalarType.Bool, device: g.device);
        var rows = g.unsqueeze(-1).expand([.. g.shape, length]);                                       // [.., i, j] = g_i
        var sums = rows.masked_fill(ones.tril(-1).logical_not(), 0.0).cumsum(-2);                    // keep i > j, sum over i: Σ_{j<s≤i} g_s
        return sums.masked_fill(ones.triu(1), double.NegativeInfinity);                               // −∞ where j > i
    }

    /// <summary>
    /// One block (the whole sequence for the parallel form, the short last chunk for the chunked form): output and state
    /// after it. g [.., L]; <paramref name="s0"/> null means a zero start state.
    /// </summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Block(Tensor qf, Tensor kf, Tensor v, Tensor g, Tensor? s0, Tensor? z0, bool normalize, double eps)
    {
        long length = g.shape[^1];
        var seg = SegmentSums(g);                                                        // Γ [.., L, L]
        var scores = qf.matmul(kf.transpose(-2, -1)) * seg.exp();                       // (φQ φKᵀ) ⊙ D
        var num = scores.matmul(v);
        var den = normalize ? scores.sum(-1) : null;
        var prefix = g.cumsum(-1);                                                       // c_i = Σ_{s≤i} g_s
        if (s0 is not null)
        {
            var qd = qf * prefix.exp().unsqueeze(-1);                                    // e^{c_i} φq_i
            num = num + qd.matmul(s0);                                                   // + e^{c_i} φq_iᵀ S₀
            if (den is not null && z0 is not null) den = den + qd.matmul(z0.unsqueeze(-1)).squeeze(-1);
        }
        var kw = kf * seg.select(-2, length - 1).exp().unsqueeze(-1);                    // e^{Γ_{L−1,j}} φk_j
        var gamma = prefix.narrow(-1, length - 1, 1).exp();                              // e^{c_{L−1}} = Π_s λ_s  [.., 1]
        var s = LinearAttentionForms.Carry(s0, gamma.unsqueeze(-1), kw.transpose(-2, -1).matmul(v));
        var z = normalize ? LinearAttentionForms.Carry(z0, gamma, kw.sum(-2)) : null;
        return (LinearAttentionForms.Finish(num, den, eps), s, z);
    }

    /// <summary>
    /// Chunked: full chunks of <paramref name="chunk"/> tokens at once (Γ, prefix sums and the intra parts batched as
    /// [B, H, N, C, ·]; the state carried by a loop over N), then the short last chunk as one more <see cref="Block"/>.
    /// g [B, H, T]. <paramref name="destination"/>: as <see cref="LinearAttentionForms.Chunked"/> (in place, written once; only
    /// when autograd records nothing).
    /// </summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Chunked(Tensor qf, Tensor kf, Tensor v, Tensor g, Tensor? s0, Tensor? z0, bool normalize, double eps,
        int chunk, Tensor? destination = null)
    {
        bool inPlace = destination is not null;
        long b = qf.shape[0], h = qf.shape[1], t = qf.shape[2], f = qf.shape[3], dv = v.shape[3];
        long n = t / chunk, rem = t % chunk;
        var outputs = new List<Tensor>();
        Tensor? s = s0, z = z0;
        if (n > 0)
        {
            long full = n * chunk;
            var qc = qf.narrow(2, 0, full).reshape(b, h, n, chunk, f);
            var kc = kf.narrow(2, 0, full).reshape(b, h, n, chunk, f);
            var vc = v.narrow(2, 0, full).reshape(b, h, n, chunk, dv);
            var gc = g.narrow(2, 0, full).reshape(b, h, n, chunk);
            var seg = SegmentSums(gc);                                                   // Γ per chunk [B, H, N, C, C]
            var scores = qc.matmul(kc.transpose(-2, -1)).mul_(seg.exp());                // (φQ φKᵀ) ⊙ D in the product's buffer
            var num = scores.matmul(vc);                                                 // every chunk's intra part
            var den = normalize ? scores.sum(-1) : null;
            var kw = kc * seg.select(-2, chunk - 1).exp().unsqueeze(-1);                 // e^{Γ_{C−1,j}} φk_j
            var dS = kw.transpose(-2, -1).matmul(vc);                                    // [B, H, N, F, Dv]
            var dZ = normalize ? kw.sum(-2) : null;                                      // [B, H, N, F]
            var prefix = gc.cumsum(-1);                                                  // c_i per chunk
            var qd = qc * prefix.exp().unsqueeze(-1);                                    // e^{c_i} φq_i
            var gamma = prefix.narrow(-1, chunk - 1, 1).exp();                           // Π_s λ_s per chunk [B, H, N, 1]
            s ??= torch.zeros(new[] { b, h, f, dv }, dtype: qf.dtype, device: qf.device);
            if (normalize) z ??= torch.zeros(new[] { b, h, f }, dtype: qf.dtype, device: qf.device);
            Tensor DecayOf(long c) => gamma.select(2, c).unsqueeze(-1);                  // γ_c = Π_s λ_s over chunk c
            var (numAll, denAll, sN, zN) = LinearAttentionForms.CarryChunks(num, den, qd, dS, dZ, DecayOf, s, z, normalize, inPlace);
            (s, z) = (sN, zN);
            var o = LinearAttentionForms.Finish(numAll, denAll, eps, inPlace).view(b, h, full, dv);
            if (inPlace) destination!.narrow(2, 0, full).copy_(o);
            else outputs.Add(o);
        }
        if (rem > 0)
        {
            var tail = Block(qf.narrow(2, t - rem, rem), kf.narrow(2, t - rem, rem), v.narrow(2, t - rem, rem), g.narrow(2, t - rem, rem), s, z,
                normalize, eps);
            if (inPlace) destination!.narrow(2, t - rem, rem).copy_(tail.O);
            else outputs.Add(tail.O);
            s = tail.S; z = tail.Z;
        }
        if (inPlace) return (destination!, s!, z);
        return (outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 2), s!, z);
    }

    /// <summary>Token loop: S_t = e^{g_t} S_{t−1} + φk_t v_tᵀ (<see cref="LinearAttentionForms.Step"/> with λ_t per batch and head). g [B, H, T].</summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Recurrent(Tensor qf, Tensor kf, Tensor v, Tensor g, Tensor? s0, Tensor? z0, bool normalize, double eps)
    {
        long b = qf.shape[0], h = qf.shape[1], t = qf.shape[2], f = qf.shape[3], dv = v.shape[3];
        var s = s0 ?? torch.zeros(new[] { b, h, f, dv }, dtype: qf.dtype, device: qf.device);
        var z = normalize ? z0 ?? torch.zeros(new[] { b, h, f }, dtype: qf.dtype, device: qf.device) : null;
        var lambda = g.exp();                                                            // λ_t = e^{g_t} [B, H, T]
        var outputs = new Tensor[t];
        for (long i = 0; i < t; i++)
            (outputs[i], s, z) = LinearAttentionForms.Step(qf.select(2, i), kf.select(2, i), v.select(2, i), lambda.select(2, i).view(b, h, 1, 1), s, z, eps);
        return (torch.stack(outputs, 2), s, z);
    }
}
