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

    public static void SameDtype(Tensor a, string nameA, Tensor b, string nameB)
    {
        if (a.dtype != b.dtype)
            throw new ArgumentException($"{nameB} has dtype {b.dtype} but {nameA} has {a.dtype}.", nameB);
    }

    public static void SameDevice(Tensor a, string nameA, Tensor b, string nameB)
    {
        if (a.device.ToString() != b.device.ToString())
            throw new ArgumentException($"{nameB} is on {b.device} but {nameA} is on {a.device}.", nameB);
    }

    /// <summary>Dimension <paramref name="dim"/> of <paramref name="t"/> must equal <paramref name="expected"/>.</summary>
    public static void Dim(Tensor t, int dim, long expected, string name, string what)
    {
        if (t.shape[dim] != expected)
            throw new ArgumentException($"{name} {what} (dim {dim}) must be {expected}, got shape {ShapeText(t)}.", name);
    }

    public static void Positive(long value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }
}
