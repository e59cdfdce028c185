using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// P32 Contextual Memory Reweaving, [ours]: the paper gives no equations, so this is the spec's operationalisation (spec §2) —
/// the <b>reconstruct</b> step, a λ-mixed attention of the current token over bounded buffers of past tokens' latent states,
/// one buffer per source layer. Fast form: one masked attention per source layer over the whole sequence.
/// </summary>
/// <remarks>
/// Buffer (FIFO, capacity S, fed by tokens as they leave the backbone's window of W keys):
///   B_t = { s : t − W − S &lt; s ≤ t − W }          (only past tokens beyond the window; empty while t &lt; W)
/// Reconstruct:  m_t = Σ_{ℓ∈𝓛} λ_ℓ · Σ_{s∈B_t} softmax_s(q_t·k_s^ℓ/√D) v_s^ℓ,   λ = softmax(w_λ)
///   with q_t = W_q h_t and k_s^ℓ = W_k^ℓ h_s^ℓ, v_s^ℓ = W_v^ℓ h_s^ℓ (the projections live in <see cref="MemoryReweaver"/>).
/// An empty buffer reads m_t = 0 (a fully hidden softmax row gives zeros, never NaN).
/// </remarks>
public static class MemoryReweavingOps
{
    /// <summary>
    /// B_t as a keep-mask [T, T]: true where key s is in query t's buffer, i.e. W ≤ t − s &lt; W + S.
    /// </summary>
    public static Tensor BufferMask(long length, int window, int capacity, Device? device = null)
    {
        Guard.Positive(length, nameof(length));
        Guard.Positive(window, nameof(window));
        Guard.Positive(capacity, nameof(capacity));
        using var scope = NewDisposeScope();
        var pos = torch.arange(length, device: device);
        var lag = pos.unsqueeze(1) - pos.unsqueeze(0);                                   // t − s
        return ((lag >= window) & (lag < window + capacity)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The reconstructed memory m [B, T, H, Dv] and each source layer's buffer weights [B, H, T, T] (zero outside B_t).
    /// </summary>
    /// <param name="q">q [B, T, H, D]: the target layer's memory queries.</param>
    /// <param name="keys">k^ℓ [B, T, H, D] per source layer.</param>
    /// <param name="values">v^ℓ [B, T, H, Dv] per source layer.</param>
    /// <param name="lambdaLogits">w_λ [|𝓛|].</param>
    /// <param name="window">W: keys the backbone's window sees (tokens enter the buffer as they leave it).</param>
    /// <param name="capacity">S: buffer slots per layer.</param>
    public static (Tensor M, Tensor[] Weights) Read(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, Tensor lambdaLogits,
        int window, int capacity)
    {
        Validate(q, keys, values, lambdaLogits, window, capacity);
        using var scope = NewDisposeScope();
        var keep = BufferMask(q.size(1), window, capacity, q.device);                    // s ∈ B_t
        var lambda = lambdaLogits.softmax(0);                                             // λ = softmax(w_λ)
        Tensor? m = null;
        var weights = new Tensor[keys.Count];
        for (int l = 0; l < keys.Count; l++)
        {
            using var r = ReferenceAttention.Softmax(q, keys[l], values[l], causal: false, mask: keep);   // Σ_s softmax_s(q_t·k_s/√D) v_s
            var term = lambda[l] * r.Output;                                              // λ_ℓ · Attn_ℓ
            m = m is null ? term : m + term;
            weights[l] = r.Probabilities.alias().MoveToOuterDisposeScope();
        }
        return (m!.MoveToOuterDisposeScope(), weights);
    }

    internal static void Validate(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, Tensor lambdaLogits, int window, int capacity)
    {
        Guard.NotNull(q, nameof(q));
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        Guard.NotNull(lambdaLogits, nameof(lambdaLogits));
        if (keys.Count == 0) throw new ArgumentException("keys must hold one tensor per source layer, got none.", nameof(keys));
        if (values.Count != keys.Count) throw new ArgumentException($"values has {values.Count} layers, keys {keys.Count}.", nameof(values));
        Guard.Rank(lambdaLogits, 1, nameof(lambdaLogits), "L");
        if (lambdaLogits.size(0) != keys.Count)
            throw new ArgumentException($"lambdaLogits has {lambdaLogits.size(0)} entries for {keys.Count} source layers.", nameof(lambdaLogits));
        Guard.Positive(window, nameof(window));
        Guard.Positive(capacity, nameof(capacity));
        for (int l = 0; l < keys.Count; l++)
        {
            Guard.Qkv(q, keys[l], values[l]);
            if (keys[l].size(1) != q.size(1) || values[l].size(1) != q.size(1))
                throw new ArgumentException($"layer {l}: keys {Guard.ShapeText(keys[l])} and values {Guard.ShapeText(values[l])} " +
                    $"must have q's T = {q.size(1)}.",
                    nameof(keys));
        }
    }
}
