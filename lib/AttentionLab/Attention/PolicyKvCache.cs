using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>The output of one decode step: o_t [B, 1, Hq, Dv] (the caller owns it) and the step's statistics.</summary>
public sealed record DecodeStepResult(Tensor Output, DecodeStepStats Stats);

/// <summary>
/// One layer's KV cache for token-by-token decoding with a pluggable eviction policy (<see cref="IKvPolicy"/>):
/// after each appended token the policy says which entries stay, per sequence and KV head. Also tracks the
/// attention mass each entry has received (what H2O ranks by) and records <see cref="DecodeStepStats"/> per step.
/// Its shape (B, Hkv, D, Dv), dtype and device are fixed by the first append. Stores detached copies; owns its tensors.
/// </summary>
/// <remarks>
/// One step, <see cref="Attend"/>: append (k_t, v_t) → policy keeps S_t ⊆ S_{t−1} ∪ {t} → o_t = Σ_{j∈S_t} softmax_j(scale·q_t·k_j) v_j
/// → F(j) += Σ_{heads in the KV group} A_tj for j ∈ S_t. With <see cref="KvPolicy.Full"/> this is causal attention
/// over the whole prefix. A model that re-indexes positions (StreamingLLM with RoPE) runs the same steps itself:
/// <see cref="Append"/> the un-rotated k_t; rotate <see cref="Keys"/> by <see cref="CachePositions"/> and q_t by the
/// last of them; attend; <see cref="Observe"/> the probabilities.
/// </remarks>
public sealed class PolicyKvCache : IDisposable
{
    readonly Func<Tensor, Tensor, Tensor, AttentionResult> attention;
    readonly List<DecodeStepStats> trace = new();
    Tensor? keys, values, positions, mass;      // [B, Hkv, capacity, D | Dv] and [B, Hkv, capacity]
    bool disposed;

    /// <param name="policy">eviction policy, e.g. <see cref="KvPolicy.SinkWindow"/>.</param>
    /// <param name="layer">layer index recorded in the statistics.</param>
    /// <param name="scale">score scale for the default attention; default 1/√D.</param>
    /// <param name="attention">attention (q, k, v) → result, default <see cref="ReferenceAttention.Softmax"/> without a mask;
    /// e.g. <see cref="AttentionVariants.Softmax1"/> for a softmax₁ model.</param>
    public PolicyKvCache(IKvPolicy policy, int layer = 0, double? scale = null, Func<Tensor, Tensor, Tensor, AttentionResult>? attention = null)
    {
        Policy = policy ?? throw new ArgumentNullException(nameof(policy));
        Layer = layer;
        this.attention = attention ?? ((q, k, v) => ReferenceAttention.Softmax(q, k, v, scale: scale));
    }

    public IKvPolicy Policy { get; }
    public int Layer { get; }
    /// <summary>Entries held per (sequence, KV head).</summary>
    public long Count { get; private set; }
    /// <summary>Tokens appended so far.</summary>
    public long Seen { get; private set; }
    /// <summary>Statistics of every <see cref="Observe"/>d step.</summary>
    public IReadOnlyList<DecodeStepStats> Trace => trace;

    /// <summary>Kept keys [B, Count, Hkv, D] (a view; a new handle in the caller's scope).</summary>
    public Tensor Keys => Stored(keys).permute(0, 2, 1, 3);
    /// <summary>Kept values [B, Count, Hkv, Dv].</summary>
    public Tensor Values => Stored(values).permute(0, 2, 1, 3);
    /// <summary>Token index in the original sequence of each kept entry, [B, Hkv, Count] int64.</summary>
    public Tensor TokenPositions => Stored(positions);
    /// <summary>Attention mass received so far by each kept entry, [B, Hkv, Count].</summary>
    public Tensor AttentionMass => Stored(mass);
    /// <summary>Positions inside the cache, 0..Count−1 (int64): what StreamingLLM assigns to the kept keys.</summary>
    public Tensor CachePositions => torch.arange(Count, dtype: ScalarType.Int64, device: Stored(keys).device);

