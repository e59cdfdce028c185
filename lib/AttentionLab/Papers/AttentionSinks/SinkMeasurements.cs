using AttentionLab.Core;
using AttentionLab.Interp;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>
/// The attention-sink survey's canonical measurements (Su et al. 2026, P47 §2) on any hooked model's cache: sink score and
/// sink rate (Gu et al., ε = 0.3), massive activation of the sink token, its outlier dimensions, and the no-op check
/// (a sink's value is small). The sink score itself lives in <see cref="HeadScores"/> / <see cref="Attention.AttentionStats"/>.
/// </summary>
/// <remarks>
/// massive activation, layer l:  r_l = ‖h_s^{(l)}‖ / median_i ‖h_i^{(l)}‖   (h = the residual after block l; s = the sink token)
/// no-op check, head (l, h):     ρ_{l,h} = ‖v_s‖ / mean_{i≠s} ‖v_i‖          (small ρ: attending to s adds almost nothing)
/// Both are averaged over the batch.
/// sink output share, head (l, h): σ_{l,h} = Σ_{b, i∈V} ‖A_is (v_s ⊙ g_i) W_O^h‖ / Σ_{b, i∈V} ‖(Σ_j A_ij v_j ⊙ g_i) W_O^h‖
///   W_O^h = the columns of W_O that read head h; g_i = the G1 gate (1 without one); V = the queries of the sink score
///   (i ≥ max(s, 1) causal, all i otherwise). A ratio of sums over queries, so a head whose output is near zero does not
///   dominate. σ ≪ a_s (the sink's attention share) means the sink's value is small: attending to it is a no-op.
/// </remarks>
public static class SinkMeasurements
{
    /// <summary>
    /// r_l per layer from the cached residual <paramref name="residual"/> ("resid_post" for TinyGpt; "normalized_resid_post"
    /// for the post-LN MiniLm). Needs blocks.{l}.hook_{residual} for every layer in the cache.
    /// </summary>
    public static double[] MassiveActivation(ActivationCache cache, string residual = "resid_post", long token = 0)
    {
        ArgumentNullException.ThrowIfNull(cache);
        return Enumerable.Range(0, cache.LayerCount).Select(l =>
        {
            using var scope = NewDisposeScope();
            var h = Residual(cache, residual, l, token);
            var norms = h.to(ScalarType.Float64).norm(-1);                                     // ‖h_i‖ [B, T]
            var median = norms.sort(1).Values.select(1, (norms.shape[1] - 1) / 2);             // median_i ‖h_i‖ [B] (lower middle, as torch.median)
            return (norms.select(1, token) / median).mean().item<double>();                    // r_l, mean over the batch
        }).ToArray();
    }

    /// <summary>The <paramref name="count"/> coordinates with the largest |h_s| at layer <paramref name="layer"/> (batch mean), largest first.</summary>
    public static (long Dimension, double Value)[] OutlierDimensions(ActivationCache cache, int layer, int count = 3, string residual = "resid_post",
        long token = 0)
    {
        ArgumentNullException.ThrowIfNull(cache);
        Guard.Positive(count, nameof(count));
        using var scope = NewDisposeScope();
        var h = Residual(cache, residual, layer, token).select(1, token).to(ScalarType.Float64).mean(new long[] { 0 });   // h_s [D]
        var (values, indices) = h.abs().topk(Math.Min(count, (int)h.shape[0]));
        var dims = indices.cpu().data<long>().ToArray();
        var signed = h.cpu().data<double>().ToArray();
        return dims.Select(d => (d, signed[d])).ToArray();
    }

