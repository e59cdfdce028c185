using AttentionLab.Attention;
using AttentionLab.Interp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// BERT self-attention of one <see cref="MiniLm"/> layer on <see cref="ReferenceAttention"/>, with TransformerLens hook
/// points hook_q, hook_k, hook_v [B, T, H, Dh], hook_pattern [B, H, Tq, Tk] and hook_z [B, T, H, Dh].
/// A tensor returned by a hook_pattern hook is what multiplies V.
/// </summary>
public sealed class MiniLmAttention : nn.Module<Tensor, Tensor, Tensor>
{
    internal readonly Linear query, key, value, output;
    readonly HookPoint hook_q, hook_k, hook_v, hook_pattern, hook_z;
    readonly int heads;

    public MiniLmAttention(MiniLmConfig config) : base(nameof(MiniLmAttention))
    {
        heads = config.Heads;
        query = nn.Linear(config.Hidden, config.Hidden);
        key = nn.Linear(config.Hidden, config.Hidden);
        value = nn.Linear(config.Hidden, config.Hidden);
        output = nn.Linear(config.Hidden, config.Hidden);
        hook_q = new HookPoint(); hook_k = new HookPoint(); hook_v = new HookPoint();
        hook_pattern = new HookPoint(); hook_z = new HookPoint();
        RegisterComponents();
    }

    /// <param name="x">[B, T, D]</param>
    /// <param name="keep">boolean [B, 1, 1, T]: true where a key is a real token.</param>
    public override Tensor forward(Tensor x, Tensor keep)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], d = x.shape[2];
        var q = hook_q.call(query.call(x).view(b, t, heads, d / heads));        // [B, T, H, Dh]
        var k = hook_k.call(key.call(x).view(b, t, heads, d / heads));
        var v = hook_v.call(value.call(x).view(b, t, heads, d / heads));
        using var att = ReferenceAttention.Softmax(q, k, v, scale: 1.0 / Math.Sqrt(d / heads), mask: keep);
        var pattern = hook_pattern.call(att.Probabilities);                      // p = softmax(q·kᵀ/√Dh, padding keys → 0)
        var z = ReferenceEquals(pattern, att.Probabilities) ? att.Output         // z_i = Σ_j p_ij v_j  [B, T, H, Dh]
            : pattern.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).contiguous();
        z = hook_z.call(z);
        return output.call(z.reshape(b, t, d)).MoveToOuterDisposeScope();
    }
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
        var attnOut = hook_attn_out.call(attn.call(residPre, keep));
        var residMid = hook_resid_mid.call(residPre + attnOut);
        var normalizedMid = ln1.call(residMid);
        var mlpOut = hook_mlp_out.call(mlp.call(normalizedMid));
        var residPost = hook_resid_post.call(normalizedMid + mlpOut);
        return hook_normalized_resid_post.call(ln2.call(residPost)).MoveToOuterDisposeScope();
    }
}
