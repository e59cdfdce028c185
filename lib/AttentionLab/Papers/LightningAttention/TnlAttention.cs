using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// The TransNormerLLM (TNL) token mixer around Lightning Attention, after <c>examples/module/tnl_attn.py</c>:
/// x [B, T, d] → [B, T, d]. Trains with the tiled/chunked form (<see cref="forward"/>) and decodes one token at a time
/// with a constant-size d_h × d_h state per head (<see cref="Step"/>). A mixer for <see cref="TinyGpt"/>.
/// </summary>
/// <remarks>
/// q, k, v = SiLU(W_q x), SiLU(W_k x), SiLU(W_v x)                 split into H heads of d_h = d/H
/// o = LightningAttention(q, k, v; λ_{h,l})                        decay from <see cref="DecaySchedules.Slopes"/> (layer l of L; L = 1: bare slopes)
/// o = SRMSNorm(o) = o / √(mean(o²) + ε)                           over the d channels, no weight (TNL's SimpleRMSNorm)
/// g = σ(W_{g2} W_{g1} x)                                           low-rank output gate d → d_h → d
/// y = W_o (o ⊙ g)
/// </remarks>
public sealed class TnlAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear q_proj, k_proj, v_proj, o_proj, gate_down, gate_up;
    readonly SimpleRmsNorm norm;
    readonly double[] slopes;

    /// <param name="dModel">d (a multiple of <paramref name="heads"/>).</param>
    /// <param name="heads">H.</param>
    /// <param name="layer">l, 0-based (sets the decay).</param>
    /// <param name="layers">L. With the ALiBi schedule, L &gt; 1 applies the TNL example's layer factor
    /// 1 − l/(L−1) + 1e−5 (<see cref="DecaySchedules.AlibiLayerFactor"/>); L = 1 keeps the reference's bare slopes.</param>
    /// <param name="schedule">which public decay schedule; default ALiBi (× the layer factor when L &gt; 1).</param>
    /// <param name="block">block length of the chunked form used by <see cref="forward"/>.</param>
    public TnlAttention(int dModel, int heads, int layer = 0, int layers = 1, DecaySchedule schedule = DecaySchedule.Alibi, int block = LightningAttention.DefaultBlock)
        : base(nameof(TnlAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads}.", nameof(heads));
        if (block <= 0) throw new ArgumentOutOfRangeException(nameof(block), block, "block must be positive.");
        slopes = DecaySchedules.Slopes(schedule, heads, layer, layers);                           // a_{h,l}; λ = e^{−a}
        (DModel, Heads, Layer, Schedule, Block) = (dModel, heads, layer, schedule, block);
        int dh = dModel / heads;
        q_proj = nn.Linear(dModel, dModel, hasBias: false);
        k_proj = nn.Linear(dModel, dModel, hasBias: false);
        v_proj = nn.Linear(dModel, dModel, hasBias: false);
        o_proj = nn.Linear(dModel, dModel, hasBias: false);
        gate_down = nn.Linear(dModel, dh, hasBias: false);
        gate_up = nn.Linear(dh, dModel, hasBias: false);
        norm = new SimpleRmsNorm();
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    public int HeadDim => DModel / Heads;
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

    /// <summary>x [B, T, d] → [B, T, d] by the chunked (Lightning) form.</summary>
    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (q, k, v) = Qkv(x, b, t);                                                                 // [B, T, H, d_h]
        using var r = LightningAttention.Forward(q, k, v, LogDecay(x.device), Block);
        return Output(r.Output.reshape(b, t, DModel), x).MoveToOuterDisposeScope();
    }

    public MixerState NewState(long batch, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        return new LightningState(new LinearAttentionStream(batch, Heads, HeadDim, HeadDim, dtype, device, LogDecay(device)));
    }

    /// <summary>One token x_t [B, d] → y_t [B, d]: S_t = λ S_{t−1} + k_tᵀ v_t, o_t = q_t S_t, then norm, gate, projection.</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        if (state is not LightningState ls) throw new ArgumentException($"state must come from TnlAttention.NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        long b = xT.shape[0];
        var (q, k, v) = Qkv(xT.unsqueeze(1), b, 1);                                                   // [B, 1, H, d_h]
        var o = ls.Stream.Step(q.squeeze(1), k.squeeze(1), v.squeeze(1));                             // [B, H, d_h]
        ls.Advance();
        return Output(o.reshape(b, 1, DModel), xT.unsqueeze(1)).squeeze(1).MoveToOuterDisposeScope();
    }

    (Tensor Q, Tensor K, Tensor V) Qkv(Tensor x, long b, long t)
    {
        Tensor Proj(Linear p) => nn.functional.silu(p.call(x)).view(b, t, Heads, HeadDim);          // SiLU(W x), split heads
        return (Proj(q_proj), Proj(k_proj), Proj(v_proj));
    }

    /// <summary>y = W_o (SRMSNorm(o) ⊙ σ(W_{g2} W_{g1} x)).</summary>
    Tensor Output(Tensor o, Tensor x) =>
        o_proj.call(norm.call(o) * torch.sigmoid(gate_up.call(gate_down.call(x))));
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

/// <summary>The decoding state of one <see cref="TnlAttention"/>: a <see cref="LinearAttentionStream"/> (S [B, H, d_h, d_h]), constant in t.</summary>
public sealed class LightningState : MixerState
{
    public LightningState(LinearAttentionStream stream) => Stream = stream;

    /// <summary>The stream holding S and the decay.</summary>
    public LinearAttentionStream Stream { get; }
    public override long Bytes => Stream.Bytes;
    public override void Dispose() => Stream.Dispose();
}

/// <summary>A TNL-style stack: <see cref="TinyGpt"/> blocks whose mixer is a <see cref="TnlAttention"/> with layer-dependent decay.</summary>
public static class LightningStack
{
    /// <summary>The mixer factory: block l gets <c>new TnlAttention(d, H, l, L, schedule)</c>.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Mixers(TinyGptConfig config, DecaySchedule schedule = DecaySchedule.Alibi, int block = LightningAttention.DefaultBlock) =>
        layer => new TnlAttention(config.DModel, config.Heads, layer, config.Layers, schedule, block);

    /// <summary>The model: forward by the chunked form, <see cref="TinyGpt.Step"/> by the recurrence with a constant state per layer.</summary>
    public static TinyGpt Create(TinyGptConfig config, DecaySchedule schedule = DecaySchedule.Alibi, int block = LightningAttention.DefaultBlock) =>
        new(config, Mixers(config, schedule, block));
}
