using AttentionLab.Attention;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>What a mixer keeps between decoding steps (a KV cache, an RNN state, …). Owns its tensors.</summary>
public abstract class MixerState : IDisposable
{
    /// <summary>Tokens consumed so far.</summary>
    public long Position { get; private set; }
    /// <summary>Bytes of tensors held now.</summary>
    public abstract long Bytes { get; }
    /// <summary>Counts tokens; called by the mixer's Step.</summary>
    public void Advance(long tokens = 1) => Position += tokens;
    public abstract void Dispose();
}

/// <summary>A sequence mixer that can also run one token at a time, reproducing its causal forward pass.</summary>
public interface IStreamingMixer
{
    /// <summary>An empty state for <paramref name="batch"/> sequences.</summary>
    MixerState NewState(long batch, ScalarType dtype, Device device);
    /// <summary>Output [B, d] for the next token x_t [B, d]; updates <paramref name="state"/>.</summary>
    Tensor Step(Tensor xT, MixerState state);
}

/// <summary>The streaming state of a linear-attention mixer: the engine's <see cref="LinearAttentionStream"/> (S, z per head).</summary>
public sealed class LinearStreamState : MixerState
{
    public LinearStreamState(LinearAttentionStream stream) => Stream = stream ?? throw new ArgumentNullException(nameof(stream));
    /// <summary>The engine's stream holding (S, z).</summary>
    public LinearAttentionStream Stream { get; }
    public override long Bytes => Stream.Bytes;
    public override void Dispose() => Stream.Dispose();
}
