using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>Helpers shared by the encoder mixers: the per-head gate that head pruning switches.</summary>
public static class EncoderAttention
{
    /// <summary>
    /// ξ_h z_h: z [B, T, H, Dv] times the gate ξ [H] (same for every sequence) or [B, H] (one per sequence).
    /// ξ = 0 switches a head off (its W_O input is zero), ξ = 1 keeps it; a learned ξ gives Michel et al.'s ∂L/∂ξ_h.
    /// </summary>
    public static Tensor GateHeads(Tensor z, Tensor gate)
    {
        Guard.Rank(z, 4, nameof(z), "B, T, H, Dv");
        Guard.NotNull(gate, nameof(gate));
        long b = z.size(0), h = z.size(2);
        if (gate.dim() == 1 && gate.size(0) == h) return z * gate.to(z.dtype, z.device).view(1, 1, h, 1);
        if (gate.dim() == 2 && gate.size(0) == b && gate.size(1) == h) return z * gate.to(z.dtype, z.device).view(b, 1, h, 1);
        throw new ArgumentException($"gate must be [H] = [{h}] or [B, H] = [{b}, {h}], got {Guard.ShapeText(gate)}.", nameof(gate));
    }
}

/// <summary>
/// Self-attention of an encoder (bidirectional, padding keys hidden) or of a decoder (causal by position, decodes with the
/// base's KV cache), on the <see cref="AttentionMixer"/> base: the same projections, hooks and softmax as every mixer.
/// </summary>
/// <remarks>
/// s_ij = q_i·k_j / √Dk, −∞ where key j is padding (encoder) or j &gt; i (decoder);  A = softmax_j(s);  z_i = Σ_j A_ij v_j;
/// y = W_O concat_h(ξ_h z_h) + b_O with the head gate ξ (<see cref="HeadGate"/>, default all ones).
/// </remarks>
public sealed class EncoderSelfAttention : AttentionMixer
{
    /// <param name="dModel">d.</param>
    /// <param name="heads">H (must divide d).</param>
    /// <param name="causal">True for a decoder's self-attention (j ≤ i), false for a bidirectional encoder.</param>
    public EncoderSelfAttention(int dModel, int heads, bool causal) : base(nameof(EncoderSelfAttention), dModel, heads)
    {
        Causal = causal;
        RegisterComponents();
    }

    /// <summary>True: causal decoder self-attention; false: bidirectional encoder self-attention.</summary>
    public bool Causal { get; }

    /// <summary>Only the causal form decodes token by token.</summary>
    public override bool CanStream => Causal;

    /// <summary>Boolean [B, 1, 1, Tk], true where a key is a real token (encoder only; set by the model for one call).</summary>
    public Tensor? KeyKeep { get; set; }

    /// <summary>Per-head gate ξ [H] or [B, H]; null = every head on. hook_z shows z before the gate.</summary>
    public Tensor? HeadGate { get; set; }

    /// <summary>Causal: the base's scores (j ≤ i by position). Bidirectional: q_i·k_j / √Dk over every key, −∞ at padding.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        if (Causal) return base.Scores(q, k, qPos, kPos, cachedKeys);
        var s = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (1.0 / Math.Sqrt(q.size(3)));   // [B, H, Tq, Tk]
        return KeyKeep is null ? s : s.masked_fill(KeyKeep.logical_not(), double.NegativeInfinity);
    }

    /// <summary>y = W_O concat_h(ξ_h z_h) + b_O.</summary>
    protected override Tensor Output(Tensor z, Tensor x) => base.Output(HeadGate is null ? z : EncoderAttention.GateHeads(z, HeadGate), x);
}

/// <summary>
/// Cross-attention of a decoder over the encoder's output, on the <see cref="AttentionMixer"/> base: queries from the
/// decoder stream x, keys and values from the encoder memory m (the rows of the fused W_QKV: q from its query rows, k, v
/// from its key and value rows). Hooks as every mixer's: hook_q [B, Tdec, H, Dk], hook_k/hook_v [B, Tenc, H, D] (fired when
/// the memory is projected — once per source when decoding), hook_attn_scores and hook_pattern [B, H, Tdec, Tenc], hook_z.
/// </summary>
/// <remarks>
/// q = x W_Q + b_Q,  k = m W_K + b_K,  v = m W_V + b_V;  s_ij = q_i·k_j / √Dk, −∞ where encoder position j is padding;
/// A = softmax_j(s) (rows sum to 1 over real encoder positions);  z_i = Σ_j A_ij v_j;  y = W_O concat_h(ξ_h z_h) + b_O.
/// No causal mask: every decoder position sees the whole source.
/// </remarks>
public sealed class CrossAttention : AttentionMixer
{
    Tensor? keys, values, keep;                                                 // the memory of the running call

