using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SecondarySinks;

/// <summary>A token's sink class by its lifetime (spec §2): primary, secondary, or noise.</summary>
public enum SinkLabel
{
    /// <summary>Aligned with the BOS state for too few layers to count.</summary>
    Noise,
    /// <summary>Aligned with the BOS state for a middle stretch of layers: a secondary sink.</summary>
    Secondary,
    /// <summary>Aligned for (almost) the whole window, like the BOS sink itself.</summary>
    Primary,
}

/// <summary>
/// The label thresholds: primary when the lifetime n ≥ <paramref name="PrimaryMin"/>, secondary when
/// <paramref name="SecondaryAbove"/> &lt; n &lt; PrimaryMin, noise otherwise. The paper's code uses L − 15 and 4
/// (for 28–64-layer models); <see cref="Rescaled"/> keeps their shares of the depth at a reference depth of 36.
/// </summary>
public sealed record LabelThresholds(double PrimaryMin, double SecondaryAbove)
{
    /// <summary>The depth the rescaling is anchored at (Qwen3-4B, one of the paper's models, has 36 layers).</summary>
    public const int ReferenceDepth = 36;

    /// <summary>The official code's thresholds for an <paramref name="layers"/>-layer model: primary n ≥ L − 15, secondary 4 &lt; n &lt; L − 15.</summary>
    public static LabelThresholds Paper(int layers)
    {
        Guard.Positive(layers, nameof(layers));
        return new(layers - 15, 4);
    }

    /// <summary>
    /// The thresholds scaled to a toy of <paramref name="layers"/> layers: primary n ≥ L·(1 − 15/36), secondary n &gt; L·4/36
    /// (at L = 36 this is the paper's L − 15 and 4).
    /// </summary>
    public static LabelThresholds Rescaled(int layers)
    {
        Guard.Positive(layers, nameof(layers));
        return new(layers - 15.0 * layers / ReferenceDepth, 4.0 * layers / ReferenceDepth);
    }

    /// <summary>The class of a token that was a sink in <paramref name="lifetime"/> layers.</summary>
    public SinkLabel Classify(int lifetime) =>
        lifetime >= PrimaryMin ? SinkLabel.Primary : lifetime > SecondaryAbove ? SinkLabel.Secondary : SinkLabel.Noise;
}

/// <summary>
/// What <c>SinkDetector.Detect</c> found in one sequence: the BOS position, the layer
/// window [Start, End) it searched, and for every token flagged at least once the states (layers) where it was flagged.
/// </summary>
public sealed record SinkMap(int Bos, int Start, int End, IReadOnlyDictionary<int, int[]> Layers)
{
    /// <summary>Lifetime n_i: the number of states in the window where token <paramref name="token"/> is a sink (0 when never).</summary>
    public int Lifetime(int token) => Layers.TryGetValue(token, out var l) ? l.Length : 0;

    /// <summary>True when both maps have the same window and the same flagged layers per token.</summary>
    public bool SameAs(SinkMap other) =>
        other is not null && Bos == other.Bos && Start == other.Start && End == other.End && Layers.Count == other.Layers.Count &&
        Layers.All(kv => other.Layers.TryGetValue(kv.Key, out var o) && o.SequenceEqual(kv.Value));
}

/// <summary>One labelled token of a <see cref="SinkMap"/>.</summary>
public sealed record SinkToken(int Token, int Lifetime, int[] Layers, SinkLabel Label);

/// <summary>
/// The paper's secondary-sink detector on the residual stream (official <c>hidden_state_norm_detection</c> and
/// <c>sink_labeling_machine</c>): the primary-sink layer window from the BOS norm curve, then per token the states in the
/// window whose direction matches the same state's BOS direction.
/// </summary>
/// <remarks>
/// h^{(l)} ∈ R^{T×D}: the hidden state after layer l (l = 0 is the embedding output, as HuggingFace's hidden_states, so a model
/// of L blocks has S = L + 1 states); b: the BOS / primary-sink position.
/// <code>
///   n_l = ‖h_b^{(l)}‖,   Δ_l = n_{l+1} − n_l                    (l = 0 … S − 2)
///   s = argmax_l Δ_l + 1                                           (the norm spike)
///   e = s + argmin_{l ≥ s} Δ_l + 1                                 (the norm drop; e = S when no Δ follows s)
///   token i &gt; b is a sink at state l ∈ [s, e)  ⇔  |cos(h_i^{(l)}, h_b^{(l)})| &gt; 0.9
///   lifetime n_i = #{l ∈ [s, e) : i is a sink at l}
/// </code>
/// Detection runs on the residual stream, not on attention, and each state is compared with the same state's BOS.
/// </remarks>
public static class SinkDetector
{
    /// <summary>The paper's cosine threshold for "aligned with BOS".</summary>
    public const double DefaultCosine = 0.9;

