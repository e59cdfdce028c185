using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// A small causal (decoder-only) sequence model with a pluggable mixer per block: continuous inputs
/// [B, T, InputFeatures] → Linear embed (+ positions) → blocks (pre-norm mixer + MLP) → final LayerNorm → Linear head
/// [B, T, OutputFeatures]. The mixer of block ℓ comes from <c>mixers(ℓ)</c>; the default is
/// <see cref="CausalSelfAttention"/>. When every mixer is an <see cref="IStreamingMixer"/>, <see cref="Step"/>
/// runs it one token at a time and reproduces the forward pass.
/// </summary>
public sealed class TinyGpt : nn.Module<Tensor, Tensor>
{
    readonly Linear embed, head;
    readonly ModuleList<TinyGptBlock> blocks;
    readonly LayerNorm ln_final;

    public TinyGpt(TinyGptConfig config, Func<int, nn.Module<Tensor, Tensor>>? mixers = null) : base(nameof(TinyGpt))
    {
        Config = config.Validate();
        mixers ??= CausalSelfAttention.Factory(config);
        embed = nn.Linear(config.InputFeatures, config.DModel);
        blocks = new ModuleList<TinyGptBlock>();
        for (int layer = 0; layer < config.Layers; layer++) blocks.Add(new TinyGptBlock(config, mixers(layer)));
        ln_final = nn.LayerNorm(config.DModel);
        head = nn.Linear(config.DModel, config.OutputFeatures);
        RegisterComponents();
    }

    public TinyGptConfig Config { get; }
    public Linear Embed => embed;
    public IReadOnlyList<TinyGptBlock> Blocks => blocks.ToList();
    public LayerNorm FinalNorm => ln_final;
    public Linear Head => head;

    /// <summary>Number of trainable parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>x [B, T, InputFeatures] → [B, T, OutputFeatures], causal.</summary>
    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, features");
        Guard.Dim(x, 2, Config.InputFeatures, nameof(x), "features");
        using var scope = NewDisposeScope();
        var h = Embedded(x, start: 0);
        foreach (var block in blocks) h = block.call(h);
        return head.call(ln_final.call(h)).MoveToOuterDisposeScope();
    }

    /// <summary>Input embedding of x [B, T, InputFeatures] at positions start…start+T−1, positions added.</summary>
    public Tensor Embedded(Tensor x, long start)
    {
        using var scope = NewDisposeScope();
        var h = embed.call(x);
        if (Config.Positions == PositionKind.Sinusoidal)
            h = h + Positions.Sinusoidal(start, x.shape[1], Config.DModel, h.dtype, h.device);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>An empty streaming state (one <see cref="MixerState"/> per block) for <paramref name="batch"/> sequences.</summary>
    public TinyGptState NewState(long batch = 1)
    {
        var w = embed.weight!;
        return new TinyGptState(blocks.Select(b => b.Mixer is IStreamingMixer s ? s.NewState(batch, w.dtype, w.device)
            : throw new InvalidOperationException($"the mixer {b.Mixer.GetType().Name} cannot stream.")).ToList());
    }

    /// <summary>One position x_t [B, InputFeatures] → y_t [B, OutputFeatures]; equals forward's output at position t.</summary>
    public Tensor Step(Tensor xT, TinyGptState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, features");
        Guard.Dim(xT, 1, Config.InputFeatures, nameof(xT), "features");
        ArgumentNullException.ThrowIfNull(state);
        if (state.Layers.Count != blocks.Count) throw new ArgumentException($"state has {state.Layers.Count} layers, the model {blocks.Count}.", nameof(state));
        using var scope = NewDisposeScope();
        var h = Embedded(xT.unsqueeze(1), start: state.Position).squeeze(1);
        for (int i = 0; i < blocks.Count; i++) h = blocks[i].Step(h, state.Layers[i]);
        return head.call(ln_final.call(h)).MoveToOuterDisposeScope();
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
