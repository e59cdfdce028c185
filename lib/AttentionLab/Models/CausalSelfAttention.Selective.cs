using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

public sealed partial class CausalSelfAttention
{
    /// <summary>
    /// A streaming state that keeps every key (nothing is evicted) and lets <paramref name="selector"/> choose, per step
    /// and KV head, the subset the query attends to (Recycled Attention). Keys are stored rotated at their own position,
    /// so positions never change.
    /// </summary>
    public MixerState NewState(IKvSelector selector, int layer = 0) => new SelectiveState(this, new SelectiveKvCache(selector, layer));

    /// <summary>
    /// t = tokens so far; k_t, q_t rotated at t (RoPE); cache ← k_t, v_t; J = selector(t) per head;
    /// s_j = q_t·k_j / √Dh (− m_h (t − j) with ALiBi) for j ∈ J; A = softmax over J; z = Σ_{j∈J} A_j v_j; selector sees A.
    /// </summary>
    Tensor AttendSelective(Tensor q, Tensor k, Tensor v, SelectiveState state)
    {
        long t = state.Cache.Count;                                                 // the new token's position
        var pos = torch.full(1, t, dtype: ScalarType.Int64, device: q.device);
        if (positions == PositionKind.Rope)
        {
            q = hook_rot_q!.call(Attention.Positions.Rope(q, pos, ropeBase, ropeScale));    // R_t q
            k = hook_rot_k!.call(Attention.Positions.Rope(k, pos, ropeBase, ropeScale));    // R_t k, cached rotated
        }
        state.Cache.Append(k, v);
        var selected = state.Cache.Select(q);                                       // [B, H, n′] or null (full step); q rotated
        var (keys, values) = state.Cache.Gather(selected);
        Tensor? mask = null;
        if (alibiSlopes is not null)
        {
            var keyPos = selected ?? torch.arange(t + 1, dtype: ScalarType.Int64, device: q.device).expand(q.shape[0], Heads, t + 1);
            var slopes = torch.tensor(alibiSlopes, dtype: q.dtype, device: q.device).view(1, -1, 1, 1);
            mask = slopes * (keyPos - t).to(q.dtype).unsqueeze(2);                  // − m_h (t − j) [B, H, 1, n′]
        }
        var (raw, _) = ReferenceAttention.MaskedScores(q, keys, values, causal: false, scale: 1.0 / Math.Sqrt(q.shape[3]), mask);
        var pattern = hook_pattern.call(Normalise(hook_attn_scores.call(raw)));     // A = normalise over J
        state.Cache.Observe(pattern);                                               // the selector's full-step probabilities
        return Combine(pattern, values);
    }

    /// <summary>The full KV cache of one attention layer whose steps attend to a selected subset.</summary>
    public sealed class SelectiveState(CausalSelfAttention attention, SelectiveKvCache cache) : AttentionState(attention)
    {
        public SelectiveKvCache Cache { get; } = cache;
        public override long Bytes => Cache.Count * Cache.BytesPerEntry;
        public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
        {
            var z = ((CausalSelfAttention)Owner!).AttendSelective(q, k, v, this);
            Advance();
            return z;
        }
        public override void Dispose() => Cache.Dispose();
    }
}
