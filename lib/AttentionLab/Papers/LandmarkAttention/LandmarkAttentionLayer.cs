using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// A causal self-attention mixer with the landmark grouped softmax (training form) and RoPE, on the
/// <see cref="Models.AttentionMixer"/> base: x [B, T, d] → [B, T, d], where x already holds a landmark after every ℓ_b
/// tokens (<see cref="LandmarkTokens.Insert"/>) starting at position 0. Plugs into <see cref="Models.TinyGpt"/> as the mixer
/// of a block. While a <see cref="LandmarkMemory"/> run is attached, the same weights process one chunk at a time against
/// that layer's block store (retrieval + position remapping).
/// </summary>
/// <remarks>
/// q, k, v = split_h(x W_QKV);  q ← R_i q, k ← R_j k (RoPE at positions i, j of the inserted sequence);
/// s_ij = hook_attn_scores(q_i·k_j/√D);  w = hook_pattern(GroupedWeights(s));  o_i = Σ_j w_ij v_j;  y = concat_h(o) W_O.
/// The hooks fire in the training form; the memory path (a <see cref="LandmarkMemory"/> run) has no T×T pattern.
/// </remarks>
public sealed class LandmarkAttentionLayer : AttentionMixer
{
    readonly int blockSize;
    readonly double ropeBase;
    readonly bool rope;

    /// <param name="dModel">model width d.</param>
    /// <param name="heads">heads H (d/H = head dim; even with RoPE).</param>
    /// <param name="blockSize">ℓ_b, ordinary tokens per block.</param>
    /// <param name="rope">rotate q, k by their positions (the paper's setting); false = no positions (tests).</param>
    /// <param name="ropeBase">RoPE base.</param>
    public LandmarkAttentionLayer(int dModel, int heads, int blockSize, bool rope = true, double ropeBase = 10000)
        : base(nameof(LandmarkAttentionLayer), dModel, heads)
    {
        Guard.Positive(blockSize, nameof(blockSize));
        if (rope && dModel / heads % 2 != 0) throw new ArgumentException($"RoPE needs an even head dim, got dModel/heads = {dModel / heads}.", nameof(rope));
        if (rope && !(ropeBase > 1)) throw new ArgumentException($"ropeBase must be > 1, got {ropeBase}.", nameof(ropeBase));
        (this.blockSize, this.rope, this.ropeBase) = (blockSize, rope, ropeBase);
        RegisterComponents();
    }

    /// <summary>ℓ_b.</summary>
    public int BlockSize => blockSize;
    public bool UsesRope => rope;
    public double RopeBase => ropeBase;
    /// <summary>hook_attn_scores: s [B, H, T, T] of the training form.</summary>
    public HookPoint HookScores => hook_attn_scores;
    /// <summary>hook_pattern: the grouped-softmax weights w [B, H, T, T].</summary>
    public HookPoint HookPattern => hook_pattern;

    /// <summary>Set by <see cref="LandmarkMemory"/> for the duration of a run; null = training form.</summary>
    internal LandmarkLayerSession? Session { get; set; }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (Session is not null) return Session.Attend(blockSize, Rotate, q, k, v);
        var pos = torch.arange(q.shape[1], device: q.device);
        (q, k) = (Rotate(q, pos), Rotate(k, pos));                                        // R_i q, R_j k
        var s = hook_attn_scores.call(LandmarkAttention.Scores(q, k));                      // s_ij = q_i·k_j/√D
        var w = hook_pattern.call(LandmarkAttention.Weights(s, blockSize));                 // grouped softmax
        return Combine(w, v);                                                               // o_i = Σ_j w_ij v_j
    }

    /// <summary>Landmark attention decodes through <see cref="LandmarkMemory"/> (chunks on block boundaries), not token by token.</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        throw new InvalidOperationException("landmark attention decodes with LandmarkMemory (chunks of whole blocks), not one token at a time.");

    /// <summary>RoPE of x [B', T, H', D] at positions [T] or [B', T] (identity without RoPE).</summary>
    internal Tensor Rotate(Tensor x, Tensor positions) => rope ? Positions.Rope(x, positions, ropeBase) : x;
}
