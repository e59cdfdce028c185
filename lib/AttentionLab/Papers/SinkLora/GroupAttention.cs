using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SinkLora;

/// <summary>How LongLoRA's shifted half of the heads forms its groups (spec §2).</summary>
public enum S2Mode
{
    /// <summary>The non-flash code: roll q, k, v by −G/2, block-causal attention in rolled order, roll back (the wrap leaks the future).</summary>
    RollWrap,
    /// <summary>The flash code: blocks [0, G/2), [G/2, 3G/2), …, [T − G/2, T) by position, causal (no wrap).</summary>
    NoWrap,
}

/// <summary>
/// The per-head visibility of LongLoRA's S2-Attn and SinkLoRA's SF-Attn as boolean masks (true = key j visible to query i).
/// Heads h &lt; ⌊H/2⌋ use plain groups; heads h ≥ ⌊H/2⌋ the shifted ones (LongLoRA shifts <c>qkv[:, num_heads // 2:]</c>).
/// </summary>
/// <remarks>
/// G the group size, s = ⌊G/2⌋ the shift (LongLoRA's group_size // 2), T a multiple of G (LongLoRA asserts
/// q_len % group_size == 0; so do we: <see cref="CheckLength"/> throws, no padding, no truncation).
/// plain:          M(i, j) = [⌊i/G⌋ = ⌊j/G⌋] ∧ [j ≤ i]
/// shifted no-wrap: M(i, j) = [⌊(i+G−s)/G⌋ = ⌊(j+G−s)/G⌋] ∧ [j ≤ i]          blocks [0, s), [s, s+G), …, [T−G+s, T)
/// shifted roll:    r(p) = (p − s) mod T;  M(i, j) = [⌊r(i)/G⌋ = ⌊r(j)/G⌋] ∧ [r(j) ≤ r(i)]   (the first s tokens see the last G − s)
/// SF (sinks n):    M_SF(i, j) = M_h(i, j) ∨ ([j &lt; n] ∧ [j ≤ i]), M_h the plain or no-wrap mask   ([ours] reading, spec §2)
/// </remarks>
public static class GroupMasks
{
    /// <summary>Throws ArgumentException unless G ≥ 1 and T is a positive multiple of G (the paper's code asserts it).</summary>
    public static void CheckLength(long t, long groupSize, string name)
    {
        if (groupSize < 1) throw new ArgumentException($"group size must be positive, got {groupSize}.", nameof(groupSize));
        if (t < 1 || t % groupSize != 0)
            throw new ArgumentException($"sequence length {t} must be a positive multiple of the group size {groupSize} " +
                "(LongLoRA asserts q_len % group_size == 0; no padding or truncation here).", name);
    }

