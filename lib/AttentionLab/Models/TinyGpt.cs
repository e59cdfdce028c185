using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// A small causal (decoder-only) model with a pluggable mixer per block and TransformerLens hook points.
/// Token inputs (VocabSize &gt; 0): ids [B, T] → hook_embed(W_E[x]) (+ hook_pos_embed) → blocks → ln_final → logits
/// [B, T, V] (W_U, or W_Eᵀ when tied). Continuous inputs: x [B, T, InputFeatures] → Linear embed → … → Linear head
/// [B, T, OutputFeatures]. The mixer of block ℓ comes from <c>mixers(ℓ)</c> (default <see cref="CausalSelfAttention"/>);
/// when every mixer is an <see cref="IStreamingMixer"/>, <see cref="Step"/> runs one token at a time and reproduces
/// the forward pass. With <see cref="AttentionKind.Register"/> a learned vector r sits at position 0 in front of the
/// tokens (which take positions 1 … T); hooks see T + 1 positions and the output drops r's.
/// </summary>
/// <remarks>Token and learned-position embeddings start at N(0, 0.02²) (GPT-2); linear layers keep TorchSharp's default init.</remarks>
public sealed class TinyGpt : nn.Module<Tensor, Tensor>, IHookedModel
{
    readonly nn.Module<Tensor, Tensor> embed;        // Linear (continuous) or Embedding (tokens)
    readonly Embedding? pos_embed;
    readonly Parameter? register;              // r [d] (AttentionKind.Register)
    readonly HookPoint hook_embed = new();
    readonly HookPoint? hook_pos_embed;
    readonly ModuleList<TinyGptBlock> blocks;
    readonly HookedLayerNorm ln_final;
    readonly Linear? head, unembed;
    readonly Dictionary<string, HookPoint> hookPoints;

