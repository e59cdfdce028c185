using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Causal multi-head self-attention with TransformerLens hook points: x [B, T, d] → [B, T, d], with the normaliser and
/// gate of an <see cref="AttentionKind"/>. Streams one token at a time with a <see cref="KvCache"/>, or with a
/// <see cref="PolicyKvCache"/> that evicts (StreamingLLM, H2O); both hold <b>un-rotated</b> keys and RoPE rotates them
/// at use with the positions the cache assigns (0 … Count−1), so an eviction policy re-indexes them.
/// </summary>
/// <remarks>
/// q, k, v = hook_q/k/v(split(W_qkv x)) [B, T, H, Dh];  RoPE: q, k = hook_rot_q/k(R_p q, R_p k)
/// s_ij = hook_attn_scores(q_i·k_j / √Dh + ALiBi_h(i, j), −∞ where j &gt; i)  [B, H, Tq, Tk]
/// A = hook_pattern(softmax_j s_ij) — edits here flow into z = A·V  (Softmax1 / SinkLogit: e^{s_ij} / (e^{b_h} + Σ_k e^{s_ik}))
/// z = hook_z(A·V) [B, T, H, Dh];  GatedG1: z′ = z ⊙ hook_gate(σ(x W_θ + b_θ));  y = W_O concat_h(z_h).
/// </remarks>
public sealed partial class CausalSelfAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear qkv, proj;
    readonly Linear? gate;                     // W_θ [H·Dh, d] (GatedG1)
    readonly Parameter? sink_logits;           // b_h [H] (SinkLogit)
    readonly HookPoint? hook_gate;
    readonly HookPoint hook_q = new(), hook_k = new(), hook_v = new(), hook_attn_scores = new(), hook_pattern = new(), hook_z = new();
    readonly HookPoint? hook_rot_q, hook_rot_k;
    readonly int heads;
    readonly PositionKind positions;
    readonly double ropeBase;
    readonly double[]? alibiSlopes;
    readonly AttentionKind kind;

    /// <summary>d = dModel split into heads; RoPE and ALiBi act here, other position kinds live in the embeddings (nothing to do).</summary>
    public CausalSelfAttention(int dModel, int heads, PositionKind positions = PositionKind.None, double ropeBase = 10000,
        AttentionKind kind = AttentionKind.Softmax) : base(nameof(CausalSelfAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads}.", nameof(heads));
        if (positions == PositionKind.Rope && (dModel / heads) % 2 != 0) throw new ArgumentException($"RoPE needs an even head dim, got {dModel}/{heads}.", nameof(positions));
        if (!Enum.IsDefined(kind)) throw new ArgumentException($"kind {(int)kind} is not a known AttentionKind.", nameof(kind));
        (this.heads, this.positions, this.ropeBase, this.kind) = (heads, positions, ropeBase, kind);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        if (kind == AttentionKind.GatedG1) (gate, hook_gate) = (nn.Linear(dModel, dModel), new HookPoint());
        if (kind == AttentionKind.SinkLogit) sink_logits = nn.Parameter(torch.zeros(heads));
        if (positions == PositionKind.Rope) (hook_rot_q, hook_rot_k) = (new HookPoint(), new HookPoint());
        if (positions == PositionKind.Alibi) alibiSlopes = Positions.AlibiSlopes(heads);
        RegisterComponents();
    }

    /// <summary>A mixer factory for <see cref="TinyGpt"/>: one attention layer per block, with the config's positions.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Factory(TinyGptConfig config) =>
        _ => new CausalSelfAttention(config.DModel, config.Heads, config.Positions, config.RopeBase, config.Attention);

    public int Heads => heads;
    /// <summary>The normaliser / gate this layer uses.</summary>
    public AttentionKind Kind => kind;
    /// <summary>b_h [H] of a SinkLogit layer, else null.</summary>
    public Parameter? SinkLogits => sink_logits;
    /// <summary>W_θ of a GatedG1 layer, else null.</summary>
    public Linear? Gate => gate;
    /// <summary>W_qkv: [3d, d] (rows q, k, v, each head-major).</summary>
    public Linear Qkv => qkv;
    /// <summary>W_O: [d, d].</summary>
    public Linear Proj => proj;

    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], d = x.shape[2];
        var parts = qkv.call(x).view(b, t, 3, heads, d / heads).unbind(2);         // q, k, v [B, T, H, Dh]
        var (q, k, v) = (hook_q.call(parts[0]), hook_k.call(parts[1]), hook_v.call(parts[2]));
        var pos = torch.arange(t, device: x.device);
        var (z, _) = Attend(q, k, v, pos, pos);
        return proj.call(Gated(z, x).reshape(b, t, d)).MoveToOuterDisposeScope();
    }

    public MixerState NewState(long batch, ScalarType dtype, Device device)
    {
        long d = proj.weight!.shape[0];
        return new KvState(new KvCache(batch, heads, d / heads, d / heads, dtype, device));
    }

    /// <summary>A streaming state whose cache evicts with <paramref name="policy"/> (keys re-indexed inside the cache).</summary>
    public MixerState NewState(IKvPolicy policy, int layer = 0) => new PolicyState(new PolicyKvCache(policy, layer));

    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        using var scope = NewDisposeScope();
        long b = xT.shape[0], d = xT.shape[1];
        var parts = qkv.call(xT).view(b, 1, 3, heads, d / heads).unbind(2);        // [B, 1, H, Dh] each
        var (q, k, v) = (hook_q.call(parts[0]), hook_k.call(parts[1]), hook_v.call(parts[2]));
        Tensor z;
        switch (state)
        {
            case KvState kv:
                kv.Cache.Append(k, v);                                              // un-rotated keys
                long tk = kv.Cache.Length;
                var keyPos = torch.arange(tk, device: xT.device);                  // positions inside the cache
                (z, _) = Attend(q, kv.Cache.Keys, kv.Cache.Values, keyPos.narrow(0, tk - 1, 1), keyPos);
                break;
            case PolicyState ps:
                ps.Cache.Append(k, v);                                              // the policy may evict here
                var cachePos = ps.Cache.CachePositions;                             // 0 … Count−1: re-indexed
                (z, var pattern) = Attend(q, ps.Cache.Keys, ps.Cache.Values, cachePos.narrow(0, ps.Cache.Count - 1, 1), cachePos);
                ps.Cache.Observe(pattern);                                          // attention mass (H2O) and step stats
                break;
            case SelectiveState ss:
                z = StepSelective(q, k, v, ss);                                     // full cache, attends a subset
                break;
            case RemoteKvState rs:
                z = StepRemote(q, k, v, rs);                                        // cache and attention on another device
                break;
            default:
                throw new ArgumentException($"state must come from this mixer's NewState, got {state?.GetType().Name}.", nameof(state));
        }
        state.Advance();
        return proj.call(Gated(z, xT.unsqueeze(1)).reshape(b, d)).MoveToOuterDisposeScope();
    }

    /// <summary>G1: z′ = z ⊙ σ(x W_θ + b_θ) per head and channel; identity for other kinds. x [B, T, d] is the (LN'd) mixer input.</summary>
    Tensor Gated(Tensor z, Tensor x)
    {
        if (gate is null) return z;
        var logits = gate.call(x).view(z.shape);                                    // x W_θ + b_θ → [B, T, H, Dh]
        return z * hook_gate!.call(torch.sigmoid(logits));                          // AttentionVariants.GatedG1
    }

    /// <summary>z [B, Tq, H, Dh] and the pattern [B, H, Tq, Tk] for q [B, Tq, H, Dh] at positions qPos [Tq] over k, v [B, Tk, H, Dh] at kPos [Tk].</summary>
    (Tensor Z, Tensor Pattern) Attend(Tensor q, Tensor k, Tensor v, Tensor qPos, Tensor kPos)
    {
        if (positions == PositionKind.Rope)
        {
            q = hook_rot_q!.call(Positions.Rope(q, qPos, ropeBase));                // R_p q
            k = hook_rot_k!.call(Positions.Rope(k, kPos, ropeBase));                // R_s k (rotated at use)
        }
        var visible = kPos.unsqueeze(0) <= qPos.unsqueeze(1);                      // causal by position: j ≤ i
        var mask = alibiSlopes is null ? visible                                     // − m_h (i − j) where visible, −∞ elsewhere
            : Positions.AlibiBias(alibiSlopes, qPos, kPos, q.dtype).masked_fill(visible.logical_not(), double.NegativeInfinity);
        var (raw, vh) = ReferenceAttention.MaskedScores(q, k, v, causal: false, scale: 1.0 / Math.Sqrt(q.shape[3]), mask);   // q_i·k_j / √Dh
        return Mix(raw, vh);
    }

    /// <summary>z [B, Tq, H, Dh] and the pattern [B, H, Tq, Tk] from masked scores [B, H, Tq, Tk] and values [B, H, Tk, Dh].</summary>
    (Tensor Z, Tensor Pattern) Mix(Tensor raw, Tensor vh)
    {
        var scores = hook_attn_scores.call(raw);
        var probabilities = kind switch
        {
            AttentionKind.Softmax1 => AttentionVariants.NormalizeWithSink(scores, torch.zeros(1, dtype: scores.dtype, device: scores.device)).Probabilities,
            AttentionKind.SinkLogit => AttentionVariants.NormalizeWithSink(scores, sink_logits!.view(1, -1, 1, 1)).Probabilities,
            _ => ReferenceAttention.Normalize(scores).Probabilities,               // A = softmax_j(s)
        };
        var pattern = hook_pattern.call(probabilities);
        var z = pattern.matmul(vh).permute(0, 2, 1, 3).contiguous();               // z_i = Σ_j A_ij v_j
        return (hook_z.call(z), pattern);
    }

    /// <summary>The evicting KV cache of one attention layer (un-rotated keys, re-indexed positions).</summary>
    public sealed class PolicyState : MixerState
    {
        public PolicyState(PolicyKvCache cache) => Cache = cache;
        public PolicyKvCache Cache { get; }
        public override long Bytes => Cache.BytesHeld;
        public override void Dispose() => Cache.Dispose();
    }

    /// <summary>The KV cache of one attention layer (un-rotated keys).</summary>
    public sealed class KvState : MixerState
    {
        public KvState(KvCache cache) => Cache = cache;
        public KvCache Cache { get; }
        public override long Bytes => Cache.Bytes;
        public override void Dispose() => Cache.Dispose();
    }
}
