using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>The classifier on all-MiniLM-L6-v2 (found as MiniLmTests finds it: <see cref="MiniLmFiles.Read"/>) and on small random encoders.</summary>
public class EncoderClassifierTests : IClassFixture<MiniLmFixture>
{
    static readonly string[] Sentences =
    {
        "The cat sat on the mat.",
        "Attention is all you need, or so the paper claims.",
        "Hello world",
    };

    readonly MiniLmFixture fx;

    public EncoderClassifierTests(MiniLmFixture fx) => this.fx = fx;

    [Fact]
    public void WithMiniLmWeightsItsHiddenStatesAreMiniLms()
    {
        using var classifier = new EncoderClassifier(MiniLm.FromFiles(fx.Files), classes: 2);
        using var scope = NewDisposeScope();
        using var enc = fx.Model.Tokenize(Sentences);
        using var noGrad = torch.no_grad();
        var hidden = classifier.Hidden(enc.InputIds, enc.AttentionMask);
        // against ONNX Runtime on the same graph (independent), over real tokens
        var (ort, _) = fx.RunOrt(enc.InputIds, enc.AttentionMask);
        var real = enc.AttentionMask.ne(0).unsqueeze(-1).expand_as(hidden);
        AssertClose.Tensors(hidden.masked_select(real), ort.masked_select(real), atol: 1e-5, rtol: 0, what: "classifier hidden vs ONNX Runtime");
        // against the existing MiniLm (same code, so bit for bit, padding included)
        using var reference = fx.Model.Run(enc.InputIds, enc.AttentionMask, capture: false);
        AssertClose.Tensors(hidden, reference.LastHiddenState, atol: 0, rtol: 0, what: "classifier hidden vs MiniLm");
        // an all-ones head mask changes nothing
        var ones = torch.ones(6, 12);
        AssertClose.Tensors(classifier.Hidden(enc.InputIds, enc.AttentionMask, ones), hidden, atol: 0, rtol: 0, what: "ξ = 1");
        // the pretrained encoder is trainable in the classifier
        Assert.All(classifier.parameters(), p => Assert.True(p.requires_grad));
    }

    [Fact]
    public void PretrainedClassifierFineTunesEndToEnd()
    {
        using var classifier = new EncoderClassifier(MiniLm.FromFiles(fx.Files), classes: 2, EncoderPooling.Cls);
        using var scope = NewDisposeScope();
        using var enc = fx.Model.Tokenize(Sentences);
        var logits = classifier.call(enc.InputIds, enc.AttentionMask);
        Assert.Equal(new long[] { 3, 2 }, logits.shape);
        nn.functional.cross_entropy(logits, torch.tensor(new long[] { 0, 1, 0 })).backward();
        var qkvGrad = classifier.Encoder.Blocks[0].attn.Qkv.weight!.grad;
        Assert.True(qkvGrad is not null && qkvGrad.abs().sum().item<float>() > 0, "the first layer gets gradient");
        Assert.True(classifier.Head.weight!.grad!.abs().sum().item<float>() > 0);
    }

    /// <summary>A float64 random encoder of MiniLM's architecture: 3 layers, d = 24, 4 heads of 6, vocab 40.</summary>
    static EncoderClassifier Small(EncoderPooling pooling = EncoderPooling.Mean, int? padId = 0)
    {
        torch.manual_seed(15);
        var classifier = EncoderClassifier.Random(new MiniLmConfig(VocabSize: 40, Hidden: 24, Layers: 3, Heads: 4, Intermediate: 40, MaxPositions: 32),
                                                  classes: 3, pooling, padId);
        classifier.to(ScalarType.Float64);
        return classifier;
    }

    static (Tensor Ids, Tensor Mask) Batch()
    {
        var ids = torch.randint(1, 40, new long[] { 3, 7 }, ScalarType.Int64);
        var mask = torch.ones(3, 7, ScalarType.Int64);
        mask[1].narrow(0, 4, 3).fill_(0);                                               // row 1: 4 tokens, row 2: 2 tokens
        mask[2].narrow(0, 2, 5).fill_(0);
        return (ids * mask, mask);                                                      // padding id 0
    }