    /// <summary>B · Hkv · (D + Dv) · element size: the bytes of one entry across sequences and heads.</summary>
    public long BytesPerEntry => keys is null ? 0 : keys.shape[0] * keys.shape[1] * (keys.shape[3] + values!.shape[3]) * keys.ElementSize;
    /// <summary>Bytes of the kept keys and values.</summary>
    public long BytesHeld => Count * BytesPerEntry;
    /// <summary>Bytes of the key and value buffers, unused capacity included.</summary>
    public long BytesAllocated => keys is null ? 0 : keys.shape[2] * BytesPerEntry;

    /// <summary>
    /// Appends k [B, Tnew, Hkv, D] and v [B, Tnew, Hkv, Dv] one token at a time, applying the policy after each.
    /// </summary>
    public void Append(Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckKv(k, v);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        if (keys is null) Allocate(k, v);
        for (long t = 0; t < k.shape[1]; t++)
        {
            if (Count == keys!.shape[2]) Grow(2 * Count);
            keys.narrow(2, Count, 1).copy_(k.narrow(1, t, 1).permute(0, 2, 1, 3));
            values!.narrow(2, Count, 1).copy_(v.narrow(1, t, 1).permute(0, 2, 1, 3));
            positions!.narrow(2, Count, 1).fill_(Seen);                              // original index of the new token
            mass!.narrow(2, Count, 1).zero_();                                       // F(t) = 0 before it is attended
            Count++; Seen++;
            var keep = Policy.Keep(new KvPolicyState(Count, Seen, Stored(positions), Stored(mass)));
            if (keep is not null) Compact(keep);
        }
    }

    /// <summary>
    /// One decode step: appends (k_t, v_t), lets the policy evict, attends q_t to the kept entries, accumulates
    /// their attention mass and records the step's statistics.
    /// </summary>
    /// <param name="q">[B, 1, Hq, D], Hq a multiple of Hkv.</param>
    /// <param name="k">[B, 1, Hkv, D].</param>
    /// <param name="v">[B, 1, Hkv, Dv].</param>
    public DecodeStepResult Attend(Tensor q, Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ReferenceAttention.Validate(q, k, v);
        if (q.shape[1] != 1) throw new ArgumentException($"q must hold one query token [B, 1, Hq, D], got {Guard.ShapeText(q)}.", nameof(q));
        if (k.shape[1] != 1) throw new ArgumentException($"k must hold one token [B, 1, Hkv, D], got {Guard.ShapeText(k)}.", nameof(k));
        CheckKv(k, v);
        using var scope = NewDisposeScope();
        Append(k, v);
        using var att = attention(q, Keys, Values);
        var stats = Observe(att.Probabilities);
        return new DecodeStepResult(att.Output.detach().MoveToOuterDisposeScope(), stats);
    }

