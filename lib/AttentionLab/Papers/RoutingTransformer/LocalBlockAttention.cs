using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// Block-local attention, the local heads of the Routing Transformer (official <c>local_attention_nd</c> with
/// query_shape = memory_flange = L; lucidrains' <c>LocalAttention</c> with look_backward = 1): the sequence is cut into
/// blocks of L tokens and each query attends to its own block and the previous one (and the next one when not causal).
/// Sparse: a batch of [L, 2L] (or [L, 3L]) attentions, O(n·L·d); never a T × T matrix. Dense twin:
/// <see cref="RoutingNaive.LocalBlock"/>.
/// </summary>
/// <remarks>
/// β(i) = ⌊i / L⌋;  query i sees key j ⇔ β(j) ∈ {β(i) − 1, β(i)} (∪ {β(i) + 1} when not causal) ∧ (j ≤ i when causal) ∧ j &lt; T
/// y_i = Σ_j softmax_j(q_i·k_j/√D + b_h(i − j)) v_j over those keys: between L + 1 and 2L keys per causal query.
/// b_h: an optional learned bias per head and relative distance (the official local heads are relative, <c>local_relative</c>;
/// this is a scalar per distance rather than Shaw et al.'s key and value embeddings), indexed by i − j + <see cref="BiasOffset"/>.
/// T need not be a multiple of L: the last block is padded and the padding masked.
/// </remarks>
public static class LocalBlockAttention
{
    /// <summary>Distances a block-local query can see: i − j ∈ [0, 2L) when causal, (−2L, 2L) otherwise.</summary>
    public static int BiasLength(int block, bool causal) => causal ? 2 * block : 4 * block - 1;

    /// <summary>The index of distance 0 in a relative bias: 0 when causal, 2L − 1 otherwise.</summary>
    public static int BiasOffset(int block, bool causal) => causal ? 0 : 2 * block - 1;

    /// <summary>
    /// q, k [B, T, H, D], v [B, T, H, Dv] → [B, T, H, Dv] with blocks of <paramref name="block"/> tokens;
    /// <paramref name="relativeBias"/> [H, <see cref="BiasLength"/>] adds b_h(i − j) to the scores.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, int block, bool causal = true, double? scale = null, Tensor? relativeBias = null)
    {
        Guard.Qkv(q, k, v);
        Guard.Positive(block, nameof(block));
        if (!q.shape.SequenceEqual(k.shape)) throw new ArgumentException($"k must have q's shape {Guard.ShapeText(q)}, got {Guard.ShapeText(k)}.", nameof(k));
        if (!v.shape.Take(3).SequenceEqual(q.shape.Take(3)))
            throw new ArgumentException($"v must be [B, T, H, Dv] with q's B, T, H {Guard.ShapeText(q)}, got {Guard.ShapeText(v)}.", nameof(v));
        CheckBias(relativeBias, q.shape[2], block, causal);
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], dv = v.shape[3];
        long nb = (t + block - 1) / block, padded = nb * block;
        Tensor Blocks(Tensor x) =>                                                        // [B, T, H, E] → [B, H, nb, L, E]
            nn.functional.pad(x.permute(0, 2, 1, 3), new long[] { 0, 0, 0, padded - t }).view(b, h, nb, block, x.shape[3]);
        var qb = Blocks(q);
        var kb = Blocks(k);
        var vb = Blocks(v);
        var offsets = causal ? new long[] { -1, 0 } : new long[] { -1, 0, 1 };
        Tensor Around(Tensor x) => torch.cat(offsets.Select(o => Shift(x, o)).ToArray(), 3);   // blocks β−1, β (, β+1)
        var kk = Around(kb);                                                              // [B, H, nb, |o|·L, D]
        var vv = Around(vb);
        var pos = torch.arange(padded, device: q.device).view(nb, block);                 // position of each query slot
        var keyPos = torch.cat(offsets.Select(o => pos + o * block).ToArray(), 1);       // [nb, |o|·L]
        var keep = (keyPos >= 0) & (keyPos < t);                                          // inside the sequence
        var qPos = pos.unsqueeze(-1);
        var kPos = keyPos.unsqueeze(-2);
        var mask = keep.unsqueeze(-2).expand(nb, block, -1);
        if (causal) mask = mask & (kPos <= qPos);                                         // j ≤ i
        var s = qb.matmul(kk.transpose(-1, -2)) * (scale ?? 1.0 / Math.Sqrt(d));           // [B, H, nb, L, |o|·L]
        if (relativeBias is not null)
        {
            var rel = (qPos - kPos + BiasOffset(block, causal)).clamp(0, BiasLength(block, causal) - 1);   // i − j (+ offset)
            s = s + relativeBias.index_select(1, rel.flatten()).view(h, nb, block, -1).to(s.dtype);    // + b_h(i − j)
        }
        s = s.masked_fill(mask.logical_not(), double.NegativeInfinity);
        var (p, _) = ReferenceAttention.Normalize(s);
        var y = p.matmul(vv).reshape(b, h, padded, dv).narrow(2, 0, t);                   // drop the padded queries
        return y.permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    internal static void CheckBias(Tensor? bias, long heads, int block, bool causal)
    {
        if (bias is null) return;
        Guard.Rank(bias, 2, nameof(bias), "H, distances");
        if (bias.shape[0] != heads || bias.shape[1] != BiasLength(block, causal))
            throw new ArgumentException(
                $"relativeBias must be [H, {BiasLength(block, causal)}] = [{heads}, {BiasLength(block, causal)}], got {Guard.ShapeText(bias)}.",
                "relativeBias");
    }

    /// <summary>Blocks [B, H, nb, L, E] shifted by <paramref name="offset"/> blocks (block β holds block β + offset; zeros outside).</summary>
    static Tensor Shift(Tensor x, long offset)
    {
        if (offset == 0) return x;
        long nb = x.shape[2];
        var zeros = torch.zeros_like(x.narrow(2, 0, Math.Min(Math.Abs(offset), nb)));
        if (Math.Abs(offset) >= nb) return torch.zeros_like(x);
        return offset < 0
            ? torch.cat(new[] { zeros, x.narrow(2, 0, nb + offset) }, 2)                  // block β sees β − 1
            : torch.cat(new[] { x.narrow(2, offset, nb - offset), zeros }, 2);            // block β sees β + 1
    }
}