    /// <summary>ρ [L, H] = ‖v_s‖ / mean_{i≠s} ‖v_i‖ from the cached attn.hook_v [B, T, H, Dh] of every layer.</summary>
    public static Tensor ValueNormRatio(ActivationCache cache, long token = 0)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        var rows = Enumerable.Range(0, cache.LayerCount).Select(l =>
        {
            var v = cache["v", l];
            Guard.Rank(v, 4, $"blocks.{l}.attn.hook_v", "B, T, H, Dh");
            long t = v.shape[1];
            if (token < 0 || token >= t || t < 2) throw new ArgumentOutOfRangeException(nameof(token), token, $"token must be in [0, {t}) with T ≥ 2.");
            var norms = v.to(ScalarType.Float64).norm(-1);                                      // ‖v_i‖ [B, T, H]
            var others = (norms.sum(1) - norms.select(1, token)) / (t - 1);                      // mean_{i≠s} ‖v_i‖ [B, H]
            return (norms.select(1, token) / others).mean(new long[] { 0 });                    // ρ per head, mean over batch
        }).ToArray();
        return torch.stack(rows).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One row per (layer, head): sink score of <paramref name="token"/>, whether it passes ε, the no-op ratio ρ and the
    /// row entropy; needs hook_pattern and hook_v cached. <paramref name="causal"/>: decoder (true) or encoder (false) rule.
    /// </summary>
    public static DataFrame HeadTable(ActivationCache cache, bool causal, long token = 0, double epsilon = 0.3)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        var sink = HeadScores.SinkScore(cache, token, causal).to(ScalarType.Float64).cpu();
        var ratio = ValueNormRatio(cache, token).cpu();
        var entropy = HeadScores.Entropy(cache).to(ScalarType.Float64).cpu();
        long layers = sink.shape[0], heads = sink.shape[1];
        var idx = Enumerable.Range(0, (int)(layers * heads)).ToArray();
        var s = sink.data<double>().ToArray(); var r = ratio.data<double>().ToArray(); var e = entropy.data<double>().ToArray();
        return new DataFrame(
            new Int32DataFrameColumn("layer", idx.Select(i => (int)(i / heads))),
            new Int32DataFrameColumn("head", idx.Select(i => (int)(i % heads))),
            new DoubleDataFrameColumn("sink_score", s),
            new BooleanDataFrameColumn($"sink (> {epsilon})", s.Select(x => x > epsilon)),
            new DoubleDataFrameColumn("value_norm_ratio", r),
            new DoubleDataFrameColumn("entropy", e));
    }

    static Tensor Residual(ActivationCache cache, string residual, int layer, long token)
    {
        var h = cache[residual, layer];
        Guard.Rank(h, 3, $"blocks.{layer}.hook_{residual}", "B, T, D");
        if (token < 0 || token >= h.shape[1]) throw new ArgumentOutOfRangeException(nameof(token), token, $"token must be in [0, {h.shape[1]}).");
        return h;
    }

    /// <summary>
    /// σ [L, H]: the share of each head's output norm (after W_O, bias excluded) carried by the sink token
    /// <paramref name="token"/>, from the cached attn.hook_pattern [B, H, T, T], attn.hook_v [B, T, H, Dh] and, where
    /// present, attn.hook_gate [B, T, H, Dh]; <paramref name="outputWeights"/> holds W_O [d, H·Dh] of every layer.
    /// </summary>
    public static Tensor SinkOutputShare(ActivationCache cache, IReadOnlyList<Tensor> outputWeights, long token = 0, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(outputWeights);
        if (outputWeights.Count != cache.LayerCount)
            throw new ArgumentException($"outputWeights must hold one W_O per layer ({cache.LayerCount}), got {outputWeights.Count}.", nameof(outputWeights));
        using var scope = NewDisposeScope();
        var rows = Enumerable.Range(0, cache.LayerCount).Select(l =>
        {
            var (pattern, v, gate, w, first) = ShareInputs(cache, outputWeights[l], l, token, causal);
            long h = v.shape[2], dh = v.shape[3];
            var w3 = w.view(w.shape[0], h, dh).permute(1, 2, 0);                                // W_O^h as [H, Dh, d]
            var gates = gate ?? torch.ones_like(v);                                              // g [B, T, H, Dh]
            var sinkValue = v.select(1, token).unsqueeze(1) * gates;                             // v_s ⊙ g_i [B, T, H, Dh]
            var sinkOut = torch.einsum("bihe,hed->bhid", sinkValue, w3)
                          * pattern.select(-1, token).unsqueeze(-1);                             // A_is (v_s ⊙ g_i) W_O^h [B, H, T, d]
            var z = torch.einsum("bhij,bjhe->bihe", pattern, v) * gates;                         // (Σ_j A_ij v_j) ⊙ g_i
            var allOut = torch.einsum("bihe,hed->bhid", z, w3);                                  // [B, H, T, d]
            long t = pattern.shape[2];
            var sinkNorm = sinkOut.norm(-1).narrow(2, first, t - first).sum(new long[] { 0, 2 });   // Σ_{b, i∈V} [H]
            var allNorm = allOut.norm(-1).narrow(2, first, t - first).sum(new long[] { 0, 2 });
            return sinkNorm / allNorm;
        }).ToArray();
        return torch.stack(rows).MoveToOuterDisposeScope();
    }

    internal static (Tensor Pattern, Tensor V, Tensor? Gate, Tensor W, long First) ShareInputs(ActivationCache cache, Tensor w, int layer, long token,
        bool causal)
    {
        var pattern = cache["pattern", layer];
        var v = cache["v", layer];
        Guard.Rank(pattern, 4, $"blocks.{layer}.attn.hook_pattern", "B, H, T, T");
        Guard.Rank(v, 4, $"blocks.{layer}.attn.hook_v", "B, T, H, Dh");
        Guard.Rank(w, 2, "outputWeights", "d, H·Dh");
        long t = v.shape[1], h = v.shape[2], dh = v.shape[3];
        if (pattern.shape[1] != h || pattern.shape[2] != t || pattern.shape[3] != t)
            throw new ArgumentException($"pattern {Guard.ShapeText(pattern)} does not match v {Guard.ShapeText(v)} in layer {layer}.", nameof(cache));
        if (w.shape[1] != h * dh)
            throw new ArgumentException($"W_O of layer {layer} is {Guard.ShapeText(w)}; it must read H·Dh = {h * dh} channels.", "outputWeights");
        if (token < 0 || token >= t) throw new ArgumentOutOfRangeException(nameof(token), token, $"token must be in [0, {t}).");
        long first = causal ? Math.Max(token, 1) : 0;
        if (first >= t) throw new ArgumentException($"no query can see token {token} besides itself (T = {t}).", nameof(token));
        var gate = cache.Contains($"blocks.{layer}.attn.hook_gate") ? cache["gate", layer] : null;
        if (gate is not null && !gate.shape.SequenceEqual(v.shape))
            throw new ArgumentException($"gate {Guard.ShapeText(gate)} must match v {Guard.ShapeText(v)} in layer {layer}.", nameof(cache));
        return (pattern, v, gate, w.to(v.dtype), first);
    }
}