    /// <summary>One head layout [T, T] bool: plain or shifted groups (<paramref name="wrap"/> = roll), plus <paramref name="sinks"/> global columns.</summary>
    public static Tensor GroupLocal(long t, long groupSize, bool shifted, bool wrap, long sinks = 0, Device? device = null)
    {
        CheckLength(t, groupSize, nameof(t));
        if (sinks < 0) throw new ArgumentException($"sinks must be ≥ 0, got {sinks}.", nameof(sinks));
        if (wrap && !shifted) throw new ArgumentException("wrap applies to shifted groups only.", nameof(wrap));
        using var scope = NewDisposeScope();
        long s = shifted ? groupSize / 2 : 0;
        var p = torch.arange(t, dtype: ScalarType.Int64, device: device);
        var order = wrap ? (p - s).remainder(t) : p + (groupSize - s);             // r(p) = (p − s) mod T, or p + G − s (no wrap)
        var block = order.div(groupSize, rounding_mode: RoundingMode.floor);
        var same = block.unsqueeze(1).eq(block.unsqueeze(0));                     // same group
        var rank = wrap ? order : p;                                             // causal in rolled order (roll) or by position
        var mask = same.logical_and(rank.unsqueeze(0) <= rank.unsqueeze(1));
        if (sinks > 0)
            mask = mask.logical_or(p.unsqueeze(0).lt(sinks).logical_and(p.unsqueeze(0) <= p.unsqueeze(1)));   // sink columns, causal
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Stacks per head: heads h &lt; ⌊H/2⌋ get <paramref name="maskA"/>, the rest <paramref name="maskB"/> → [H, T, T].</summary>
    public static Tensor Split(Tensor maskA, Tensor maskB, int heads)
    {
        Guard.Positive(heads, nameof(heads));
        if (!maskA.shape.SequenceEqual(maskB.shape))
            throw new ArgumentException($"masks differ in shape: {Guard.ShapeText(maskA)} vs {Guard.ShapeText(maskB)}.", nameof(maskB));
        int half = heads / 2;
        return torch.stack(Enumerable.Range(0, heads).Select(h => h < half ? maskA : maskB).ToArray());
    }

    /// <summary>LongLoRA's S2-Attn per head [H, T, T].</summary>
    public static Tensor ShiftedSparse(long t, long groupSize, int heads, S2Mode mode, Device? device = null)
    {
        using var scope = NewDisposeScope();
        return Split(GroupLocal(t, groupSize, false, false, 0, device), GroupLocal(t, groupSize, true, mode == S2Mode.RollWrap, 0, device), heads)
            .MoveToOuterDisposeScope();
    }

    /// <summary>SinkLoRA's SF-Attn per head [H, T, T]: no-wrap shifted groups plus <paramref name="sinks"/> global sink tokens in every head.</summary>
    public static Tensor SinkFixed(long t, long groupSize, int heads, long sinks, Device? device = null)
    {
        using var scope = NewDisposeScope();
        return Split(GroupLocal(t, groupSize, false, false, sinks, device), GroupLocal(t, groupSize, true, false, sinks, device), heads)
            .MoveToOuterDisposeScope();
    }

    /// <summary>Share of the causal triangle's entries a mask keeps (the attention-FLOP fraction, ≈ G/T + n/T … for group masks).</summary>
    public static double CausalFraction(Tensor mask)
    {
        using var scope = NewDisposeScope();
        long t = mask.shape[^1];
        return mask.to(ScalarType.Float64).sum().item<double>() / (mask.numel() / (t * t) * (t * (t + 1) / 2.0));
    }
}

/// <summary>
/// Group-local softmax attention on the <see cref="AttentionMixer"/> base: the base's projections, head split and hooks,
/// RoPE at absolute positions (never reset per group, spec §2) with optional position interpolation, and a per-head
/// <see cref="Visible"/> mask in <see cref="Scores"/>. Training-time only (the paper evaluates with full attention):
/// it does not stream. Its parameters have the names of <see cref="CausalSelfAttention"/>'s (qkv, proj), so the weights
/// move between the two.
/// </summary>
/// <remarks>s_ij = (R_i q_i)·(R_j k_j)/√Dk where M_h(i, j), −∞ elsewhere; A = softmax_j(s); z = A·V (the base).</remarks>
public abstract class GroupAttention : AttentionMixer
{
    readonly PositionKind positions;
    readonly double ropeBase, ropeScale;

    /// <param name="name">Module name.</param>
    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="groupSize">G (T must be a multiple of it).</param>
    /// <param name="positions">None or RoPE.</param>
    /// <param name="ropeBase">RoPE's base.</param>
    /// <param name="ropeScale">RoPE position interpolation factor (T_old / T_new).</param>
    /// <param name="keyDim">Dk per head.</param>
    /// <param name="valueDim">Dv per head.</param>
    protected GroupAttention(string name, int dModel, int heads, int groupSize, PositionKind positions, double ropeBase, double ropeScale,
        int? keyDim, int? valueDim) : base(name, dModel, heads, keyDim, valueDim)
    {
        Guard.Positive(groupSize, nameof(groupSize));
        if (positions is not (PositionKind.None or PositionKind.Rope))
            throw new ArgumentException($"positions must be None or Rope (others live in the embeddings), got {positions}.", nameof(positions));
        if (positions == PositionKind.Rope && KeyDim % 2 != 0) throw new ArgumentException($"RoPE needs an even key dim, got {KeyDim}.", nameof(positions));
        if (!(ropeScale > 0) || double.IsInfinity(ropeScale)) throw new ArgumentException($"ropeScale must be positive and finite, got {ropeScale}.",
            nameof(ropeScale));
        (GroupSize, this.positions, this.ropeBase, this.ropeScale) = (groupSize, positions, ropeBase, ropeScale);
        RegisterComponents();
    }

    /// <summary>G.</summary>
    public int GroupSize { get; }
    /// <summary>s = ⌊G/2⌋, the shift of the second half of the heads.</summary>
    public int Shift => GroupSize / 2;

    /// <summary>Training-time attention: no decode form.</summary>
    public override bool CanStream => false;

    /// <summary>The mask of every head [H, T, T] (true = visible) for a sequence of <paramref name="t"/> tokens.</summary>
    public abstract Tensor Visible(long t, Device? device = null);

