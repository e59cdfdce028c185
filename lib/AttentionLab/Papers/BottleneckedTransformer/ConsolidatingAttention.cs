using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// Causal softmax attention on the <see cref="AttentionMixer"/> base whose decode state is a <see cref="ConsolidatingKvState"/>:
/// a KV cache that keeps gradients and can be rewritten in place by the Cache Processor. While a state is bound
/// (<see cref="Bind"/>), the mixer's forward over a chunk x [B, n, d] attends over the cached keys and the chunk
/// (one step of step-wise decoding); unbound, it is plain causal attention over its input.
/// </summary>
/// <remarks>
/// bound: K = [K_cache; k_chunk], V = [V_cache; v_chunk], s_ij = q_i·K_j / √Dk with j ≤ t₀ + i hidden otherwise,
/// z = softmax(s) V; the state appends k, v and adds Σ_{h,i} p_{h,i,j} to its step mass (for top-k reconsolidation).
/// No positions enter the mixer (the toy uses no position encoding), so rewritten keys need no re-rotation (spec §9).
/// </remarks>
public sealed class ConsolidatingAttention : AttentionMixer
{
    ConsolidatingKvState? bound;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="keyDim">Dk (default d / H).</param>
    /// <param name="valueDim">Dv (default d / H).</param>
    public ConsolidatingAttention(int dModel, int heads, int? keyDim = null, int? valueDim = null)
        : base(nameof(ConsolidatingAttention), dModel, heads, keyDim, valueDim) => RegisterComponents();

    /// <summary>A TinyGpt mixer factory (no positions: the config must use <c>PositionKind.None</c>).</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Factory(TinyGptConfig config, int? keyDim = null, int? valueDim = null) =>
        _ => new ConsolidatingAttention(config.DModel, config.Heads, keyDim, valueDim);

    /// <summary>The bound state, or null (plain causal attention).</summary>
    public ConsolidatingKvState? Bound => bound;

    /// <summary>Routes the mixer's forward through <paramref name="state"/> until the returned handle is disposed.</summary>
    public IDisposable Bind(ConsolidatingKvState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Owner != this) throw new ArgumentException("state must come from this mixer's NewState.", nameof(state));
        bound = state;
        return new Unbinder(this);
    }

    sealed class Unbinder(ConsolidatingAttention mixer) : IDisposable
    {
        public void Dispose() => mixer.bound = null;
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x) => bound is null ? base.Mix(q, k, v, x) : bound.AttendChunk(q, k, v);

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new ConsolidatingKvState(this, batch, Heads, KeyDim, ValueDim,
        dtype, device);
}

/// <summary>
/// A KV cache that keeps the autograd graph (unlike <see cref="Attention.KvCache"/>, which stores detached copies for
/// inference): K [B, T, H, Dk], V [B, T, H, Dv]. It accumulates the attention mass its queries put on every key since the
/// last <see cref="TakeStepMass"/>, and <see cref="Rewrite"/> adds ΔK, ΔV at given positions (positions not named stay
/// bitwise equal). Gradients flow through every append and rewrite.
/// </summary>
public sealed class ConsolidatingKvState : AttentionState
{
    Tensor keys, values;        // autograd-carrying, owned by this state
    Tensor mass;                // [B, T] Σ_{h,i} p_{h,i,j} since the last TakeStepMass (no grad)

