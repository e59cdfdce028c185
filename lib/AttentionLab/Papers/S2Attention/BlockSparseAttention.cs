using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// Gather-based block-sparse attention: each (KV head, query block) gathers only the key blocks its pattern lists
/// (padded to the longest list) and runs softmax attention over them. Work ∝ Σ kept blocks, not T².
/// </summary>
/// <remarks>
/// For query block i of head h with listed key blocks J_{h,i}:  K̃ = [K_j]_{j∈J},  s = scale · Q_i K̃ᵀ,
/// masked where the slot is padding or key position &gt; query position (token causality in the diagonal block);
/// o = softmax(s) Ṽ, LSE = log Σ exp(s).
/// </remarks>
public static class BlockSparseAttention
{
    /// <summary>q [B, T, Hq, D], k [B, T, Hkv, D], v [B, T, Hkv, Dv] → (output [B, T, Hq, Dv], LSE [B, Hq, T]).</summary>
    public static (Tensor Output, Tensor LogSumExp) Forward(Tensor q, Tensor k, Tensor v, BlockMask mask, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(mask);
        S2Checks.Inputs(q, k, v, mask);
        using var scope = NewDisposeScope();
        long bsz = q.shape[0], t = q.shape[1], hq = q.shape[2], d = q.shape[3], hkv = k.shape[2], dv = v.shape[3], g = hq / hkv;
        int b = mask.BlockSize, nb = (int)((t + b - 1) / b);
        long pad = nb * b - t;
        var dev = q.device;

        // Lists of key blocks per (head, query block), padded with block 0 and a valid flag.
        int width = 0;
        var lists = new int[hkv, nb][];
        for (int h = 0; h < hkv; h++)
            for (int i = 0; i < nb; i++) { lists[h, i] = mask.KeyBlocks(h, i); width = Math.Max(width, lists[h, i].Length); }
        var idx = new long[hkv * nb * width];
        var valid = new bool[hkv * nb * width];
        for (int h = 0; h < hkv; h++)
            for (int i = 0; i < nb; i++)
                for (int m = 0; m < lists[h, i].Length; m++)
                {
                    idx[(h * nb + i) * width + m] = h * nb + lists[h, i][m];               // flat (head, key block)
                    valid[(h * nb + i) * width + m] = true;
                }
        var flat = torch.tensor(idx, device: dev);
        var slot = torch.tensor(valid, new long[] { hkv, nb, width }, device: dev);

        Tensor Blocks(Tensor x) =>                                                         // [B, T, H, E] → [B, H·nb, b, E]
            nn.functional.pad(x, new long[] { 0, 0, 0, 0, 0, pad }).view(bsz, nb, b, x.shape[2], x.shape[3])
                .permute(0, 3, 1, 2, 4).reshape(bsz, x.shape[2] * nb, b, x.shape[3]);
        var kg = Blocks(k).index_select(1, flat).view(bsz, hkv, 1, nb, width * b, d);      // K̃  [B, Hkv, 1, nb, W·b, D]
        var vg = Blocks(v).index_select(1, flat).view(bsz, hkv, 1, nb, width * b, dv);     // Ṽ
        var qb = Blocks(q).view(bsz, hkv, g, nb, b, d);                                     // Q_i per group [B, Hkv, G, nb, b, D]

        double s = scale ?? 1.0 / Math.Sqrt(d);
        var scores = qb.matmul(kg.transpose(-2, -1)) * s;                                  // s = scale · Q_i K̃ᵀ
        var keyPos = (torch.tensor(idx, new long[] { hkv, nb, width }, device: dev).remainder(nb) * b).unsqueeze(-1)
                     + torch.arange(b, device: dev);                                       // [Hkv, nb, W, b]
        keyPos = keyPos.view(hkv, 1, nb, 1, width * b);
        var queryPos = (torch.arange(nb, device: dev) * b).view(nb, 1) + torch.arange(b, device: dev);  // [nb, b]
        var keep = slot.repeat_interleave(b, dim: 2).view(hkv, 1, nb, 1, width * b)
                   & (keyPos <= queryPos.view(1, 1, nb, b, 1));                            // padding slot ∨ future key → masked
        scores = scores.masked_fill(keep.logical_not(), double.NegativeInfinity);
        var (probs, lse) = ReferenceAttention.Normalize(scores);                           // p = softmax(s), LSE = log Σ exp(s)
        var o = probs.matmul(vg);                                                           // [B, Hkv, G, nb, b, Dv]
        var output = o.reshape(bsz, hq, nb * b, dv).narrow(2, 0, t).permute(0, 2, 1, 3).contiguous();
        var lseOut = lse.reshape(bsz, hq, nb * b).narrow(2, 0, t).contiguous();
        return (output.MoveToOuterDisposeScope(), lseOut.MoveToOuterDisposeScope());
    }
}
