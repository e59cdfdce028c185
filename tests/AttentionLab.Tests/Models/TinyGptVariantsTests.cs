using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>TinyGpt's attention kinds (P47 variants) and streaming with an evicting KV cache.</summary>
public class TinyGptVariantsTests
{
    static TinyGptConfig Config(AttentionKind kind, PositionKind positions = PositionKind.Rope, bool mlp = true) =>
        new(Layers: 2, DModel: 16, Heads: 4, MlpRatio: 2, Positions: positions, VocabSize: 11, MaxLength: 40, Mlp: mlp, Attention: kind);

    [Theory]
    [InlineData(AttentionKind.Softmax1, PositionKind.Rope)]
    [InlineData(AttentionKind.SinkLogit, PositionKind.Alibi)]
    [InlineData(AttentionKind.GatedG1, PositionKind.Rope)]
    [InlineData(AttentionKind.Register, PositionKind.Rope)]
    [InlineData(AttentionKind.Register, PositionKind.Learned)]
    public void EveryKindDecodesLikeItsForward(AttentionKind kind, PositionKind positions)
    {
        torch.manual_seed(60);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Config(kind, positions));
        if (model.Blocks[0].Mixer is CausalSelfAttention { SinkLogits: { } b })
            using (torch.no_grad()) b.copy_(torch.linspace(-2, 1, 4));             // not the zero start: each head its own b_h
        var x = torch.randint(0, 11, new long[] { 2, 19 });
        using var _ = torch.no_grad();
        var full = model.call(x);
        Assert.Equal(new long[] { 2, 19, 11 }, full.shape);
        using var state = model.NewState(2);
        var steps = Enumerable.Range(0, 19).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-5, rtol: 1e-5, what: $"decode vs forward ({kind}, {positions})");
    }

    [Fact]
    public void Softmax1PatternIsSoftmaxOverScoresAndAZeroColumn()
    {
        torch.manual_seed(61);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Config(AttentionKind.Softmax1));
        var x = torch.randint(0, 11, new long[] { 1, 7 });
        using var _ = torch.no_grad();
        var (_, cache) = model.RunWithCache(x, n => n.EndsWith("attn_scores") || n.EndsWith("pattern"));
        using (cache)
        {
            var s = cache["attn_scores", 1];                                        // [B, H, T, T], −∞ above the diagonal
            var padded = torch.cat(new[] { s, torch.zeros(1, 4, 7, 1) }, -1);       // [s, 0]
            var expected = torch.softmax(padded, -1).narrow(-1, 0, 7);              // … with the virtual column dropped
            AssertClose.Tensors(cache["pattern", 1], expected, atol: 1e-6, rtol: 0, what: "softmax₁ pattern");
            Assert.True(cache["pattern", 1].sum(-1).lt(1).all().item<bool>(), "softmax₁ rows sum to less than 1");
        }
    }

    [Fact]
    public void SinkLogitAtMinusInfinityIsSoftmaxAndGateWideOpenIsUngated()
    {
        torch.manual_seed(62);
        using var scope = NewDisposeScope();
        using var plain = new TinyGpt(Config(AttentionKind.Softmax));
        using var sink = new TinyGpt(Config(AttentionKind.SinkLogit));
        using var gated = new TinyGpt(Config(AttentionKind.GatedG1));
        var weights = plain.state_dict();
        sink.load_state_dict(weights, strict: false);
        gated.load_state_dict(weights, strict: false);
        using (torch.no_grad())
        {
            foreach (var block in sink.Blocks) ((CausalSelfAttention)block.Mixer).SinkLogits!.fill_(double.NegativeInfinity);   // b_h = −∞
            foreach (var block in gated.Blocks)
            {
                var gate = ((CausalSelfAttention)block.Mixer).Gate!;
                gate.weight!.zero_(); gate.bias!.fill_(1e4);                          // W_θ = 0, σ(+∞) = 1
            }
        }
        var x = torch.randint(0, 11, new long[] { 2, 9 });
        using var _ = torch.no_grad();
        var expected = plain.call(x);
        AssertClose.Tensors(sink.call(x), expected, atol: 1e-6, rtol: 0, what: "sink logit −∞ vs softmax");
        AssertClose.Tensors(gated.call(x), expected, atol: 1e-6, rtol: 0, what: "open gate vs ungated");
        using (torch.no_grad()) foreach (var block in gated.Blocks) ((CausalSelfAttention)block.Mixer).Gate!.bias!.fill_(-1e4);
        Assert.False(TensorBits.Same(gated.call(x), expected));                     // a closed gate does change the output
    }

    [Fact]
    public void RegisterSitsAtPositionZeroInEveryHook()
    {
        torch.manual_seed(63);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Config(AttentionKind.Register));
        Assert.Equal(1, model.Prefix);
        var x = torch.randint(0, 11, new long[] { 2, 6 });
        using var _ = torch.no_grad();
        var (logits, cache) = model.RunWithCache(x, n => n.EndsWith("pattern") || n.EndsWith("resid_pre"));
        using (cache)
        {
            Assert.Equal(new long[] { 2, 6, 11 }, logits.shape);
            Assert.Equal(new long[] { 2, 4, 7, 7 }, cache["pattern", 0].shape);
            AssertClose.Tensors(cache["resid_pre", 0].select(1, 0), model.RegisterToken!.view(1, -1).expand(2, 16), atol: 0, rtol: 0, what: "r at position 0");
        }
    }

    [Fact]
    public void SinkWindowStreamingEqualsTheFullCacheWhileNothingIsEvicted()
    {
        torch.manual_seed(64);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Config(AttentionKind.Softmax));
        var x = torch.randint(0, 11, new long[] { 1, 12 });
        using var _ = torch.no_grad();
        using var full = model.NewState(1);
        using var streaming = model.NewState(1, _ => KvPolicy.SinkWindow(window: 8, nSink: 4));   // 12 ≤ n_s + w
        for (int t = 0; t < 12; t++)
            Assert.True(TensorBits.Same(model.Step(x.select(1, t), streaming), model.Step(x.select(1, t), full)), $"step {t}");
    }

    [Fact]
    public void SinkWindowStreamingKeepsSinksAndWindowAndReindexesPositions()
    {
        torch.manual_seed(65);
        using var scope = NewDisposeScope();
        using var model = new TinyGpt(Config(AttentionKind.Softmax));
        var x = torch.randint(0, 11, new long[] { 1, 30 });
        using var _ = torch.no_grad();
        using var state = model.NewState(1, _ => KvPolicy.SinkWindow(window: 6, nSink: 2));
        for (int t = 0; t < 30; t++) model.Step(x.select(1, t), state);
        var cache = ((CausalSelfAttention.PolicyState)state.Layers[1]).Cache;
        var kept = cache.TokenPositions[0, 0].data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1, 24, 25, 26, 27, 28, 29 }, kept);          // [0, n_s) ∪ [t − w, t)
        Assert.Equal(Enumerable.Range(0, 8).Select(i => (long)i), cache.CachePositions.data<long>().ToArray());
        Assert.Equal(30, state.Position);
        Assert.Equal(8 * cache.BytesPerEntry * 2, state.Bytes);                     // constant memory: 8 entries per layer

        // a sink-less window gives different logits once the middle is evicted
        using var window = model.NewState(1, _ => KvPolicy.SinkWindow(window: 8, nSink: 0));
        Tensor? withSinks = null, withoutSinks = null;
        using var again = model.NewState(1, _ => KvPolicy.SinkWindow(window: 6, nSink: 2));
        for (int t = 0; t < 30; t++) { withSinks = model.Step(x.select(1, t), again); withoutSinks = model.Step(x.select(1, t), window); }
        Assert.False(TensorBits.Same(withSinks!, withoutSinks!));
    }

    [Fact]
    public void StreamingWithAnEvictingCacheOwnsItsTensors()
    {
        torch.manual_seed(66);
        using var model = new TinyGpt(Config(AttentionKind.Register));
        using var x = torch.randint(0, 11, new long[] { 2, 20 });
        void Use()
        {
            using var _ = torch.no_grad();
            using var state = model.NewState(2, layer => layer == 0 ? KvPolicy.SinkWindow(window: 5, nSink: 2) : KvPolicy.H2O(heavy: 3, recent: 4));
            for (int t = 0; t < 20; t++) { using var xt = x.select(1, t); model.Step(xt, state).Dispose(); }
        }
        LeakCheck.AssertNoLeak(Use, "TinyGpt streaming through evicting caches");
    }

    [Fact]
    public void EvictingPoliciesRefuseAbsolutePositionEmbeddings()
    {
        using var model = new TinyGpt(Config(AttentionKind.Softmax, PositionKind.Learned));
        var e = Assert.Throws<ArgumentException>(() => model.NewState(1, _ => KvPolicy.SinkWindow(8)));
        Assert.Equal("kvPolicy", e.ParamName);
        var bad = Assert.Throws<ArgumentException>(() => new TinyGptConfig(Attention: (AttentionKind)42).Validate());
        Assert.Equal("Attention", bad.ParamName);
    }
}