    /// <param name="dModel">d (decoder and encoder width).</param>
    /// <param name="heads">H (must divide d).</param>
    public CrossAttention(int dModel, int heads) : base(nameof(CrossAttention), dModel, heads) => RegisterComponents();

    /// <summary>Cross-attention has no token-by-token state of its own: its keys are the fixed memory.</summary>
    public override bool CanStream => false;

    /// <summary>Per-head gate ξ [H] or [B, H]; null = every head on.</summary>
    public Tensor? HeadGate { get; set; }

    /// <summary>k, v [B, Tenc, H, D] of the encoder output <paramref name="memory"/> [B, Tenc, d] (after hook_k, hook_v).</summary>
    public (Tensor K, Tensor V) ProjectMemory(Tensor memory)
    {
        CheckStream(memory, nameof(memory));
        using var scope = NewDisposeScope();
        long b = memory.size(0), t = memory.size(1), rows = Heads * (long)KeyDim;
        var w = Qkv.weight!.narrow(0, rows, 2 * rows);                                  // [W_K; W_V]
        var kv = nn.functional.linear(memory, w, Qkv.bias?.narrow(0, rows, 2 * rows)).view(b, t, 2, Heads, KeyDim).unbind(2);
        var k = hook_k.call(kv[0]);
        var v = hook_v.call(kv[1]);
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// y [B, Tdec, d] for decoder states <paramref name="x"/> [B, Tdec, d] over the memory's <paramref name="k"/>,
    /// <paramref name="v"/> [B, Tenc, H, D] (<see cref="ProjectMemory"/>); <paramref name="keep"/> boolean [B, 1, 1, Tenc] or null.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor k, Tensor v, Tensor? keep)
    {
        CheckStream(x, nameof(x));
        Guard.Rank(k, 4, nameof(k), "B, Tenc, H, D");
        Guard.Rank(v, 4, nameof(v), "B, Tenc, H, D");
        if (k.size(0) != x.size(0) || k.size(2) != Heads || k.size(3) != KeyDim || !v.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"k {Guard.ShapeText(k)} and v {Guard.ShapeText(v)} must be [B = {x.size(0)}, Tenc, {Heads}, {KeyDim}].", nameof(k));
        (keys, values, this.keep) = (k, v, keep);
        try { return call(x); }
        finally { (keys, values, this.keep) = (null, null, null); }
    }

    /// <summary>Runs through <see cref="Forward(Tensor, Tensor, Tensor, Tensor?)"/> only (it needs the memory).</summary>
    public override Tensor forward(Tensor x)
    {
        if (keys is null || values is null)
            throw new InvalidOperationException("CrossAttention needs the encoder memory: call Forward(x, k, v, keep).");
        using var scope = NewDisposeScope();
        long b = x.size(0), t = x.size(1), rows = Heads * (long)KeyDim;
        var q = hook_q.call(nn.functional.linear(x, Qkv.weight!.narrow(0, 0, rows), Qkv.bias?.narrow(0, 0, rows)).view(b, t, Heads, KeyDim));
        var qPos = torch.arange(t, device: x.device);
        var kPos = torch.arange(keys.size(1), device: x.device);                      // unused by Scores: no position mask
        var z = hook_z.call(Attend(q, keys, values, qPos, kPos).Z);
        return Output(z, x).MoveToOuterDisposeScope();
    }

    /// <summary>s_ij = q_i·k_j / √Dk over every encoder position, −∞ where it is padding.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (1.0 / Math.Sqrt(q.size(3)));   // [B, H, Tdec, Tenc]
        return keep is null ? s : s.masked_fill(keep.logical_not(), double.NegativeInfinity);
    }

    /// <summary>y = W_O concat_h(ξ_h z_h) + b_O.</summary>
    protected override Tensor Output(Tensor z, Tensor x) => base.Output(HeadGate is null ? z : EncoderAttention.GateHeads(z, HeadGate), x);

    void CheckStream(Tensor x, string name)
    {
        Guard.Rank(x, 3, name, "B, T, d");
        Guard.Dim(x, 2, DModel, name, "width d");
        Guard.FloatingPoint(x, name);
        if (x.dtype != Qkv.weight!.dtype)
            throw new ArgumentException($"{name} has dtype {x.dtype} but the weights are {Qkv.weight!.dtype}.", name);
    }
}
