using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

public class PrefixScanTests
{
    /// <summary>Affine maps x ↦ a·x + b composed left to right: (a₁,b₁)⊕(a₂,b₂) = (a₁a₂, b₁a₂ + b₂). Associative, not commutative.</summary>
    static TensorTuple Affine(TensorTuple f, TensorTuple g) => new(f[0] * g[0], f[1] * g[0] + g[1]);

    [Theory]
    [InlineData(ScanAlgo.Sequential)]
    [InlineData(ScanAlgo.HillisSteele)]
    [InlineData(ScanAlgo.Blelloch)]
    public void NonCommutativeScanMatchesALoopForEveryLength(ScanAlgo algo)
    {
        torch.manual_seed(3);
        for (int n = 1; n <= 19; n++)
        {
            using var scope = NewDisposeScope();
            var a = torch.rand(2, n, 3, dtype: float64) + 0.5;
            var b = torch.randn(2, n, 3, dtype: float64);
            var scanned = PrefixScan.Inclusive(new TensorTuple(a, b), Affine, dim: 1, algo);
            var (ea, eb) = (a.clone(), b.clone());
            for (int i = 1; i < n; i++)
            {
                ea[.., i] = ea[.., i - 1] * a[.., i];
                eb[.., i] = eb[.., i - 1] * a[.., i] + b[.., i];
            }
            AssertClose.Tensors(scanned[0], ea, atol: 1e-12, rtol: 1e-12, what: $"{algo} a, n={n}");
            AssertClose.Tensors(scanned[1], eb, atol: 1e-12, rtol: 1e-12, what: $"{algo} b, n={n}");
        }
    }

    [Fact]
    public void SumScanEqualsCumsumAlongAnyDimAndLeavesInputsAlone()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(5, 3, 11, dtype: float64);
        foreach (var algo in Enum.GetValues<ScanAlgo>())
        {
            var s = PrefixScan.Inclusive(new TensorTuple(x), (p, q) => new TensorTuple(p[0] + q[0]), dim: 2, algo);
            AssertClose.Tensors(s[0], x.cumsum(2), atol: 1e-12, rtol: 0, what: algo.ToString());
            Assert.False(x.IsInvalid);
        }
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        using var scope = NewDisposeScope();
        var x = new TensorTuple(torch.zeros(2, 0, 3));
        Assert.Equal("leaves", Assert.Throws<ArgumentException>(() => PrefixScan.Inclusive(x, (p, q) => p)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => PrefixScan.Inclusive(new TensorTuple(torch.zeros(2, 3)), (p, q) => p, dim: -1));
    }
}