    internal ConsolidatingKvState(ConsolidatingAttention owner, long batch, long heads, long keyDim, long valueDim, ScalarType dtype, Device device)
        : base(owner)
    {
        keys = torch.zeros(new[] { batch, 0, heads, keyDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        values = torch.zeros(new[] { batch, 0, heads, valueDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        mass = torch.zeros(new[] { batch, 0L }, dtype: ScalarType.Float64, device: device).DetachFromDisposeScope();
    }

    /// <summary>Tokens cached.</summary>
    public long Length => keys.size(1);
    /// <summary>K [B, T, H, Dk] (a new handle in the caller's scope; carries gradients).</summary>
    public Tensor Keys => keys.alias();
    /// <summary>V [B, T, H, Dv].</summary>
    public Tensor Values => values.alias();
    public override long Bytes => keys.numel() * keys.ElementSize + values.numel() * values.ElementSize;

    /// <summary>One token (the TinyGpt.Step path): q, k [B, 1, H, Dk], v [B, 1, H, Dv] → z [B, 1, H, Dv].</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x) => AttendChunk(q, k, v);

    /// <summary>
    /// A chunk of n new tokens at positions t₀ … t₀+n−1: appends k, v, then z = softmax(q Kᵀ/√Dk, causal) V [B, n, H, Dv];
    /// adds the chunk's attention mass to the step mass and counts the tokens.
    /// </summary>
    public Tensor AttendChunk(Tensor q, Tensor k, Tensor v)
    {
        Guard.Qkv(q, k, v);
        if (k.size(0) != keys.size(0) || k.size(2) != keys.size(2) || k.size(3) != keys.size(3) || v.size(3) != values.size(3))
            throw new ArgumentException($"k {Guard.ShapeText(k)}, v {Guard.ShapeText(v)} " +
                $"do not fit the cache {Guard.ShapeText(keys)}, {Guard.ShapeText(values)}.", nameof(k));
        long t0 = Length, n = q.size(1);
        var allK = torch.cat(new[] { keys, k }, 1);                                       // [B, t₀+n, H, Dk]
        var allV = torch.cat(new[] { values, v }, 1);
        var kPos = torch.arange(t0 + n, device: q.device);
        var (z, pattern) = Owner!.Attend(q, allK, allV, kPos.narrow(0, t0, n), kPos);     // causal by position
        using (torch.no_grad())
        {
            var chunkMass = pattern.detach().to(ScalarType.Float64).sum(new long[] { 1, 2 });   // Σ_{h, i} p_{h,i,j}: [B, t₀+n]
            var grown = nn.functional.pad(mass, new long[] { 0, n }) + chunkMass;
            mass.Dispose();
            mass = grown.DetachFromDisposeScope();
        }
        keys.Dispose(); values.Dispose();
        (keys, values) = (allK.DetachFromDisposeScope(), allV.DetachFromDisposeScope());
        Advance(n);
        return z;
    }

    /// <summary>The attention mass [B, T] (float64) of the queries since the last call, which it resets.</summary>
    public Tensor TakeStepMass()
    {
        var taken = mass.alias();
        var fresh = torch.zeros_like(mass).DetachFromDisposeScope();
        mass.Dispose();
        mass = fresh;
        return taken;
    }

    /// <summary>
    /// In-place consolidation: K_j += ΔK_j, V_j += ΔV_j at <paramref name="positions"/> [B, m] (int64, distinct per row,
    /// each in [0, Length)); <paramref name="dK"/> [B, m, H, Dk], <paramref name="dV"/> [B, m, H, Dv]. Other positions stay bitwise equal.
    /// </summary>
    public void Rewrite(Tensor positions, Tensor dK, Tensor dV)
    {
        Guard.Rank(positions, 2, nameof(positions), "B, m");
        if (positions.dtype != ScalarType.Int64) throw new ArgumentException($"positions must be int64, got {positions.dtype}.", nameof(positions));
        Guard.Rank(dK, 4, nameof(dK), "B, m, H, Dk");
        Guard.Rank(dV, 4, nameof(dV), "B, m, H, Dv");
        long b = keys.size(0), m = positions.size(1), h = keys.size(2);
        if (positions.size(0) != b) throw new ArgumentException($"positions {Guard.ShapeText(positions)} must have {b} rows.", nameof(positions));
        if (!dK.shape.SequenceEqual(new[] { b, m, h,
            keys.size(3) })) throw new ArgumentException($"dK {Guard.ShapeText(dK)} must be [{b}, {m}, {h}, {keys.size(3)}].", nameof(dK));
        if (!dV.shape.SequenceEqual(new[] { b, m, h,
            values.size(3) })) throw new ArgumentException($"dV {Guard.ShapeText(dV)} must be [{b}, {m}, {h}, {values.size(3)}].", nameof(dV));
        if (m == 0) return;
        if (Guard.ShouldReadValues(positions) && (positions.min().item<long>() < 0 || positions.max().item<long>() >= Length))
            throw new ArgumentException($"positions must lie in [0, {Length}).", nameof(positions));
        using var scope = NewDisposeScope();
        var ik = positions.view(b, m, 1, 1).expand(b, m, h, keys.size(3));
        var iv = positions.view(b, m, 1, 1).expand(b, m, h, values.size(3));
        var k = keys.scatter_add(1, ik, dK);                                              // K_j += ΔK_j
        var v = values.scatter_add(1, iv, dV);                                            // V_j += ΔV_j
        Replace(k, v);
    }

    /// <summary>Replaces the cache with <paramref name="newKeys"/>, <paramref name="newValues"/> of the same shapes (the naive twin's rewrite).</summary>
    public void Replace(Tensor newKeys, Tensor newValues)
    {
        if (!newKeys.shape.SequenceEqual(keys.shape)) throw new ArgumentException($"newKeys {Guard.ShapeText(newKeys)} must be {Guard.ShapeText(keys)}.",
            nameof(newKeys));
        if (!newValues.shape.SequenceEqual(values.shape))
            throw new ArgumentException($"newValues {Guard.ShapeText(newValues)} must be {Guard.ShapeText(values)}.", nameof(newValues));
        var (k, v) = (newKeys.alias().DetachFromDisposeScope(), newValues.alias().DetachFromDisposeScope());
        keys.Dispose(); values.Dispose();
        (keys, values) = (k, v);
    }

    public override void Dispose()
    {
        keys.Dispose(); values.Dispose(); mass.Dispose();
    }
}
