using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench;

/// <summary>
/// The bare-op side of the linear parity cases: the chunked linear-attention algorithm written directly in TorchSharp ops
/// as an expert would write it for one fixed configuration — factors precomputed once per T, intra-chunk parts batched,
/// the state carried by a loop that adds into the intra result in place, no validation and no generality.
/// </summary>
static class ParityBareOps
{
    /// <summary>
    /// The per-chunk factors of a decayed form, computed from log λ on every call (as the library must):
    /// D [1, H, 1, C, C], λ^{i+1} and λ^{C−1−j} [1, H, 1, C, 1], λ^C [1, H, 1, 1], and the tiled loop's λ^{j} and λ^{C−j} [1, H, C, 1].
    /// </summary>
    internal static Tensor[] DecayFactors(Tensor logDecay, int chunk)
    {
        var ld = logDecay.view(1, -1, 1, 1);
        var i = torch.arange(chunk, dtype: ScalarType.Float32, device: logDecay.device);
        var rel = i.unsqueeze(1) - i.unsqueeze(0);                                       // i − j
        var mask = (rel * ld).masked_fill(rel.lt(0), double.NegativeInfinity).exp();    // λ^{i−j}, 0 above the diagonal
        var qDecay = ((i + 1).unsqueeze(-1) * ld).exp();                                 // λ^{i+1}
        var kDecay = ((chunk - 1 - i).unsqueeze(-1) * ld).exp();                         // λ^{C−1−j}
        var (qTile, kTile) = ((i.unsqueeze(-1) * ld).exp(), ((chunk - i).unsqueeze(-1) * ld).exp());   // λ^{j}, λ^{C−j}
        return [mask.unsqueeze(2), qDecay.unsqueeze(2), kDecay.unsqueeze(2), (ld * chunk).exp(), qTile, kTile];
    }

    /// <summary>
    /// Causal chunked linear attention on head-major φq, φk [B, H, T, F], v [B, H, T, Dv] from a zero state:
    /// o = intra + q̃ S (÷ the same with v → 1 when normalised). <paramref name="mask"/> [.., C, C] is tril (⊙ λ^{i−j});
    /// qDecay / kDecay / gamma null without decay. Returns [B, H, T, Dv].
    /// </summary>
    internal static Tensor Chunked(Tensor qf, Tensor kf, Tensor v, int chunk, Tensor mask, Tensor? qDecay, Tensor? kDecay, Tensor? gamma,
        bool normalize, double eps)
    {
        long b = qf.shape[0], h = qf.shape[1], t = qf.shape[2], f = qf.shape[3], dv = v.shape[3];
        long n = t / chunk, rem = t - n * chunk, full = n * chunk;
        bool track = Tracks(qf, kf, v);                                                  // autograd: out of place, joined by stack/cat
        var s = torch.zeros([b, h, f, dv], dtype: v.dtype, device: v.device);
        var z = normalize ? torch.zeros([b, h, f], dtype: v.dtype, device: v.device) : null;
        var (nums, dens) = (new List<Tensor>(), new List<Tensor>());
        if (n > 0)
        {
            var qc = qf.narrow(2, 0, full).view(b, h, n, chunk, f);
            var kc = kf.narrow(2, 0, full).view(b, h, n, chunk, f);
            var vc = v.narrow(2, 0, full).view(b, h, n, chunk, dv);
            var scores = qc.matmul(kc.transpose(-2, -1)).mul_(mask);                   // (φQ φKᵀ) ⊙ D per chunk
            var intra = scores.matmul(vc);                                               // [B, H, N, C, Dv]
            var intraDen = normalize ? scores.sum(-1) : null;                            // [B, H, N, C]
            var qd = qDecay is null ? qc : qc * qDecay;
            var kw = kDecay is null ? kc : kc * kDecay;
            var deltaS = kw.transpose(-2, -1).matmul(vc);                                // [B, H, N, F, Dv]
            var deltaZ = normalize ? kw.sum(-2) : null;
            var (perNum, perDen) = (new Tensor[track ? n : 0], new Tensor[track && normalize ? n : 0]);
            // recorded: unbind (one stack in backward); select would build a zero tensor of the whole input per chunk
            var (iParts, dParts, qParts, sParts, zParts) = track
                ? (intra.unbind(2), intraDen?.unbind(2), qd.unbind(2), deltaS.unbind(2), deltaZ?.unbind(2)) : default;
            for (long c = 0; c < n; c++)
            {
                var qdc = track ? qParts![c] : qd.select(2, c);
                var read = qdc.matmul(s);                                                // q̃ S
                if (track) perNum[c] = iParts![c] + read; else intra.select(2, c).add_(read);
                if (normalize)
                {
                    var readZ = qdc.matmul(z!.unsqueeze(-1)).squeeze(-1);
                    if (track) perDen[c] = dParts![c] + readZ; else intraDen!.select(2, c).add_(readZ);
                }
                s = (gamma is null ? s : gamma * s) + (track ? sParts![c] : deltaS.select(2, c));   // S ← γ S + ΔS
                if (normalize) z = z! + (track ? zParts![c] : deltaZ!.select(2, c));
            }
            nums.Add((track ? torch.stack(perNum, 2) : intra).view(b, h, full, dv));
            if (normalize) dens.Add((track ? torch.stack(perDen, 2) : intraDen!).view(b, h, full));
        }
        if (rem > 0)
        {
            var (qt, kt, vt) = (qf.narrow(2, full, rem), kf.narrow(2, full, rem), v.narrow(2, full, rem));
            var m = mask.narrow(-2, 0, rem).narrow(-1, 0, rem).squeeze(2);
            var scores = qt.matmul(kt.transpose(-2, -1)).mul_(m);
            var qd = qDecay is null ? qt : qt * qDecay.narrow(-2, 0, rem).squeeze(2);
            nums.Add(scores.matmul(vt).add_(qd.matmul(s)));
            if (normalize) dens.Add(scores.sum(-1).add_(qd.matmul(z!.unsqueeze(-1)).squeeze(-1)));
        }
        var num = nums.Count == 1 ? nums[0] : torch.cat(nums, 2);
        if (!normalize) return num;
        var den = dens.Count == 1 ? dens[0] : torch.cat(dens, 2);
        return track ? num / (den + eps).unsqueeze(-1) : num.div_(den.add_(eps).unsqueeze(-1));
    }

