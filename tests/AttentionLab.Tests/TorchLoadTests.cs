using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

/// <summary>TorchSharp loads from the built output (with the ELF fix where needed) and computes.</summary>
public class TorchLoadTests
{
    [Fact]
    public void TorchSharpLoadsAndComputesAMatmul()
    {
        using var a = torch.arange(6, dtype: float64).reshape(2, 3);
        using var b = torch.ones(3, 2, dtype: float64);
        using var c = a.matmul(b);
        // rows of a are (0,1,2) and (3,4,5): their sums are 3 and 12.
        Assert.Equal(new[] { 3.0, 3.0, 12.0, 12.0 }, c.data<double>().ToArray());
    }

    [Fact]
    public void AutogradWorks()
    {
        using var x = torch.tensor(new[] { 1.0, 2.0, 3.0 }, requires_grad: true);
        using var y = (x * x).sum();
        y.backward();
        Assert.Equal(new[] { 2.0, 4.0, 6.0 }, x.grad!.data<double>().ToArray());
    }

    [Fact]
    public void NativeBridgeComesFromTheOutputFolder()
    {
        string dir = AppContext.BaseDirectory;
        Assert.True(File.Exists(Path.Combine(dir, "libLibTorchSharp.so")) || !OperatingSystem.IsLinux(),
            $"libLibTorchSharp.so is not in {dir}: build with a runtime identifier");
    }
}
