using AttentionLab.Interp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// BERT self-attention of one <see cref="MiniLm"/> layer on the <see cref="AttentionMixer"/> base: bidirectional softmax
/// attention whose only mask is padding. Hook points as every mixer's: hook_q, hook_k, hook_v [B, T, H, Dh],
/// hook_attn_scores and hook_pattern [B, H, Tq, Tk], hook_z [B, T, H, Dh]; a tensor returned by a hook_pattern hook is
/// what multiplies V. Hugging Face's separate query/key/value weights load into the fused W_QKV rows (q, k, v).
/// </summary>
/// <remarks>
/// s_ij = q_i·k_j / √Dh, −∞ where key j is padding;  p = softmax_j(s) (a row with no real key gives zeros);
/// z_i = Σ_j p_ij v_j;  y = W_O concat_h(z_h).
/// </remarks>
public sealed class MiniLmAttention : AttentionMixer
{
    Tensor? keep;                                                               // [B, 1, 1, T] of the running call

    public MiniLmAttention(MiniLmConfig config) : base(nameof(MiniLmAttention), config.Hidden, config.Heads) => RegisterComponents();

    /// <summary>An encoder layer: no decode form.</summary>
    public override bool CanStream => false;

    /// <summary>
    /// Per-head gate ξ [H] or [B, H] (0/1 to prune, or a learned gate; null = all heads on): y = W_O concat_h(ξ_h z_h) + b_O.
    /// hook_z shows z before the gate. Set by <see cref="EncoderClassifier"/> for the duration of one call.
    /// </summary>
    public Tensor? HeadGate { get; set; }

    /// <param name="x">[B, T, D]</param>
    /// <param name="keep">boolean [B, 1, 1, T]: true where a key is a real token.</param>
    public Tensor Forward(Tensor x, Tensor keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        this.keep = keep;
        try { return call(x); }
        finally { this.keep = null; }
    }

    /// <summary>s_ij = q_i·k_j / √Dh over every key (no causal mask), −∞ where key j is padding (<see cref="Forward"/>'s keep).</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (1.0 / Math.Sqrt(q.shape[3]));   // [B, H, Tq, Tk]
        return keep is null ? s : s.masked_fill(keep.logical_not(), double.NegativeInfinity);
    }

    /// <summary>y = W_O concat_h(ξ_h z_h) + b_O, ξ = <see cref="HeadGate"/> (no gate: the base's output).</summary>
    protected override Tensor Output(Tensor z, Tensor x) => base.Output(HeadGate is null ? z : EncoderAttention.GateHeads(z, HeadGate), x);
}

/// <summary>BERT feed-forward: hook_pre = W_in x + b_in, hook_post = GELU_erf(pre), out = W_out post + b_out.</summary>
public sealed class MiniLmMlp : nn.Module<Tensor, Tensor>
{
    internal readonly Linear fc_in, fc_out;
    readonly HookPoint hook_pre, hook_post;

    public MiniLmMlp(MiniLmConfig config) : base(nameof(MiniLmMlp))
    {
        fc_in = nn.Linear(config.Hidden, config.Intermediate);
        fc_out = nn.Linear(config.Intermediate, config.Hidden);
        hook_pre = new HookPoint(); hook_post = new HookPoint();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var pre = hook_pre.call(fc_in.call(x));
        var post = hook_post.call(nn.functional.gelu(pre));                     // exact (erf) GELU, as the graph's Erf
        return fc_out.call(post).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// One post-LayerNorm BERT layer, hooked as TransformerLens's BertBlock:
/// resid_mid = resid_pre + attn_out; resid_post = LN1(resid_mid) + mlp_out(LN1(resid_mid)); output = LN2(resid_post)
/// (hook_normalized_resid_post, which is the next layer's hook_resid_pre).
/// </summary>
public sealed class MiniLmBlock : nn.Module<Tensor, Tensor, Tensor>
{
    internal readonly MiniLmAttention attn;
    internal readonly MiniLmMlp mlp;
    internal readonly LayerNorm ln1, ln2;
    readonly HookPoint hook_resid_pre, hook_attn_out, hook_resid_mid, hook_mlp_out, hook_resid_post, hook_normalized_resid_post;

    public MiniLmBlock(MiniLmConfig config) : base(nameof(MiniLmBlock))
    {
        attn = new MiniLmAttention(config);
        mlp = new MiniLmMlp(config);
        ln1 = nn.LayerNorm(config.Hidden, config.LayerNormEps);
        ln2 = nn.LayerNorm(config.Hidden, config.LayerNormEps);
        hook_resid_pre = new HookPoint(); hook_attn_out = new HookPoint(); hook_resid_mid = new HookPoint();
        hook_mlp_out = new HookPoint(); hook_resid_post = new HookPoint(); hook_normalized_resid_post = new HookPoint();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor keep)
    {
        using var scope = NewDisposeScope();
        var residPre = hook_resid_pre.call(x);
        var attnOut = hook_attn_out.call(attn.Forward(residPre, keep));
        var residMid = hook_resid_mid.call(residPre + attnOut);
        var normalizedMid = ln1.call(residMid);
        var mlpOut = hook_mlp_out.call(mlp.call(normalizedMid));
        var residPost = hook_resid_post.call(normalizedMid + mlpOut);
        return hook_normalized_resid_post.call(ln2.call(residPost)).MoveToOuterDisposeScope();
    }
}
