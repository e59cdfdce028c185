using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

static class TensorAssert
{
    /// <summary>Same shape and bitwise-equal values (TorchSharp's Tensor.equal is elementwise).</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        using var scope = NewDisposeScope();
        return a.numel() == 0 || a.eq(b).all().item<bool>();
    }
}
