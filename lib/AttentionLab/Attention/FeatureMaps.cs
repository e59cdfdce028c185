using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// A kernel feature map φ: R^D → R^F for linear attention, applied to the last dimension. The kernel it defines is
/// K(q, k) = φ(q)·φ(k). Maps are stateless (no parameters): a learnable map is a module that projects first.
/// </summary>
public interface IFeatureMap
{
    /// <summary>Short name for tables and messages (identity, elu+1, sigmoid, taylor2, taylor2-packed).</summary>
    string Name { get; }

    /// <summary>F for inputs of dimension <paramref name="inputDim"/>; throws <see cref="ArgumentException"/> when the map cannot take it.</summary>
    long OutputDim(long inputDim);

    /// <summary>φ(x): [..., D] → [..., F], in x's dtype.</summary>
    Tensor Apply(Tensor x);
}

/// <summary>The parameter-free feature maps of the linear-attention engine (<see cref="LinearAttention"/>).</summary>
public static class FeatureMaps
{
    /// <summary>φ(x) = x (plain linear attention; Lightning, Flowformer's causal dot product on pre-mapped q, k).</summary>
    public static IFeatureMap Identity { get; } = new Elementwise("identity", x => x.alias());

    /// <summary>φ(x) = elu(x) + 1 = x + 1 for x &gt; 0, eˣ otherwise (Katharopoulos et al. 2020): strictly positive.</summary>
    public static IFeatureMap EluPlusOne { get; } = new Elementwise("elu+1", x => torch.nn.functional.elu(x, 1.0, false) + 1);

    /// <summary>φ(x) = σ(x) = 1 / (1 + e^{−x}) (Flowformer's non-negative map): in (0, 1).</summary>
    public static IFeatureMap Sigmoid { get; } = new Elementwise("sigmoid", x => torch.sigmoid(x));

    /// <summary>BASED's second-order Taylor map for inputs of dimension <paramref name="inputDim"/> (see <see cref="TaylorFeatureMap"/>).</summary>
    public static TaylorFeatureMap Taylor(int inputDim, bool packSymmetric = false) => new(inputDim, packSymmetric);

    sealed class Elementwise : IFeatureMap
    {
        readonly Func<Tensor, Tensor> map;
        public Elementwise(string name, Func<Tensor, Tensor> map) { Name = name; this.map = map; }
        public string Name { get; }
        public long OutputDim(long inputDim)
        {
            Guard.Positive(inputDim, nameof(inputDim));
            return inputDim;
        }
        public Tensor Apply(Tensor x)
        {
            Guard.NotNull(x, nameof(x));
            return map(x);
        }
    }
}

/// <summary>
/// The second-order Taylor feature map of BASED (Arora et al. 2024; HazyResearch/based <c>TaylorExp</c>), whose kernel
/// approximates exp(q·k/√d) by its Taylor polynomial:
/// φ(x) = [1, x/d^{1/4}, vec(x xᵀ)/(√2·√d)]  ⇒  φ(q)·φ(k) = 1 + s + s²/2,  s = q·k/√d,  d = <see cref="InputDim"/>.
/// </summary>
/// <remarks>
/// Full form: F = 1 + d + d². Symmetric-packed form (<see cref="PackSymmetric"/>): the second-order block keeps only
/// m ≤ n, with diagonal terms x_m²/(√2·√d) and off-diagonal terms x_m x_n/√d (each off-diagonal pair appears twice in
/// vec(x xᵀ), so 2·x_m x_n y_m y_n/(2d) = (x_m x_n/√d)(y_m y_n/√d)): F = 1 + d + d(d+1)/2, the same kernel, a smaller
/// state. Packing without the 1/√2 on the diagonal gives a wrong kernel (BASED spec pitfall). The 1/√d temperature
/// sits inside φ, as in HazyResearch's code (fla's layer calls its kernel with scale = 1 instead; not followed here).
/// </remarks>
public sealed class TaylorFeatureMap : IFeatureMap
{
    readonly double[] pairCoeff;   // per feature: 1, 1/d^{1/4}, then 1/(√2·√d) (full form and packed diagonal) or 1/√d (packed, m < n)
    static readonly System.Collections.Concurrent.ConcurrentDictionary<(int, bool, ScalarType, DeviceType, int), Tensor> coefficientCache = new();

