using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// The arithmetic of the linear-attention forms, on head-major tensors in the accumulation dtype:
/// φq, φk [..., L, F], v [..., L, Dv], states S [..., F, Dv] and z [..., F]. "..." is [B, H] for a sequence or
/// [B, H, N] for N chunks at once. The log-decay <c>ld</c> is null (λ = 1) or shaped [1, H, 1, 1] ([1, H, 1, 1, 1]
/// for chunks), so that it broadcasts against [..., L, L] and [..., L, 1].
/// </summary>
/// <remarks>
/// One block of length L that starts from state (S₀, z₀) and positions 0 … L−1 inside it:
///   intra  o_i  ⟵ Σ_{j≤i} λ^{i−j} (φq_i·φk_j) v_j          = ((φQ φKᵀ) ⊙ D) V,   D_ij = λ^{i−j} for i ≥ j, else 0
///   inter  o_i  ⟵ λ^{i+1} φq_iᵀ S₀                           (S₀ is the state just before the block)
///   state  S_L  = λ^{L} S₀ + Σ_j λ^{L−1−j} φk_j v_jᵀ,   z_L = λ^{L} z₀ + Σ_j λ^{L−1−j} φk_j
/// and with normalisation the same three with v → 1 give the denominator. Offsets check: a token s of an earlier block
/// sits in S₀ with weight λ^{(c−1)−s} (c = the block's first position); query i of the block (t = c + i) multiplies it
/// by λ^{i+1}, giving λ^{c+i−s} = λ^{t−s}, as the recurrence does (Lightning's offset convention).
/// Decay masks are built tril → exp → tril in log space: (i−j)·log λ is set to −∞ above the diagonal before exp, so no
/// positive exponent (overflow, then inf·0 = NaN in values or gradients) is ever formed.
/// </remarks>
static class LinearAttentionForms
{
    /// <summary>
    /// Lowest log λ used: e^{−10⁴} is 0 in float64 already, so clamping −∞ (and anything below) here changes nothing but avoids 0·(−∞).
    /// </summary>
    internal const double LogDecayFloor = -1e4;

    /// <summary>
    /// Whether autograd records through these tensors (grad mode on and one of them requires grad). Without it the forms
    /// accumulate in place and write the output once into a preallocated tensor; with it they stay out of place, because an
    /// in-place add into a slice of a recorded tensor makes every backward step copy the whole gradient (measured: 2–6×
    /// slower forward + backward for the chunk loop at T = 4096 … 16384).
    /// </summary>
    internal static bool Tracks(params Tensor?[] tensors) => torch.is_grad_enabled() && tensors.Any(x => x is not null && x.requires_grad);

    /// <summary>D [.., L, L] with D_ij = λ^{i−j} (i ≥ j), 0 above the diagonal (without decay the forms mask with the cached causal mask).</summary>
    internal static Tensor DecayMask(long length, Tensor ld, ScalarType dtype, Device device)
    {
        var pos = torch.arange(length, dtype: dtype, device: device);
        var rel = pos.unsqueeze(1) - pos.unsqueeze(0);                                  // i − j
        var logD = (rel * ld).masked_fill(rel.lt(0), double.NegativeInfinity);          // tril: (i−j)·log λ, −∞ above
        return logD.exp();                                                               // exp; exp(−∞) = 0 keeps it tril
    }

    /// <summary>λ^{offset + i} for i = 0 … L−1 as a column [.., L, 1] (null without decay).</summary>
    internal static Tensor? PowerColumn(long length, long offset, long step, Tensor? ld, ScalarType dtype, Device device)
    {
        if (ld is null) return null;
        var exponent = torch.arange(length, dtype: dtype, device: device) * step + offset; // offset + step·i
        return (exponent.unsqueeze(-1) * ld).exp();                                         // λ^{offset + step·i}
    }

