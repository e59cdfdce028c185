using AttentionLab.Core;
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
public sealed class TitansMag : TitansVariant
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

    public override PersistentWindowAttention Attention => attn;
    public override TitansMemory Memory => memory;

    public override Tensor forward(Tensor x) => Forward(x, memory.call);

    /// <summary>The forward pass with the memory branch computed by <paramref name="runMemory"/> (the naive twin passes its own).</summary>
    internal Tensor Forward(Tensor x, Func<Tensor, Tensor> runMemory)
    {
        using var scope = NewDisposeScope();
        return Gate(attn.call(x), runMemory(x)).MoveToOuterDisposeScope();
    }

    Tensor Gate(Tensor y, Tensor m) => NormalisedGate(y, m, g_attn, g_memory);

    public override MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new PairState(this, attn.NewState(batch, dtype, device), memory.NewState(batch, dtype, device));

    protected override Tensor StepState(Tensor xT, TitansVariantState state)
    {
        var s = (PairState)state;
        return Gate(attn.Step(xT, s.First), memory.Step(xT, s.Second));
    }
}

/// <summary>
/// Titans MAL (memory as a layer): the neural memory, then sliding-window attention over [P ‖ M(x)]. x [B, T, d] → [B, T, d].
/// </summary>
/// <remarks>y = M(x̃);  o = SW-Attn*([P ‖ y])  (paper §4.3; the memory's output, after its W_O, is the attention's input).</remarks>
public sealed class TitansMal : TitansVariant
{
    readonly TitansMemory memory;
    readonly PersistentWindowAttention attn;

    public TitansMal(int dModel, int heads, int windowKeys, int persistentTokens, TitansMemoryOptions? options = null) : base(nameof(TitansMal))
    {
        memory = new TitansMemory(dModel, heads, options);
        attn = new PersistentWindowAttention(dModel, heads, windowKeys, persistentTokens);
        RegisterComponents();
    }

    public override PersistentWindowAttention Attention => attn;
    public override TitansMemory Memory => memory;

    public override Tensor forward(Tensor x) => Forward(x, memory.call);

    /// <summary>The forward pass with the memory layer computed by <paramref name="runMemory"/> (the naive twin passes its own).</summary>
    internal Tensor Forward(Tensor x, Func<Tensor, Tensor> runMemory)
    {
        using var scope = NewDisposeScope();
        return attn.call(runMemory(x)).MoveToOuterDisposeScope();
    }

    public override MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new PairState(this, memory.NewState(batch, dtype, device), attn.NewState(batch, dtype, device));

    protected override Tensor StepState(Tensor xT, TitansVariantState state)
    {
        var s = (PairState)state;
        return attn.Step(memory.Step(xT, s.First), s.Second);
    }
}

/// <summary>
/// The shared frame of the Titans variants (MAC, MAG, MAL): a sliding-window attention over [P ‖ ·] and a neural memory, the
/// state bytes of both, and one decode step that checks the state, runs the variant's step in a dispose scope and counts the token.
/// </summary>
public abstract class TitansVariant : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    protected TitansVariant(string name) : base(name) { }

    /// <summary>The attention over [P ‖ ·].</summary>
    public abstract PersistentWindowAttention Attention { get; }
    /// <summary>The neural long-term memory.</summary>
    public abstract TitansMemory Memory { get; }

    /// <summary>State bytes of one sequence (float32): the attention's keys and values (window and P), the memory and its conv.</summary>
    public virtual long StateBytes(long batch = 1) => Attention.StateBytes(batch) + Memory.StateBytes(batch);

    public abstract MixerState NewState(long batch, ScalarType dtype, Device device);

    /// <summary>One token: x_t [B, d] → [B, d], with a state from this variant's <see cref="NewState"/>.</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        if (state is not TitansVariantState s || !ReferenceEquals(s.Owner, this))
        {
            string other = state is TitansVariantState { Owner: var o } && !ReferenceEquals(o, this) ? $" of another {o.GetType().Name}" : "";
            throw new ArgumentException($"state must come from this {GetType().Name}'s NewState, got {state?.GetType().Name ?? "null"}{other}.", nameof(state));
        }
        using var scope = NewDisposeScope();
        var y = StepState(xT, s);
        s.Advance();
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>The variant's step on its own state (checked by <see cref="Step"/>, which also counts the token).</summary>
    protected abstract Tensor StepState(Tensor xT, TitansVariantState state);

    /// <summary>The normalised gate of MAG and MAC: (RMS(y) ⊙ g_y) ⊙ σ(RMS(m) ⊙ g_m), RMS(u) = u / √(mean(u²) + 1e-6).</summary>
    protected static Tensor NormalisedGate(Tensor y, Tensor m, Tensor gY, Tensor gM) => Rms(y) * gY * torch.sigmoid(Rms(m) * gM);

    static Tensor Rms(Tensor u) => u * torch.rsqrt(u.square().mean(new long[] { -1 }, keepdim: true) + 1e-6);
}

/// <summary>The decode state of a <see cref="TitansVariant"/>, bound to the variant that made it.</summary>
public abstract class TitansVariantState(TitansVariant owner) : MixerState
{
    /// <summary>The variant whose <see cref="TitansVariant.NewState"/> made this state; another variant refuses it.</summary>
    public TitansVariant Owner { get; } = owner;
}

/// <summary>Two sub-mixers' decode states (MAG: attention, memory; MAL: memory, attention).</summary>
public sealed class PairState(TitansVariant owner, MixerState first, MixerState second) : TitansVariantState(owner)
{
    public MixerState First { get; } = first;
    public MixerState Second { get; } = second;
    public override long Bytes => First.Bytes + Second.Bytes;
    public override void Dispose() { First.Dispose(); Second.Dispose(); }
}
