using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// A causal self-attention mixer with the landmark grouped softmax (training form) and RoPE: x [B, T, d] → [B, T, d],
/// where x already holds a landmark after every ℓ_b tokens (<see cref="LandmarkTokens.Insert"/>) starting at position 0.
/// Plugs into <see cref="Models.TinyGpt"/> as the mixer of a block. While a <see cref="LandmarkMemory"/> run is attached,
/// the same weights process one chunk at a time against that layer's block store (retrieval + position remapping).
/// </summary>
/// <remarks>
/// q, k, v = x W_q, x W_k, x W_v (per head);  q ← R_i q, k ← R_j k (RoPE at positions i, j of the inserted sequence);
/// s_ij = q_i·k_j/√D;  w = GroupedWeights(s);  o_i = Σ_j w_ij v_j;  y = concat_h(o) W_O.
/// Hook points: hook_scores (s, [B, H, T, T]) and hook_pattern (w) in the training form.
/// </remarks>
public sealed class LandmarkAttentionLayer : nn.Module<Tensor, Tensor>
{
    readonly Linear qkv, proj;
    readonly HookPoint hook_scores = new(), hook_pattern = new();
    readonly int heads, blockSize;
    readonly double ropeBase;
    readonly bool rope;

    /// <param name="dModel">model width d.</param>
    /// <param name="heads">heads H (d/H = head dim; even with RoPE).</param>
    /// <param name="blockSize">ℓ_b, ordinary tokens per block.</param>
    /// <param name="rope">rotate q, k by their positions (the paper's setting); false = no positions (tests).</param>
    /// <param name="ropeBase">RoPE base.</param>
    public LandmarkAttentionLayer(int dModel, int heads, int blockSize, bool rope = true, double ropeBase = 10000) : base(nameof(LandmarkAttentionLayer))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(blockSize, nameof(blockSize));
        if (dModel % heads != 0) throw new ArgumentException($"heads must divide dModel {dModel}, got {heads}.", nameof(heads));
        if (rope && dModel / heads % 2 != 0) throw new ArgumentException($"RoPE needs an even head dim, got dModel/heads = {dModel / heads}.", nameof(rope));
        if (rope && !(ropeBase > 1)) throw new ArgumentException($"ropeBase must be > 1, got {ropeBase}.", nameof(ropeBase));
        (this.heads, this.blockSize, this.rope, this.ropeBase) = (heads, blockSize, rope, ropeBase);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int Heads => heads;
    /// <summary>ℓ_b.</summary>
    public int BlockSize => blockSize;
    public bool UsesRope => rope;
    public double RopeBase => ropeBase;
    public HookPoint HookScores => hook_scores;
    public HookPoint HookPattern => hook_pattern;

    /// <summary>Set by <see cref="LandmarkMemory"/> for the duration of a run; null = training form.</summary>
    internal LandmarkLayerSession? Session { get; set; }

    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], d = x.shape[2];
        var parts = qkv.call(x).view(b, t, 3, heads, d / heads).unbind(2);             // q, k, v [B, T, H, Dh]
        var z = Session is null ? Training(parts[0], parts[1], parts[2]) : Session.Attend(blockSize, Rotate, parts[0], parts[1], parts[2]);
        return proj.call(z.reshape(b, t, d)).MoveToOuterDisposeScope();
    }

    Tensor Training(Tensor q, Tensor k, Tensor v)
    {
        var pos = torch.arange(q.shape[1], device: q.device);
        (q, k) = (Rotate(q, pos), Rotate(k, pos));                                        // R_i q, R_j k
        var s = hook_scores.call(LandmarkAttention.Scores(q, k));                           // s_ij = q_i·k_j/√D
        var w = hook_pattern.call(LandmarkAttention.Weights(s, blockSize));                 // grouped softmax
        return w.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);                         // o_i = Σ_j w_ij v_j
    }

    /// <summary>RoPE of x [B', T, H', D] at positions [T] or [B', T] (identity without RoPE).</summary>
    internal Tensor Rotate(Tensor x, Tensor positions) => rope ? Positions.Rope(x, positions, ropeBase) : x;
}
