using AttentionLab.Attention;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Causal multi-head self-attention (TinyGpt's layer) on the <see cref="AttentionMixer"/> base: x [B, T, d] → [B, T, d],
/// with RoPE or ALiBi, a pluggable <see cref="AttentionNormaliser"/> (softmax, softmax₁, sink logit) and the G1 output
/// gate of an <see cref="AttentionKind"/>. Streams one token at a time with a <see cref="KvCache"/>, or with a
/// <see cref="PolicyKvCache"/> that evicts (StreamingLLM, H2O); both hold <b>un-rotated</b> keys and RoPE rotates them
/// at use with the positions the cache assigns (0 … Count−1), so an eviction policy re-indexes them. Each decode state
/// owns its step (<see cref="AttentionState"/>).
/// </summary>
/// <remarks>
/// q, k, v = hook_q/k/v(split(W_qkv x)) [B, T, H, Dh];  RoPE: q, k = hook_rot_q/k(R_p q, R_p k)
/// s_ij = hook_attn_scores(q_i·k_j / √Dh + ALiBi_h(i, j), −∞ where j &gt; i)  [B, H, Tq, Tk]
/// A = hook_pattern(normaliser(s)) — edits here flow into z = A·V  (softmax; softmax₁ / sink logit: e^{s_ij} / (e^{b_h} + Σ_k e^{s_ik}))
/// z = hook_z(A·V) [B, T, H, Dh];  GatedG1: z′ = z ⊙ hook_gate(σ(x W_θ + b_θ));  y = W_O concat_h(z_h).
/// </remarks>
public sealed partial class CausalSelfAttention : AttentionMixer
{
    readonly AttentionNormaliser normaliser;
    readonly Linear? gate;                     // W_θ [H·Dh, d] (GatedG1)
    readonly HookPoint? hook_gate;
    readonly HookPoint? hook_rot_q, hook_rot_k;
    readonly PositionKind positions;
    readonly double ropeBase, ropeScale;
    readonly double[]? alibiSlopes;
    readonly AttentionKind kind;

    /// <summary>d = dModel split into heads; RoPE and ALiBi act here, other position kinds live in the embeddings (nothing to do).</summary>
    /// <param name="dModel">d.</param>
    /// <param name="heads">H (d / H per head).</param>
    /// <param name="positions">RoPE or ALiBi act in the scores; other kinds need nothing here.</param>
    /// <param name="ropeBase">RoPE's base.</param>
    /// <param name="kind">The normaliser and gate (P47's variants).</param>
    /// <param name="normaliser">Replaces the kind's normaliser (softmax for Softmax, GatedG1 and Register) when given.</param>
    /// <param name="ropeScale">RoPE position interpolation: positions scaled by this factor (train length / target length; 1 = plain RoPE).</param>
    public CausalSelfAttention(int dModel, int heads, PositionKind positions = PositionKind.None, double ropeBase = 10000,
        AttentionKind kind = AttentionKind.Softmax, AttentionNormaliser? normaliser = null, double ropeScale = 1)
        : base(nameof(CausalSelfAttention), dModel, heads)
    {
        if (!(ropeScale > 0) || double.IsInfinity(ropeScale))
            throw new ArgumentException($"ropeScale must be positive and finite, got {ropeScale}.", nameof(ropeScale));
        this.ropeScale = ropeScale;
        if (positions == PositionKind.Rope && (dModel / heads) % 2 != 0)
            throw new ArgumentException($"RoPE needs an even head dim, got {dModel}/{heads}.", nameof(positions));
        if (!Enum.IsDefined(kind)) throw new ArgumentException($"kind {(int)kind} is not a known AttentionKind.", nameof(kind));
        (this.positions, this.ropeBase, this.kind) = (positions, ropeBase, kind);
        this.normaliser = normaliser ?? AttentionNormaliser.For(kind, heads);
        if (kind == AttentionKind.GatedG1) (gate, hook_gate) = (nn.Linear(dModel, dModel), new HookPoint());
        if (positions == PositionKind.Rope) (hook_rot_q, hook_rot_k) = (new HookPoint(), new HookPoint());
        if (positions == PositionKind.Alibi) alibiSlopes = Attention.Positions.AlibiSlopes(heads);
        RegisterComponents();
    }

    /// <summary>A mixer factory for <see cref="TinyGpt"/>: one attention layer per block, with the config's positions.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Factory(TinyGptConfig config) =>
        _ => new CausalSelfAttention(config.DModel, config.Heads, config.Positions, config.RopeBase, config.Attention, ropeScale: config.RopeScale);

    /// <summary>The normaliser / gate this layer uses.</summary>
    public AttentionKind Kind => kind;
    /// <summary>The normaliser (softmax, softmax₁, sink logit, or the one given).</summary>
    public AttentionNormaliser Normaliser => normaliser;
    /// <summary>b_h [H] of a sink-logit normaliser, else null.</summary>
    public Parameter? SinkLogits => (normaliser as SinkLogitNormaliser)?.SinkLogits;
    /// <summary>W_θ of a GatedG1 layer, else null.</summary>
    public Linear? Gate => gate;
    /// <summary>How positions enter the scores (RoPE, ALiBi) or none here.</summary>
    public PositionKind PositionKind => positions;
    /// <summary>RoPE's base.</summary>
    public double RopeBase => ropeBase;
    /// <summary>RoPE's position scale (position interpolation; 1 = plain RoPE).</summary>
    public double RopeScale => ropeScale;

    protected override Tensor Normalise(Tensor scores) => normaliser.call(scores);

    /// <summary>
    /// RoPE: q, k = hook_rot_q/k(R_p q, R_p k) at the given positions; s_ij = q_i·k_j / √Dh − m_h (i − j) (ALiBi), −∞ where j &gt; i.
    /// </summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        if (positions == PositionKind.Rope)
        {
            q = hook_rot_q!.call(Attention.Positions.Rope(q, qPos, ropeBase, ropeScale));   // R_{p·scale} q
            k = hook_rot_k!.call(Attention.Positions.Rope(k, kPos, ropeBase, ropeScale));   // R_{s·scale} k (rotated at use)
        }
        if (alibiSlopes is null) return base.Scores(q, k, qPos, kPos, cachedKeys);
        var bias = Attention.Positions.AlibiBias(alibiSlopes, qPos, kPos, q.dtype);
        if (!cachedKeys) bias = bias.masked_fill(kPos.unsqueeze(0) > qPos.unsqueeze(1), double.NegativeInfinity);   // causal: j > i hidden
        return ReferenceAttention.MaskedScores(q, k, k, causal: false, scale: 1.0 / Math.Sqrt(q.size(3)), bias).Scores;   // q_i·k_j / √Dh − m_h (i − j)
    }

    /// <summary>G1: z′ = z ⊙ σ(x W_θ + b_θ) per head and channel, then W_O; x [B, T, d] is the (LN'd) mixer input.</summary>
    protected override Tensor Output(Tensor z, Tensor x)
    {
        if (gate is not null) z = z * hook_gate!.call(torch.sigmoid(gate.call(x).view(z.shape)));   // AttentionVariants.GatedG1
        return base.Output(z, x);
    }

    // Decoding: the base's KvCacheState keeps un-rotated keys; RoPE rotates them at use with their cache positions (Scores).

    /// <summary>A streaming state whose cache evicts with <paramref name="policy"/> (keys re-indexed inside the cache).</summary>
    public MixerState NewState(IKvPolicy policy, int layer = 0) => new PolicyState(this, new PolicyKvCache(policy, layer));

    /// <summary>The evicting KV cache of one attention layer (un-rotated keys, re-indexed positions).</summary>
    public sealed class PolicyState(CausalSelfAttention attention, PolicyKvCache cache) : AttentionState(attention)
    {
        public PolicyKvCache Cache { get; } = cache;
        public override long Bytes => Cache.BytesHeld;

        /// <summary>Append (the policy may evict), attend at the re-indexed positions 0 … Count−1, show the policy the pattern (H2O).</summary>
        public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
        {
            Cache.Append(k, v);
            var cachePos = Cache.CachePositions;
            var (z, pattern) = Owner!.Attend(q, Cache.Keys, Cache.Values, cachePos.narrow(0, Cache.Count - 1, 1), cachePos, cachedKeys: true);
            Cache.Observe(pattern);                                                 // attention mass (H2O) and step stats
            Advance();
            return z;
        }

        public override void Dispose() => Cache.Dispose();
    }
}
