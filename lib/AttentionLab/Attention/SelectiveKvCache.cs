using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>What a <see cref="IKvSelector"/> sees before a query attends: the cache holds <paramref name="Count"/> tokens
/// (the new one is Count − 1) of <paramref name="Batch"/> sequences and <paramref name="KvHeads"/> KV heads.</summary>
/// <param name="Count">entries cached, the new token's included (its index is Count − 1).</param>
/// <param name="Batch">B.</param>
/// <param name="KvHeads">Hkv.</param>
/// <param name="Device">device of the cache.</param>
/// <param name="Query">the new token's query q_t [B, Hq, D] as it meets the keys (rotated when the model rotates), detached;
/// null when the caller has none (query-free selectors never need it).</param>
/// <param name="Keys">every cached key [B, Count, Hkv, D] (a view valid during the call), for selectors that bound scores from keys.</param>
public sealed record KvSelectQuery(long Count, long Batch, long KvHeads, Device Device, Tensor? Query = null, Tensor? Keys = null);

/// <summary>
/// A decode-time attention policy that keeps the whole KV cache but lets each step's query attend to a subset of it
/// (Recycled Attention, Quest-style top-k). Unlike <see cref="IKvPolicy"/> nothing is evicted: a later step may pick
/// any entry again. Stateful: one instance per layer and decode run.
/// </summary>
public interface IKvSelector
{
    /// <summary>Short name for tables and plots.</summary>
    string Name { get; }
    /// <summary>
    /// The entries the new query attends to, [B, Hkv, n′] int64 token indices in [0, Count), unique per (b, head),
    /// the same n′ for every head; or null for all Count entries (a full step).
    /// </summary>
    Tensor? Select(KvSelectQuery query);
    /// <summary>Sees the step's attention probabilities [B, Hq, 1, n′] over the entries <see cref="Select"/> returned
    /// (all entries when it returned null), in that order. A view valid only during the call.</summary>
    void Observe(Tensor probabilities);
}

/// <summary>Attends to every cached token (the reference every selector is compared with).</summary>
public sealed class FullSelector : IKvSelector
{
    public string Name => "full";
    public Tensor? Select(KvSelectQuery query) => null;
    public void Observe(Tensor probabilities) { }
}

/// <summary>
/// One layer's full KV cache (nothing is evicted) whose decode steps attend to the subset a <see cref="IKvSelector"/>
/// picks, recording <see cref="DecodeStepStats"/> per step: attended tokens and KV bytes read vs held. Owns its tensors
/// and its selector (disposed with the cache when it is IDisposable).
/// </summary>
/// <remarks>
/// One step, <see cref="Attend"/>: append (k_t, v_t) → J_t = selector(t) ⊆ [0, t] per KV head (all when null) →
/// o_t = Σ_{j∈J_t} softmax_{j∈J_t}(scale·q_t·k_j) v_j → selector sees the probabilities. A model with positions runs the
/// same steps itself: <see cref="Append"/> k_t (already rotated at its own position t: positions never change because
/// nothing is evicted), <see cref="Select"/>, <see cref="Gather"/>, attend, <see cref="Observe"/>.
/// </remarks>
public sealed class SelectiveKvCache : IDisposable
{
    readonly List<DecodeStepStats> trace = new();
    readonly double? scale;
    KvCache? cache;
    long batch, kvHeads, keyDim, valueDim, elementSize;   // fixed by the first Append
    Device? device;
    bool disposed;

    /// <param name="selector">which entries each step attends to.</param>
    /// <param name="layer">layer index recorded in the statistics.</param>
    /// <param name="scale">score scale of <see cref="Attend"/>; default 1/√D.</param>
    public SelectiveKvCache(IKvSelector selector, int layer = 0, double? scale = null)
    {
        Selector = selector ?? throw new ArgumentNullException(nameof(selector));
        Layer = layer;
        this.scale = scale;
    }

    public IKvSelector Selector { get; }
    public int Layer { get; }
    /// <summary>Tokens held (= tokens appended).</summary>
    public long Count => cache?.Length ?? 0;
    /// <summary>Statistics of every <see cref="Observe"/>d step.</summary>
    public IReadOnlyList<DecodeStepStats> Trace => trace;
    /// <summary>All keys [B, Count, Hkv, D].</summary>
    public Tensor Keys => Live.Keys;
    /// <summary>All values [B, Count, Hkv, Dv].</summary>
    public Tensor Values => Live.Values;
    /// <summary>B · Hkv · (D + Dv) · element size: the bytes of one token across sequences and heads.</summary>
    public long BytesPerEntry => batch * kvHeads * (keyDim + valueDim) * elementSize;