    /// <summary>The primary-sink window [start, end) from the BOS norms n_l [S] (S ≥ 2): start after the largest rise, end after the largest drop.</summary>
    public static (int Start, int End) PrimaryWindow(Tensor bosNorms)
    {
        Guard.Rank(bosNorms, 1, nameof(bosNorms), "S");
        Guard.FloatingPoint(bosNorms, nameof(bosNorms));
        using var scope = NewDisposeScope();
        var n = bosNorms.to(float64).cpu();
        if (n.shape[0] < 2) throw new ArgumentException($"bosNorms needs at least 2 states, got {Guard.ShapeText(bosNorms)}.", nameof(bosNorms));
        if (!n.isfinite().all().item<bool>()) throw new ArgumentException("bosNorms must be finite (a NaN norm has no window).", nameof(bosNorms));
        long s = n.shape[0];
        var delta = n.narrow(0, 1, s - 1) - n.narrow(0, 0, s - 1);                       // Δ_l = n_{l+1} − n_l
        int start = (int)FirstArg(delta, max: true) + 1;                                 // s = argmax Δ + 1
        if (start >= s - 1) return (start, (int)s);                                      // no Δ at or after s: window runs to the end
        int end = start + (int)FirstArg(delta.narrow(0, start, s - 1 - start), max: false) + 1;   // e = s + argmin_{l ≥ s} Δ_l + 1
        return (start, end);
    }

    /// <summary>The first index of the largest (or smallest) entry, as numpy's argmax/argmin (ties go to the first).</summary>
    static long FirstArg(Tensor x, bool max)
    {
        var v = x.data<double>().ToArray();
        long best = 0;
        for (int i = 1; i < v.Length; i++)
            if (max ? v[i] > v[best] : v[i] < v[best]) best = i;
        return best;
    }

    /// <summary>cos(h_i^{(l)}, h_b^{(l)}) [S, T] of every token with the same state's BOS, from hidden states [S, T, D] (float64).</summary>
    public static Tensor CosineToBos(Tensor hidden, int bos)
    {
        CheckHidden(hidden, bos);
        using var scope = NewDisposeScope();
        var h = hidden.to(float64);
        var hb = h.select(1, bos).unsqueeze(1);                                          // h_b^{(l)} [S, 1, D]
        var dot = (h * hb).sum(-1);                                                       // h_i · h_b
        var norms = h.norm(-1) * hb.norm(-1);                                             // ‖h_i‖ ‖h_b‖
        return (dot / norms).MoveToOuterDisposeScope();
    }