    /// <summary>Numerator Σ_{j≤i} D_ij (φq_i·φk_j) v_j [.., L, Dv] and, when asked, denominator Σ_{j≤i} D_ij φq_i·φk_j [.., L].</summary>
    internal static (Tensor Num, Tensor? Den) Intra(Tensor qf, Tensor kf, Tensor v, Tensor? ld, bool normalize)
    {
        long length = qf.shape[^2];
        var scores = qf.matmul(kf.transpose(-2, -1));                                  // φQ φKᵀ, then ⊙ D in its own buffer:
        if (ld is null) scores.masked_fill_(AttentionMasks.CausalHidden(length, length, qf.device), 0.0);   // tril (cached mask)
        else scores.mul_(DecayMask(length, ld, qf.dtype, qf.device));                  // ⊙ λ^{i−j}, 0 above the diagonal
        return (scores.matmul(v), normalize ? scores.sum(-1) : null);                                  // (· ) V,  row sums
    }

    /// <summary>Adds the carried state's share λ^{i+1} φq_iᵀ S₀ (and λ^{i+1} φq_i·z₀) to numerator and denominator.</summary>
    internal static (Tensor Num, Tensor? Den) Inter(Tensor num, Tensor? den, Tensor qf, Tensor? ld, Tensor s0, Tensor? z0)
    {
        var decay = PowerColumn(qf.shape[^2], 1, 1, ld, qf.dtype, qf.device);          // λ^{i+1}
        var qd = decay is null ? qf : qf * decay;
        num = num + qd.matmul(s0);                                                       // + λ^{i+1} φq_iᵀ S₀
        if (den is not null && z0 is not null) den = den + qd.matmul(z0.unsqueeze(-1)).squeeze(-1);   // + λ^{i+1} φq_i·z₀
        return (num, den);
    }

    /// <summary>The block's own contribution to the state after it: ΔS = Σ_j λ^{L−1−j} φk_j v_jᵀ, Δz = Σ_j λ^{L−1−j} φk_j.</summary>
    internal static (Tensor DeltaS, Tensor? DeltaZ) StateDelta(Tensor kf, Tensor v, Tensor? ld, bool normalize)
    {
        long length = kf.shape[^2];
        var weight = ld is null ? null : (torch.arange(length - 1, -1, -1, dtype: kf.dtype, device: kf.device).unsqueeze(-1) * ld).exp(); // λ^{L−1−j}
        var kw = weight is null ? kf : kf * weight;
        return (kw.transpose(-2, -1).matmul(v), normalize ? kw.sum(-2) : null);          // (φK ⊙ w)ᵀ V,  Σ_j w_j φk_j
    }

    /// <summary>λ^{L} with <paramref name="ld"/> [1, H, 1, 1]: [1, H, 1, 1] (for S) — squeeze the last dim for z.</summary>
    internal static Tensor? BlockDecay(long length, Tensor? ld) => ld is null ? null : (ld * length).exp();

    /// <summary>S_L = γ S₀ + ΔS (S₀ may be null: zero state).</summary>
    internal static Tensor Carry(Tensor? s0, Tensor? gamma, Tensor delta) =>
        s0 is null ? delta : (gamma is null ? s0 : gamma * s0) + delta;

    /// <summary>o = num / (den + ε) when normalised, else num; <paramref name="inPlace"/>: in num's and den's own buffers.</summary>
    internal static Tensor Finish(Tensor num, Tensor? den, double eps, bool inPlace = false) =>
        den is null ? num : inPlace ? num.div_(den.add_(eps).unsqueeze(-1)) : num / (den + eps).unsqueeze(-1);

    /// <summary>
    /// One block (a whole sequence for the parallel form, the short last chunk for the chunked form): output and state
    /// after it. <paramref name="s0"/> null means a zero start state.
    /// </summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Block(Tensor qf, Tensor kf, Tensor v, Tensor? ld, Tensor? s0, Tensor? z0, bool normalize, double eps)
    {
        var (num, den) = Intra(qf, kf, v, ld, normalize);
        if (s0 is not null) (num, den) = Inter(num, den, qf, ld, s0, z0);
        var (dS, dZ) = StateDelta(kf, v, ld, normalize);
        var gamma = BlockDecay(qf.shape[^2], ld);
        var s = Carry(s0, gamma, dS);                                                   // S_L = λ^L S₀ + ΔS
        var z = dZ is null ? null : Carry(z0, gamma?.squeeze(-1), dZ);                 // z_L = λ^L z₀ + Δz
        return (Finish(num, den, eps), s, z);
    }

