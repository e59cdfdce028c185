using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Tests.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>LoRA adapters (issue 13): zero B is the base model exactly, merge equals unmerged, gradients reach only A and B.</summary>
public class LoraTests
{
    static readonly string[] AttentionPaths = ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn.qkv", "blocks.1.attn.proj"];

    static TinyGpt Model(int seed)
    {
        torch.manual_seed(seed);
        var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 12, Heads: 3, MlpRatio: 2, Positions: PositionKind.Rope, VocabSize: 9));
        model.to(ScalarType.Float64);
        return model;
    }

    static void RandomiseB(LoraSet set, int seed)
    {
        var g = new Generator((ulong)seed);
        using (torch.no_grad())
            foreach (var a in set.Adapters) a.B.copy_(torch.randn(a.B.shape, dtype: ScalarType.Float64, generator: g) * 0.3);
    }

    [Fact]
    public void ZeroBIsTheBaseModelExactly()
    {
        using var scope = NewDisposeScope();
        using var model = Model(1);
        var x = torch.randint(0, 9, new long[] { 2, 7 });
        var before = model.call(x).detach();
        var set = Lora.Apply(model, AttentionPaths, rank: 2, alpha: 4, new Generator(5));
        Assert.Equal(4, set.Adapters.Count);
        Assert.All(set.Adapters, a => Assert.NotEqual(0.0, a.A.abs().sum().item<double>()));   // A random, B zero
        Assert.True(TensorAssert.Same(model.call(x).detach(), before), "LoRA with B = 0 changes the model");
    }

    [Fact]
    public void ConvertingTheModelConvertsTheAdapters()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(12);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 1, DModel: 8, Heads: 2, VocabSize: 5));
        var set = Lora.Apply(model, ["blocks.0.attn.qkv"], rank: 2, alpha: 2, new Generator(3));
        model.to(ScalarType.Float64);
        Assert.Equal(ScalarType.Float64, set.Adapters[0].A.dtype);
        Assert.Equal(ScalarType.Float64, set.Adapters[0].B.dtype);
        RandomiseB(set, 4);                                                             // the hook must see the converted A and B
        var x = torch.randint(0, 5, new long[] { 1, 4 });
        var withLora = model.call(x).detach();
        set.Merge();
        AssertClose.Tensors(model.call(x), withLora, 1e-10, 1e-10, "merged after conversion");
    }

    [Fact]
    public void AdapterAddsScaledLowRankUpdate()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        var net = nn.Sequential(("fc", nn.Linear(5, 4)));
        net.to(ScalarType.Float64);
        var set = Lora.Apply(net, ["fc"], rank: 2, alpha: 3, new Generator(1));
        RandomiseB(set, 3);
        var x = torch.randn(6, 5, dtype: ScalarType.Float64);
        var fc = set["fc"].Target;
        var expected = x.matmul(fc.weight!.t()) + fc.bias! + x.matmul(set["fc"].A.t()).matmul(set["fc"].B.t()) * 1.5;   // W x + b + (α/r) B A x
        AssertClose.Tensors(net.call(x), expected, 1e-12, 1e-12, "LoRA layer");
    }

    [Fact]
    public void MergedEqualsUnmergedAndUnmergeRestoresW()
    {
        using var scope = NewDisposeScope();
        using var model = Model(3);
        var set = Lora.Apply(model, AttentionPaths, rank: 3, alpha: 2, new Generator(6));
        RandomiseB(set, 7);
        var w0 = set.Adapters.Select(a => a.Target.weight!.detach().clone()).ToList();
        var x = torch.randint(0, 9, new long[] { 3, 8 });
        var unmerged = model.call(x).detach();
        using (var plain = Model(3))
            Assert.True(unmerged.sub(plain.call(x)).abs().max().item<double>() > 1e-3, "random B must change the model (else the test proves nothing)");
        set.Merge();
        Assert.All(set.Adapters, a => Assert.True(a.Merged));
        AssertClose.Tensors(model.call(x), unmerged, 1e-10, 1e-10, "merged vs unmerged");
        using (var state = model.NewState(3))                                           // decode runs through the merged W too
        {
            var steps = Enumerable.Range(0, 8).Select(t => model.Step(x.select(1, t), state)).ToArray();
            AssertClose.Tensors(torch.stack(steps, 1), unmerged, 1e-10, 1e-10, "merged decode vs unmerged forward");
        }
        Assert.Throws<InvalidOperationException>(() => set.Merge());
        set.Unmerge();
        for (int i = 0; i < w0.Count; i++) AssertClose.Tensors(set.Adapters[i].Target.weight!, w0[i], 1e-14, 0, "W after unmerge");
        AssertClose.Tensors(model.call(x), unmerged, 1e-10, 1e-10, "unmerged again");
    }

    [Fact]
    public void UnmergedDecodeEqualsForward()
    {
        using var scope = NewDisposeScope();
        using var model = Model(4);
        var set = Lora.Apply(model, AttentionPaths, rank: 2, alpha: 2, new Generator(8));
        RandomiseB(set, 9);
        var x = torch.randint(0, 9, new long[] { 2, 6 });
        using var _ = torch.no_grad();
        var full = model.call(x);
        using var state = model.NewState(2);
        var steps = Enumerable.Range(0, 6).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, 1e-10, 1e-10, "LoRA decode vs forward");
    }

    [Fact]
    public void GradientsFlowOnlyToAAndB()
    {
        using var scope = NewDisposeScope();
        using var model = Model(5);
        var set = Lora.Apply(model, AttentionPaths, rank: 2, alpha: 2, new Generator(10));
        var trainable = Lora.FreezeBase(model);
        Assert.Equal(8, trainable.Count);
        Assert.All(trainable, n => Assert.True(Lora.IsAdapterParameter(n), n));
        Assert.Equal(set.ParameterCount, model.parameters().Where(p => p.requires_grad).Sum(p => p.numel()));
        var x = torch.randint(0, 9, new long[] { 2, 7 });

        model.call(x).pow(2).sum().backward();                                        // at init B = 0: ∂L/∂A = s Bᵀ(…) = 0, ∂L/∂B ≠ 0
        foreach (var (name, p) in model.named_parameters())
            if (!Lora.IsAdapterParameter(name)) Assert.True(p.grad is null, $"frozen {name} got a gradient");
        Assert.All(set.Adapters, a => Assert.True(a.B.grad!.abs().sum().item<double>() > 0, $"{a.Path}: B has no gradient"));
        Assert.All(set.Adapters, a => Assert.Equal(0.0, a.A.grad!.abs().max().item<double>()));

        foreach (var p in set.Parameters) p.grad!.zero_();
        RandomiseB(set, 11);
        model.call(x).pow(2).sum().backward();
        Assert.All(set.Adapters, a => Assert.True(a.A.grad!.abs().sum().item<double>() > 0, $"{a.Path}: A has no gradient once B ≠ 0"));
    }

    [Fact]
    public void KeepTrainableLeavesNamedParametersOn()
    {
        using var model = Model(6);
        Lora.Apply(model, ["blocks.0.attn.qkv"], rank: 1, alpha: 1);
        var trainable = Lora.FreezeBase(model, n => n.StartsWith("embed", StringComparison.Ordinal) || n.Contains("ln", StringComparison.Ordinal));
        Assert.Contains("embed.weight", trainable);
        Assert.Contains(trainable, n => n.Contains("ln", StringComparison.Ordinal));
        Assert.DoesNotContain(trainable, n => n.EndsWith("attn.qkv.weight", StringComparison.Ordinal));
    }

    [Fact]
    public void BadPathsAndRanksThrowNamingTheArgument()
    {
        using var model = Model(7);
        Assert.Equal("paths", Assert.Throws<ArgumentException>(() => Lora.Apply(model, ["blocks.9.attn.qkv"], 2, 2)).ParamName);
        Assert.Equal("paths", Assert.Throws<ArgumentException>(() => Lora.Apply(model, ["blocks.0.attn"], 2, 2)).ParamName);
        Assert.Equal("rank", Assert.Throws<ArgumentOutOfRangeException>(() => Lora.Apply(model, ["blocks.0.attn.qkv"], 0, 2)).ParamName);
        Assert.Equal("rank", Assert.Throws<ArgumentException>(() => Lora.Apply(model, ["blocks.0.attn.qkv"], 13, 2)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentException>(() => Lora.Apply(model, ["blocks.0.attn.qkv"], 2, 0)).ParamName);
        Lora.Apply(model, ["blocks.0.attn.qkv"], 2, 2);
        Assert.Equal("paths", Assert.Throws<ArgumentException>(() => Lora.Apply(model, ["blocks.0.attn.qkv"], 2, 2)).ParamName);
        Assert.Contains("blocks.0.attn.qkv", Lora.LinearPaths(model));
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        using var scope = NewDisposeScope();
        var net = nn.Sequential(("fc", nn.Linear(3, 3)));
        Lora.Apply(net, ["fc"], 1, 1);
        var x = torch.ones(2, 3);
        x[0, 1] = torch.tensor(double.NaN);
        var y = net.call(x);
        Assert.True(y[0].isnan().all().item<bool>());
        Assert.False(y[1].isnan().any().item<bool>());
    }
}
