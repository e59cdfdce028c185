using AttentionLab.Core;
using AttentionLab.Interp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Pre-norm residual block with TransformerLens hook points. x = resid_pre, a = attn_out = mixer(LN₁(x)):
/// sequential: resid_mid = x + a; resid_post = resid_mid + MLP(LN₂(resid_mid));
/// parallel:   resid_post = x + a + MLP(LN₂(x));
/// attention-only: resid_post = x + a (no LN₂, MLP, resid_mid or mlp_out).
/// The FFN is a <see cref="TinyMlp"/> unless the constructor is given another module (e.g. a <see cref="MixtureOfExperts"/>).
/// </summary>
public sealed class TinyGptBlock : nn.Module<Tensor, Tensor>
{
    readonly HookedLayerNorm ln1;
    readonly nn.Module<Tensor, Tensor> attn;
    readonly HookedLayerNorm? ln2;
    readonly nn.Module<Tensor, Tensor>? mlp;
    readonly HookPoint hook_resid_pre = new(), hook_attn_out = new(), hook_resid_post = new();
    readonly HookPoint? hook_resid_mid, hook_mlp_out;
    readonly bool parallel;

    /// <param name="config">The model's config.</param>
    /// <param name="mixer">The sequence mixer.</param>
    /// <param name="ffn">The FFN (x [.., d] → [.., d]) when the config has one; null: a fresh <see cref="TinyMlp"/> of width MlpDim.</param>
    public TinyGptBlock(TinyGptConfig config, nn.Module<Tensor, Tensor> mixer, nn.Module<Tensor, Tensor>? ffn = null) : base(nameof(TinyGptBlock))
    {
        config.Validate();
        ArgumentNullException.ThrowIfNull(mixer);
        if (ffn is not null && !config.Mlp) throw new ArgumentException("an FFN was given but the config has no MLP (Mlp = false).", nameof(ffn));
        ln1 = new HookedLayerNorm(config.DModel);
        attn = mixer;
        parallel = config.ParallelBlock;
        if (config.Mlp)
        {
            ln2 = new HookedLayerNorm(config.DModel);
            mlp = ffn ?? new TinyMlp(config.DModel, config.MlpDim);
            hook_mlp_out = new HookPoint();
            if (!parallel) hook_resid_mid = new HookPoint();
        }
        RegisterComponents();
    }

    public HookedLayerNorm Norm1 => ln1;
    /// <summary>The sequence mixer (named "attn" for TransformerLens hook names).</summary>
    public nn.Module<Tensor, Tensor> Mixer => attn;
    public HookedLayerNorm? Norm2 => ln2;
    /// <summary>The MLP when it is a <see cref="TinyMlp"/>; null in an attention-only block or when the FFN is another module (<see cref="Ffn"/>).</summary>
    public TinyMlp? Mlp => mlp as TinyMlp;
    /// <summary>The FFN module (a <see cref="TinyMlp"/> by default, or the one given), or null in an attention-only block.</summary>
    public nn.Module<Tensor, Tensor>? Ffn => mlp;

    /// <summary>x [B, T, d] → [B, T, d].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return Residual(x, h => attn.call(ln1.call(h)), (hp, t) => hp.call(t)).MoveToOuterDisposeScope();
    }

    /// <summary>One token x_t [B, d] → [B, d], with the mixer's streaming state. Hooks see T = 1 ([B, 1, …]).</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        if (attn is not IStreamingMixer { CanStream: true } streaming)
            throw new InvalidOperationException($"the mixer {attn.GetType().Name} cannot stream (it is not an IStreamingMixer with CanStream).");
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        using var scope = NewDisposeScope();
        return Residual(xT, h => streaming.Step(ln1.call(h), state), (hp, t) => hp.call(t.unsqueeze(1)).squeeze(1)).MoveToOuterDisposeScope();
    }

    Tensor Residual(Tensor x, Func<Tensor, Tensor> mix, Func<HookPoint, Tensor, Tensor> hook)
    {
        x = hook(hook_resid_pre, x);
        var a = hook(hook_attn_out, mix(x));                                    // a = mixer(LN₁(x))
        if (mlp is null) return hook(hook_resid_post, x + a);                   // attention-only
        if (parallel)
        {
            var m = hook(hook_mlp_out!, mlp.call(ln2!.call(x)));                // MLP(LN₂(x))
            return hook(hook_resid_post, x + a + m);
        }
        var h = hook(hook_resid_mid!, x + a);                                   // h = x + a
        return hook(hook_resid_post, h + hook(hook_mlp_out!, mlp.call(ln2!.call(h))));   // h + MLP(LN₂(h))
    }
}
