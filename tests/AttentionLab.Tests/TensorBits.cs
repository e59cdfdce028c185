using static TorchSharp.torch;

namespace AttentionLab.Tests;

/// <summary>Bitwise tensor comparison for tests.</summary>
static class TensorBits
{
    /// <summary>Same shape and every element equal.</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }
}
