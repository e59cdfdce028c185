using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// The encoder of an <see cref="EncoderDecoder"/>: embedding (token ids, or frames through a linear projection) plus
/// sinusoidal positions, pre-LN <see cref="TinyGptBlock"/>s whose mixer is bidirectional <see cref="EncoderSelfAttention"/>
/// (padding keys hidden), and a final LayerNorm. Hook names (under the model's "encoder."): hook_embed, hook_pos_embed,
/// blocks.{L}.attn.hook_pattern, blocks.{L}.hook_resid_pre/…, ln_final.hook_normalized.
/// </summary>
/// <remarks>h⁰ = E[x] (or W_in x + b_in) + PE_sin(t);  hˡ⁺¹ = block(hˡ);  memory = LN_final(h^L).</remarks>
public sealed class EncoderStack : nn.Module<Tensor, Tensor, Tensor>
{
    readonly nn.Module<Tensor, Tensor> embed;
    readonly HookPoint hook_embed = new(), hook_pos_embed = new();
    readonly ModuleList<TinyGptBlock> blocks = new();
    readonly HookedLayerNorm ln_final;
    readonly List<EncoderSelfAttention> mixers = new();

    public EncoderStack(EncoderDecoderConfig config) : base(nameof(EncoderStack))
    {
        config.Validate();
        DModel = config.DModel;
        if (config.TokenSource)
        {
            var table = nn.Embedding(config.SourceVocab, config.DModel);
            using (torch.no_grad()) nn.init.normal_(table.weight!, 0, 0.02);
            embed = table;
        }
        else embed = nn.Linear(config.SourceFeatures, config.DModel);
        var blockShape = new TinyGptConfig(Layers: 1, DModel: config.DModel, Heads: config.Heads, MlpRatio: config.MlpRatio);
        for (int l = 0; l < config.EncoderLayers; l++)
        {
            var mixer = new EncoderSelfAttention(config.DModel, config.Heads, causal: false);
            mixers.Add(mixer);
            blocks.Add(new TinyGptBlock(blockShape, mixer));
        }
        ln_final = new HookedLayerNorm(config.DModel);
        RegisterComponents();
    }

    public int DModel { get; }
    /// <summary>The bidirectional self-attention of each layer (set <see cref="EncoderSelfAttention.HeadGate"/> to prune heads).</summary>
    public IReadOnlyList<EncoderSelfAttention> Mixers => mixers;

    /// <summary>memory [B, Tenc, d] of the source ([B, Tenc] ids or [B, Tenc, F] frames); <paramref name="keep"/> boolean [B, 1, 1, Tenc].</summary>
    public override Tensor forward(Tensor source, Tensor keep)
    {
        using var scope = NewDisposeScope();
        long b = source.size(0), t = source.size(1);
        var word = hook_embed.call(embed.call(source));                                                  // E[x] or W_in x + b_in
        var pos = hook_pos_embed.call(Positions.Sinusoidal(0, t, DModel, word.dtype, word.device).unsqueeze(0).expand(b, t, DModel));
        var h = word + pos;
        try
        {
            foreach (var mixer in mixers) mixer.KeyKeep = keep;
            foreach (var block in blocks) h = block.call(h);
        }
        finally
        {
            foreach (var mixer in mixers) mixer.KeyKeep = null;
        }
        return ln_final.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// One pre-LN decoder layer with self-attention, cross-attention and an MLP, hooked as TransformerLens's T5 block:
/// resid_mid = x + attn(LN1(x)); resid_mid_cross = resid_mid + cross_attn(LN2(resid_mid), memory);
/// resid_post = resid_mid_cross + MLP(LN3(resid_mid_cross)). Hooks: hook_resid_pre, hook_attn_out, hook_resid_mid,
/// hook_cross_attn_out, hook_resid_mid_cross, hook_mlp_out, hook_resid_post, attn.hook_*, cross_attn.hook_* (pattern [B, H, Tdec, Tenc]).
/// </summary>
public sealed class EncoderDecoderBlock : nn.Module
{
    readonly HookedLayerNorm ln1, ln2, ln3;
    readonly EncoderSelfAttention attn;
    readonly CrossAttention cross_attn;
    readonly TinyMlp mlp;
    readonly HookPoint hook_resid_pre = new(), hook_attn_out = new(), hook_resid_mid = new(), hook_cross_attn_out = new(),
        hook_resid_mid_cross = new(), hook_mlp_out = new(), hook_resid_post = new();

    public EncoderDecoderBlock(EncoderDecoderConfig config) : base(nameof(EncoderDecoderBlock))
    {
        config.Validate();
        ln1 = new HookedLayerNorm(config.DModel); ln2 = new HookedLayerNorm(config.DModel); ln3 = new HookedLayerNorm(config.DModel);
        attn = new EncoderSelfAttention(config.DModel, config.Heads, causal: true);
        cross_attn = new CrossAttention(config.DModel, config.Heads);
        mlp = new TinyMlp(config.DModel, config.MlpDim);
        RegisterComponents();
    }

    /// <summary>Causal self-attention (decodes with the base's KV cache).</summary>
    public EncoderSelfAttention SelfAttention => attn;
    /// <summary>Cross-attention over the encoder memory.</summary>
    public CrossAttention CrossAttention => cross_attn;

    /// <summary>x [B, Tdec, d] → [B, Tdec, d] over the memory's k, v [B, Tenc, H, D] for this layer and its keep mask.</summary>
    public Tensor Forward(Tensor x, Tensor k, Tensor v, Tensor? keep)
    {
        using var scope = NewDisposeScope();
        return Residual(x, h => attn.call(h), k, v, keep).MoveToOuterDisposeScope();
    }

    /// <summary>One token x_t [B, d] → [B, d], with the self-attention's decode <paramref name="state"/>; hooks see T = 1.</summary>
    public Tensor Step(Tensor xT, MixerState state, Tensor k, Tensor v, Tensor? keep)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        using var scope = NewDisposeScope();
        return Residual(xT.unsqueeze(1), h => attn.Step(h.squeeze(1), state).unsqueeze(1), k, v, keep).squeeze(1).MoveToOuterDisposeScope();
    }

    Tensor Residual(Tensor x, Func<Tensor, Tensor> selfAttention, Tensor k, Tensor v, Tensor? keep)
    {
        x = hook_resid_pre.call(x);
        var a = hook_attn_out.call(selfAttention(ln1.call(x)));                         // attn(LN1(x))
        var mid = hook_resid_mid.call(x + a);
        var c = hook_cross_attn_out.call(cross_attn.Forward(ln2.call(mid), k, v, keep)); // cross_attn(LN2(mid), memory)
        var midCross = hook_resid_mid_cross.call(mid + c);
        var m = hook_mlp_out.call(mlp.call(ln3.call(midCross)));                       // MLP(LN3(midCross))
        return hook_resid_post.call(midCross + m);
    }
}
