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
    /// <summary>False for a mixer that implements the interface through a shared base but has no token-by-token form.</summary>
    bool CanStream => true;
    /// <summary>An empty state for <paramref name="batch"/> sequences.</summary>
    MixerState NewState(long batch, ScalarType dtype, Device device);
    /// <summary>Output [B, d] for the next token x_t [B, d]; updates <paramref name="state"/>.</summary>
    Tensor Step(Tensor xT, MixerState state);
}

/// <summary>
/// The streaming state of a linear-attention mixer: the engine's <see cref="LinearAttentionStream"/> (S, z per head).
/// <see cref="Attend"/> feeds the raw q, k, v to the stream (its options hold the feature map); a mixer that transforms
/// them first calls <see cref="LinearAttentionStream.Step"/> itself.
/// </summary>
public sealed class LinearStreamState : AttentionState
{
    public LinearStreamState(LinearAttentionStream stream) => Stream = stream ?? throw new ArgumentNullException(nameof(stream));
    /// <summary>The engine's stream holding (S, z).</summary>
    public LinearAttentionStream Stream { get; }
    public override long Bytes => Stream.Bytes;
    /// <summary>q, k, v [B, 1, H, D] → o [B, 1, H, Dv]: S_t = S_{t−1} + φ(k_t) v_tᵀ, z_t = z_{t−1} + φ(k_t), o_t from φ(q_t).</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var o = Stream.Step(q.squeeze(1), k.squeeze(1), v.squeeze(1)).unsqueeze(1);
        Advance();
        return o;
    }
    public override void Dispose() => Stream.Dispose();
}