    /// <summary>
    /// The inter-chunk pass of the chunked forms, chunk by chunk: read the carried state, then carry it,
    /// o_c = intra_c + q̃_c S_(c) (and the normaliser with z), S_(c+1) = γ_c S_(c) + ΔS_c. The states are never stacked:
    /// [B, H, N, F, Dv] would be F/C× the output. γ_c = <paramref name="decayOf"/>(c) ([·, H, 1, 1], or null: no decay).
    /// <paramref name="inPlace"/> (nothing recorded for autograd): the state's share is added into the intra tensors
    /// themselves, which are returned; otherwise per-chunk sums are stacked.
    /// </summary>
    internal static (Tensor Num, Tensor? Den, Tensor S, Tensor? Z) CarryChunks(Tensor intraNum, Tensor? intraDen, Tensor qd, Tensor dS, Tensor? dZ,
        Func<long, Tensor?> decayOf, Tensor s, Tensor? z, bool normalize, bool inPlace = false)
    {
        long n = intraNum.size(2);
        var nums = new Tensor[inPlace ? 0 : n];
        var dens = new Tensor[normalize && !inPlace ? n : 0];
        // Recorded for autograd: unbind, whose backward stacks the chunk gradients once; select's backward would build a
        // zero tensor of the whole segment per chunk (N² work). In place: plain select views.
        Tensor[]? numParts = null, denParts = null, qdParts = null, dSParts = null, dZParts = null;
        if (!inPlace) (numParts, denParts, qdParts, dSParts, dZParts) = (intraNum.unbind(2), intraDen?.unbind(2), qd.unbind(2), dS.unbind(2), dZ?.unbind(2));
        for (long c = 0; c < n; c++)
        {
            var qdc = inPlace ? qd.select(2, c) : qdParts![c];
            var gamma = decayOf(c);
            var readS = qdc.matmul(s);                                                     // q̃_iᵀ S_(c)
            if (inPlace) intraNum.select(2, c).add_(readS);
            else nums[c] = numParts![c] + readS;
            s = Carry(s, gamma, inPlace ? dS.select(2, c) : dSParts![c]);               // S_(c+1) = γ_c S_(c) + ΔS_c
            if (normalize)
            {
                var readZ = qdc.matmul(z!.unsqueeze(-1)).squeeze(-1);                    // q̃_i·z_(c)
                if (inPlace) intraDen!.select(2, c).add_(readZ);
                else dens[c] = denParts![c] + readZ;
                z = Carry(z, gamma?.squeeze(-1), inPlace ? dZ!.select(2, c) : dZParts![c]);
            }
        }
        if (inPlace) return (intraNum, intraDen, s, z);
        return (torch.stack(nums, 2), normalize ? torch.stack(dens, 2) : null, s, z);
    }