    /// <summary>
    /// Gated (per-token log-decay g [B, H, T]) causal chunked linear attention from a zero state, identity map, no
    /// normaliser: per chunk Γ_ij = Σ_{j&lt;s≤i} g_s (cumsum of a masked copy, −∞ above the diagonal), intra ((Q Kᵀ) ⊙ e^Γ) V,
    /// inter e^{c_i} Q S, S ← e^{c_{C−1}} S + (e^{Γ_{C−1,j}} K)ᵀ V. T a multiple of the chunk. Returns [B, H, T, Dv].
    /// </summary>
    internal static Tensor GatedChunked(Tensor q, Tensor k, Tensor v, Tensor g, int chunk)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3], n = t / chunk;
        bool track = Tracks(q, k, v, g);
        var (qc, kc, vc, gc) = (q.view(b, h, n, chunk, d), k.view(b, h, n, chunk, d), v.view(b, h, n, chunk, dv), g.reshape(b, h, n, chunk));
        var ones = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: q.device);
        var seg = gc.unsqueeze(-1).expand(b, h, n, chunk, chunk).masked_fill(ones.tril(-1).logical_not(), 0.0).cumsum(-2)
            .masked_fill(ones.triu(1), double.NegativeInfinity);                         // Γ, −∞ above the diagonal
        var intra = qc.matmul(kc.transpose(-2, -1)).mul_(seg.exp()).matmul(vc);         // ((Q Kᵀ) ⊙ e^Γ) V
        var prefix = gc.cumsum(-1);
        var qd = qc * prefix.exp().unsqueeze(-1);                                        // e^{c_i} q_i
        var deltaS = (kc * seg.select(-2, chunk - 1).exp().unsqueeze(-1)).transpose(-2, -1).matmul(vc);
        var gamma = prefix.narrow(-1, chunk - 1, 1).exp().unsqueeze(-1);                 // e^{c_{C−1}} [B, H, N, 1, 1]
        var s = torch.zeros([b, h, d, dv], dtype: v.dtype, device: v.device);
        var parts = new Tensor[track ? n : 0];
        var (iParts, qParts, sParts, gParts) = track ? (intra.unbind(2), qd.unbind(2), deltaS.unbind(2), gamma.unbind(2)) : default;
        for (long c = 0; c < n; c++)
        {
            var read = (track ? qParts![c] : qd.select(2, c)).matmul(s);
            if (track) parts[c] = iParts![c] + read; else intra.select(2, c).add_(read);
            s = (track ? gParts![c] : gamma.select(2, c)) * s + (track ? sParts![c] : deltaS.select(2, c));
        }
        return (track ? torch.stack(parts, 2) : intra).view(b, h, t, dv);
    }

    /// <summary>Grad mode on and one of the tensors requires grad.</summary>
    static bool Tracks(params Tensor[] xs) => torch.is_grad_enabled() && xs.Any(x => x.requires_grad);

    /// <summary>Lightning's tiled loop (the last block may be shorter): per block intra + λ^{j} Q KV, KV ← λ^B KV + (λ^{B−j} K)ᵀ V.</summary>
    internal static Tensor Tiled(Tensor q, Tensor k, Tensor v, int block, Tensor mask, Tensor qj, Tensor kj, Tensor gamma)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3];
        bool track = Tracks(q, k, v);
        var o = track ? null : torch.empty([b, t, h, dv], dtype: v.dtype, device: v.device).permute(0, 2, 1, 3);   // [B, H, T, Dv] view of the output layout
        var blocks = new List<Tensor>();
        var kv = torch.zeros([b, h, d, dv], dtype: v.dtype, device: v.device);
        var m = mask.squeeze(2);
        for (long start = 0; start < t; start += block)
        {
            long len = Math.Min(block, t - start);                                       // the last block may be shorter
            var (qi, ki, vi) = (q.narrow(2, start, len), k.narrow(2, start, len), v.narrow(2, start, len));
            var oi = qi.matmul(ki.transpose(-2, -1)).mul_(m.narrow(-2, 0, len).narrow(-1, 0, len)).matmul(vi);   // [(Q_i K_iᵀ) ⊙ D] V_i
            oi.add_(qi.matmul(kv).mul_(qj.narrow(-2, 0, len)));                         // + diag(λ^j) Q_i KV
            if (track) blocks.Add(oi); else o!.narrow(2, start, len).copy_(oi);
            if (start + len < t) kv = gamma * kv + (ki * kj).transpose(-2, -1).matmul(vi);   // KV ← λ^B KV + (λ^{B−j} K)ᵀ V
        }
        return o ?? torch.cat(blocks, 2);
    }

    /// <summary>
    /// fla's BASED decomposition for one configuration: per chunk the masked quadratic kernel 1 + s + s²/2 plus the
    /// order-0/1/2 running sums read by q̃, q̃⊗q̃; q̃ = q/√d′. Returns [B, H, T, Dv].
    /// </summary>
    internal static Tensor TaylorChunked(Tensor q, Tensor k, Tensor v, int chunk, Tensor hidden, double eps)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3];
        var qt = q / Math.Sqrt(d);
        bool track = Tracks(q, k, v);
        var o = track ? null : torch.empty([b, t, h, dv], dtype: v.dtype, device: v.device).permute(0, 2, 1, 3);   // [B, H, T, Dv] view of the output layout
        var chunks = new List<Tensor>();
        Tensor Z(params long[] shape) => torch.zeros(shape, dtype: v.dtype, device: v.device);
        var (a0, c0, a1, b1, a2, b2) = (Z(b, h, 1, dv), 0.0, Z(b, h, d, dv), Z(b, h, d, 1), Z(b, h, d * d, dv), Z(b, h, d * d, 1));
        for (long start = 0; start < t; start += chunk)
        {
            long len = Math.Min(chunk, t - start);
            var (qc, kc, vc) = (qt.narrow(2, start, len), k.narrow(2, start, len), v.narrow(2, start, len));
            var s = qc.matmul(kc.transpose(-2, -1));
            var kernel = s.square().mul_(0.5).add_(s).add_(1.0).masked_fill_(hidden.narrow(0, 0, len).narrow(1, 0, len), 0.0);
            var qq = (qc.unsqueeze(-1) * qc.unsqueeze(-2)).flatten(-2);
            var num = kernel.matmul(vc).add_(a0).add_(qc.matmul(a1)).add_(qq.matmul(a2).mul_(0.5));
            var den = kernel.sum(-1, keepdim: true).add_(c0).add_(qc.matmul(b1)).add_(qq.matmul(b2).mul_(0.5));
            if (track) chunks.Add(num.div_(den.add_(eps))); else o!.narrow(2, start, len).copy_(num.div_(den.add_(eps)));
            var kk = (kc.unsqueeze(-1) * kc.unsqueeze(-2)).flatten(-2);
            (a0, c0, a1, b1) = (a0 + vc.sum(2, keepdim: true), c0 + len, a1 + kc.transpose(-2, -1).matmul(vc), b1 + kc.sum(2).unsqueeze(-1));
            (a2, b2) = (a2 + kk.transpose(-2, -1).matmul(vc), b2 + kk.sum(2).unsqueeze(-1));
        }
        return o ?? torch.cat(chunks, 2);
    }

    /// <summary>The packed Taylor φ as bare ops: [1, x, x_m x_{n≥m}] ⊙ coefficients (precomputed row).</summary>
    internal static Tensor TaylorPacked(Tensor x, Tensor coefficients)
    {
        long d = x.shape[^1];
        var parts = new List<Tensor> { torch.ones_like(x.narrow(-1, 0, 1)), x };
        for (long m = 0; m < d; m++) parts.Add(x.narrow(-1, m, 1) * x.narrow(-1, m, d - m));
        return torch.cat(parts, -1).mul_(coefficients);
    }

    /// <summary>The packed Taylor map's coefficient row for d′ (1, d′^{−1/4} …, then 1/(√2√d′) on the diagonal, 1/√d′ off it).</summary>
    internal static Tensor TaylorCoefficients(int d, Device? device)
    {
        double rd = Math.Sqrt(d), rrd = Math.Sqrt(rd);
        var coeff = new List<double> { 1.0 };
        for (int n = 0; n < d; n++) coeff.Add(1.0 / rrd);
        for (int m = 0; m < d; m++)
            for (int n = m; n < d; n++) coeff.Add(m != n ? 1.0 / rd : 1.0 / (Math.Sqrt(2) * rd));
        return torch.tensor(coeff.ToArray(), dtype: ScalarType.Float32, device: device);
    }
}
