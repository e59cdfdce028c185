using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>How a model tells positions apart.</summary>
public enum PositionKind
{
    /// <summary>No positional signal (a causal mask alone still orders tokens).</summary>
    None,
    /// <summary>Fixed sinusoids added to the embeddings (Vaswani et al.); defined for any position.</summary>
    Sinusoidal,
}

/// <summary>Positional encodings.</summary>
public static class Positions
{
    /// <summary>
    /// Sinusoidal encodings [length, dim] of positions start … start+length−1:
    /// PE(t, 2i) = sin(t / 10000^{2i/dim}), PE(t, 2i+1) = cos(t / 10000^{2i/dim}).
    /// </summary>
    public static Tensor Sinusoidal(long start, long length, int dim, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Guard.Positive(length, nameof(length));
        Guard.Positive(dim, nameof(dim));
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, "start must be ≥ 0.");
        using var scope = NewDisposeScope();
        var t = torch.arange(start, start + length, dtype: ScalarType.Float64, device: device).unsqueeze(1);   // [L, 1]
        var i = torch.arange(0, dim, 2, dtype: ScalarType.Float64, device: device);                            // 2i
        var angle = t / torch.pow(10000.0, i / dim);                                                            // t / 10000^{2i/dim}
        var pe = torch.zeros(length, dim, dtype: ScalarType.Float64, device: device);
        pe[.., TensorIndex.Slice(0, null, 2)] = angle.sin();
        pe[.., TensorIndex.Slice(1, null, 2)] = angle.narrow(1, 0, dim / 2).cos();
        return pe.to(dtype).MoveToOuterDisposeScope();
    }
}
