using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// S2-Attention without a custom kernel: per KV head, a local-window attention (unfolded key windows of ℓ blocks) and
/// an attention over the head's stride blocks (a reshape, <c>K.view(nb, b, d)[r::s]</c>), merged exactly by LSE.
/// </summary>
/// <remarks>
/// Local part L: query block i reads key blocks i−ℓ+1 … i (token causality in the diagonal block).
/// Strided part S: key blocks j ≡ r (mod s) with i − j ≥ ℓ — the stride blocks already inside the window are masked
/// here, otherwise they would be counted twice.
/// o = e^{lse_L − lse} o_L + e^{lse_S − lse} o_S,  lse = log(e^{lse_L} + e^{lse_S})   (<see cref="LseMerge"/>).
/// A head with residue null is dense (plain causal attention).
/// </remarks>
public static class StridedLocalAttention
{
    /// <summary>q [B, T, Hq, D], k [B, T, Hkv, D], v [B, T, Hkv, Dv] → (output [B, T, Hq, Dv], LSE [B, Hq, T]).</summary>
    /// <param name="q">[B, T, Hq, D]</param>
    /// <param name="k">[B, T, Hkv, D]</param>
    /// <param name="v">[B, T, Hkv, Dv]</param>
    /// <param name="block">tokens per block b.</param>
    /// <param name="local">ℓ, local blocks (diagonal included).</param>
    /// <param name="stride">s, vertical stride in key blocks.</param>
    /// <param name="residues">r per KV head (key block j is read when j mod s = r); null entries are dense heads.</param>
    /// <param name="scale">score scale; default 1/√D.</param>
    public static (Tensor Output, Tensor LogSumExp) Forward(Tensor q, Tensor k, Tensor v, int block, int local, int stride,
        IReadOnlyList<int?> residues, double? scale = null)
    {
        ReferenceAttention.Validate(q, k, v);
        ArgumentNullException.ThrowIfNull(residues);
        if (k.shape[1] != q.shape[1])
            throw new ArgumentException($"self-attention needs q and k of one length, got q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}.", nameof(k));
        if (block <= 0) throw new ArgumentException($"block must be positive, got {block}.", nameof(block));
        if (local <= 0) throw new ArgumentException($"local must be ≥ 1 (the diagonal block), got {local}.", nameof(local));
        if (stride <= 0) throw new ArgumentException($"stride must be positive, got {stride}.", nameof(stride));
        if (residues.Count != k.shape[2])
            throw new ArgumentException($"residues has {residues.Count} entries but k has {k.shape[2]} KV heads (k {Guard.ShapeText(k)}).", nameof(residues));
        for (int h = 0; h < residues.Count; h++)
            if (residues[h] is int r && (r < 0 || r >= stride))
                throw new ArgumentException($"residues[{h}] = {r} must be in [0, stride = {stride}).", nameof(residues));

        using var scope = NewDisposeScope();
        long hkv = k.shape[2], g = q.shape[2] / hkv;
        double s = scale ?? 1.0 / Math.Sqrt(q.shape[3]);
        var outs = new List<Tensor>();
        var lses = new List<Tensor>();
        for (long c = 0; c < hkv; c++)
        {
            var (qc, kc, vc) = (q.narrow(2, c * g, g), k.narrow(2, c, 1), v.narrow(2, c, 1));
            (Tensor O, Tensor L) part;
            if (residues[(int)c] is int r)
            {
                var parts = new List<(Tensor, Tensor)> { Local(qc, kc, vc, block, local, s) };
                var strided = Strided(qc, kc, vc, block, local, stride, r, s);
                if (strided is { } st) parts.Add(st);
                part = LseMerge.Combine(parts);                                            // o = Σ_p e^{lse_p − lse} o_p
            }
            else
            {
                using var dense = ReferenceAttention.Softmax(qc, kc, vc, causal: true, scale: s);
                part = (dense.Output.alias(), dense.LogSumExp.alias());
            }
            outs.Add(part.O);
            lses.Add(part.L);
        }
        return (torch.cat(outs, 2).MoveToOuterDisposeScope(), torch.cat(lses, 1).MoveToOuterDisposeScope());
    }