    [Fact]
    public void AZeroHeadMaskEqualsAblatingThatHeadsZ()
    {
        using var model = Small();
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (ids, mask) = Batch();
        var headMask = torch.ones(3, 4, ScalarType.Float64);
        headMask[1, 2] = 0;
        var masked = model.Logits(ids, mask, headMask);
        // naive twin: zero head 2's z in layer 1 with a hook, run through IHookedModel (padding from the pad id)
        var ablated = ((IHookedModel)model).RunWithHooks(ids, ("blocks.1.attn.hook_z", (z, _) =>
        {
            var copy = z.clone();
            copy.select(2, 2).zero_();
            return copy;
        }));
        AssertClose.Tensors(masked, ablated, atol: 1e-12, rtol: 0, what: "ξ_{1,2} = 0 vs hook_z ablation");
        Assert.True((masked - model.Logits(ids, mask)).abs().max().item<double>() > 1e-6, "removing a head must change the logits");
        // a per-sequence mask [B, L, H]: each row as if run alone with its own [L, H] mask
        var perRow = torch.ones(3, 3, 4, ScalarType.Float64);
        perRow[0, 0, 1] = 0; perRow[2, 2, 3] = 0.5;
        var batched = model.Logits(ids, mask, perRow);
        for (int i = 0; i < 3; i++)
            AssertClose.Tensors(batched.narrow(0, i, 1), model.Logits(ids.narrow(0, i, 1), mask.narrow(0, i, 1), perRow[i]),
                                atol: 1e-12, rtol: 0, what: $"row {i}");
    }

    [Fact]
    public void TheGateGradientMatchesFiniteDifferences()
    {
        // Michel et al.'s head importance is |∂L/∂ξ_h| at ξ = 1: check autograd against central differences in float64.
        using var model = Small();
        using var scope = NewDisposeScope();
        var (ids, mask) = Batch();
        var labels = torch.tensor(new long[] { 0, 2, 1 });
        var gate = torch.ones(3, 4, ScalarType.Float64).requires_grad_(true);
        nn.functional.cross_entropy(model.Logits(ids, mask, gate), labels).backward();
        var grad = gate.grad!;
        double Loss(Tensor g)
        {
            using var noGrad = torch.no_grad();
            return nn.functional.cross_entropy(model.Logits(ids, mask, g), labels).item<double>();
        }
        const double h = 1e-6;
        foreach (var (l, head) in new[] { (0, 0), (1, 3), (2, 1) })
        {
            var plus = torch.ones(3, 4, ScalarType.Float64); plus[l, head] = 1 + h;
            var minus = torch.ones(3, 4, ScalarType.Float64); minus[l, head] = 1 - h;
            double numeric = (Loss(plus) - Loss(minus)) / (2 * h);
            Assert.Equal(numeric, grad[l, head].item<double>(), 7);
        }
        Assert.True(grad.abs().max().item<double>() > 1e-6);
    }

    [Theory]
    [InlineData(EncoderPooling.Mean)]
    [InlineData(EncoderPooling.Cls)]
    public void PaddedRowsClassifyAsIfAlone(EncoderPooling pooling)
    {
        using var model = Small(pooling);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (ids, mask) = Batch();
        var batched = model.Logits(ids, mask);
        long[] lengths = { 7, 4, 2 };
        for (int i = 0; i < 3; i++)
        {
            var alone = model.Logits(ids.narrow(0, i, 1).narrow(1, 0, lengths[i]), mask.narrow(0, i, 1).narrow(1, 0, lengths[i]));
            AssertClose.Tensors(batched.narrow(0, i, 1), alone, atol: 1e-10, rtol: 0, what: $"{pooling} row {i}");
        }
    }