    /// <summary>
    /// Adds the attention of the step's queries to each kept entry's mass, F(j) += Σ_{q heads of j's group, queries} A_qj,
    /// and records the step's statistics.
    /// </summary>
    /// <param name="probabilities">[B, Hq, Tq, Count] attention over <see cref="Keys"/> in their order.</param>
    public DecodeStepStats Observe(Tensor probabilities)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Guard.Rank(probabilities, 4, nameof(probabilities), "B, Hq, Tq, Count");
        if (keys is null) throw new InvalidOperationException("Observe before the first Append.");
        long b = keys.shape[0], hkv = keys.shape[1], hq = probabilities.shape[1];
        if (probabilities.shape[0] != b || probabilities.shape[3] != Count || hq % hkv != 0)
            throw new ArgumentException(
                $"probabilities {Guard.ShapeText(probabilities)} must be [B = {b}, Hq (a multiple of {hkv}), Tq, Count = {Count}].", nameof(probabilities));
        Guard.SameDevice(keys, "the cache", probabilities, nameof(probabilities));
        using var scope = NewDisposeScope();
        using (torch.no_grad())
        {
            var received = probabilities.detach().sum(2).view(b, hkv, hq / hkv, Count).sum(2);   // Σ over queries and group heads
            Stored(mass).add_(received.to(mass!.dtype));
        }
        var stats = new DecodeStepStats(Layer, Seen - 1, Enumerable.Repeat(Count, (int)hq).ToArray(),
            BytesHeld, BytesAllocated, Count * BytesPerEntry);                     // every KV head read Count entries
        trace.Add(stats);
        return stats;
    }

    void CheckKv(Tensor k, Tensor v)
    {
        Guard.Rank(k, 4, nameof(k), "B, T, Hkv, D");
        Guard.Rank(v, 4, nameof(v), "B, T, Hkv, Dv");
        Guard.FloatingPoint(k, nameof(k));
        Guard.SameDtype(k, nameof(k), v, nameof(v));
        Guard.SameDevice(k, nameof(k), v, nameof(v));
        if (v.shape[0] != k.shape[0] || v.shape[1] != k.shape[1] || v.shape[2] != k.shape[2])
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match k {Guard.ShapeText(k)} in batch, length and heads.", nameof(v));
        if (keys is null) return;
        if (k.shape[0] != keys.shape[0] || k.shape[2] != keys.shape[1] || k.shape[3] != keys.shape[3])
            throw new ArgumentException(
                $"k {Guard.ShapeText(k)} does not fit the cache's [B = {keys.shape[0]}, T, Hkv = {keys.shape[1]}, D = {keys.shape[3]}].", nameof(k));
        if (v.shape[3] != values!.shape[3])
            throw new ArgumentException($"v {Guard.ShapeText(v)} does not fit the cache's value dim {values.shape[3]}.", nameof(v));
        Guard.SameDtype(keys, "the cache", k, nameof(k));
        Guard.SameDevice(keys, "the cache", k, nameof(k));
    }

    Tensor Stored(Tensor? buffer)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (buffer is null) throw new InvalidOperationException("The cache is empty: its shape is set by the first Append.");
        return buffer.narrow(2, 0, Count);
    }

    void Allocate(Tensor k, Tensor v)
    {
        long b = k.shape[0], h = k.shape[2], capacity = Policy.Budget is { } budget ? budget + 1 : 16;
        keys = torch.zeros(new[] { b, h, capacity, k.shape[3] }, dtype: k.dtype, device: k.device).DetachFromDisposeScope();
        values = torch.zeros(new[] { b, h, capacity, v.shape[3] }, dtype: k.dtype, device: k.device).DetachFromDisposeScope();
        positions = torch.zeros(new[] { b, h, capacity }, dtype: ScalarType.Int64, device: k.device).DetachFromDisposeScope();
        mass = torch.zeros(new[] { b, h, capacity }, dtype: k.dtype, device: k.device).DetachFromDisposeScope();
    }

    void Grow(long capacity)
    {
        Tensor Bigger(Tensor old)
        {
            var shape = old.shape.ToArray(); shape[2] = capacity;
            var t = torch.zeros(shape, dtype: old.dtype, device: old.device);
            t.narrow(2, 0, Count).copy_(old.narrow(2, 0, Count));
            old.Dispose();
            return t.DetachFromDisposeScope();
        }
        (keys, values, positions, mass) = (Bigger(keys!), Bigger(values!), Bigger(positions!), Bigger(mass!));
    }

    /// <summary>Moves the kept entries (ascending slot indices [B, Hkv, n′]) to the front, in order.</summary>
    void Compact(Tensor keep)
    {
        long b = keys!.shape[0], h = keys.shape[1];
        if (keep.dim() != 3 || keep.shape[0] != b || keep.shape[1] != h || keep.shape[2] > Count || keep.dtype != ScalarType.Int64)
            throw new InvalidOperationException(
                $"policy {Policy.Name} returned keep indices {Guard.ShapeText(keep)} ({keep.dtype}); expected int64 [{b}, {h}, ≤ {Count}].");
        long n = keep.shape[2];
        void Take(Tensor buffer)
        {
            var live = buffer.narrow(2, 0, Count);
            var index = buffer.dim() == 4 ? keep.unsqueeze(-1).expand(b, h, n, buffer.shape[3]) : keep;
            var kept = live.gather(2, index);                                        // a copy, so the in-place write is safe
            buffer.narrow(2, 0, n).copy_(kept);
        }
        Take(keys); Take(values!); Take(positions!); Take(mass!);
        Count = n;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        keys?.Dispose(); values?.Dispose(); positions?.Dispose(); mass?.Dispose();
    }
}
