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
    public static (long Dimension, double Value)[] OutlierDimensions(ActivationCache cache, int layer, int count = 3, string residual = "resid_post", long token = 0)
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
}
