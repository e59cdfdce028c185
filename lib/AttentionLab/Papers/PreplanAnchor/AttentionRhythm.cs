using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.PreplanAnchor;

/// <summary>The critical tokens of one response (flags per position of the whole sequence; prompt positions are never set).</summary>
/// <param name="Preplan">WAAD jumps: WAAD_t − WAAD_{t−1} &gt; τ_w.</param>
/// <param name="Anchor">the top q of response tokens by FAI.</param>
/// <param name="Coupled">a preplan token t whose next token is an anchor (t and t + 1), or a token that is both.</param>
public sealed record CriticalSet(bool[] Preplan, bool[] Anchor, bool[] Coupled)
{
    /// <summary>The flags a weighting strategy uses.</summary>
    public bool[] For(CreditStrategy strategy) => strategy switch
    {
        CreditStrategy.Anchor => Anchor,
        CreditStrategy.Preplan => Preplan,
        CreditStrategy.Coupled => Coupled,
        CreditStrategy.Uniform => new bool[Anchor.Length],
        _ => throw new ArgumentOutOfRangeException(nameof(strategy), strategy, "unknown strategy."),
    };
}

/// <summary>Which tokens get extra credit in GRPO (P10 spec §2): none (uniform), anchors, preplan tokens, or coupled pairs.</summary>
public enum CreditStrategy { Uniform, Anchor, Preplan, Coupled }