    /// <summary>
    /// Chunked: full chunks of <paramref name="chunk"/> tokens all at once (intra parts batched as [B, H, N, C, ·], the
    /// inter-chunk state carried by a loop over N), then the short last chunk (T mod C tokens) as one more block.
    /// No padding: the tail block builds its own, shorter decay mask. <paramref name="destination"/> ([B, H, T, Dv], any
    /// strides; only when nothing is recorded for autograd): the output is accumulated in place and written there once,
    /// and the destination is returned as O.
    /// </summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Chunked(Tensor qf, Tensor kf, Tensor v, Tensor? ld, Tensor? s0, Tensor? z0, bool normalize, double eps,
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
            var ld5 = ld?.unsqueeze(-1);                                                 // [1, H, 1, 1, 1]
            var (num, den) = Intra(qc, kc, vc, ld5, normalize);                          // every chunk's intra part
            var (dS, dZ) = StateDelta(kc, vc, ld5, normalize);                           // [B, H, N, F, Dv], [B, H, N, F]
            var gamma = BlockDecay(chunk, ld);                                           // λ^C
            s ??= torch.zeros(new[] { b, h, f, dv }, dtype: qf.dtype, device: qf.device);
            if (normalize) z ??= torch.zeros(new[] { b, h, f }, dtype: qf.dtype, device: qf.device);
            var decay = PowerColumn(chunk, 1, 1, ld5, qf.dtype, qf.device);            // λ^{i+1} [1, H, 1, C, 1]
            var qd = decay is null ? qc : qc * decay;
            (num, den, s, z) = CarryChunks(num, den, qd, dS, dZ, _ => gamma, s, z, normalize, inPlace);   // λ^C for every chunk
            var o = Finish(num, den, eps, inPlace).view(b, h, full, dv);
            if (inPlace) destination!.narrow(2, 0, full).copy_(o);
            else outputs.Add(o);
        }
        if (rem > 0)
        {
            var tail = Block(qf.narrow(2, t - rem, rem), kf.narrow(2, t - rem, rem), v.narrow(2, t - rem, rem), ld, s, z, normalize, eps);
            if (inPlace) destination!.narrow(2, t - rem, rem).copy_(tail.O);
            else outputs.Add(tail.O);
            s = tail.S; z = tail.Z;
        }
        if (inPlace) return (destination!, s!, z);
        return (outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 2), s!, z);
    }

    /// <summary>
    /// One token: S_t = λ S_{t−1} + φk_t v_tᵀ, z_t = λ z_{t−1} + φk_t, o_t = φq_tᵀ S_t (/ (φq_t·z_t + ε)).
    /// φq, φk [B, H, F], v [B, H, Dv], S [B, H, F, Dv], z [B, H, F]; <paramref name="lambda"/> = λ [1, H, 1, 1] or null.
    /// </summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Step(Tensor qf, Tensor kf, Tensor v, Tensor? lambda, Tensor s, Tensor? z, double eps)
    {
        s = (lambda is null ? s : lambda * s) + kf.unsqueeze(-1) * v.unsqueeze(-2);     // S_t = λ S_{t−1} + φk_t v_tᵀ
        var num = qf.unsqueeze(-2).matmul(s).squeeze(-2);                                 // φq_tᵀ S_t
        if (z is null) return (num, s, null);
        z = (lambda is null ? z : lambda.squeeze(-1) * z) + kf;                          // z_t = λ z_{t−1} + φk_t
        var den = (qf * z).sum(-1, keepdim: true);                                       // φq_t·z_t
        return (num / (den + eps), s, z);
    }

    /// <summary>Token loop over [B, H, T, ·] (the naive twin of the parallel and chunked forms).</summary>
    internal static (Tensor O, Tensor S, Tensor? Z) Recurrent(Tensor qf, Tensor kf, Tensor v, Tensor? ld, Tensor? s0, Tensor? z0, bool normalize, double eps)
    {
        long b = qf.shape[0], h = qf.shape[1], t = qf.shape[2], f = qf.shape[3], dv = v.shape[3];
        var s = s0 ?? torch.zeros(new[] { b, h, f, dv }, dtype: qf.dtype, device: qf.device);
        var z = normalize ? z0 ?? torch.zeros(new[] { b, h, f }, dtype: qf.dtype, device: qf.device) : null;
        var lambda = ld?.exp();                                                          // λ = e^{log λ}
        var outputs = new Tensor[t];
        for (long i = 0; i < t; i++)
            (outputs[i], s, z) = Step(qf.select(2, i), kf.select(2, i), v.select(2, i), lambda, s, z, eps);
        return (torch.stack(outputs, 2), s, z);
    }
}
