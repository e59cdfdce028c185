using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// BASED's global mixer (Arora et al. 2024): causal, normalised linear attention with the second-order Taylor feature
/// map, on q, k [B, T, H, d′] (d′ = the projected feature dim, e.g. 16 — not the head dim) and v [B, T, H, Dv].
/// Forms that agree: <see cref="BasedNaive.Attention"/> (the quadratic kernel, masked), <see cref="Linear"/> (the shared engine's
/// parallel / recurrent / chunked forms on φ) and <see cref="TaylorChunked"/> (fla's decomposition, φ never built).
/// </summary>
/// <remarks>
/// s_ts = q_t·k_s / √d′,   K(q_t, k_s) = φ(q_t)·φ(k_s) = 1 + s_ts + s_ts²/2   (≥ 1/2, so the denominator is safe)
/// φ(x) = [1, x/d′^{1/4}, vec(x xᵀ)/(√2·√d′)]   (HazyResearch/based <c>TaylorExp</c>: the 1/√d′ temperature is inside φ)
/// y_t = Σ_{s≤t} K(q_t, k_s) v_s / (Σ_{s≤t} K(q_t, k_s) + ε),   ε = 1e-12 (HazyResearch; fla uses 1e-6)
/// Recurrent: S_t = S_{t−1} + φ(k_t) v_tᵀ,  z_t = z_{t−1} + φ(k_t),  y_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε)
/// — the causal cumulative sum of φ(k) in the denominator, accumulated in float32 (float64 for float64 inputs).
/// </remarks>
public static class BasedAttention
{
    /// <summary>ε of the HazyResearch code (the denominator is ≥ (t+1)/2, so ε only matters for exactness tests).</summary>
    public const double DefaultEps = 1e-12;

    /// <summary>The engine's options for BASED: Taylor map of <paramref name="featureDim"/>, normalised, ε, chunk.</summary>
    /// <param name="featureDim">d′.</param>
    /// <param name="packSymmetric">keep the d′(d′+1)/2 distinct second-order terms (same kernel, smaller state; zoology's count).</param>
    /// <param name="chunkSize">chunk length of the chunked form.</param>
    /// <param name="eps">ε of the denominator.</param>
    public static LinearAttentionOptions Options(int featureDim, bool packSymmetric = true, int chunkSize = 64, double eps = DefaultEps) =>
        new() { FeatureMap = FeatureMaps.Taylor(featureDim, packSymmetric), Normalize = true, Eps = eps, ChunkSize = chunkSize };

    /// <summary>The kernel K = 1 + s + s²/2, s = q·k/√d′, for q [..., Tq, d′] and k [..., Tk, d′]: [..., Tq, Tk].</summary>
    public static Tensor Kernel(Tensor q, Tensor k)
    {
        Guard.NotNull(q, nameof(q));
        Guard.NotNull(k, nameof(k));
        if (q.dim() < 2 || k.dim() != q.dim() || q.shape[^1] != k.shape[^1])
            throw new ArgumentException($"k {Guard.ShapeText(k)} must have q's rank and last dim (q {Guard.ShapeText(q)}, rank ≥ 2).", nameof(k));
        using var scope = NewDisposeScope();
        var s = q.matmul(k.transpose(-2, -1)) / Math.Sqrt(q.shape[^1]);               // s = q·k/√d′
        return (1 + s + s.square() / 2).MoveToOuterDisposeScope();                       // 1 + s + s²/2
    }

    /// <summary>
    /// The implied attention weights A_ts = K(q_t, k_s) / (Σ_{s′≤t} K(q_t, k_s′) + ε) for s ≤ t, 0 above the diagonal:
    /// [B, H, T, T] in the accumulation dtype (rows sum to 1 up to ε) — what BASED puts where softmax puts e^{s}/Σe^{s}.
    /// </summary>
    public static Tensor Weights(Tensor q, Tensor k, double eps = DefaultEps)
    {
        LinearAttention.ValidateQkv(q, k, k, causal: true);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(q.dtype);
        var qh = q.to(acc).permute(0, 2, 1, 3);
        var kh = k.to(acc).permute(0, 2, 1, 3);
        long t = q.shape[1];
        var keep = AttentionMasks.Causal(t, t, q.device);                                // s ≤ t
        var kernel = Kernel(qh, kh).masked_fill(keep.logical_not(), 0.0);                // K ⊙ tril
        return (kernel / (kernel.sum(-1, keepdim: true) + eps)).MoveToOuterDisposeScope();
    }

