using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Core;

/// <summary>Argument checks whose messages name the argument and show the shapes involved.</summary>
public static class Guard
{
    /// <summary>Shape as text, e.g. [2, 16, 4, 8].</summary>
    public static string ShapeText(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    public static void NotNull(Tensor? t, string name)
    {
        if (t is null) throw new ArgumentNullException(name);
        if (t.IsInvalid) throw new ArgumentException($"{name} is a disposed tensor.", name);
    }

    public static void Rank(Tensor t, int rank, string name, string layout = "")
    {
        NotNull(t, name);
        if (t.dim() != rank)
            throw new ArgumentException($"{name} must have rank {rank}{(layout == "" ? "" : $" ({layout})")}, got shape {ShapeText(t)}.", name);
    }

    public static void FloatingPoint(Tensor t, string name)
    {
        if (!t.is_floating_point())
            throw new ArgumentException($"{name} must be a floating-point tensor, got {t.dtype}.", name);
    }

    /// <summary>A dtype argument (a cache's or a state's element type) must be floating-point: keys and values are real numbers.</summary>
    public static void FloatingDtype(ScalarType dtype, string name)
    {
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException(
                $"{name} must be a floating-point type (Float32, Float64, Float16 or BFloat16), got {dtype}: an integer cache would truncate keys and values.",
                    name);
    }

    public static void SameDtype(Tensor a, string nameA, Tensor b, string nameB)
    {
        if (a.dtype != b.dtype)
            throw new ArgumentException($"{nameB} has dtype {b.dtype} but {nameA} has {a.dtype}.", nameB);
    }

    public static void SameDevice(Tensor a, string nameA, Tensor b, string nameB)
    {
        if (a.device_type != b.device_type || a.device_index != b.device_index)
            throw new ArgumentException($"{nameB} is on {b.device} but {nameA} is on {a.device}.", nameB);
    }

    /// <summary>
    /// The common checks of an attention call: q, k, v of rank 4 (with the layouts named in the message), q floating-point,
    /// k and v of q's dtype and on q's device. Sizes are the caller's to check (they differ between methods).
    /// </summary>
    public static void Qkv(Tensor q, Tensor k, Tensor v, string qLayout = "B, T, H, D", string kLayout = "B, T, H, D", string vLayout = "B, T, H, Dv")
    {
        Rank(q, 4, nameof(q), qLayout);
        Rank(k, 4, nameof(k), kLayout);
        Rank(v, 4, nameof(v), vLayout);
        FloatingPoint(q, nameof(q));
        SameDtype(q, nameof(q), k, nameof(k));
        SameDtype(q, nameof(q), v, nameof(v));
        SameDevice(q, nameof(q), k, nameof(k));
        SameDevice(q, nameof(q), v, nameof(v));
    }

    /// <summary>True when a tensor of <paramref name="shape"/> broadcasts to <paramref name="target"/> (no more dims; each trailing dim equal or 1).</summary>
    public static bool Broadcasts(ReadOnlySpan<long> shape, ReadOnlySpan<long> target)
    {
        if (shape.Length > target.Length) return false;
        for (int i = 1; i <= shape.Length; i++)
            if (shape[^i] != 1 && shape[^i] != target[^i]) return false;
        return true;
    }

    /// <summary>Dimension <paramref name="dim"/> of <paramref name="t"/> must equal <paramref name="expected"/>.</summary>
    public static void Dim(Tensor t, int dim, long expected, string name, string what)
    {
        if (t.size(dim) != expected)
            throw new ArgumentException($"{name} {what} (dim {dim}) must be {expected}, got shape {ShapeText(t)}.", name);
    }

    /// <summary>
    /// Checks token ids lie in [0, vocab). On the CPU always; on an accelerator only when
    /// <see cref="CheckValuesOnAccelerators"/> is set, because reading min/max back is a host round trip per call
    /// (there an out-of-range id trips CUDA's own device-side assertion instead).
    /// </summary>
    public static void TokenIds(Tensor ids, long vocab, string name)
    {
        if (ids.numel() == 0 || !ShouldReadValues(ids)) return;
        using var scope = NewDisposeScope();
        var range = torch.stack(new[] { ids.min(), ids.max() }).to(ScalarType.Int64).cpu().data<long>().ToArray();   // one read-back
        if (range[0] < 0 || range[1] >= vocab)
            throw new ArgumentException($"{name} token ids must be in [0, {vocab}), got [{range[0]}, {range[1]}].", name);
    }

    /// <summary>Value checks that need a read-back (ids in range, no NaN) also run on CUDA tensors when true (default false).</summary>
    public static bool CheckValuesOnAccelerators { get; set; }

    /// <summary>True when a value check on <paramref name="t"/> costs no device synchronisation, or is asked for anyway.</summary>
    public static bool ShouldReadValues(Tensor t) => t.device.type == DeviceType.CPU || CheckValuesOnAccelerators;

    public static void Positive(long value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }
}
