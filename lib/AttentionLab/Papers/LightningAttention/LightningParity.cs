using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// Lightning Attention's rows of the parity benchmark (<see cref="Parity"/>): the engine's chunked form and the tiled loop
/// against the same algorithms written as bare TorchSharp ops (docs/benchmarks.md, "Parity").
/// </summary>
public static class LightningParity
{
    /// <summary>The two Lightning cases at batch 1, <paramref name="heads"/> heads of width <paramref name="dim"/>, float32, block 64.</summary>
    public static IReadOnlyList<ParityCase> Cases(int heads = 4, int dim = 64, Device? device = null) =>
    [
        new("Lightning chunked (linear engine, decay)",
            (t, grad) => [.. Parity.Qkv(t, heads, dim, device, grad).Take(3), .. LightningExtras(heads, device)],
            x => [LightningAttention.Forward(x[0], x[1], x[2], x[3], Parity.Chunk).Output],
            x =>
            {
                var f = DecayFactors(x[3], Parity.Chunk);
                return [ParityBareOps.Chunked(Parity.Heads(x[0]), Parity.Heads(x[1]), Parity.Heads(x[2]), Parity.Chunk, f[0], f[1], f[2], f[3],
                    normalize: false, eps: 0).permute(0, 2, 1, 3).contiguous()];
            },
            "heads-first copies; per chunk (Q Kᵀ ⊙ D) V batched, ΔS batched; loop: += λ^{i+1} Q S, S ← λ^C S + ΔS" + Parity.Contiguous),
        new("Lightning tiled (block loop)",
            (t, grad) => [.. Parity.Qkv(t, heads, dim, device, grad).Take(3), .. LightningExtras(heads, device)],
            x => [LightningAttention.Tiled(x[0], x[1], x[2], x[3], Parity.Chunk).Output],
            x =>
            {
                var f = DecayFactors(x[3], Parity.Chunk);
                var (q, k, v) = (x[0].permute(0, 2, 1, 3), x[1].permute(0, 2, 1, 3), x[2].permute(0, 2, 1, 3));
                return [BareTiled(q, k, v, Parity.Chunk, f[0], f[4], f[5], f[3]).permute(0, 2, 1, 3).contiguous()];
            },
            "per block: (Q Kᵀ ⊙ D) V + λ^j Q KV into a preallocated output, KV ← λ^B KV + (λ^{B−j} K)ᵀ V" + Parity.Contiguous),
    ];

    /// <summary>log λ_h = −a_h (ALiBi slopes, as Lightning's TNL); the bare ops derive their factors from it on every call.</summary>
    static Tensor[] LightningExtras(int heads, Device? device) =>
        [torch.tensor(DecaySchedules.AlibiSlopes(heads).Select(a => -a).ToArray(), dtype: ScalarType.Float32, device: device)];

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

    /// <summary>Lightning's tiled loop (the last block may be shorter): per block intra + λ^{j} Q KV, KV ← λ^B KV + (λ^{B−j} K)ᵀ V.</summary>
    internal static Tensor BareTiled(Tensor q, Tensor k, Tensor v, int block, Tensor mask, Tensor qj, Tensor kj, Tensor gamma)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3];
        bool track = ParityBareOps.Tracks(q, k, v);
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
}
