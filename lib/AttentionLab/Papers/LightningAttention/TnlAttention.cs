using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// The TransNormerLLM (TNL) token mixer around Lightning Attention, after <c>examples/module/tnl_attn.py</c>:
/// x [B, T, d] → [B, T, d]. Trains with the tiled/chunked form (<see cref="AttentionMixer.forward"/>) and decodes one token at a time
/// with a constant-size d_h × d_h state per head (<see cref="AttentionMixer.Step"/>). A mixer for <see cref="TinyGpt"/>.
/// </summary>
/// <remarks>
/// q, k, v = SiLU(W_q x), SiLU(W_k x), SiLU(W_v x)                 split into H heads of d_h = d/H
/// o = LightningAttention(q, k, v; λ_{h,l})                        decay from <see cref="DecaySchedules.Slopes"/> (layer l of L; L = 1: bare slopes)
/// o = SRMSNorm(o) = o / √(mean(o²) + ε)                           over the d channels, no weight (TNL's SimpleRMSNorm)
/// g = σ(W_{g2} W_{g1} x)                                           low-rank output gate d → d_h → d
/// y = W_o (o ⊙ g)
/// </remarks>
public sealed class TnlAttention : LinearAttentionMixer
{
    readonly Linear gate_down, gate_up;
    readonly SimpleRmsNorm norm;
    readonly double[] slopes;

    /// <param name="dModel">d (a multiple of <paramref name="heads"/>).</param>
    /// <param name="heads">H.</param>
    /// <param name="layer">l, 0-based (sets the decay).</param>
    /// <param name="layers">L. With the ALiBi schedule, L &gt; 1 applies the TNL example's layer factor
    /// 1 − l/(L−1) + 1e−5 (<see cref="DecaySchedules.AlibiLayerFactor"/>); L = 1 keeps the reference's bare slopes.</param>
    /// <param name="schedule">which public decay schedule; default ALiBi (× the layer factor when L &gt; 1).</param>
    /// <param name="block">block length of the chunked form used by the forward pass.</param>
    public TnlAttention(int dModel, int heads, int layer = 0, int layers = 1, DecaySchedule schedule = DecaySchedule.Alibi,
        int block = LightningAttention.DefaultBlock)
        : base(nameof(TnlAttention), dModel, heads,
               new LinearAttentionOptions
               {
                   ChunkSize = block > 0 ? block : throw new ArgumentOutOfRangeException(nameof(block), block, "block must be positive.")
               },
               causal: true, bias: false)
    {
        slopes = DecaySchedules.Slopes(schedule, heads, layer, layers);                           // a_{h,l}; λ = e^{−a}
        (Layer, Schedule, Block) = (layer, schedule, block);
        gate_down = nn.Linear(dModel, HeadDim, hasBias: false);
        gate_up = nn.Linear(HeadDim, dModel, hasBias: false);
        norm = new SimpleRmsNorm();
        RegisterComponents();
    }

    public int HeadDim => KeyDim;
    /// <summary>l: this layer's index (the decay depends on it).</summary>
    public int Layer { get; }
    public DecaySchedule Schedule { get; }
    /// <summary>Block length of the chunked form.</summary>
    public int Block { get; }
    /// <summary>The slopes a_h (λ_h = e^{−a_h}) of this layer.</summary>
    public IReadOnlyList<double> Slopes => slopes;

    /// <summary>log λ [H] = −a_h on <paramref name="device"/> (float32).</summary>
    public Tensor LogDecay(Device? device = null)
    {
        using var scope = NewDisposeScope();
        return (-torch.tensor(slopes, dtype: ScalarType.Float64, device: device)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    protected override Tensor? HeadLogDecay(Device device) => LogDecay(device);

    /// <summary>q, k, v = SiLU(W_q x), SiLU(W_k x), SiLU(W_v x) per head (what the hooks see and the attention uses).</summary>
    protected override (Tensor Q, Tensor K, Tensor V) Activate(Tensor q, Tensor k, Tensor v) =>
        (nn.functional.silu(q), nn.functional.silu(k), nn.functional.silu(v));

    /// <summary>o_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j by the Lightning form (tiles of <see cref="Block"/>), or W·V while hooked.</summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (PatternObserved) return base.Mix(q, k, v, x);
        using var r = LightningAttention.Forward(q, k, v, LogDecay(q.device), Block);
        return r.Output.alias();
    }

    /// <summary>y = W_o (SRMSNorm(o) ⊙ σ(W_{g2} W_{g1} x)), o = concat_h(z_h).</summary>
    protected override Tensor Output(Tensor z, Tensor x) =>
        Proj.call(norm.call(z.reshape(z.shape[0], z.shape[1], DModel)) * torch.sigmoid(gate_up.call(gate_down.call(x))));
}

/// <summary>TNL's SimpleRMSNorm: x / √(mean(x²) + ε) over the last dimension, no learned weight.</summary>
public sealed class SimpleRmsNorm : nn.Module<Tensor, Tensor>
{
    /// <param name="eps">ε &gt; 0 (default 1e−6).</param>
    public SimpleRmsNorm(double eps = 1e-6) : base(nameof(SimpleRmsNorm))
    {
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be positive.");
        Eps = eps;
    }

    public double Eps { get; }

    public override Tensor forward(Tensor x) => x * torch.rsqrt(x.square().mean(new long[] { -1 }, keepdim: true) + Eps);   // x / √(mean(x²) + ε)
}

/// <summary>A TNL-style stack: <see cref="TinyGpt"/> blocks whose mixer is a <see cref="TnlAttention"/> with layer-dependent decay.</summary>
public static class LightningStack
{
    /// <summary>The mixer factory: block l gets <c>new TnlAttention(d, H, l, L, schedule)</c>.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Mixers(TinyGptConfig config, DecaySchedule schedule = DecaySchedule.Alibi,
        int block = LightningAttention.DefaultBlock) =>
        layer => new TnlAttention(config.DModel, config.Heads, layer, config.Layers, schedule, block);

    /// <summary>The model: forward by the chunked form, <see cref="TinyGpt.Step"/> by the recurrence with a constant state per layer.</summary>
    public static TinyGpt Create(TinyGptConfig config, DecaySchedule schedule = DecaySchedule.Alibi, int block = LightningAttention.DefaultBlock) =>
        new(config, Mixers(config, schedule, block));
}
