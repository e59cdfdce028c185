using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// The grouped softmax of Landmark Attention (Mohtashami &amp; Jaggi 2023, §3.1) — the training form, fast (reshape to
/// blocks + softmax / log-sum-exp per block). <see cref="LandmarkNaive"/> is its loop twin.
/// </summary>
/// <remarks>
/// Blocks are regular: block c holds positions c(ℓ_b+1) … c(ℓ_b+1)+ℓ_b−1 and its landmark L_c at c(ℓ_b+1)+ℓ_b.
/// For query i in block b(i):
///   G(i) = { non-landmark j ≤ i in block b(i) } ∪ { L_c : c &lt; b(i) }   (own landmark excluded, also when i = L_{b(i)})
///   P_ij = exp(s_ij) / Σ_{j′∈G(i)} exp(s_ij′)                          (top level)
///   p^c_ij = exp(s_ij) / Σ_{j′ ∈ block c, not landmark} exp(s_ij′)    (inside an earlier block c)
///   w_ij = P_ij (j in block b(i));  w_ij = P_{i,L_c} · p^c_ij (j in earlier block c);  w_{i,L_c} = 0.
/// Every row sums to 1, and Σ_{j∈c} w_ij = P_{i,L_c}. Both softmaxes subtract their own group's max (torch.softmax).
/// </remarks>
public static class LandmarkAttention
{
    /// <summary>
    /// Grouped weights w [B, H, T, T] from scores s [B, H, T, T] (s_ij = q_i·k_j/√d; entries j &gt; i are ignored, so a
    /// pre-masked −∞ is fine) and the landmark pattern isLandmark [B, T], which must be the regular one of
    /// <see cref="LandmarkTokens.Mask"/> for <paramref name="blockSize"/> = ℓ_b in every row.
    /// </summary>
    public static Tensor GroupedWeights(Tensor scores, Tensor isLandmark, int blockSize)
    {
        CheckScores(scores, isLandmark, blockSize);
        using var scope = NewDisposeScope();
        return Weights(scores, blockSize).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Training-form attention output [B, T, H, Dv] for q, k [B, T, H, D] and v [B, T, H, Dv] (positions already applied):
    /// s = q kᵀ · scale (default 1/√D), w = grouped weights, o_i = Σ_j w_ij v_j.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, int blockSize, double? scale = null)
    {
        CheckQkv(q, k, v);
        Guard.Positive(blockSize, nameof(blockSize));
        using var scope = NewDisposeScope();
        var w = Weights(Scores(q, k, scale), blockSize);
        return w.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>s [B, H, Tq, Tk] = scale · q kᵀ for q [B, Tq, H, D], k [B, Tk, H, D].</summary>
    internal static Tensor Scores(Tensor q, Tensor k, double? scale = null) =>
        q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)).mul(scale ?? 1.0 / Math.Sqrt(q.shape[3]));

    /// <summary>The fast form, no checks (in the caller's scope).</summary>
    internal static Tensor Weights(Tensor scores, int blockSize)
    {
        var view = BlockView.Of(scores, blockSize);
        var (innerW, currentW) = Combine(view.Gate, view.Earlier, view.Inner, view.Current, view.CurrentMask);
        return view.Assemble(innerW, currentW);
    }

    /// <summary>
    /// Scores [B, H, Tq, Tk] (Tq = Tk = T, block-aligned at position 0) cut into regular blocks of ℓ_b + 1 keys: the
    /// landmark logits s_{i,L_c} (Gate [B, H, T, nb], valid where Earlier [T, nb]: c &lt; b(i)), the ordinary-token
    /// logits of every block (Inner [B, H, T, nb, ℓ_b]) and the logits of the query's own block (Current [B, H, T, ℓ_b+1],
    /// valid where CurrentMask [T, ℓ_b+1]: j ≤ i and j ≠ L_{b(i)}).
    /// </summary>
    internal sealed record BlockView(Tensor Gate, Tensor Earlier, Tensor Inner, Tensor Current, Tensor CurrentMask, Tensor OneHot, int BlockSize, long Length)
    {
        public static BlockView Of(Tensor scores, int blockSize)
        {
            long b = scores.shape[0], h = scores.shape[1], t = scores.shape[2], l = blockSize + 1;
            long nb = (t + l - 1) / l, padded = nb * l;
            var device = scores.device;
            var s = padded == t ? scores : nn.functional.pad(scores, new[] { 0L, padded - t });     // pad keys with 0 (never used)
            var s5 = s.view(b, h, t, nb, l);                                                       // [B, H, T, nb, ℓ_b+1]
            var queryBlock = torch.arange(t, device: device).div(l, rounding_mode: RoundingMode.floor);   // b(i)
            var blocks = torch.arange(nb, device: device);
            var earlier = blocks.unsqueeze(0).lt(queryBlock.unsqueeze(1));                          // c < b(i)  [T, nb]
            var slot = torch.arange(l, device: device);
            var keyPos = queryBlock.unsqueeze(1) * l + slot.unsqueeze(0);                           // position of slot o of b(i)
            var currentMask = keyPos.le(torch.arange(t, device: device).unsqueeze(1))
                .logical_and(slot.lt(blockSize).unsqueeze(0));                                      // j ≤ i, j ≠ L_{b(i)}
            var current = s5.gather(3, queryBlock.view(1, 1, t, 1, 1).expand(b, h, t, 1, l)).squeeze(3);   // s_ij, j in b(i)
            var gate = s5.select(4, blockSize);                                                     // s_{i,L_c}
            var inner = s5.narrow(4, 0, blockSize);                                                 // s_ij, j in c
            var oneHot = blocks.unsqueeze(0).eq(queryBlock.unsqueeze(1)).to(scores.dtype);         // c = b(i)  [T, nb]
            return new BlockView(gate, earlier, inner, current, currentMask, oneHot, blockSize, t);
        }