    [Fact]
    public void PoolingIsClsOrTheMaskedMean()
    {
        using var scope = NewDisposeScope();
        // hidden [1, 3, 2] = [[1, 2], [3, 4], [100, 100]], the last position padding:
        // Cls = [1, 2]; Mean = ([1, 2] + [3, 4]) / 2 = [2, 3].
        var hidden = torch.tensor(new double[] { 1, 2, 3, 4, 100, 100 }).view(1, 3, 2);
        var mask = torch.tensor(new long[] { 1, 1, 0 }).view(1, 3);
        Assert.Equal(new double[] { 1, 2 }, EncoderClassifier.Pool(hidden, mask, EncoderPooling.Cls).data<double>().ToArray());
        Assert.Equal(new double[] { 2, 3 }, EncoderClassifier.Pool(hidden, mask, EncoderPooling.Mean).data<double>().ToArray());
        Assert.True(double.IsNaN(EncoderClassifier.Pool(hidden * double.NaN, mask, EncoderPooling.Mean)[0, 0].item<double>()));
    }

    [Fact]
    public void RunWithCacheGivesPatternsResidualsAndThePooledVector()
    {
        using var model = Small();
        using var scope = NewDisposeScope();
        var (ids, mask) = Batch();
        var (logits, cache) = ((IHookedModel)model).RunWithCache(ids);
        using (cache)
        {
            using var noGrad = torch.no_grad();
            AssertClose.Tensors(logits, model.Logits(ids, mask), atol: 0, rtol: 0, what: "IHookedModel.Run masks the pad id");
            Assert.Equal(new long[] { 3, 4, 7, 7 }, cache["pattern", 2].shape);
            Assert.Equal(new long[] { 3, 7, 24 }, cache["resid_pre", 0].shape);
            Assert.Equal(new long[] { 3, 24 }, cache["hook_pooled"].shape);
            var padding = mask.eq(0).view(3, 1, 1, 7).expand(3, 4, 7, 7);
            Assert.Equal(0, cache["pattern", 0].masked_select(padding).abs().max().item<double>());
        }
    }

    [Fact]
    public void ForwardDoesNotLeak()
    {
        using var model = Small();
        var (ids, mask) = Batch();
        using (ids)
        using (mask)
        using (var gate = torch.ones(3, 4, ScalarType.Float64))
            LeakCheck.AssertNoLeak(() => { using var s = NewDisposeScope(); model.Logits(ids, mask, gate); }, "classifier forward");
    }

    [Fact]
    public void BadInputIsNamed()
    {
        using var model = Small();
        using var scope = NewDisposeScope();
        var (ids, mask) = Batch();
        string Param(Action a) => Assert.ThrowsAny<ArgumentException>(a).ParamName!;
        Assert.Equal("headMask", Param(() => model.Logits(ids, mask, torch.ones(3, 5, ScalarType.Float64))));
        Assert.Equal("headMask", Param(() => model.Logits(ids, mask, torch.ones(2, 3, 4, ScalarType.Float64))));
        Assert.Equal("attentionMask", Param(() => model.Logits(ids, mask.narrow(1, 0, 3))));
        Assert.Equal("inputIds", Param(() => model.Logits(ids + 40, mask)));
        Assert.Equal("attentionMask", Param(() => EncoderClassifier.Pool(torch.zeros(2, 3, 4), torch.ones(2, 4), EncoderPooling.Mean)));
        Assert.Equal("gate", Param(() => EncoderAttention.GateHeads(torch.zeros(1, 2, 3, 4), torch.ones(4))));         // H = 3, not 4
        Assert.Equal("gate", Param(() => EncoderAttention.GateHeads(torch.zeros(1, 2, 3, 4), torch.ones(2, 3))));      // B = 1, not 2
        using var encoder = new MiniLm(new MiniLmConfig(VocabSize: 10, Hidden: 8, Layers: 1, Heads: 2, Intermediate: 8, MaxPositions: 8));
        Assert.Equal("classes", Param(() => new EncoderClassifier(encoder, classes: 1)));
        Assert.Equal("padId", Param(() => new EncoderClassifier(encoder, classes: 2, padId: 10)));
        Assert.Equal("pooling", Param(() => new EncoderClassifier(encoder, classes: 2, pooling: (EncoderPooling)7)));
    }
}