    /// <summary>
    /// The coefficient row as a tensor, built once per (d, packing, dtype, device) for the process and kept (read-only;
    /// never handed out), so maps made per call or per layer share it.
    /// </summary>
    internal Tensor Coefficients(ScalarType dtype, Device device) => coefficientCache.GetOrAdd((InputDim, PackSymmetric, dtype, device.type, device.index),
        _ => torch.tensor(pairCoeff, dtype: dtype, device: device).DetachFromDisposeScope());

    /// <param name="inputDim">d, the dimension of the projected q and k (BASED's d′, e.g. 16).</param>
    /// <param name="packSymmetric">keep only the d(d+1)/2 distinct second-order terms.</param>
    public TaylorFeatureMap(int inputDim, bool packSymmetric = false)
    {
        Guard.Positive(inputDim, nameof(inputDim));
        InputDim = inputDim;
        PackSymmetric = packSymmetric;
        double rd = Math.Sqrt(inputDim), rrd = Math.Sqrt(rd);
        var coeff = new List<double> { 1.0 };                                               // 1
        for (int n = 0; n < inputDim; n++) coeff.Add(1.0 / rrd);                            // x_n / d^{1/4}
        for (int m = 0; m < inputDim; m++)
            for (int n = packSymmetric ? m : 0; n < inputDim; n++)                         // row-major m·d + n (m ≤ n when packed)
                coeff.Add(packSymmetric && m != n ? 1.0 / rd : 1.0 / (Math.Sqrt(2) * rd));  // x_m x_n/√d, or /(√2·√d)
        pairCoeff = coeff.ToArray();
    }

    /// <summary>d: the map only takes inputs whose last dimension is d (the 1/√d temperature depends on it).</summary>
    public int InputDim { get; }
    /// <summary>Whether the second-order block is packed to its d(d+1)/2 distinct terms.</summary>
    public bool PackSymmetric { get; }
    /// <summary>F = 1 + d + d² (full) or 1 + d + d(d+1)/2 (packed).</summary>
    public long FeatureDim => 1 + InputDim + (PackSymmetric ? (long)InputDim * (InputDim + 1) / 2 : (long)InputDim * InputDim);
    public string Name => PackSymmetric ? "taylor2-packed" : "taylor2";

    public long OutputDim(long inputDim)
    {
        if (inputDim != InputDim)
            throw new ArgumentException($"the Taylor feature map was built for inputs of dimension {InputDim}, got {inputDim}.", nameof(inputDim));
        return FeatureDim;
    }

    public Tensor Apply(Tensor x)
    {
        Guard.NotNull(x, nameof(x));
        Guard.FloatingPoint(x, nameof(x));
        if (x.dim() == 0 || x.shape[^1] != InputDim)
            throw new ArgumentException($"x must end in the Taylor map's input dimension {InputDim}, got shape {Guard.ShapeText(x)}.", nameof(x));
        using var scope = NewDisposeScope();
        // φ = [1, x, x_0·x[0 or 0:], x_1·x[1 or 0:], …] ⊙ coeff: one slice product per m (row-major m·d + n, n ≥ m when
        // packed), then one multiply by the coefficient row. Measured ≈ 3× faster than two index_selects on CPU (a gather
        // over the last dim of [B, H, T, d+1] is not vectorised): 51 → 16 ms per map for [1, 4, 8192, 16].
        var parts = new List<Tensor>(InputDim + 2) { torch.ones_like(x.narrow(-1, 0, 1)), x };
        for (int m = 0; m < InputDim; m++)
        {
            int from = PackSymmetric ? m : 0;
            parts.Add(x.narrow(-1, m, 1) * x.narrow(-1, from, InputDim - from));        // x_m x_n
        }
        return torch.cat(parts, -1).mul_(Coefficients(x.dtype, x.device)).MoveToOuterDisposeScope();
    }
}