    /// <summary>BOS norms n_l = ‖h_b^{(l)}‖ [S] from hidden states [S, T, D] (float64).</summary>
    public static Tensor BosNorms(Tensor hidden, int bos)
    {
        CheckHidden(hidden, bos);
        using var scope = NewDisposeScope();
        return hidden.to(float64).select(1, bos).norm(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The sink map of one sequence from its hidden states [S, T, D]: for the window (from <see cref="PrimaryWindow"/> on the BOS
    /// norms unless <paramref name="window"/> is given), the states where |cos(h_i, h_b)| &gt; <paramref name="cos"/>, per token i &gt; b.
    /// </summary>
    public static SinkMap Detect(Tensor hidden, int bos, double cos = DefaultCosine, (int Start, int End)? window = null)
    {
        CheckHidden(hidden, bos);
        if (!(cos >= 0 && cos < 1)) throw new ArgumentException($"cos must be in [0, 1), got {cos}.", nameof(cos));
        using var scope = NewDisposeScope();
        long states = hidden.shape[0], t = hidden.shape[1];
        var (start, end) = window ?? PrimaryWindow(BosNorms(hidden, bos));
        if (start < 0 || end > states || start > end)
            throw new ArgumentException($"window must lie in [0, {states}], got [{start}, {end}).", nameof(window));
        var flagged = CosineToBos(hidden, bos).abs().gt(cos).cpu();                       // |cos| > 0.9   [S, T]
        var layers = new SortedDictionary<int, int[]>();
        var f = flagged.data<bool>().ToArray();
        for (int i = bos + 1; i < t; i++)                                                 // tokens after the BOS only
        {
            var ls = Enumerable.Range(start, end - start).Where(l => f[l * t + i]).ToArray();
            if (ls.Length > 0) layers[i] = ls;
        }
        return new SinkMap(bos, start, end, layers);
    }

    /// <summary>
    /// The hidden states [S = L + 1, T, D] of sequence <paramref name="sequence"/> from a cache: blocks.0.hook_resid_pre (the
    /// embedding output) then every block's hook_resid_post (hook_normalized_resid_post when the cache has it: post-LN models).
    /// </summary>
    public static Tensor HiddenStates(ActivationCache cache, int sequence = 0)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        bool post = cache.Contains("blocks.0.hook_normalized_resid_post");
        var states = new List<Tensor> { cache["resid_pre", 0] };
        for (int l = 0; l < cache.LayerCount; l++) states.Add(cache[post ? "normalized_resid_post" : "resid_post", l]);
        var first = states[0];
        if (sequence < 0 || sequence >= first.shape[0])
            throw new ArgumentOutOfRangeException(nameof(sequence), sequence, $"the cache holds {first.shape[0]} sequences.");
        return torch.stack(states.Select(s => s.select(0, sequence)).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>The detector on a cache (see <see cref="HiddenStates"/>) for sequence <paramref name="sequence"/>.</summary>
    public static SinkMap Detect(ActivationCache cache, int bos, double cos = DefaultCosine, int sequence = 0)
    {
        using var scope = NewDisposeScope();
        return Detect(HiddenStates(cache, sequence), bos, cos);
    }

    /// <summary>
    /// The code's BOS choice: among <paramref name="candidates"/>, the position whose norm, averaged over the states, is largest
    /// (hidden states [S, T, D]).
    /// </summary>
    public static int BosByNorm(Tensor hidden, IReadOnlyList<int> candidates)
    {
        Guard.Rank(hidden, 3, nameof(hidden), "S, T, D");
        ArgumentNullException.ThrowIfNull(candidates);
        if (candidates.Count == 0) throw new ArgumentException("candidates must not be empty.", nameof(candidates));
        if (candidates.Any(c => c < 0 || c >= hidden.shape[1]))
            throw new ArgumentException($"candidates must be positions in [0, {hidden.shape[1]}).", nameof(candidates));
        using var scope = NewDisposeScope();
        var mean = hidden.to(float64).norm(-1).mean(new long[] { 0 }).cpu().data<double>().ToArray();   // mean_l ‖h_i^{(l)}‖
        return candidates.OrderByDescending(c => mean[c]).ThenBy(c => c).First();
    }

    /// <summary>Every token of the map with its lifetime and class under <paramref name="thresholds"/> (default: rescaled to L).</summary>
    public static IReadOnlyList<SinkToken> Label(SinkMap map, int layers, LabelThresholds? thresholds = null)
    {
        ArgumentNullException.ThrowIfNull(map);
        Guard.Positive(layers, nameof(layers));
        var t = thresholds ?? LabelThresholds.Rescaled(layers);
        return map.Layers.OrderBy(kv => kv.Key).Select(kv => new SinkToken(kv.Key, kv.Value.Length, kv.Value, t.Classify(kv.Value.Length))).ToList();
    }

    static void CheckHidden(Tensor hidden, int bos)
    {
        Guard.Rank(hidden, 3, nameof(hidden), "S, T, D");
        Guard.FloatingPoint(hidden, nameof(hidden));
        if (bos < 0 || bos >= hidden.shape[1])
            throw new ArgumentException($"bos must be a position in [0, {hidden.shape[1]}), got {bos} for hidden {Guard.ShapeText(hidden)}.", nameof(bos));
    }
}
