using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

public class TinyDiTTests
{
    static TinyDiT Model()
    {
        torch.manual_seed(2);
        var m = new TinyDiT(new TinyDiTConfig(DModel: 32, Heads: 2, Layers: 2, ClassTokens: 2));
        using (no_grad()) foreach (var p in m.parameters()) p.normal_(0, 0.3);
        m.eval();
        return m;
    }

    [Fact]
    public void PatchifyRoundTrips()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(2, 3, 6, 10);
        var tokens = TinyDiT.Patchify(x, 2);
        Assert.Equal(new long[] { 2, 15, 12 }, tokens.shape);
        Assert.True(TensorBits.Same(TinyDiT.Unpatchify(tokens, 2, 3, 3, 5), x));
        Assert.True(TensorBits.Same(tokens[0, 6], x[0, .., 2..4, 2..4].flatten()));                        // token (1, 1) = pixels [2,4)×[2,4)
    }

    [Fact]
    public void FullAttentionEqualsReference()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = (torch.randn(2, 7, 3, 4, dtype: float64), torch.randn(2, 7, 3, 4, dtype: float64), torch.randn(2, 7, 3, 5, dtype: float64));
        Assert.True(TinyDiT.FullAttention(q, k, v, 0.3).allclose(ReferenceAttention.Softmax(q, k, v, scale: 0.3).Output, 1e-12, 1e-12));
    }

    [Fact]
    public void RopeTablesRotateLikePositionsRope()
    {
        using var scope = NewDisposeScope();
        var grid = new TokenGrid(1, 3, 5);
        var r = RopeTables.For(grid, 8, 100, float64, CPU);
        var n = torch.arange(grid.Tokens);
        var ys = n.div(5, rounding_mode: RoundingMode.floor);
        var x = torch.randn(1, 15, 1, 4, dtype: float64);
        var expected = Positions.Rope(x, ys, 100);
        var x1 = x.narrow(-1, 0, 2); var x2 = x.narrow(-1, 2, 2);
        var mine = torch.cat(new[] { x1 * r.CosY - x2 * r.SinY, x2 * r.CosY + x1 * r.SinY }, -1);
        Assert.True(mine.allclose(expected, 1e-12, 1e-12));
    }

    [Fact]
    public void RunsAtAnyGridAndIsDeterministic()
    {
        using var scope = NewDisposeScope();
        using var m = Model();
        var labels = torch.tensor(new long[] { 0, 3 });                                          // 3 = null label
        foreach (int size in new[] { 4, 10, 16 })
        {
            var x = torch.randn(2, 3, size, size);
            var t = torch.tensor(new[] { 0.3f, 0.9f });
            var a = m.Denoise(x, t, labels);
            Assert.Equal(x.shape, a.shape);
            Assert.True(TensorBits.Same(a, m.call(x, t, labels)));
        }
    }

    [Fact]
    public void LossBackpropagates()
    {
        torch.manual_seed(0);
        using var m = new TinyDiT(new TinyDiTConfig(DModel: 32, Heads: 2, Layers: 1));
        using var scope = NewDisposeScope();
        var loss = m.FlowMatchingLoss(torch.randn(4, 3, 8, 8), torch.tensor(new long[] { 0, 1, 2, 0 }), new Generator(1));
        loss.backward();
        Assert.True(float.IsFinite(loss.item<float>()));
        Assert.Contains(m.parameters(), p => p.grad is { } g && g.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        using var m = Model();
        var x = torch.randn(2, 3, 8, 8); var t = torch.rand(2); var y = torch.tensor(new long[] { 0, 1 });
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => m.Denoise(x[0], t, y)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => m.Denoise(torch.randn(2, 3, 7, 8), t, y)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => m.Denoise(torch.randn(2, 1, 8, 8), t, y)).ParamName);
        Assert.Equal("t", Assert.Throws<ArgumentException>(() => m.Denoise(x, torch.rand(3), y)).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => m.Denoise(x, t, y.to(int32))).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => m.Denoise(x, t, torch.tensor(new long[] { 0, 4 }))).ParamName);
        Assert.Equal("Heads", Assert.Throws<ArgumentException>(() => new TinyDiTConfig(DModel: 24, Heads: 4).Validate()).ParamName);
    }

    sealed class HalfScale : DiTAttention { public override double? Scale => 0.2; }

    sealed class MeanOfValues : DiTAttention                                                       // not full attention
    {
        public override Tensor SelfAttention(int layer, Tensor q, Tensor k, Tensor v, TokenGrid grid) => v.mean(new long[] { 1 }, keepdim: true).expand_as(v);
    }

    static TinyDiT Model64()
    {
        using var m = Model();
        var m64 = new TinyDiT(m.Config);
        m64.to(float64);
        using (no_grad()) foreach (var (a, b) in m64.parameters().Zip(m.parameters())) a.copy_(b);
        m64.eval();
        return m64;
    }

    static IReadOnlyList<HookPoint> Points(TinyDiT m, string name) =>
        m.named_modules().Where(x => x.name.EndsWith("attn." + name)).Select(x => (HookPoint)x.module).ToList();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SelfAttentionHooksCarryThePatternThatMultipliesV(bool scaled)
    {
        using var scope = NewDisposeScope();
        using var m = Model64();
        DiTAttention kernel = scaled ? new HalfScale() : DiTAttention.Full;
        Assert.True(kernel.IsFull);
        var (x, t, y) = (torch.randn(2, 3, 6, 8, dtype: float64), torch.rand(2, dtype: float64), torch.tensor(new long[] { 1, 3 }));
        var plain = m.Denoise(x, t, y, kernel);
        var patterns = new List<Tensor>(); var vs = new List<Tensor>(); var zs = new List<Tensor>();
        var handles = Points(m, "hook_pattern").Select(h => h.AddHook((a, _) => { patterns.Add(a.detach().clone().DetachFromDisposeScope()); return null; }))
            .Concat(Points(m, "hook_v").Select(h => h.AddHook((a, _) => { vs.Add(a.detach().clone().DetachFromDisposeScope()); return null; })))
            .Concat(Points(m, "hook_z").Select(h => h.AddHook((a, _) => { zs.Add(a.detach().clone().DetachFromDisposeScope()); return null; }))).ToList();
        var hooked = m.Denoise(x, t, y, kernel);
        foreach (var h in handles) h.Dispose();
        Assert.Equal(m.Config.Layers, patterns.Count);
        AssertClose.Tensors(hooked, plain, atol: 1e-10, rtol: 1e-10, what: "listening hooks route through scores → pattern, same output");
        for (int l = 0; l < patterns.Count; l++)
        {
            Assert.Equal(new long[] { 2, m.Config.Heads, 12, 12 }, patterns[l].shape);
            AssertClose.Tensors(patterns[l].sum(-1), torch.ones(2, m.Config.Heads, 12, dtype: float64), atol: 1e-12, rtol: 0, what: "rows sum to 1");
            AssertClose.Tensors(patterns[l].matmul(vs[l].permute(0, 2, 1, 3)).permute(0, 2, 1, 3), zs[l], atol: 1e-10, rtol: 1e-10,
                what: $"z = pattern·V (layer {l})");
        }
    }

    [Fact]
    public void EditingThePatternReachesTheOutput()
    {
        using var scope = NewDisposeScope();
        using var m = Model64();
        var (x, t, y) = (torch.randn(1, 3, 4, 4, dtype: float64), torch.rand(1, dtype: float64), torch.tensor(new long[] { 2 }));
        var plain = m.Denoise(x, t, y);
        using var hook = Points(m, "hook_pattern")[0].AddHook((a, _) => torch.full_like(a, 1.0 / a.shape[3]));
        Assert.True((m.Denoise(x, t, y) - plain).abs().max().item<double>() > 1e-6, "a uniform pattern in layer 0 changed nothing");
    }

    [Fact]
    public void AKernelThatIsNotFullAttentionComputesZItself()
    {
        using var scope = NewDisposeScope();
        using var m = Model64();
        var kernel = new MeanOfValues();
        Assert.False(kernel.IsFull);
        int patterns = 0, zs = 0;
        var handles = Points(m, "hook_pattern").Select(h => h.AddHook((a, _) => { patterns++; return null; }))
            .Concat(Points(m, "hook_z").Select(h => h.AddHook((a, _) => { zs++; return null; }))).ToList();
        var (x, t, y) = (torch.randn(1, 3, 4, 4, dtype: float64), torch.rand(1, dtype: float64), torch.tensor(new long[] { 0 }));
        var mean = m.Denoise(x, t, y, kernel);
        foreach (var h in handles) h.Dispose();
        Assert.Equal((0, m.Config.Layers), (patterns, zs));
        Assert.True((mean - m.Denoise(x, t, y)).abs().max().item<double>() > 1e-6, "the plugged kernel was not used");
    }

    [Fact]
    public void SelfAttentionWeightsAreTheMixersPerHeadViews()
    {
        using var m = Model();
        var attn = m.modules().OfType<DiTSelfAttention>().First();
        Assert.Equal(new long[] { m.Config.Heads, m.Config.DModel, m.Config.HeadDim }, attn.W_Q.shape);
        Assert.Equal(new long[] { m.Config.Heads, m.Config.HeadDim, m.Config.DModel }, attn.W_O.shape);
        Assert.Throws<InvalidOperationException>(() => attn.call(torch.randn(1, 4, m.Config.DModel)));   // needs its grid
    }
}