        /// <summary>w [B, H, T, T] from P_{i,L_c}·p^c_ij [B, H, T, nb, ℓ_b] and P_ij of the own block [B, H, T, ℓ_b+1].</summary>
        public Tensor Assemble(Tensor innerW, Tensor currentW)
        {
            long b = innerW.shape[0], h = innerW.shape[1], t = Length, nb = innerW.shape[3], l = BlockSize + 1;
            var w5 = torch.cat(new[] { innerW, torch.zeros(new[] { b, h, t, nb, 1L }, dtype: innerW.dtype, device: innerW.device) }, 4);   // w_{i,L_c} = 0
            w5 = w5 + OneHot.view(1, 1, t, nb, 1) * currentW.unsqueeze(3);                         // w_ij = P_ij in b(i)
            var w = w5.reshape(b, h, t, nb * l);
            return nb * l == t ? w : w.narrow(3, 0, t);
        }
    }

    /// <summary>
    /// The two-level softmax on already grouped logits (shared by training and memory inference).
    /// gate [..., G] = s_{i,L_c} of the G earlier blocks, valid where gateMask [..., G] (broadcastable);
    /// inner [..., G, ℓ_b] = the scores of those blocks' ordinary tokens; current [..., C] = the scores of the query's own
    /// block (or chunk), valid where currentMask. Returns (P_{i,L_c}·p^c_ij [..., G, ℓ_b], P_ij [..., C]); invalid
    /// entries get exactly 0. Every row must have at least one valid entry.
    /// </summary>
    internal static (Tensor Inner, Tensor Current) Combine(Tensor gate, Tensor gateMask, Tensor inner, Tensor current, Tensor currentMask)
    {
        long g = gate.shape[^1];
        var gateValid = gateMask.expand_as(gate);
        var top = torch.cat(new[] { gate.masked_fill(gateValid.logical_not(), double.NegativeInfinity),
            current.masked_fill(currentMask.expand_as(current).logical_not(), double.NegativeInfinity) }, -1);
        var p = torch.softmax(top, -1);                                                              // P over G(i) (max-subtracted)
        var pGate = p.narrow(-1, 0, g);                                                             // P_{i,L_c}
        var pCurrent = p.narrow(-1, g, current.shape[^1]);                                          // P_ij, j in own block
        var safe = inner.masked_fill(gateValid.unsqueeze(-1).logical_not(), 0.0);                  // unused blocks: finite, weight 0
        var within = torch.softmax(safe, -1);                                                       // p^c_ij = exp(s_ij − LSE_c)
        return (pGate.unsqueeze(-1) * within, pCurrent);
    }

    internal static void CheckScores(Tensor scores, Tensor isLandmark, int blockSize)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, T, T");
        Guard.FloatingPoint(scores, nameof(scores));
        if (scores.shape[2] != scores.shape[3])
            throw new ArgumentException($"scores must be square over time [B, H, T, T], got shape {Guard.ShapeText(scores)}.", nameof(scores));
        Guard.Rank(isLandmark, 2, nameof(isLandmark), "B, T");
        if (isLandmark.dtype != ScalarType.Bool) throw new ArgumentException($"isLandmark must be bool, got {isLandmark.dtype}.", nameof(isLandmark));
        if (isLandmark.shape[0] != scores.shape[0] || isLandmark.shape[1] != scores.shape[2])
            throw new ArgumentException(
                $"isLandmark must be [B, T] = [{scores.shape[0]}, {scores.shape[2]}], got {Guard.ShapeText(isLandmark)}.", nameof(isLandmark));
        Guard.SameDevice(scores, nameof(scores), isLandmark, nameof(isLandmark));
        Guard.Positive(blockSize, nameof(blockSize));
        if (!Guard.ShouldReadValues(isLandmark)) return;
        using var scope = NewDisposeScope();
        var expected = LandmarkTokens.Mask(isLandmark.shape[1], blockSize, isLandmark.device).unsqueeze(0);
        if (!isLandmark.eq(expected).all().item<bool>())
            throw new ArgumentException(
                $"isLandmark must mark every ({blockSize}+1)-th position (regular blocks of ℓ_b = {blockSize} tokens + landmark) in every row.",
                nameof(isLandmark));
    }

    internal static void CheckQkv(Tensor q, Tensor k, Tensor v)
    {
        Guard.Qkv(q, k, v);
        for (int d = 0; d < 3; d++)
            if (k.shape[d] != q.shape[d] || v.shape[d] != q.shape[d])
                throw new ArgumentException(
                    $"k and v must share B, T, H with q {Guard.ShapeText(q)}, got k {Guard.ShapeText(k)}, v {Guard.ShapeText(v)}.",
                    d == 2 || k.shape[d] != q.shape[d] ? nameof(k) : nameof(v));
        Guard.Dim(k, 3, q.shape[3], nameof(k), "head dim");
    }
}
