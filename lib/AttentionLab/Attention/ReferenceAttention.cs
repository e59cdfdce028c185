using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>What softmax attention produced: output [B,Tq,Hq,Dv], probabilities [B,Hq,Tq,Tk], log-sum-exp [B,Hq,Tq].</summary>
public sealed class AttentionResult : IDisposable
{
    public AttentionResult(Tensor output, Tensor probabilities, Tensor logSumExp)
    {
        Output = output; Probabilities = probabilities; LogSumExp = logSumExp;
    }

    public Tensor Output { get; }
    public Tensor Probabilities { get; }
    /// <summary>log Σ_j exp(s_ij) per query; −∞ for a query that may attend to nothing.</summary>
    public Tensor LogSumExp { get; }

    /// <summary>Moves all three tensors out of the current dispose scope (for functions that return this).</summary>
    public AttentionResult MoveToOuterDisposeScope()
    {
        Output.MoveToOuterDisposeScope(); Probabilities.MoveToOuterDisposeScope(); LogSumExp.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Output.Dispose(); Probabilities.Dispose(); LogSumExp.Dispose();
    }
}

/// <summary>
/// Reference softmax attention, the library's ground truth: explicit scores, explicit scale, masks, grouped-query
/// heads, and the log-sum-exp every merge/scan method checks against. Layout [B, T, H, D].
/// </summary>
/// <remarks>
/// s_ij = scale · q_i·k_j  (−∞ where masked);  p_ij = exp(s_ij − LSE_i);  LSE_i = log Σ_j exp(s_ij);  o_i = Σ_j p_ij v_j.
/// A query with every key masked gets p = 0, o = 0 and LSE = −∞ (never NaN); "every key masked" is read from the mask
/// and the causal flag, never from the scores, so a NaN in q or k stays NaN in p and o (NaN in, NaN out). A non-finite
/// v_j reaches o_i exactly where p_ij ≠ 0 (<see cref="WeightedValues"/>), as in the forms that skip masked keys.
/// Masks: boolean keep-masks (true = may attend) or floating additive biases (−∞ hides a key); integer masks are refused
/// (an int64 0/1 mask added as a bias would let every hidden key through).
/// Causal with Tq ≤ Tk aligns queries to the end: query i sees keys j ≤ i + (Tk − Tq) (decode convention).
/// </remarks>
public static class ReferenceAttention
{
    /// <param name="q">[B, Tq, Hq, D]</param>
    /// <param name="k">[B, Tk, Hkv, D]; Hq must be a multiple of Hkv (grouped-query attention).</param>
    /// <param name="v">[B, Tk, Hkv, Dv]</param>
    /// <param name="causal">mask keys after each query (end-aligned).</param>
    /// <param name="scale">score scale; default 1/√D.</param>
    /// <param name="mask">optional keep-mask, boolean (true = may attend) or additive float, broadcastable to [B, Hq, Tq, Tk].</param>
    public static AttentionResult Softmax(Tensor q, Tensor k, Tensor v, bool causal = false, double? scale = null, Tensor? mask = null)
    {
        using var scope = NewDisposeScope();
        var (scores, vh, keep) = MaskedScoresAndKeep(q, k, v, causal, scale, mask);   // validates q, k, v and the mask

        var (probs, lse) = NormalizeRows(scores, AnyVisible(keep));
        var output = WeightedValues(probs, vh).permute(0, 2, 1, 3).contiguous();   // o_i = Σ_j p_ij v_j → [B, Tq, Hq, Dv]
        return new AttentionResult(output, probs, lse).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// o = p·v over the keys each row uses: [..., Tq, Tk] weights times [..., Tk, Dv] values, where a key with p_ij = 0 (masked,
    /// or an exact zero) contributes nothing even when v_j is NaN or ±∞ (the dense product would make it 0·NaN = NaN).
    /// </summary>
    /// <remarks>
    /// o_i = Σ_{j: p_ij ≠ 0} p_ij v_j. Finite v (the usual case) is one matmul; the check costs one pass over v and runs where
    /// <see cref="Guard.ShouldReadValues"/> allows (CPU always; on an accelerator only with
    /// <see cref="Guard.CheckValuesOnAccelerators"/>, otherwise the plain product, so a non-finite v_j can also reach rows
    /// that do not see it there). With a non-finite v: o_i = p_i·v′ (v′ = v with non-finite entries 0), then per value dim
    /// NaN where a used key holds NaN or both +∞ and −∞, else ±∞ where a used key holds one. A NaN p_ij (NaN in q or k) still
    /// makes its row NaN.
    /// </remarks>
    public static Tensor WeightedValues(Tensor p, Tensor v)
    {
        Guard.NotNull(p, nameof(p));
        Guard.NotNull(v, nameof(v));
        if (!Guard.ShouldReadValues(v) || v.isfinite().all().item<bool>()) return p.matmul(v);
        using var scope = NewDisposeScope();
        var used = p.ne(0).to(v.dtype);                                              // p_ij ≠ 0 (a NaN p counts as used)
        var o = p.matmul(torch.where(v.isfinite(), v, torch.zeros_like(v)));        // the finite part, Σ_j p_ij v′_j
        var nan = used.matmul(v.isnan().to(v.dtype)) > 0;                            // a used key holds NaN in this dim
        var up = used.matmul(v.isposinf().to(v.dtype)) > 0;
        var down = used.matmul(v.isneginf().to(v.dtype)) > 0;
        o = o.masked_fill(up, double.PositiveInfinity).masked_fill(down, double.NegativeInfinity);
        o = o.masked_fill(nan.logical_or(up.logical_and(down)), double.NaN);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Softmax of masked scores [..., Tq, Tk] through the log-sum-exp: probabilities [..., Tq, Tk] and LSE [..., Tq]. The
    /// normalisation every softmax-attention path in the library shares (reference attention, the mixers' default).
    /// </summary>
    /// <remarks>
    /// p_ij = exp(s_ij − LSE_i), LSE_i = log Σ_j exp(s_ij). A fully masked row gets p = 0 and LSE = −∞. Which rows are fully
    /// masked comes from the mask: <paramref name="anyVisible"/> [..., Tq] (broadcastable), true where the
    /// row has at least one key its mask lets through. Without it the −∞ entries of the scores are the mask, so a row is
    /// fully masked when every score is −∞ (LSE = −∞ exactly); a NaN or +∞ score never counts as masked. Either way a NaN in
    /// a visible score gives a NaN row, never zeros. The masked row needs no pass of its own: with the shift 0 instead of
    /// LSE = −∞, exp(−∞ − 0) = 0 already.
    /// </remarks>
    /// <param name="scores">[..., Tq, Tk], −∞ where masked.</param>
    /// <param name="anyVisible">optional boolean [..., Tq], broadcastable to the rows of the scores: true where the row sees at least one key.</param>
    public static (Tensor Probabilities, Tensor LogSumExp) Normalize(Tensor scores, Tensor? anyVisible = null)
    {
        Guard.NotNull(scores, nameof(scores));
        Guard.FloatingPoint(scores, nameof(scores));
        if (scores.dim() < 1) throw new ArgumentException($"scores must have rank ≥ 1 (…, Tq, Tk), got shape {Guard.ShapeText(scores)}.", nameof(scores));
        if (anyVisible is null) return NormalizeRows(scores, RowVisibility.FromScores);
        Guard.NotNull(anyVisible, nameof(anyVisible));
        if (anyVisible.dtype != ScalarType.Bool)
            throw new ArgumentException($"anyVisible must be boolean (true = the row sees a key), got {anyVisible.dtype}.", nameof(anyVisible));
        Guard.SameDevice(scores, nameof(scores), anyVisible, nameof(anyVisible));
        var rows = scores.shape[..^1];
        if (!Guard.Broadcasts(anyVisible.shape, rows))
            throw new ArgumentException(
                $"anyVisible {Guard.ShapeText(anyVisible)} does not broadcast to the rows [{string.Join(", ", rows)}] of scores {Guard.ShapeText(scores)}.",
                nameof(anyVisible));
        return NormalizeRows(scores, new RowVisibility(anyVisible.unsqueeze(-1)));
    }

    /// <summary>Which rows of a score matrix see at least one key: every row, those the mask keeps ([..., Tq, 1] bool), or read from −∞ scores.</summary>
    internal readonly record struct RowVisibility(Tensor? Keep, bool FromScoresOnly = false)
    {
        public static RowVisibility EveryRow => new(null);
        public static RowVisibility FromScores => new(null, true);
    }

    /// <summary>
    /// The normaliser without argument checks. Where no row can be fully masked (the common case: no mask, causal, or a
    /// mask with a key in every row) it is one fused softmax plus two row maxima: p = softmax(s), and with j* = argmax_j s_ij,
    /// LSE_i = s_ij* − log p_ij* (p_ij* ≥ 1/Tk, so the log is well conditioned; its gradient is p_i, as it should be).
    /// Otherwise the shifted form: LSE by logsumexp, shift = LSE (0 on fully masked rows), p = exp(s − shift).
    /// </summary>
    /// <remarks>
    /// Fully masked rows need the second form: softmax of a row of −∞ is NaN, and its backward would carry NaN into the
    /// scores that made the −∞. On the CPU the check for such a row reads the small [..., Tq, 1] row flags (no pass over
    /// the scores); on an accelerator it would cost a device sync, so rows that may be masked always take the shifted form.
    /// </remarks>
    internal static (Tensor Probabilities, Tensor LogSumExp) NormalizeRows(Tensor scores, RowVisibility rows)
    {
        using var scope = NewDisposeScope();
        if (scores.shape[^1] > 0)
        {
            bool everyRow = rows.Keep is null && !rows.FromScoresOnly;
            if (everyRow || rows.Keep is { } shown && AllTrueOnCpu(shown))
                return FusedSoftmax(scores, scores.amax([-1], keepdim: true));
            if (rows.FromScoresOnly && scores.amax([-1], keepdim: true) is var maxima && AllTrueOnCpu(maxima.isneginf().logical_not()))
                return FusedSoftmax(scores, maxima);                                  // every row has a score above −∞
        }
        var lse = torch.logsumexp(scores, -1, keepdim: true);                          // LSE_i = log Σ_j exp(s_ij)
        var shift = rows.Keep is { } keep
            ? lse.masked_fill(keep.logical_not(), 0.0)                               // fully masked row: subtract 0, exp(−∞) = 0
            : lse.masked_fill(lse.isneginf(), 0.0);                                   // every score −∞ (NaN/+∞ are not masks)
        var probs = (scores - shift).exp_();                                          // p_ij = exp(s_ij − LSE_i)
        return (probs.MoveToOuterDisposeScope(), lse.squeeze(-1).MoveToOuterDisposeScope());   // masked row: every s = −∞, LSE = −∞
    }

    /// <summary>
    /// p = softmax(s) (one fused kernel) and LSE_i = max_j s_ij − log max_j p_ij from the row maxima [..., Tq, 1] of the scores
    /// (softmax is monotone: both maxima sit at j*). Two value-only max passes cost less than one max with indices.
    /// </summary>
    static (Tensor Probabilities, Tensor LogSumExp) FusedSoftmax(Tensor scores, Tensor maxima)
    {
        var probs = torch.softmax(scores, -1);                                        // p_ij = exp(s_ij − LSE_i)
        var lse = maxima - probs.amax([-1], keepdim: true).log();                       // LSE_i = s_ij* − log p_ij*
        return (probs.MoveToOuterDisposeScope(), lse.squeeze(-1).MoveToOuterDisposeScope());
    }

    /// <summary>True when the row flags are known to be all true without a device sync (CPU tensors only).</summary>
    static bool AllTrueOnCpu(Tensor flags) => flags.device_type == DeviceType.CPU && flags.all().item<bool>();

    /// <summary>
    /// Rows that see at least one key, from the keep-mask alone ([..., Tq, 1] at the mask's own shape, no pass over the
    /// scores); without a mask every row (causal, end-aligned with Tq ≤ Tk, always shows key 0).
    /// </summary>
    internal static RowVisibility AnyVisible(Tensor? keep) =>
        keep is null || keep.shape[^1] == 0 ? RowVisibility.EveryRow : new RowVisibility(keep.any(-1, keepdim: true));

    /// <summary>
    /// The masked, scaled scores [B, Hq, Tq, Tk] (−∞ where masked) and the values per query head [B, Hq, Tk, Dv]: the part
    /// every softmax variant shares (<see cref="AttentionVariants"/> changes only the normalisation). Validates first.
    /// </summary>
    internal static (Tensor Scores, Tensor Values) MaskedScores(Tensor q, Tensor k, Tensor v, bool causal, double? scale, Tensor? mask)
    {
        var (scores, values, _) = MaskedScoresAndKeep(q, k, v, causal, scale, mask);
        return (scores, values);
    }

    /// <summary>
    /// <see cref="MaskedScores"/> plus the boolean keep-mask it applied, at the mask's own shape (broadcastable to the scores;
    /// null without a mask): the mask, not the scores, then says which rows see no key. An additive −∞ hides its key
    /// exactly like false in a boolean mask (−∞ is written over the sum, so a NaN score at a hidden key stays hidden).
    /// </summary>
    internal static (Tensor Scores, Tensor Values, Tensor? Keep) MaskedScoresAndKeep(Tensor q, Tensor k, Tensor v, bool causal, double? scale, Tensor? mask)
    {
        Validate(q, k, v);
        if (scale is { } sc && !double.IsFinite(sc)) throw new ArgumentException($"scale must be finite, got {sc}.", nameof(scale));
        if (mask is not null) ValidateMask(mask, q, k);
        long tq = q.shape[1], tk = k.shape[1], hq = q.shape[2], hkv = k.shape[2];
        if (causal && tq > tk)
            throw new ArgumentException(
                $"causal attention needs Tq ≤ Tk (queries end-aligned to the keys), got q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}.", nameof(q));
        double s = scale ?? 1.0 / Math.Sqrt(q.shape[3]);
        var qh = q.permute(0, 2, 1, 3) * s;                    // [B, Hq, Tq, D], the scale folded into q (Tq·D, not Tq·Tk)
        var kh = RepeatKv(k.permute(0, 2, 1, 3), hq / hkv);   // [B, Hq, Tk, D]
        var vh = RepeatKv(v.permute(0, 2, 1, 3), hq / hkv);   // [B, Hq, Tk, Dv]
        var scores = qh.matmul(kh.transpose(-2, -1));          // s_ij = scale · q_i·k_j (a fresh tensor: masked in place below)
        Tensor? keep = null;
        if (mask is not null)
        {
            if (mask.dtype == ScalarType.Bool)
            {
                keep = mask;
                scores.masked_fill_(mask.logical_not(), double.NegativeInfinity);
            }
            else
            {
                var hidden = mask.isneginf();                  // additive: −∞ hides the key
                keep = hidden.logical_not();
                scores.add_(mask.to(scores.dtype)).masked_fill_(hidden, double.NegativeInfinity);
            }
        }
        if (causal)
        {
            var causalHidden = AttentionMasks.CausalHidden(tq, tk, q.device);   // cached: j > i + (Tk − Tq)
            scores.masked_fill_(causalHidden, double.NegativeInfinity);
            if (keep is not null) keep = keep & causalHidden.logical_not();
        }
        return (scores, vh, keep);
    }

    /// <summary>[Tq, Tk] boolean: true where query i may see key j, i.e. j ≤ i + (Tk − Tq) (same as <see cref="AttentionMasks.Causal"/>).</summary>
    public static Tensor CausalKeepMask(long tq, long tk, Device? device = null) => AttentionMasks.Causal(tq, tk, device);

    internal static Tensor RepeatKv(Tensor x, long groups) => groups == 1 ? x : x.repeat_interleave(groups, dim: 1);

    internal static void Validate(Tensor q, Tensor k, Tensor v)
    {
        Guard.Qkv(q, k, v, "B, Tq, Hq, D", "B, Tk, Hkv, D", "B, Tk, Hkv, Dv");
        if (k.shape[0] != q.shape[0])
            throw new ArgumentException($"k batch {k.shape[0]} ≠ q batch {q.shape[0]} (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).", nameof(k));
        if (k.shape[3] != q.shape[3])
            throw new ArgumentException($"k head dim {k.shape[3]} ≠ q head dim {q.shape[3]} (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).", nameof(k));
        if (v.shape[0] != k.shape[0] || v.shape[1] != k.shape[1] || v.shape[2] != k.shape[2])
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match k {Guard.ShapeText(k)} in batch, length and heads.", nameof(v));
        if (q.shape[2] % k.shape[2] != 0)
            throw new ArgumentException($"q heads {q.shape[2]} must be a multiple of k heads {k.shape[2]} (grouped-query attention).", nameof(k));
    }

    /// <summary>
    /// A mask must be boolean (keep) or floating (additive bias), on q's device, of rank ≤ 4 and broadcastable to the scores
    /// [B, Hq, Tq, Tk]. Checked up front (shapes and dtype only: no device read), so misuse names the mask and both shapes
    /// instead of surfacing as a native broadcast error.
    /// </summary>
    internal static void ValidateMask(Tensor mask, Tensor q, Tensor k)
    {
        Guard.NotNull(mask, nameof(mask));
        if (mask.dtype != ScalarType.Bool && !mask.is_floating_point())
            throw new ArgumentException(
                $"mask must be boolean (true = may attend) or a floating additive bias (−∞ hides a key), got {mask.dtype} {Guard.ShapeText(mask)}; " +
                "for a 0/1 keep-mask pass mask.ne(0) (an integer mask added as a bias would let hidden keys through).", nameof(mask));
        Guard.SameDevice(q, nameof(q), mask, nameof(mask));
        long[] target = [q.shape[0], q.shape[2], q.shape[1], k.shape[1]];
        if (mask.dim() == 0 || !Guard.Broadcasts(mask.shape, target))
            throw new ArgumentException(
                $"mask {Guard.ShapeText(mask)} does not broadcast to the scores [B, Hq, Tq, Tk] = [{string.Join(", ", target)}] " +
                $"of q {Guard.ShapeText(q)} and k {Guard.ShapeText(k)}.", nameof(mask));
    }
}
