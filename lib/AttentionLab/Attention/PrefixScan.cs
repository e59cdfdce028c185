using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// A monoid element stored as one or more tensors that share the scanned axis (e.g. <see cref="SoftmaxState"/>).
/// The scan only slices, concatenates and interleaves those tensors along that axis.
/// </summary>
public interface IScanElement<TSelf> where TSelf : IScanElement<TSelf>
{
    /// <summary>The tensors that make up the element, in a fixed order.</summary>
    IReadOnlyList<Tensor> Parts { get; }
    /// <summary>An element of the same kind built from new parts (same order as <see cref="Parts"/>).</summary>
    TSelf WithParts(IReadOnlyList<Tensor> parts);
}

/// <summary>A monoid element held as a plain list of tensors, for ad-hoc monoids (sums, affine maps, ...).</summary>
public sealed record TensorTuple(IReadOnlyList<Tensor> Parts) : IScanElement<TensorTuple>
{
    public TensorTuple(params Tensor[] parts) : this((IReadOnlyList<Tensor>)parts) { }
    public Tensor this[int i] => Parts[i];
    public TensorTuple WithParts(IReadOnlyList<Tensor> parts) => new(parts);
}

/// <summary>How <see cref="PrefixScan.Inclusive"/> combines: one step per element, log₂N shifted steps, or a work-efficient tree.</summary>
public enum ScanAlgo
{
    /// <summary>x̂_i = x̂_{i−1} ⊕ x_i, one slice at a time: N steps, N−1 combines.</summary>
    Sequential,
    /// <summary>Hillis–Steele: ⌈log₂N⌉ steps over shifted tensors, O(N log N) combines.</summary>
    HillisSteele,
    /// <summary>Blelloch: up-sweep of pair reductions, down-sweep of prefixes; ≈ 2N combines, 2⌈log₂N⌉ levels.</summary>
    Blelloch,
}

/// <summary>
/// Inclusive scan x̂_i = x_0 ⊕ x_1 ⊕ … ⊕ x_i along one dimension, for any associative ⊕ on tensor tuples and any
/// length (not only powers of two). ⊕ need not be commutative: the left operand always holds the earlier elements.
/// </summary>
/// <remarks>
/// Hillis–Steele, for s = 1, 2, 4, … &lt; N:  x_i ← x_{i−s} ⊕ x_i for i ≥ s (x_i unchanged for i &lt; s).
/// Blelloch (written level by level, so the down-sweep yields the inclusive scan and needs no identity padding):
///   up-sweep    y_j = x_{2j} ⊕ x_{2j+1};   ŷ = scan(y)
///   down-sweep  x̂_{2j+1} = ŷ_j;   x̂_0 = x_0;   x̂_{2j} = ŷ_{j−1} ⊕ x_{2j}   (an unpaired last element is an even one)
/// </remarks>
public static class PrefixScan
{
    /// <summary>Inclusive scan of <paramref name="leaves"/> along <paramref name="dim"/> under <paramref name="op"/>.</summary>
    public static T Inclusive<T>(T leaves, Func<T, T, T> op, int dim = 1, ScanAlgo algo = ScanAlgo.HillisSteele)
        where T : IScanElement<T>
    {
        ArgumentNullException.ThrowIfNull(leaves);
        ArgumentNullException.ThrowIfNull(op);
        if (dim < 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be non-negative (the parts may differ in rank).");
        if (leaves.Parts.Count == 0 || Size(leaves, dim) == 0) throw new ArgumentException("leaves is empty along the scanned dimension.", nameof(leaves));
        using var scope = NewDisposeScope();
        leaves = Map(leaves, t => t.alias());          // new handles: the caller's tensors stay in the caller's scope
        T result = algo switch
        {
            ScanAlgo.Sequential => Sequential(leaves, op, dim),
            ScanAlgo.HillisSteele => HillisSteele(leaves, op, dim),
            ScanAlgo.Blelloch => Blelloch(leaves, op, dim),
            _ => throw new ArgumentOutOfRangeException(nameof(algo), algo, "unknown scan algorithm"),
        };
        return Map(result, t => t.MoveToOuterDisposeScope());
    }

    static T Map<T>(T x, Func<Tensor, Tensor> f) where T : IScanElement<T> => x.WithParts(x.Parts.Select(f).ToArray());
    static T Slice<T>(T x, int dim, long start, long length) where T : IScanElement<T> => Map(x, t => t.narrow(dim, start, length));
    static T Cat<T>(int dim, params T[] items) where T : IScanElement<T> =>
        items[0].WithParts(Enumerable.Range(0, items[0].Parts.Count).Select(k => torch.cat(items.Select(x => x.Parts[k]).ToArray(), dim)).ToArray());
    static long Size<T>(T x, int dim) where T : IScanElement<T> => x.Parts[0].shape[dim];

    static T Sequential<T>(T x, Func<T, T, T> op, int dim) where T : IScanElement<T>
    {
        long n = Size(x, dim);
        var prefixes = new List<T> { Slice(x, dim, 0, 1) };                       // x̂_0 = x_0
        for (long i = 1; i < n; i++)
            prefixes.Add(op(prefixes[^1], Slice(x, dim, i, 1)));                   // x̂_i = x̂_{i−1} ⊕ x_i
        return Cat(dim, prefixes.ToArray());
    }

    static T HillisSteele<T>(T x, Func<T, T, T> op, int dim) where T : IScanElement<T>
    {
        long n = Size(x, dim);
        for (long s = 1; s < n; s *= 2)
        {
            var done = Slice(x, dim, 0, s);                                         // x_i, i < s: already final for this step
            var moved = op(Slice(x, dim, 0, n - s), Slice(x, dim, s, n - s));      // x_i ← x_{i−s} ⊕ x_i
            x = Cat(dim, done, moved);
        }
        return x;
    }

    static T Blelloch<T>(T x, Func<T, T, T> op, int dim) where T : IScanElement<T>
    {
        long n = Size(x, dim);
        if (n == 1) return x;
        long half = n / 2, evens = n - half;
        var even = Map(x, t => t.slice(dim, 0, n, 2));                              // x_0, x_2, …   (⌈N/2⌉)
        var odd = Map(x, t => t.slice(dim, 1, n, 2));                               // x_1, x_3, …   (⌊N/2⌋)
        var pairs = op(Slice(even, dim, 0, half), odd);                            // up-sweep: y_j = x_{2j} ⊕ x_{2j+1}
        var pairPrefix = Blelloch(pairs, op, dim);                                 // ŷ_j = x_0 ⊕ … ⊕ x_{2j+1}
        var evenOut = evens == 1 ? even : Cat(dim, Slice(even, dim, 0, 1),         // x̂_0 = x_0
            op(Slice(pairPrefix, dim, 0, evens - 1), Slice(even, dim, 1, evens - 1)));   // x̂_{2j} = ŷ_{j−1} ⊕ x_{2j}
        return Interleave(evenOut, pairPrefix, dim, half);                        // x̂_{2j+1} = ŷ_j
    }

    /// <summary>e_0, o_0, e_1, o_1, …, (e_last when there is one more even element).</summary>
    static T Interleave<T>(T even, T odd, int dim, long half) where T : IScanElement<T>
    {
        var e = Slice(even, dim, 0, half);
        var paired = e.WithParts(e.Parts.Zip(odd.Parts, (a, b) => torch.stack(new[] { a, b }, dim + 1).flatten(dim, dim + 1)).ToArray());
        return Size(even, dim) == half ? paired : Cat(dim, paired, Slice(even, dim, half, 1));
    }
}
