using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>Pre-norm residual block: h = x + mixer(LN₁(x)); y = h + MLP(LN₂(h)), MLP = Linear → GELU → Linear.</summary>
public sealed class TinyGptBlock : nn.Module<Tensor, Tensor>
{
    readonly LayerNorm ln1, ln2;
    readonly nn.Module<Tensor, Tensor> mixer;
    readonly Sequential mlp;

    public TinyGptBlock(TinyGptConfig config, nn.Module<Tensor, Tensor> mixer) : base(nameof(TinyGptBlock))
    {
        config.Validate();
        ArgumentNullException.ThrowIfNull(mixer);
        ln1 = nn.LayerNorm(config.DModel);
        this.mixer = mixer;
        ln2 = nn.LayerNorm(config.DModel);
        mlp = nn.Sequential(nn.Linear(config.DModel, config.MlpDim), nn.GELU(), nn.Linear(config.MlpDim, config.DModel));
        RegisterComponents();
    }

    public LayerNorm Norm1 => ln1;
    public nn.Module<Tensor, Tensor> Mixer => mixer;
    public LayerNorm Norm2 => ln2;
    public Sequential Mlp => mlp;

    /// <summary>x [B, T, d] → [B, T, d].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + mixer.call(ln1.call(x));              // h = x + mixer(LN₁(x))
        return (h + mlp.call(ln2.call(h))).MoveToOuterDisposeScope();   // y = h + MLP(LN₂(h))
    }

    /// <summary>One token x_t [B, d] → [B, d], with the mixer's streaming state.</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        if (mixer is not IStreamingMixer streaming)
            throw new InvalidOperationException($"the mixer {mixer.GetType().Name} cannot stream (it does not implement IStreamingMixer).");
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        using var scope = NewDisposeScope();
        var h = xT + streaming.Step(ln1.call(xT), state);
        return (h + mlp.call(ln2.call(h))).MoveToOuterDisposeScope();
    }
}
