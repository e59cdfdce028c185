using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>TinyGpt with token inputs, position kinds, attention-only and parallel blocks.</summary>
public class TinyGptTokenTests
{
    internal static TinyGptConfig Tokens(PositionKind positions, bool mlp = true, bool parallel = false, bool tied = false) =>
        new(Layers: 2, DModel: 16, Heads: 4, MlpRatio: 2, Positions: positions, VocabSize: 11, MaxLength: 32,
            TiedEmbeddings: tied, Mlp: mlp, ParallelBlock: parallel);

    [Theory]
    [InlineData(PositionKind.None, true, false, false)]
    [InlineData(PositionKind.Learned, true, false, true)]
    [InlineData(PositionKind.Rope, true, false, false)]
    [InlineData(PositionKind.Alibi, true, false, false)]
    [InlineData(PositionKind.Sinusoidal, true, true, false)]
    [InlineData(PositionKind.Rope, false, false, true)]
    [InlineData(PositionKind.Alibi, true, true, false)]
    public void StepDecodingReproducesTheFullForward(PositionKind positions, bool mlp, bool parallel, bool tied)
    {
        torch.manual_seed(50);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Tokens(positions, mlp, parallel, tied));
        var x = torch.randint(0, 11, new long[] { 2, 19 });                          // 19 > the cache's first capacity
        using var _ = torch.no_grad();
        var full = model.call(x);
        Assert.Equal(new long[] { 2, 19, 11 }, full.shape);
        using var state = model.NewState(2);
        var steps = Enumerable.Range(0, 19).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-5, rtol: 1e-5, what: $"decode vs forward ({positions})");
    }

    [Theory]
    [InlineData(PositionKind.Learned)]
    [InlineData(PositionKind.Rope)]
    [InlineData(PositionKind.Alibi)]
    [InlineData(PositionKind.None)]
    public void TokenModelIsCausal(PositionKind positions)
    {
        torch.manual_seed(51);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Tokens(positions));
        var x = torch.randint(0, 11, new long[] { 1, 8 });
        var y = x.clone(); y[0, 5] = (x[0, 5] + 1) % 11;
        using var _ = torch.no_grad();
        AssertClose.Tensors(model.call(y).narrow(1, 0, 5), model.call(x).narrow(1, 0, 5), atol: 0, rtol: 0, what: "past logits");
        Assert.False(TensorBits.Same(model.call(y).narrow(1, 5, 1), model.call(x).narrow(1, 5, 1)));
    }

    [Fact]
    public void PositionKindsChangeWhatTheModelSees()
    {
        // without positions a one-layer causal model's last output is invariant to permuting the earlier tokens; with RoPE/ALiBi/learned it is not
        using var scope = NewDisposeScope();
        var x = torch.tensor(new long[] { 1, 2, 3, 4, 5, 6 }).unsqueeze(0);
        var perm = torch.tensor(new long[] { 3, 1, 4, 2, 5, 6 }).unsqueeze(0);
        using var _ = torch.no_grad();
        foreach (var kind in new[] { PositionKind.None, PositionKind.Rope, PositionKind.Alibi, PositionKind.Learned })
        {
            torch.manual_seed(52);
            using var model = new TinyGpt(Tokens(kind) with { Layers = 1 });
            var diff = (model.call(x).select(1, 5) - model.call(perm).select(1, 5)).abs().max().item<float>();
            if (kind == PositionKind.None) Assert.True(diff < 1e-5, $"NoPE last logits moved by {diff}");
            else Assert.True(diff > 1e-4, $"{kind}: last logits moved by only {diff}");
        }
    }

    [Fact]
    public void TiedEmbeddingsShareTheWeight()
    {
        torch.manual_seed(53);
        using var scope = NewDisposeScope();
        using var tied = new TinyGpt(Tokens(PositionKind.Learned, tied: true));
        using var untied = new TinyGpt(Tokens(PositionKind.Learned));
        Assert.Null(tied.Unembed);
        Assert.NotNull(untied.Unembed);
        Assert.Equal(11L * 16 + 11, untied.ParameterCount - tied.ParameterCount);      // W_U and b_U
        using var _ = torch.no_grad();
        var x = torch.randint(0, 11, new long[] { 1, 5 });
        var (logits, cache) = global::AttentionLab.Interp.HookedModel.RunWithCache(tied, x, n => n == "ln_final.hook_normalized");
        using (cache)
            AssertClose.Tensors(logits, cache["normalized"].matmul(((TorchSharp.Modules.Embedding)tied.Embed).weight!.t()), atol: 1e-6, rtol: 1e-6,
                what: "h W_Eᵀ");
    }

    [Fact]
    public void AttentionOnlyBlocksHaveNoMlp()
    {
        using var model = new TinyGpt(Tokens(PositionKind.Learned, mlp: false));
        Assert.All(model.Blocks, b => Assert.Null(b.Mlp));
        Assert.DoesNotContain(model.HookPoints.Keys, n => n.Contains("mlp"));
        Assert.DoesNotContain(model.HookPoints.Keys, n => n.Contains("resid_mid"));
    }

    [Fact]
    public void ConfigRejectsBadFieldsByName()
    {
        string Field(TinyGptConfig c) => Assert.ThrowsAny<ArgumentException>(() => c.Validate()).ParamName!;
        var ok = Tokens(PositionKind.Rope);
        ok.Validate();
        Assert.Equal("Layers", Field(ok with { Layers = 0 }));
        Assert.Equal("VocabSize", Field(ok with { VocabSize = -1 }));
        Assert.Equal("TiedEmbeddings", Field(ok with { VocabSize = 0, TiedEmbeddings = true }));
        Assert.Equal("ParallelBlock", Field(ok with { Mlp = false, ParallelBlock = true }));
        Assert.Equal("Positions", Field(ok with { DModel = 12, Heads = 4 }));                 // head dim 3 is odd for RoPE
        Assert.Equal("RopeBase", Field(ok with { RopeBase = 1 }));
        Assert.Equal("MaxLength", Field(ok with { Positions = PositionKind.Learned, MaxLength = 0 }));
        Assert.Equal("Positions", Field(ok with { Positions = (PositionKind)42 }));
        Assert.Equal("Heads", Field(ok with { Heads = 3 }));
        Assert.Equal("MlpRatio", Field(ok with { MlpRatio = 0 }));
        (ok with { Mlp = false, MlpRatio = 0 }).Validate();                                   // no MLP: its ratio is unused
    }

    [Fact]
    public void BadTokenInputsNameTheArgument()
    {
        torch.manual_seed(54);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Tokens(PositionKind.Learned) with { MaxLength = 6 });
        string Arg(Action a) => Assert.Throws<ArgumentException>(a).ParamName!;
        Assert.Equal("x", Arg(() => model.call(torch.zeros(1, 4))));                        // float ids
        Assert.Equal("x", Arg(() => model.call(torch.tensor(new long[] { 0, 11 }).unsqueeze(0))));   // out of vocabulary
        Assert.Equal("x", Arg(() => model.call(torch.zeros(1, 4, 2, dtype: int64))));       // wrong rank
        Assert.Equal("x", Arg(() => model.call(torch.zeros(1, 7, dtype: int64))));           // beyond MaxLength
        using var state = model.NewState(1);
        Assert.Equal("xT", Arg(() => model.Step(torch.zeros(1, 1, dtype: int64), state)));
    }

    [Fact]
    public void HookedAttentionEqualsTheReferenceAttention()
    {
        torch.manual_seed(55);
        using var scope = NewDisposeScope();
        using var attention = new CausalSelfAttention(12, 3);
        var x = torch.randn(2, 7, 12);
        using var _ = torch.no_grad();
        var parts = attention.Qkv.call(x).view(2, 7, 3, 3, 4).unbind(2);
        using var reference = ReferenceAttention.Softmax(parts[0], parts[1], parts[2], causal: true);
        var expected = attention.Proj.call(reference.Output.reshape(2, 7, 12));
        AssertClose.Tensors(attention.call(x), expected, atol: 0, rtol: 0, what: "hooked path vs ReferenceAttention");
    }
}
