using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Titans;

/// <summary>
/// Titans MAG (memory as a gate): a sliding-window branch over [P ‖ x] and the neural memory branch, combined by a normalised
/// gate. x [B, T, d] → [B, T, d].
/// </summary>
/// <remarks>
/// y = SW-Attn*([P ‖ x]),  m = M(x̃)  (the memory mixer: conv, ℓ2-normalised q, k, per-token gates)
/// o = (RMS(y) ⊙ g_y) ⊙ σ(RMS(m) ⊙ g_m)       RMS(u) = u / √(mean(u²) + 1e-6), g_y, g_m ∈ ℝ^d learned (start 1)
/// Our reading of "normalise y and M(x̃) with learnable vector-valued weights, then a non-linearity σ(·)" (paper §4.2).
/// The persistent tokens feed the attention branch only: the memory's learned start weights W_0 hold its data-independent part.
/// </remarks>
public sealed class TitansMag : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly PersistentWindowAttention attn;
    readonly TitansMemory memory;
    readonly Parameter g_attn, g_memory;

    public TitansMag(int dModel, int heads, int windowKeys, int persistentTokens, TitansMemoryOptions? options = null) : base(nameof(TitansMag))
    {
        attn = new PersistentWindowAttention(dModel, heads, windowKeys, persistentTokens);
        memory = new TitansMemory(dModel, heads, options);
        g_attn = nn.Parameter(torch.ones(dModel));
        g_memory = nn.Parameter(torch.ones(dModel));
        RegisterComponents();
    }

    public PersistentWindowAttention Attention => attn;
    public TitansMemory Memory => memory;

    /// <summary>State bytes of one sequence (float32): the window and P's keys and values, the memory and its conv.</summary>
    public long StateBytes(long batch = 1) => attn.StateBytes(batch) + memory.StateBytes(batch);

    public override Tensor forward(Tensor x) => Forward(x, memory.call);

    /// <summary>The forward pass with the memory branch computed by <paramref name="runMemory"/> (the naive twin passes its own).</summary>
    internal Tensor Forward(Tensor x, Func<Tensor, Tensor> runMemory)
    {
        using var scope = NewDisposeScope();
        return Gate(attn.call(x), runMemory(x)).MoveToOuterDisposeScope();
    }

    Tensor Gate(Tensor y, Tensor m) => Rms(y) * g_attn * torch.sigmoid(Rms(m) * g_memory);   // (RMS(y) ⊙ g_y) ⊙ σ(RMS(m) ⊙ g_m)

    static Tensor Rms(Tensor u) => u * torch.rsqrt(u.square().mean(new long[] { -1 }, keepdim: true) + 1e-6);

    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new PairState(attn.NewState(batch, dtype, device), memory.NewState(batch, dtype, device));

    public Tensor Step(Tensor xT, MixerState state)
    {
        if (state is not PairState s)
            throw new ArgumentException($"state must come from {nameof(TitansMag)}.NewState, got {state?.GetType().Name ?? "null"}.", nameof(state));
        using var scope = NewDisposeScope();
        var y = Gate(attn.Step(xT, s.First), memory.Step(xT, s.Second));
        s.Advance();
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Titans MAL (memory as a layer): the neural memory, then sliding-window attention over [P ‖ M(x)]. x [B, T, d] → [B, T, d].
/// </summary>
/// <remarks>y = M(x̃);  o = SW-Attn*([P ‖ y])  (paper §4.3; the memory's output, after its W_O, is the attention's input).</remarks>
public sealed class TitansMal : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly TitansMemory memory;
    readonly PersistentWindowAttention attn;

    public TitansMal(int dModel, int heads, int windowKeys, int persistentTokens, TitansMemoryOptions? options = null) : base(nameof(TitansMal))
    {
        memory = new TitansMemory(dModel, heads, options);
        attn = new PersistentWindowAttention(dModel, heads, windowKeys, persistentTokens);
        RegisterComponents();
    }

    public PersistentWindowAttention Attention => attn;
    public TitansMemory Memory => memory;

    /// <summary>State bytes of one sequence (float32).</summary>
    public long StateBytes(long batch = 1) => attn.StateBytes(batch) + memory.StateBytes(batch);

    public override Tensor forward(Tensor x) => Forward(x, memory.call);

    internal Tensor Forward(Tensor x, Func<Tensor, Tensor> runMemory)
    {
        using var scope = NewDisposeScope();
        return attn.call(runMemory(x)).MoveToOuterDisposeScope();
    }

    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new PairState(memory.NewState(batch, dtype, device), attn.NewState(batch, dtype, device));

    public Tensor Step(Tensor xT, MixerState state)
    {
        if (state is not PairState s)
            throw new ArgumentException($"state must come from {nameof(TitansMal)}.NewState, got {state?.GetType().Name ?? "null"}.", nameof(state));
        using var scope = NewDisposeScope();
        var y = attn.Step(memory.Step(xT, s.First), s.Second);
        s.Advance();
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>Two sub-mixers' decode states (MAG: attention, memory; MAL: memory, attention).</summary>
public sealed class PairState(MixerState first, MixerState second) : MixerState
{
    public MixerState First { get; } = first;
    public MixerState Second { get; } = second;
    public override long Bytes => First.Bytes + Second.Bytes;
    public override void Dispose() { First.Dispose(); Second.Dispose(); }
}
