using static TorchSharp.torch;

namespace AttentionLab.Core;

/// <summary>How far one tensor is from a reference: max |a−b| and RMS(a−b)/RMS(ref), both in float64.</summary>
public readonly record struct ErrorStats(double MaxAbs, double RmsRelative, long Count)
{
    public static ErrorStats Of(Tensor actual, Tensor reference)
    {
        Guard.NotNull(actual, nameof(actual));
        Guard.NotNull(reference, nameof(reference));
        if (!actual.shape.SequenceEqual(reference.shape))
            throw new ArgumentException($"actual has shape {Guard.ShapeText(actual)} but reference has {Guard.ShapeText(reference)}.", nameof(actual));
        using var scope = NewDisposeScope();
        var a = actual.detach().to(ScalarType.Float64, CPU);
        var r = reference.detach().to(ScalarType.Float64, CPU);
        var diff = a - r;
        double maxAbs = diff.numel() == 0 ? 0 : diff.abs().max().item<double>();
        double rmsDiff = diff.numel() == 0 ? 0 : diff.square().mean().sqrt().item<double>();
        double rmsRef = r.numel() == 0 ? 0 : r.square().mean().sqrt().item<double>();
        double rel = rmsRef == 0 ? (rmsDiff == 0 ? 0 : double.PositiveInfinity) : rmsDiff / rmsRef;
        return new ErrorStats(maxAbs, rel, actual.numel());
    }

    public override string ToString() => $"max|Δ| {MaxAbs:E2}, rms-rel {RmsRelative:E2} over {Count} values";
}

/// <summary>Closeness checks that fail with the statistics in the message.</summary>
public static class AssertClose
{
    /// <summary>Throws when max |a−b| &gt; atol + rtol·max|ref|, or when either side holds NaN where the other does not.</summary>
    public static ErrorStats Tensors(Tensor actual, Tensor reference, double atol = 1e-5, double rtol = 1e-5, string what = "tensor")
    {
        var stats = ErrorStats.Of(actual, reference);
        using var scope = NewDisposeScope();
        double refMax = reference.numel() == 0 ? 0 : reference.detach().to(ScalarType.Float64, CPU).abs().max().item<double>();
        bool nanMismatch = actual.isnan().ne(reference.isnan()).any().item<bool>();
        if (nanMismatch || double.IsNaN(stats.MaxAbs) || stats.MaxAbs > atol + rtol * refMax)
            throw new InvalidOperationException($"{what} differs from its reference: {stats} (allowed {atol:E1} + {rtol:E1}·{refMax:G3}).");
        return stats;
    }
}