    /// <summary>Queries [B, T, G, D] as blocks [B, G, nb, b, D] (zero-padded to nb·b).</summary>
    static Tensor QueryBlocks(Tensor q, int b, int nb)
    {
        var padded = nn.functional.pad(q, new long[] { 0, 0, 0, 0, 0, nb * b - q.shape[1] });   // [B, nb·b, G, D]
        var blocks = padded.unflatten(1, new long[] { nb, b });                                 // [B, nb, b, G, D]
        return blocks.permute(0, 3, 1, 2, 4);                                                   // [B, G, nb, b, D]
    }

    /// <summary>Back from [B, G, nb, b, E] / [B, G, nb, b] to [B, T, G, E] / [B, G, T].</summary>
    static (Tensor, Tensor) Unblock(Tensor o, Tensor lse, long t)
    {
        long bsz = o.shape[0], g = o.shape[1], e = o.shape[^1];
        return (o.reshape(bsz, g, -1, e).narrow(2, 0, t).permute(0, 2, 1, 3).contiguous(), lse.reshape(bsz, g, -1).narrow(2, 0, t).contiguous());
    }

    static (Tensor, Tensor) Local(Tensor q, Tensor k, Tensor v, int b, int l, double s)
    {
        long t = q.shape[1];
        int nb = (int)((t + b - 1) / b);
        long front = (long)(l - 1) * b, back = (long)nb * b - t;
        Tensor Windows(Tensor x) =>                                                        // [B, T, 1, E] → [B, 1, nb, ℓ·b, E]
            nn.functional.pad(x.squeeze(2), new long[] { 0, 0, front, back }).unfold(1, (long)l * b, b).transpose(-1, -2).unsqueeze(1);
        var qb = QueryBlocks(q, b, nb);                                                    // [B, G, nb, b, D]
        var scores = qb.matmul(Windows(k).transpose(-2, -1)) * s;                          // [B, G, nb, b, ℓ·b]
        var dev = q.device;
        var blockStart = torch.arange(nb, device: dev).view(nb, 1, 1) * b;
        var queryPos = blockStart + torch.arange(b, device: dev).view(1, b, 1);            // [nb, b, 1]
        var keyPos = blockStart - front + torch.arange((long)l * b, device: dev).view(1, 1, -1);  // blocks i−ℓ+1 … i
        scores = scores.masked_fill(((keyPos >= 0) & (keyPos <= queryPos)).logical_not(), double.NegativeInfinity);
        var (p, lse) = ReferenceAttention.Normalize(scores);
        return Unblock(p.matmul(Windows(v)), lse, t);
    }

    static (Tensor, Tensor)? Strided(Tensor q, Tensor k, Tensor v, int b, int l, int stride, int r, double s)
    {
        long t = q.shape[1];
        int nb = (int)((t + b - 1) / b);
        if (r >= nb) return null;                                                         // no stride block yet
        int groups = (nb + stride - 1) / stride;                                           // pad nb to a multiple of s
        Tensor Pick(Tensor x) =>                                                           // K.view(nb, b, d)[r::s] → [B, 1, groups·b, E]
            nn.functional.pad(x.squeeze(2), new long[] { 0, 0, 0, (long)groups * stride * b - t })
                .view(x.shape[0], groups, stride, b, x.shape[3]).select(2, r).reshape(x.shape[0], 1, (long)groups * b, x.shape[3]);
        var qb = QueryBlocks(q, b, nb).reshape(q.shape[0], q.shape[2], (long)nb * b, q.shape[3]);   // [B, G, nb·b, D]
        var scores = qb.matmul(Pick(k).transpose(-2, -1)) * s;                             // [B, G, nb·b, groups·b]
        var dev = q.device;
        var queryPos = torch.arange((long)nb * b, device: dev).view(-1, 1);
        var keyBlock = (torch.arange(groups, device: dev) * stride + r).repeat_interleave(b);        // j = r, r+s, …
        var keyPos = keyBlock * b + torch.arange(b, device: dev).repeat(groups);
        var keep = (keyPos.view(1, -1) <= queryPos)
                   & (queryPos.div(b, rounding_mode: RoundingMode.floor) - keyBlock.view(1, -1) >= l);  // i − j ≥ ℓ: not counted twice
        scores = scores.masked_fill(keep.logical_not(), double.NegativeInfinity);
        var (p, lse) = ReferenceAttention.Normalize(scores);
        var o = p.matmul(Pick(v));                                                         // [B, G, nb·b, Dv]
        return (o.narrow(2, 0, t).permute(0, 2, 1, 3).contiguous(), lse.narrow(2, 0, t).contiguous());
    }
}