    KvCache Live
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return cache ?? throw new InvalidOperationException("The cache is empty: its shape is set by the first Append.");
        }
    }

    /// <summary>Appends k [B, Tnew, Hkv, D] and v [B, Tnew, Hkv, Dv] (no selection happens here).</summary>
    public void Append(Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Guard.Rank(k, 4, nameof(k), "B, T, Hkv, D");
        Guard.Rank(v, 4, nameof(v), "B, T, Hkv, Dv");
        Guard.FloatingPoint(k, nameof(k));
        if (cache is null)
        {
            cache = new KvCache(k.shape[0], k.shape[2], k.shape[3], v.shape[3], k.dtype, k.device);
            (batch, kvHeads, keyDim, valueDim, elementSize, device) = (k.shape[0], k.shape[2], k.shape[3], v.shape[3], k.ElementSize, k.device);
        }
        using var noGrad = torch.no_grad();
        cache.Append(k.detach(), v.detach());
    }

    /// <summary>The selector's subset for the newest token, checked: [B, Hkv, n′] int64, or null for all entries.</summary>
    /// <param name="query">the new token's query [B, Hq, D] (or [B, 1, Hq, D]) for query-aware selectors; may be null.</param>
    public Tensor? Select(Tensor? query = null)
    {
        var live = Live;
        if (query is not null)
        {
            if (query.dim() == 4 && query.shape[1] == 1) query = query.squeeze(1);
            if (query.dim() != 3 || query.shape[0] != batch || query.shape[1] % kvHeads != 0 || query.shape[2] != keyDim)
                throw new ArgumentException(
                    $"query must be [B = {batch}, Hq (a multiple of {kvHeads}), D = {keyDim}], got {Guard.ShapeText(query)}.", nameof(query));
        }
        var selected = Selector.Select(new KvSelectQuery(Count, batch, kvHeads, device!, query?.detach(), live.Keys));
        if (selected is null) return null;
        if (selected.dim() != 3 || selected.shape[0] != batch || selected.shape[1] != kvHeads || selected.dtype != ScalarType.Int64 || selected.shape[2] == 0)
            throw new InvalidOperationException(
                $"selector {Selector.Name} returned {Guard.ShapeText(selected)} ({selected.dtype}); expected int64 [{batch}, {kvHeads}, n′ ≥ 1].");
        if (Guard.ShouldReadValues(selected) && (selected.min().item<long>() < 0 || selected.max().item<long>() >= Count))
            throw new InvalidOperationException($"selector {Selector.Name} returned indices outside [0, {Count}).");
        return selected;
    }

    /// <summary>Keys [B, n′, Hkv, D] and values [B, n′, Hkv, Dv] of the selected entries (all when null), in the selection's order.</summary>
    public (Tensor Keys, Tensor Values) Gather(Tensor? selected)
    {
        var (keys, values) = (Live.Keys, Live.Values);
        if (selected is null) return (keys, values);
        Tensor Take(Tensor t)                                                       // t [B, T, H, D] → [B, n′, H, D]
        {
            var index = selected.unsqueeze(-1).expand(selected.shape[0], selected.shape[1], selected.shape[2], t.shape[3]);
            return t.permute(0, 2, 1, 3).gather(2, index).permute(0, 2, 1, 3);
        }
        return (Take(keys), Take(values));
    }

    /// <summary>Hands the step's probabilities [B, Hq, 1, n′] to the selector and records the step's statistics.</summary>
    public DecodeStepStats Observe(Tensor probabilities)
    {
        Guard.Rank(probabilities, 4, nameof(probabilities), "B, Hq, 1, n′");
        _ = Live;
        long b = batch, hkv = kvHeads, hq = probabilities.shape[1], n = probabilities.shape[3];
        if (probabilities.shape[0] != b || probabilities.shape[2] != 1 || hq % hkv != 0 || n > Count)
            throw new ArgumentException(
                $"probabilities {Guard.ShapeText(probabilities)} must be [B = {b}, Hq (a multiple of {hkv}), 1, n′ ≤ {Count}].", nameof(probabilities));
        using (var scope = NewDisposeScope())
        using (torch.no_grad())
            Selector.Observe(probabilities.detach());
        var stats = new DecodeStepStats(Layer, Count - 1, Enumerable.Repeat(n, (int)hq).ToArray(),
            Count * BytesPerEntry, cache!.AllocatedBytes, n * BytesPerEntry);         // held: everything; read: n′ rows per KV head
        trace.Add(stats);
        return stats;
    }

    /// <summary>
    /// One decode step without positions: appends (k_t, v_t), attends q_t to the selector's subset, lets the selector
    /// observe, records statistics.
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
        if (cache is not null && (k.shape[0] != batch || k.shape[2] != kvHeads || k.shape[3] != keyDim || v.shape[3] != valueDim))
            throw new ArgumentException(
                $"k {Guard.ShapeText(k)} / v {Guard.ShapeText(v)} do not fit the cache's B = {batch}, Hkv = {kvHeads}, D = {keyDim}, Dv = {valueDim}.",
                nameof(k));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        Append(k, v);
        var (keys, values) = Gather(Select(q));
        using var att = ReferenceAttention.Softmax(q, keys, values, scale: scale);   // softmax over J_t only
        var stats = Observe(att.Probabilities);
        return new DecodeStepResult(att.Output.detach().MoveToOuterDisposeScope(), stats);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        cache?.Dispose();
        (Selector as IDisposable)?.Dispose();
    }
}