    /// <summary>RoPE at the absolute positions, then q·k/√Dk with −∞ where the head's group mask hides the key.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        if (cachedKeys || q.size(1) != k.size(1))
            throw new InvalidOperationException($"{GetType().Name} is training-time attention over one whole sequence (no cache).");
        long t = q.size(1);
        GroupMasks.CheckLength(t, GroupSize, "x");
        if (positions == PositionKind.Rope)
        {
            q = Positions.Rope(q, qPos, ropeBase, ropeScale);                  // R_{p·scale} q (absolute p)
            k = Positions.Rope(k, kPos, ropeBase, ropeScale);
        }
        var s = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (1.0 / Math.Sqrt(q.size(3)));   // [B, H, T, T]
        return s.masked_fill(Visible(t, q.device).logical_not().unsqueeze(0), double.NegativeInfinity);
    }
}

/// <summary>
/// LongLoRA's shifted sparse attention (S2-Attn; Chen et al. 2024, arXiv 2309.12307): causal attention inside groups of G
/// tokens in the first half of the heads, inside groups shifted by G/2 in the second half — rolled with the wrap
/// (<see cref="S2Mode.RollWrap"/>, the non-flash code, which leaks the last tokens into the first G/2) or without it
/// (<see cref="S2Mode.NoWrap"/>, the flash code's varlen boundaries). Masks: <see cref="GroupMasks.ShiftedSparse"/>.
/// </summary>
public sealed class ShiftedSparseAttention : GroupAttention
{
    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="groupSize">G.</param>
    /// <param name="mode">Roll (with wrap) or no-wrap.</param>
    /// <param name="positions">None or RoPE.</param>
    /// <param name="ropeBase">RoPE's base.</param>
    /// <param name="ropeScale">RoPE position interpolation factor.</param>
    /// <param name="keyDim">Dk.</param>
    /// <param name="valueDim">Dv.</param>
    public ShiftedSparseAttention(int dModel, int heads, int groupSize, S2Mode mode, PositionKind positions = PositionKind.None,
        double ropeBase = 10000, double ropeScale = 1, int? keyDim = null, int? valueDim = null)
        : base(nameof(ShiftedSparseAttention), dModel, heads, groupSize, positions, ropeBase, ropeScale, keyDim, valueDim)
    {
        if (!Enum.IsDefined(mode)) throw new ArgumentException($"mode {(int)mode} is not an S2Mode.", nameof(mode));
        Mode = mode;
    }

    /// <summary>Roll or no-wrap.</summary>
    public S2Mode Mode { get; }

    public override Tensor Visible(long t, Device? device = null) => GroupMasks.ShiftedSparse(t, GroupSize, Heads, Mode, device);
}

/// <summary>
/// SinkLoRA's sink-fixed attention (SF-Attn; Zhang 2024, arXiv 2406.05678), our reading of the paper (no code released):
/// LongLoRA's groups with the shifted half "reassembled" to its unshifted place (the no-wrap layout), and the first
/// <see cref="Sinks"/> tokens visible to every query in every head. Masks: <see cref="GroupMasks.SinkFixed"/>.
/// </summary>
public sealed class SinkFixedAttention : GroupAttention
{
    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="groupSize">G.</param>
    /// <param name="sinks">Global sink tokens n (StreamingLLM's 4; the paper's value [unverified]).</param>
    /// <param name="positions">None or RoPE.</param>
    /// <param name="ropeBase">RoPE's base.</param>
    /// <param name="ropeScale">RoPE position interpolation factor.</param>
    /// <param name="keyDim">Dk.</param>
    /// <param name="valueDim">Dv.</param>
    public SinkFixedAttention(int dModel, int heads, int groupSize, int sinks = 4, PositionKind positions = PositionKind.None,
        double ropeBase = 10000, double ropeScale = 1, int? keyDim = null, int? valueDim = null)
        : base(nameof(SinkFixedAttention), dModel, heads, groupSize, positions, ropeBase, ropeScale, keyDim, valueDim)
    {
        if (sinks < 0) throw new ArgumentException($"sinks must be ≥ 0, got {sinks}.", nameof(sinks));
        Sinks = sinks;
    }

    /// <summary>n, the global sink tokens.</summary>
    public int Sinks { get; }

    public override Tensor Visible(long t, Device? device = null) => GroupMasks.SinkFixed(t, GroupSize, Heads, Sinks, device);
}
