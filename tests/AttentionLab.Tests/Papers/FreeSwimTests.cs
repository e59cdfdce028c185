using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.FreeSwim;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class FreeSwimTests
{
    static void Close(Tensor a, Tensor b, double tol, string what) =>
        Assert.True(a.allclose(b, rtol: tol, atol: tol), $"{what}: max |Δ| = {(a - b).abs().max().to(ScalarType.Float64).item<double>()}");

    [Theory]
    [InlineData(1, 16, 16, 4, 4)]
    [InlineData(2, 11, 13, 2, 3)]     // odd, non-square, two frames
    [InlineData(3, 7, 9, 3, 1)]       // H = 2d_h + 1 exactly
    [InlineData(1, 5, 6, 0, 2)]       // d_h = 0: one row
    public void InwardRowsHaveExactlyTheWindowCount(int t, int h, int w, int dh, int dw)
    {
        using var win = WindowMasks.InwardSliding(t, h, w, dh, dw);
        int expected = t * (2 * dh + 1) * (2 * dw + 1);
        Assert.All(win.KeysPerQuery, k => Assert.Equal(expected, k));
        Assert.Equal(expected, win.Slots);
        Assert.True(win.Valid.all().item<bool>());
        using var counts = win.ToDense().sum(-1);
        Assert.True((counts == expected).all().item<bool>());
    }

    [Theory]
    [InlineData(1, 16, 16, 4, 4)]
    [InlineData(2, 11, 13, 2, 3)]
    public void ClippedBorderRowsHaveFewerKeys(int t, int h, int w, int dh, int dw)
    {
        using var clipped = WindowMasks.Clipped(t, h, w, dh, dw);
        int full = t * (2 * dh + 1) * (2 * dw + 1);
        Assert.Equal(t * (dh + 1) * (dw + 1), clipped.KeysPerQuery[0]);                        // corner
        Assert.Equal(full, clipped.KeysPerQuery[(h / 2) * w + w / 2]);                          // centre
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                bool border = y < dh || y > h - 1 - dh || x < dw || x > w - 1 - dw;
                int k = clipped.KeysPerQuery[y * w + x];
                Assert.True(border ? k < full : k == full, $"({y}, {x}): {k} keys, border {border}");
            }
        using var counts = clipped.ToDense().sum(-1).to(ScalarType.Int32);
        Assert.Equal(clipped.KeysPerQuery.ToArray(), counts.data<int>().ToArray());
    }

    [Theory]
    [InlineData(1, 8, 8, 4, 4)]
    [InlineData(2, 5, 9, 2, 4)]
    [InlineData(3, 1, 3, 0, 1)]
    [InlineData(1, 3, 2, 5, 5)]
    public void SmallGridInwardIsFullAttention(int t, int h, int w, int dh, int dw)
    {
        using var win = WindowMasks.InwardSliding(t, h, w, dh, dw);
        Assert.True(win.ToDense().all().item<bool>());
        Assert.All(win.KeysPerQuery, k => Assert.Equal(t * h * w, k));
    }

    [Theory]
    [InlineData(WindowKind.Inward)]
    [InlineData(WindowKind.Clipped)]
    public void TimeAxisIsNeverMasked(WindowKind kind)
    {
        int t = 3, h = 7, w = 6;
        using var win = WindowMasks.Of(kind, t, h, w, 1, 2);
        using var dense = win.ToDense().view(t * h * w, t, h * w);                              // [query, key frame, key position]
        for (int f = 1; f < t; f++) Assert.True(TensorBits.Same(dense.select(1, f), dense.select(1, 0)), $"frame {f} differs from frame 0");
    }

    [Theory]
    [InlineData(WindowKind.Inward, 1, 9, 7, 2, 1)]
    [InlineData(WindowKind.Inward, 2, 4, 11, 1, 3)]
    [InlineData(WindowKind.Clipped, 2, 9, 7, 2, 1)]
    [InlineData(WindowKind.Clipped, 1, 1, 5, 0, 1)]
    [InlineData(WindowKind.Full, 2, 3, 4, 1, 1)]
    public void GatherIndicesEqualTheNaiveDenseMask(WindowKind kind, int t, int h, int w, int dh, int dw)
    {
        using var win = WindowMasks.Of(kind, t, h, w, dh, dw);
        using var naive = FreeSwimNaive.WindowMask(kind, t, h, w, dh, dw);
        Assert.True(TensorBits.Same(win.ToDense(), naive));
    }

    static (Tensor Q, Tensor K, Tensor V) Qkv(int b, int n, int heads, int d, int dv, ScalarType dtype = ScalarType.Float64, bool grad = false)
    {
        torch.manual_seed(3);
        return (torch.randn(b, n, heads, d, dtype: dtype).requires_grad_(grad), torch.randn(b, n, heads, d, dtype: dtype).requires_grad_(grad),
                torch.randn(b, n, heads, dv, dtype: dtype).requires_grad_(grad));
    }

    [Theory]
    [InlineData(WindowKind.Inward, 1, 9, 7, 2, 1, 2, 5)]     // odd H and W, non-square
    [InlineData(WindowKind.Inward, 1, 1, 1, 0, 0, 1, 3)]     // one token
    [InlineData(WindowKind.Inward, 3, 5, 8, 1, 2, 2, 4)]     // T = 3
    [InlineData(WindowKind.Clipped, 1, 9, 7, 2, 1, 3, 6)]    // padded rows
    [InlineData(WindowKind.Clipped, 2, 6, 5, 3, 1, 1, 5)]
    public void GatherAttentionMatchesDenseMaskedReference(WindowKind kind, int t, int h, int w, int dh, int dw, int heads, int d)
    {
        using var scope = NewDisposeScope();
        using var win = WindowMasks.Of(kind, t, h, w, dh, dw);
        var (q, k, v) = Qkv(2, t * h * w, heads, d, d + 1);
        using var naive = FreeSwimNaive.WindowAttention(q, k, v, win, scale: 0.37);
        Close(WindowAttention.Forward(q, k, v, win, scale: 0.37), naive.Output, 1e-10, "output");
        Close(WindowAttention.Forward(q, k, v, win), ReferenceAttention.Softmax(q, k, v, mask: win.ToDense()).Output, 1e-10, "default scale");
    }

    [Theory]
    [InlineData(WindowKind.Inward)]
    [InlineData(WindowKind.Clipped)]
    public void GradientsMatchDenseMaskedReference(WindowKind kind)
    {
        using var scope = NewDisposeScope();
        using var win = WindowMasks.Of(kind, 2, 7, 5, 1, 2);
        var grads = new List<Tensor[]>();
        foreach (bool gather in new[] { false, true })
        {
            var (q, k, v) = Qkv(2, 70, 2, 3, 4, grad: true);
            var o = gather ? WindowAttention.Forward(q, k, v, win) : FreeSwimNaive.WindowAttention(q, k, v, win).Output;
            (o * torch.linspace(-1, 1, 4, dtype: ScalarType.Float64)).sum().backward();
            grads.Add(new[] { q.grad!, k.grad!, v.grad! });
        }
        for (int i = 0; i < 3; i++) Close(grads[1][i], grads[0][i], 1e-10, $"grad {"qkv"[i]}");
    }

    [Fact]
    public void Float32MatchesWithin1e5()
    {
        using var scope = NewDisposeScope();
        using var win = WindowMasks.InwardSliding(1, 16, 16, 4, 4);
        var (q, k, v) = Qkv(2, 256, 4, 16, 16, ScalarType.Float32);
        using var naive = FreeSwimNaive.WindowAttention(q, k, v, win);
        Close(WindowAttention.Forward(q, k, v, win), naive.Output, 1e-5, "f32");
    }

    [Fact]
    public void EntropyScaleIsTheFormulaAndSharpens()
    {
        double s = EntropyScale.Factor(30 * 52, 128);
        Assert.Equal(Math.Sqrt(Math.Log(2 * 1560.0, 1560) / 128), s, 12);
        Assert.True(s > 1 / Math.Sqrt(128) && s < 1.05 / Math.Sqrt(128));
        Assert.Equal("nNative", Assert.Throws<ArgumentOutOfRangeException>(() => EntropyScale.Factor(1, 16)).ParamName);
        Assert.Equal("dHead", Assert.Throws<ArgumentOutOfRangeException>(() => EntropyScale.Factor(64, 0)).ParamName);
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        using var win = WindowMasks.InwardSliding(1, 4, 4, 1, 1);
        var (q, k, v) = Qkv(1, 16, 2, 4, 4, ScalarType.Float32);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => WindowAttention.Forward(q[0], k, v, win)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() =>
            WindowAttention.Forward(q.narrow(1, 0, 15), k.narrow(1, 0, 15), v.narrow(1, 0, 15), win)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => WindowAttention.Forward(q, k.to(ScalarType.Float64), v, win)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => WindowAttention.Forward(q, k, v.narrow(2, 0, 1), win)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => WindowAttention.Forward(q.to(ScalarType.Int32), k, v, win)).ParamName);
        Assert.Equal("dh", Assert.Throws<ArgumentOutOfRangeException>(() => WindowMasks.InwardSliding(1, 4, 4, -1, 1)).ParamName);
        Assert.Equal("h", Assert.Throws<ArgumentOutOfRangeException>(() => WindowMasks.Clipped(1, 0, 4, 1, 1)).ParamName);
        Assert.Equal("cacheSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new DualPathSampler(RandomModel(), 0)).ParamName);
    }

    [Fact]
    public void WindowAttentionDoesNotLeak()
    {
        using var win = WindowMasks.InwardSliding(1, 8, 8, 2, 2);
        var (q, k, v) = Qkv(1, 64, 2, 4, 4, ScalarType.Float32);
        using (q) using (k) using (v)
            LeakCheck.AssertNoLeak(() => WindowAttention.Forward(q, k, v, win, 0.4).Dispose(), "WindowAttention.Forward");
    }

    // ---- dual path on a small random (untrained) TinyDiT: exact equalities, not quality ----

    static TinyDiT RandomModel()
    {
        torch.manual_seed(11);
        var model = new TinyDiT(new TinyDiTConfig(Channels: 3, Patch: 2, DModel: 32, Heads: 2, Layers: 2, MlpRatio: 2, Classes: 3, ClassTokens: 2));
        using (no_grad())
            foreach (var p in model.parameters()) p.normal_(0, 0.3);                            // adaLN-Zero would make every block the identity
        model.eval();
        model.to(ScalarType.Float64);                                                             // float64: equalities hold to 1e-10, not just 1e-5
        return model;
    }

    static (Tensor X, Tensor Labels) Start(int size)
    {
        var x = torch.randn(new long[] { 3, 3, size, size }, generator: new Generator(5), dtype: ScalarType.Float64);
        return (x, torch.tensor(new long[] { 0, 1, 2 }));
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void OverrideOffFullBranchOnlyIsBaselineFullSampling(double guidance)
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel();
        var (x, labels) = Start(12);                                                               // 6×6 tokens
        // the CFG pass runs the window branch; a window covering the grid makes it full attention too
        using var window = guidance == 1 ? WindowMasks.InwardSliding(1, 6, 6, 1, 1) : WindowMasks.InwardSliding(1, 6, 6, 3, 3);
        var baseline = FlowSampler.Sample(model, x, labels, 0.7, 4, guidance);
        var sampler = new DualPathSampler(model, cacheSteps: 1, overrideCrossAttn: false, keep: DualBranch.Full);
        var dual = sampler.Sample(x, labels, 0.7, 4, guidance, window, scale: null);
        Close(dual, baseline, 1e-10, "full branch vs baseline");
        Assert.Equal(4, sampler.GuideSteps);
    }

    [Fact]
    public void WindowCoveringTheGridMakesTheDualPathFullAttention()
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel();
        var (x, labels) = Start(12);
        using var window = WindowMasks.InwardSliding(1, 6, 6, 3, 3);                              // 6 ≤ 7: all-true
        var baseline = FlowSampler.Sample(model, x, labels, 1.0, 3, 2.0);
        var dual = new DualPathSampler(model, cacheSteps: 1).Sample(x, labels, 1.0, 3, 2.0, window, scale: null);
        Close(dual, baseline, 1e-10, "override with identical branches");
    }

    [Fact]
    public void CacheOnVersusOffWithCacheStepsOneIsIdentical()
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel();
        var (x, labels) = Start(16);
        using var window = WindowMasks.InwardSliding(1, 8, 8, 2, 2);
        var on = new DualPathSampler(model, cacheSteps: 1, useCache: true).Sample(x, labels, 0.7, 5, 3.0, window, 0.4);
        var off = new DualPathSampler(model, cacheSteps: 1, useCache: false).Sample(x, labels, 0.7, 5, 3.0, window, 0.4);
        Assert.True(TensorBits.Same(on, off));
    }

    [Fact]
    public void CacheAndOverrideChangeTheSample()
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel();
        var (x, labels) = Start(16);
        using var window = WindowMasks.InwardSliding(1, 8, 8, 2, 2);                              // 5×5 window on an 8×8 grid
        var every = new DualPathSampler(model, cacheSteps: 1);
        var a = every.Sample(x, labels, 0.7, 5, 3.0, window, 0.4);
        var cached = new DualPathSampler(model, cacheSteps: 3);
        var b = cached.Sample(x, labels, 0.7, 5, 3.0, window, 0.4);
        Assert.Equal(5, every.GuideSteps);
        Assert.Equal(2, cached.GuideSteps);                                                        // steps 0 and 3
        Assert.False(a.allclose(b, rtol: 1e-4, atol: 1e-4), "reusing the cache changed nothing");
        var noOverride = new DualPathSampler(model, cacheSteps: 1, overrideCrossAttn: false).Sample(x, labels, 0.7, 5, 3.0, window, 0.4);
        var windowOnly = FlowSampler.Sample(model, x, labels, 0.7, 5, 3.0, new WindowedDiTAttention(window, 0.4));
        Close(noOverride, windowOnly, 1e-10, "override off = window-only sampling");
        Assert.False(a.allclose(noOverride, rtol: 1e-4, atol: 1e-4), "the override changed nothing");
    }

    [Fact]
    public void DualPathSamplingDoesNotLeak()
    {
        using var model = RandomModel();
        var (x, labels) = Start(16);
        using var window = WindowMasks.InwardSliding(1, 8, 8, 2, 2);
        var sampler = new DualPathSampler(model, cacheSteps: 2);
        using (x) using (labels)
            LeakCheck.AssertNoLeak(() => sampler.Sample(x, labels, 0.7, 3, 2.0, window, 0.4).Dispose(), "DualPathSampler.Sample");
    }

    [Fact]
    public void WrongGridNamesTheWindow()
    {
        using var scope = NewDisposeScope();
        using var model = RandomModel();
        var (x, labels) = Start(16);
        using var window = WindowMasks.InwardSliding(1, 6, 6, 2, 2);
        Assert.Equal("window", Assert.Throws<ArgumentException>(() => new DualPathSampler(model, 1).Sample(x, labels, 0.7, 2, 1.0, window, null)).ParamName);
    }
}