    /// <summary>The shared engine on φ = Taylor(d′): <paramref name="form"/> parallel, recurrent or chunked, with h0 → hT.</summary>
    /// <param name="form">which form computes it (identical results).</param>
    /// <param name="q">[B, T, H, d′]</param>
    /// <param name="k">[B, T, H, d′]</param>
    /// <param name="v">[B, T, H, Dv]</param>
    /// <param name="h0">state before the first token (S [B, H, F, Dv], z [B, H, F]), or null.</param>
    /// <param name="packSymmetric">packed second-order terms (F = 1 + d′ + d′(d′+1)/2) or the full map (F = 1 + d′ + d′²).</param>
    /// <param name="chunkSize">chunk length for <see cref="LinearForm.Chunked"/>.</param>
    /// <param name="eps">ε of the denominator.</param>
    public static LinearAttentionResult Linear(LinearForm form, Tensor q, Tensor k, Tensor v, LinearState? h0 = null,
        bool packSymmetric = true, int chunkSize = 64, double eps = DefaultEps)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, d′");
        return LinearAttention.Run(form, q, k, v, null, h0, Options((int)q.shape[3], packSymmetric, chunkSize, eps));
    }

    /// <summary>
    /// fla's chunked decomposition (<c>fla/ops/based</c>), which never builds φ: with q̃ = q/√d′,
    /// numerator_t = Σ_{s≤t} v_s + q̃_tᵀ(Σ k_s v_sᵀ) + ½ (q̃_t⊗q̃_t) : (Σ k_s⊗k_s⊗v_s), and the denominator the same with v → 1;
    /// inside a chunk the quadratic kernel (1 + s + s²/2, masked), between chunks the order-0/1/2 sums
    /// (A₀ [Dv], A₁ [d′, Dv], A₂ [d′², Dv] and their v → 1 twins). The state h0/hT uses the <b>full</b> (unpacked) Taylor
    /// layout of <see cref="Linear"/>: S = [A₀; A₁/d′^{1/4}; A₂/(√2·√d′)], so the two implementations continue each other.
    /// A chunk that does not divide T leaves a shorter last chunk (no padding).
    /// </summary>
    public static LinearAttentionResult TaylorChunked(Tensor q, Tensor k, Tensor v, int chunkSize = 64, LinearState? h0 = null, double eps = DefaultEps)
    {
        LinearAttention.ValidateQkv(q, k, v, causal: true);
        if (chunkSize <= 0) throw new ArgumentException($"chunkSize must be positive, got {chunkSize}.", nameof(chunkSize));
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], dv = v.shape[3];
        if (h0 is not null) LinearAttention.ValidateState(h0, nameof(h0), b, h, 1 + d + d * d, dv, normalize: true, q);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(q.dtype);
        double rd = Math.Sqrt(d), rrd = Math.Sqrt(rd), r2 = Math.Sqrt(2);
        var qt = q.to(acc).permute(0, 2, 1, 3) / rd;                                     // q̃ = q/√d′  [B, H, T, d′]
        var kh = k.to(acc).permute(0, 2, 1, 3);
        var vh = v.to(acc).permute(0, 2, 1, 3);
        var st = TaylorSums.From(h0, b, h, d, dv, acc, q.device, rrd, r2 * rd);
        // Without autograd every chunk is written once into the output; with it chunks are joined by one cat (an in-place
        // write into a slice of a recorded tensor makes each backward step copy the whole gradient).
        bool track = LinearAttentionForms.Tracks(q, k, v, h0?.S, h0?.Z);
        var output = track ? null : torch.empty(new[] { b, t, h, dv }, dtype: q.dtype, device: q.device);
        var outputs = new List<Tensor>();
        for (long start = 0; start < t; start += chunkSize)
        {
            long len = Math.Min(chunkSize, t - start);
            var qc = qt.narrow(2, start, len);
            var kc = kh.narrow(2, start, len);
            var vc = vh.narrow(2, start, len);
            var s = qc.matmul(kc.transpose(-2, -1));                                      // s = q̃·k  [B, H, L, L]
            var intra = s.square().mul_(0.5).add_(s).add_(1.0)                            // 1 + s + s²/2 in one buffer,
                .masked_fill_(AttentionMasks.CausalHidden(len, len, q.device), 0.0);      // masked (cached mask)
            var qq = (qc.unsqueeze(-1) * qc.unsqueeze(-2)).flatten(-2);                   // q̃⊗q̃  [B, H, L, d′²]
            var num = intra.matmul(vc).add_(st.A0.unsqueeze(2)).add_(qc.matmul(st.A1))
                .add_(qq.matmul(st.A2).mul_(0.5));                                        // + Σv + q̃ᵀA₁ + ½ q̃q̃:A₂
            var den = intra.sum(-1, keepdim: true).add_(st.C0.view(b, h, 1, 1)).add_(qc.matmul(st.B1.unsqueeze(-1)))
                .add_(qq.matmul(st.B2.unsqueeze(-1)).mul_(0.5));                          // v → 1  [B, H, L, 1]
            var chunkOut = num.div_(den.add_(eps));
            if (output is null) outputs.Add(chunkOut);
            else output.narrow(1, start, len).permute(0, 2, 1, 3).copy_(chunkOut);
            var kk = (kc.unsqueeze(-1) * kc.unsqueeze(-2)).flatten(-2);                   // k⊗k  [B, H, L, d′²]
            st = new TaylorSums(st.A0 + vc.sum(2), st.C0 + len, st.A1 + kc.transpose(-2, -1).matmul(vc), st.B1 + kc.sum(2),
                st.A2 + kk.transpose(-2, -1).matmul(vc), st.B2 + kk.sum(2));             // carry the order-0/1/2 sums
        }
        var o = output ?? torch.cat(outputs, 2).permute(0, 2, 1, 3).to(q.dtype).contiguous();
        return new LinearAttentionResult(o, st.ToState(rrd, r2 * rd)).MoveToOuterDisposeScope();
    }

    /// <summary>The running sums of the decomposition: A₀ = Σv, C₀ = Σ1, A₁ = Σ k vᵀ, B₁ = Σk, A₂ = Σ (k⊗k) vᵀ, B₂ = Σ k⊗k.</summary>
    sealed record TaylorSums(Tensor A0, Tensor C0, Tensor A1, Tensor B1, Tensor A2, Tensor B2)
    {
        /// <summary>From a full-layout φ-state (S = [A₀; A₁/c₁; A₂/c₂], z likewise) or zeros.</summary>
        public static TaylorSums From(LinearState? h0, long b, long h, long d, long dv, ScalarType acc, Device device, double c1, double c2)
        {
            if (h0 is null)
            {
                Tensor Z(params long[] shape) => torch.zeros(shape, dtype: acc, device: device);
                return new TaylorSums(Z(b, h, dv), Z(b, h), Z(b, h, d, dv), Z(b, h, d), Z(b, h, d * d, dv), Z(b, h, d * d));
            }
            var s = h0.S.to(acc);
            var z = h0.Z!.to(acc);
            return new TaylorSums(s.select(2, 0), z.select(2, 0), s.narrow(2, 1, d) * c1, z.narrow(2, 1, d) * c1,
                s.narrow(2, 1 + d, d * d) * c2, z.narrow(2, 1 + d, d * d) * c2);
        }

        /// <summary>Back to the full-layout φ-state.</summary>
        public LinearState ToState(double c1, double c2) => new(
            torch.cat(new[] { A0.unsqueeze(2), A1 / c1, A2 / c2 }, 2).contiguous(),
            torch.cat(new[] { C0.unsqueeze(2), B1 / c1, B2 / c2 }, 2).contiguous());
    }
}
