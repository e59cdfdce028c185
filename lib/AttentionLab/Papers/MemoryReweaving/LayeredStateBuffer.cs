using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// [ours] The layered latent-state buffer of spec §2 ("capture"): the states h^ℓ [B, T, d] that the mixers of the source layers
/// 𝓛 saw in the current forward pass, shared by those mixers (they write) and the target layer's <see cref="MemoryReweaver"/> (it
/// reads). Which of them a query may read is the FIFO rule B_t = { s : t − W − S &lt; s ≤ t − W } (<see cref="MemoryReweavingOps.BufferMask"/>):
/// bounded by the capacity S, past tokens only. Eviction is FIFO; the spec's learned-relevance eviction is not built (docs/decisions.md).
/// The captured states keep their gradient inside the sequence (one segment per sequence here, so there is no cross-segment gradient to stop).
/// </summary>
public sealed class LayeredStateBuffer : IDisposable
{
    readonly Dictionary<int, Tensor> states = new();

    /// <param name="layers">𝓛: the source layers (distinct, ≥ 0).</param>
    /// <param name="capacity">S: slots per layer.</param>
    /// <param name="window">W: the backbone's window in keys; a token enters the buffer as it leaves the window.</param>
    public LayeredStateBuffer(int[] layers, int capacity, int window)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Length == 0) throw new ArgumentException("layers must name at least one source layer.", nameof(layers));
        if (layers.Any(l => l < 0) || layers.Distinct().Count() != layers.Length)
            throw new ArgumentException($"layers must be distinct and ≥ 0, got [{string.Join(", ", layers)}].", nameof(layers));
        Guard.Positive(capacity, nameof(capacity));
        Guard.Positive(window, nameof(window));
        (Layers, Capacity, Window) = (layers.ToArray(), capacity, window);
    }

    /// <summary>𝓛.</summary>
    public IReadOnlyList<int> Layers { get; }
    /// <summary>S.</summary>
    public int Capacity { get; }
    /// <summary>W.</summary>
    public int Window { get; }

    /// <summary>True when <paramref name="layer"/> ∈ 𝓛.</summary>
    public bool IsSource(int layer) => Layers.Contains(layer);

    /// <summary>Stores layer <paramref name="layer"/>'s states h^ℓ [B, T, d] of this forward pass (replacing the last pass's).</summary>
    public void Capture(int layer, Tensor h)
    {
        if (!IsSource(layer)) throw new ArgumentException($"layer {layer} is not a source layer [{string.Join(", ", Layers)}].", nameof(layer));
        Guard.Rank(h, 3, nameof(h), "B, T, d");
        var kept = h.alias().DetachFromDisposeScope();                                     // owned here until the next capture
        if (states.Remove(layer, out var old)) old.Dispose();
        states[layer] = kept;
    }

    /// <summary>h^ℓ [B, T, d] captured in this forward pass; throws when the layer has not run or ran on another shape.</summary>
    public Tensor States(int layer, Tensor like)
    {
        if (!states.TryGetValue(layer, out var h))
            throw new InvalidOperationException($"source layer {layer} captured nothing: it must run before the reweaving layer.");
        if (h.size(0) != like.size(0) || h.size(1) != like.size(1))
            throw new InvalidOperationException($"source layer {layer} holds states {Guard.ShapeText(h)} " +
                $"from another pass, not [{like.size(0)}, {like.size(1)}, …].");
        return h;
    }

    /// <summary>Bytes the buffers hold while decoding one sequence (float32): S·|𝓛|·d·4 (spec §8).</summary>
    public long Bytes(int dModel) => (long)Capacity * Layers.Count * dModel * sizeof(float);

    public void Dispose()
    {
        foreach (var h in states.Values) h.Dispose();
        states.Clear();
    }
}