    /// <param name="config">Size and shape.</param>
    /// <param name="mixers">Layer → its mixer (default <see cref="CausalSelfAttention"/>).</param>
    /// <param name="ffns">Layer → its FFN (default a fresh <see cref="TinyMlp"/> per block, e.g. a <see cref="MixtureOfExperts"/> instead);
    /// called after the layer's mixer.</param>
    public TinyGpt(TinyGptConfig config, Func<int, nn.Module<Tensor, Tensor>>? mixers = null, Func<int, nn.Module<Tensor, Tensor>>? ffns = null)
        : base(nameof(TinyGpt))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config.Validate();
        mixers ??= CausalSelfAttention.Factory(config);
        if (config.TokenInputs)
        {
            embed = nn.Embedding(config.VocabSize, config.DModel);
            using (torch.no_grad()) nn.init.normal_(((Embedding)embed).weight!, 0, 0.02);
        }
        else embed = nn.Linear(config.InputFeatures, config.DModel);
        if (config.Positions == PositionKind.Learned)
        {
            pos_embed = nn.Embedding(config.MaxLength, config.DModel);
            using (torch.no_grad()) nn.init.normal_(pos_embed.weight!, 0, 0.02);
        }
        if (config.Positions is PositionKind.Learned or PositionKind.Sinusoidal) hook_pos_embed = new HookPoint();
        if (config.Attention == AttentionKind.Register) register = nn.Parameter(torch.randn(config.DModel).mul_(0.02));
        blocks = new ModuleList<TinyGptBlock>();
        if (ffns is not null && !config.Mlp) throw new ArgumentException("ffns were given but the config has no MLP (Mlp = false).", nameof(ffns));
        for (int layer = 0; layer < config.Layers; layer++)
        {
            var mixer = mixers(layer);
            blocks.Add(new TinyGptBlock(config, mixer, ffns?.Invoke(layer)));
        }
        ln_final = new HookedLayerNorm(config.DModel);
        if (!config.TokenInputs) head = nn.Linear(config.DModel, config.OutputFeatures);
        else if (!config.TiedEmbeddings) unembed = nn.Linear(config.DModel, config.VocabSize);
        RegisterComponents();
        hookPoints = new Dictionary<string, HookPoint>();
        foreach (var (name, module) in named_modules())
            if (module is HookPoint hp) { hp.Name = name; hookPoints[name] = hp; }
    }

    public TinyGptConfig Config { get; }
    /// <summary>The input embedding: an Embedding W_E [V, d] for tokens, a Linear for continuous inputs.</summary>
    public nn.Module<Tensor, Tensor> Embed => embed;
    /// <summary>Learned positions W_pos [MaxLength, d], or null.</summary>
    public Embedding? PosEmbed => pos_embed;
    /// <summary>The register vector r [d] of a Register model, or null.</summary>
    public Parameter? RegisterToken => register;
    /// <summary>Positions in front of the input (1 with a register, else 0).</summary>
    public int Prefix => register is null ? 0 : 1;
    public IReadOnlyList<TinyGptBlock> Blocks => blocks.ToList();
    public HookedLayerNorm FinalNorm => ln_final;
    /// <summary>The continuous-output head (null for token inputs).</summary>
    public Linear? Head => head;
    /// <summary>The unembedding W_U (null for continuous inputs or tied embeddings).</summary>
    public Linear? Unembed => unembed;

    /// <summary>Number of trainable parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    public int LayerCount => Config.Layers;
    public int HeadCount => Config.Heads;
    public IReadOnlyDictionary<string, HookPoint> HookPoints => hookPoints;
    /// <summary>Logits through <c>.call</c> (hooks fire).</summary>
    public Tensor Run(Tensor input) => call(input);

    /// <summary>Token ids [B, T] (int64, in [0, V)) or features [B, T, InputFeatures] → [B, T, OutputSize], causal.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        CheckInput(x, sequence: true, nameof(x));
        var h = Embedded(x, start: Prefix);
        if (register is not null) h = torch.cat(new[] { register.view(1, 1, -1).expand(h.shape[0], 1, h.shape[2]), h }, 1);   // [r; x]
        foreach (var block in blocks) h = block.call(h);
        if (register is not null) h = h.narrow(1, 1, h.shape[1] - 1);                      // drop r's position
        return Output(ln_final.call(h)).MoveToOuterDisposeScope();
    }

    /// <summary>Embedding of x ([B, T] ids or [B, T, F] features) at positions start…start+T−1, absolute positions added: [B, T, d].</summary>
    public Tensor Embedded(Tensor x, long start)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var h = hook_embed.call(embed.call(x));                                            // W_E[x]
        if (Config.Positions == PositionKind.Learned)
        {
            if (start + t > Config.MaxLength)
                throw new ArgumentException($"positions {start}…{start + t - 1} exceed MaxLength {Config.MaxLength} (learned positions).", nameof(x));
            var p = pos_embed!.call(torch.arange(start, start + t, device: x.device));     // W_pos[p]
            h = h + hook_pos_embed!.call(p.unsqueeze(0).expand(b, t, Config.DModel));
        }
        else if (Config.Positions == PositionKind.Sinusoidal)
            h = h + hook_pos_embed!.call(Positions.Sinusoidal(start, t, Config.DModel, h.dtype, h.device).unsqueeze(0).expand(b, t, Config.DModel));
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// An empty streaming state (one <see cref="MixerState"/> per block) for <paramref name="batch"/> sequences; a Register
    /// model's state already holds r. With <paramref name="kvPolicy"/> (layer → policy) every attention layer keeps an
    /// evicting <see cref="PolicyKvCache"/> whose keys take positions inside the cache (StreamingLLM) — which needs
    /// RoPE, ALiBi or no positions: absolute position embeddings are added before the cache and cannot be re-indexed.
    /// </summary>
    public TinyGptState NewState(long batch = 1, Func<int, IKvPolicy>? kvPolicy = null)
    {
        Guard.Positive(batch, nameof(batch));
        if (kvPolicy is not null && Config.Positions is PositionKind.Learned or PositionKind.Sinusoidal)
            throw new ArgumentException(
                $"kvPolicy re-indexes positions inside the cache, which {Config.Positions} position embeddings cannot follow; use RoPE, ALiBi or None.",
                nameof(kvPolicy));
        var w = ln_final.Weight;
        var layers = new List<MixerState>();
        for (int layer = 0; layer < blocks.Count; layer++)
        {
            var mixer = blocks[layer].Mixer;
            layers.Add(kvPolicy is null
                ? mixer is IStreamingMixer { CanStream: true } s ? s.NewState(batch, w.dtype, w.device)
                    : throw new InvalidOperationException($"the mixer {mixer.GetType().Name} cannot stream.")
                : mixer is CausalSelfAttention a ? a.NewState(kvPolicy(layer), layer)
                    : throw new InvalidOperationException($"kvPolicy needs CausalSelfAttention mixers, block {layer} has {mixer.GetType().Name}."));
        }
        var state = new TinyGptState(layers);
        if (register is not null)
            using (var scope = NewDisposeScope())
            {
                var h = register.view(1, -1).expand(batch, register.shape[0]);      // r enters every sequence first
                for (int i = 0; i < blocks.Count; i++) h = blocks[i].Step(h, layers[i]);
            }
        return state;
    }

    /// <summary>
    /// An empty streaming state whose attention layers keep every key and attend, per step, to the subset the layer's
    /// selector (layer → <see cref="IKvSelector"/>) picks, e.g. Recycled Attention. Keys keep their own positions.
    /// </summary>
    public TinyGptState NewSelectiveState(long batch, Func<int, IKvSelector> selector)
    {
        Guard.Positive(batch, nameof(batch));
        ArgumentNullException.ThrowIfNull(selector);
        if (register is not null) throw new ArgumentException("selective decoding does not support a Register model.", nameof(selector));
        var layers = new List<MixerState>();
        for (int layer = 0; layer < blocks.Count; layer++)
            layers.Add(blocks[layer].Mixer is CausalSelfAttention a ? a.NewState(selector(layer), layer)
                : throw new InvalidOperationException(
                    $"selective decoding needs CausalSelfAttention mixers, block {layer} has {blocks[layer].Mixer.GetType().Name}."));
        return new TinyGptState(layers);
    }

    /// <summary>One position — ids x_t [B] or features x_t [B, InputFeatures] — → y_t [B, OutputSize]; equals forward's output at position t.</summary>
    public Tensor Step(Tensor xT, TinyGptState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Layers.Count != blocks.Count) throw new ArgumentException($"state has {state.Layers.Count} layers, the model {blocks.Count}.", nameof(state));
        using var scope = NewDisposeScope();
        CheckInput(xT, sequence: false, nameof(xT));
        var h = Embedded(xT.unsqueeze(1), start: state.Position).squeeze(1);
        for (int i = 0; i < blocks.Count; i++) h = blocks[i].Step(h, state.Layers[i]);
        return Output(ln_final.call(h)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The unembedding as (W_U [d, V], b_U [V] or null) — the untied Linear's or the tied W_Eᵀ — so that
    /// logits = ln_final(h) W_U + b_U; null for a model with continuous outputs (its head is not an unembedding).
    /// </summary>
    public (Tensor W_U, Tensor? B_U)? Unembedding => head is not null ? null
        : unembed is not null ? (unembed.weight!.t(), unembed.bias)
        : (((Embedding)embed).weight!.t(), null);

    Tensor Output(Tensor normalized) =>
        head is not null ? head.call(normalized)
        : unembed is not null ? unembed.call(normalized)
        : nn.functional.linear(normalized, ((Embedding)embed).weight!);                  // tied: h W_Eᵀ

    void CheckInput(Tensor x, bool sequence, string name)
    {
        if (Config.TokenInputs)
        {
            Guard.Rank(x, sequence ? 2 : 1, name, sequence ? "B, T token ids" : "B token ids");
            if (x.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must hold int64 token ids, got {x.dtype}.", name);
            Guard.TokenIds(x, Config.VocabSize, name);
        }
        else
        {
            Guard.Rank(x, sequence ? 3 : 2, name, sequence ? "B, T, features" : "B, features");
            Guard.Dim(x, sequence ? 2 : 1, Config.InputFeatures, name, "features");
        }
    }
}

/// <summary>Streaming state of a <see cref="TinyGpt"/>: one mixer state per block. Dispose it when done.</summary>
public sealed class TinyGptState : IDisposable
{
    public TinyGptState(IReadOnlyList<MixerState> layers) => Layers = layers;
    public IReadOnlyList<MixerState> Layers { get; }
    /// <summary>Tokens consumed.</summary>
    public long Position => Layers.Count == 0 ? 0 : Layers[0].Position;
    /// <summary>Bytes held by all mixer states.</summary>
    public long Bytes => Layers.Sum(l => l.Bytes);
    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}