/// <summary>
/// P10's attention metrics [reconstructed from the paper's definitions; spec §2], on a pattern A [T, T] (rows sum to 1,
/// causal) averaged over a set of heads:
/// <code>
/// WAAD_t = Σ_{s≤t} A_{t,s} · min(t − s, W)                          (windowed average attention distance: how far t looks back)
/// FAI_s  = 1/|{t &gt; s}| · Σ_{t&gt;s} Ã_{t,s},  Ã_{t,s} = A_{t,s} / (1 − A_{t,0})   (future attention influence; the sink column 0
///                                                                    removed and each row renormalised)
/// </code>
/// Heads are classed by their mean attention distance D_{l,h} = mean_t Σ_s A_{t,s}(t − s): the k smallest are "local" (WAAD
/// reads them), the k largest "global" (FAI reads them).
/// </summary>
public static class AttentionRhythm
{
    /// <summary>WAAD [..., T] of patterns [..., T, T] with window W.</summary>
    public static Tensor Waad(Tensor pattern, int window)
    {
        Square(pattern, nameof(pattern));
        Guard.Positive(window, nameof(window));
        using var scope = NewDisposeScope();
        long t = pattern.size(-1);
        var i = torch.arange(t, device: pattern.device).unsqueeze(1);
        var j = torch.arange(t, device: pattern.device).unsqueeze(0);
        var distance = (i - j).clamp(0, window).to(pattern.dtype);                        // min(t − s, W) on s ≤ t (0 above the diagonal)
        return (pattern * distance).sum(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// FAI [..., T] of patterns [..., T, T]: the mean attention a key receives from later queries, with the first column removed
    /// and rows renormalised when <paramref name="excludeFirst"/> (then FAI_0 is NaN). The last position has no later query: NaN.
    /// </summary>
    public static Tensor Fai(Tensor pattern, bool excludeFirst = true)
    {
        Square(pattern, nameof(pattern));
        using var scope = NewDisposeScope();
        long t = pattern.size(-1);
        var a = pattern;
        if (excludeFirst)
        {
            var rest = (1 - pattern.narrow(-1, 0, 1));                                      // 1 − A_{t,0}
            a = torch.where(rest.gt(0), pattern / rest.clamp_min(1e-30), torch.zeros_like(pattern));
        }
        var later = torch.ones(t, t, dtype: ScalarType.Bool, device: pattern.device).tril(-1);   // t > s
        var received = a.masked_fill(later.logical_not(), 0).sum(-2);                            // Σ_{t>s} Ã_{t,s}
        var count = torch.arange(t - 1, -1, -1, device: pattern.device).to(pattern.dtype);      // |{t > s}| = T − 1 − s
        var fai = received / count;                                                               // s = T − 1: 0/0 = NaN
        if (excludeFirst)
        {
            var first = torch.zeros(t, dtype: ScalarType.Bool, device: pattern.device);
            first[0] = torch.tensor(true);
            fai = fai.masked_fill(first, double.NaN);
        }
        return fai.MoveToOuterDisposeScope();
    }

    /// <summary>Mean attention distance D [L, H] of patterns [L, H, T, T] (or [L, B, H, T, T], averaged over B): mean_t Σ_s A_{t,s}(t − s).</summary>
    public static Tensor MeanDistance(Tensor patterns)
    {
        Guard.NotNull(patterns, nameof(patterns));
        if (patterns.dim() != 4 && patterns.dim() != 5)
            throw new ArgumentException($"patterns must be [L, H, T, T] or [L, B, H, T, T], got {Guard.ShapeText(patterns)}.", nameof(patterns));
        Square(patterns, nameof(patterns));
        using var scope = NewDisposeScope();
        var perQuery = AttentionStats.MeanDistance(patterns).mean(new long[] { -1 });    // Σ_s A_{t,s}|t − s| (= t − s: causal), mean over t
        return (patterns.dim() == 5 ? perQuery.mean(new long[] { 1 }) : perQuery).MoveToOuterDisposeScope();
    }

    /// <summary>The k heads with the smallest (local) and the largest (global) D, as (layer, head) lists.</summary>
    public static ((int Layer, int Head)[] Local, (int Layer, int Head)[] Global) ClassifyHeads(Tensor meanDistance, int k)
    {
        Guard.Rank(meanDistance, 2, nameof(meanDistance), "L, H");
        long heads = meanDistance.shape[1];
        if (k < 1 || 2 * k > meanDistance.numel())
            throw new ArgumentException($"k must be in 1 … {meanDistance.numel() / 2} (local and global sets may not overlap), got {k}.", nameof(k));
        var d = meanDistance.to(ScalarType.Float64).cpu().data<double>().ToArray();
        var order = Enumerable.Range(0, d.Length).OrderBy(i => d[i]).ThenBy(i => i).ToArray();
        (int, int) At(int i) => (i / (int)heads, i % (int)heads);
        return (order.Take(k).Select(At).ToArray(), order.Reverse().Take(k).Select(At).ToArray());
    }

    /// <summary>The mean pattern [.., T, T] of the given heads, from patterns [L, ..., H, T, T] (head axis third from last).</summary>
    public static Tensor MeanOver(Tensor patterns, IReadOnlyList<(int Layer, int Head)> heads)
    {
        Guard.NotNull(patterns, nameof(patterns));
        ArgumentNullException.ThrowIfNull(heads);
        if (heads.Count == 0) throw new ArgumentException("heads must not be empty.", nameof(heads));
        using var scope = NewDisposeScope();
        var picked = heads.Select(h => patterns[h.Layer].select(-3, h.Head)).ToArray();
        return torch.stack(picked).mean(new long[] { 0 }).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The critical tokens of one sequence from its WAAD and FAI [T] (response positions from <paramref name="responseStart"/>):
    /// preplan where WAAD_t − WAAD_{t−1} &gt; <paramref name="waadJump"/>; anchors the ⌈q·n⌉ response tokens with the largest
    /// finite FAI (ties to the earlier position); coupled a preplan token whose next token is an anchor (both), or a token that is both.
    /// </summary>
    public static CriticalSet Critical(Tensor waad, Tensor fai, int responseStart, double topQ, double waadJump)
    {
        Guard.Rank(waad, 1, nameof(waad), "T");
        Guard.Rank(fai, 1, nameof(fai), "T");
        int t = (int)waad.size(0);
        if (fai.size(0) != t) throw new ArgumentException($"fai has {fai.size(0)} positions, waad {t}.", nameof(fai));
        if (responseStart < 1 || responseStart >= t)
            throw new ArgumentOutOfRangeException(nameof(responseStart), responseStart, $"responseStart must be in 1 … {t - 1}.");
        if (!(topQ > 0 && topQ <= 1)) throw new ArgumentException($"topQ must be in (0, 1], got {topQ}.", nameof(topQ));
        if (!(waadJump >= 0)) throw new ArgumentException($"waadJump must be ≥ 0, got {waadJump}.", nameof(waadJump));
        var w = waad.to(ScalarType.Float64).cpu().data<double>().ToArray();
        var f = fai.to(ScalarType.Float64).cpu().data<double>().ToArray();
        var preplan = new bool[t];
        for (int i = responseStart; i < t; i++) preplan[i] = w[i] - w[i - 1] > waadJump;
        var anchor = new bool[t];
        var candidates = Enumerable.Range(responseStart, t - responseStart).Where(i => double.IsFinite(f[i])).ToList();
        int take = (int)Math.Ceiling(topQ * (t - responseStart));
        foreach (var i in candidates.OrderByDescending(i => f[i]).ThenBy(i => i).Take(take)) anchor[i] = true;
        var coupled = new bool[t];
        for (int i = responseStart; i < t; i++)
        {
            if (preplan[i] && anchor[i]) coupled[i] = true;
            if (preplan[i] && i + 1 < t && anchor[i + 1]) coupled[i] = coupled[i + 1] = true;
        }
        return new CriticalSet(preplan, anchor, coupled);
    }

    static void Square(Tensor pattern, string name)
    {
        Guard.NotNull(pattern, name);
        if (pattern.dim() < 2 || pattern.size(-1) != pattern.size(-2))
            throw new ArgumentException($"{name} must be [..., T, T], got {Guard.ShapeText(pattern)}.", name);
    }
}
