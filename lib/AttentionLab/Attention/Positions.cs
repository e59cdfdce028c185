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
    /// <summary>A learned table [MaxLength, d] added to the embeddings (GPT-2); defined for positions &lt; MaxLength.</summary>
    Learned,
    /// <summary>Rotary embeddings (Su et al.): q and k rotated by their positions inside attention; see <see cref="Positions.Rope"/>.</summary>
    Rope,
    /// <summary>ALiBi (Press et al.): a per-head linear distance penalty added to the scores; see <see cref="Positions.AlibiBias"/>.</summary>
    Alibi,
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

    /// <summary>
    /// Rotary position embedding (RoPE, Su et al. 2021) of x [B, T, H, D] (D even) at integer positions [T] or [B, T],
    /// "rotate-half" pairing (GPT-NeoX / Llama): dimension i is paired with i + D/2.
    /// </summary>
    /// <remarks>
    /// θ_i = base^{−2i/D}, i = 0 … D/2−1;  angle(p, i) = (p · positionScale) · θ_i   (positionScale &lt; 1 = position interpolation)
    /// x'_i = x_i cos − x_{i+D/2} sin;  x'_{i+D/2} = x_{i+D/2} cos + x_i sin.
    /// Then (R_p q)·(R_s k) depends on p − s only, so a cache may hold un-rotated keys and rotate them at use
    /// with whatever positions the cache assigns (StreamingLLM re-indexing).
    /// </remarks>
    public static Tensor Rope(Tensor x, Tensor positions, double @base = 10000, double positionScale = 1)
    {
        Guard.Rank(x, 4, nameof(x), "B, T, H, D");
        Guard.FloatingPoint(x, nameof(x));
        Guard.NotNull(positions, nameof(positions));
        long b = x.shape[0], t = x.shape[1], d = x.shape[3];
        if (d % 2 != 0) throw new ArgumentException($"x head dim must be even for RoPE, got shape {Guard.ShapeText(x)}.", nameof(x));
        bool perBatch = positions.dim() == 2;
        if (!(positions.dim() == 1 && positions.shape[0] == t) && !(perBatch && positions.shape[0] == b && positions.shape[1] == t))
            throw new ArgumentException($"positions must be [T] or [B, T] with T = {t}, B = {b}; got {Guard.ShapeText(positions)}.", nameof(positions));
        if (positions.is_floating_point()) throw new ArgumentException($"positions must be integer, got {positions.dtype}.", nameof(positions));
        if (!(@base > 1)) throw new ArgumentException($"base must be > 1, got {@base}.", nameof(@base));
        if (!(positionScale > 0)) throw new ArgumentException($"positionScale must be positive, got {positionScale}.", nameof(positionScale));
        Guard.SameDevice(x, nameof(x), positions, nameof(positions));
        using var scope = NewDisposeScope();
        var (cos, sin) = RopeCosSin(positions, d, @base, positionScale, x.dtype);          // [T or B·T, D/2]
        var shape = perBatch ? new long[] { b, t, 1, d / 2 } : new long[] { 1, t, 1, d / 2 };
        cos = cos.view(shape); sin = sin.view(shape);
        var x1 = x.narrow(-1, 0, d / 2);
        var x2 = x.narrow(-1, d / 2, d / 2);
        return torch.cat(new[] { x1 * cos - x2 * sin, x2 * cos + x1 * sin }, -1).MoveToOuterDisposeScope();
    }

    /// <summary>cos and sin of angle(p, i) = p · positionScale · base^{−2i/D}, computed in float64, each [numel(positions), D/2].</summary>
    static (Tensor Cos, Tensor Sin) RopeCosSin(Tensor positions, long d, double @base, double positionScale, ScalarType dtype)
    {
        var p = positions.reshape(-1, 1).to(ScalarType.Float64) * positionScale;
        var i = torch.arange(0, d / 2, dtype: ScalarType.Float64, device: positions.device);
        var angle = p * torch.pow(@base, -2.0 * i / d).unsqueeze(0);                          // p · θ_i
        return (angle.cos().to(dtype), angle.sin().to(dtype));
    }

    /// <summary>
    /// ALiBi head slopes m_h [heads] (Press et al. 2022): for a power of two n, m_h = 2^{−8(h+1)/n}, a geometric sequence
    /// starting at and multiplied by 2^{−8/n} (8 heads: 1/2, 1/4, …, 1/256). Otherwise the slopes of the closest
    /// smaller power of two c, followed by every other slope of 2c (the paper's code).
    /// </summary>
    public static double[] AlibiSlopes(int heads)
    {
        Guard.Positive(heads, nameof(heads));
        static double[] PowerOfTwo(int n) =>
            Enumerable.Range(1, n).Select(h => Math.Pow(2, -8.0 * h / n)).ToArray();
        if ((heads & (heads - 1)) == 0) return PowerOfTwo(heads);
        int c = 1 << (int)Math.Floor(Math.Log2(heads));
        return PowerOfTwo(c).Concat(PowerOfTwo(2 * c).Where((_, i) => i % 2 == 0).Take(heads - c)).ToArray();
    }

    /// <summary>
    /// The additive ALiBi bias [H, Tq, Tk]: bias_h(i, j) = −m_h · (p_i − p_j) for query positions p_i [Tq] and key
    /// positions p_j [Tk] (integers). Added to the scaled scores before the causal mask; future keys (p_j &gt; p_i) are masked anyway.
    /// </summary>
    public static Tensor AlibiBias(double[] slopes, Tensor queryPositions, Tensor keyPositions, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(slopes);
        if (slopes.Length == 0) throw new ArgumentException("slopes must not be empty.", nameof(slopes));
        Guard.Rank(queryPositions, 1, nameof(queryPositions), "Tq");
        Guard.Rank(keyPositions, 1, nameof(keyPositions), "Tk");
        Guard.SameDevice(queryPositions, nameof(queryPositions), keyPositions, nameof(keyPositions));
        using var scope = NewDisposeScope();
        var device = queryPositions.device;
        var m = torch.tensor(slopes, dtype: ScalarType.Float64, device: device).view(-1, 1, 1);          // m_h
        var distance = (queryPositions.unsqueeze(1) - keyPositions.unsqueeze(0)).to(ScalarType.Float64); // p_i − p_j
        return (-m * distance.unsqueeze(0)).to(dtype).MoveToOuterDisposeScope();
    }
}
