using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using AttentionLab.Papers.Based;
using AttentionLab.Papers.DeconstructingAttention;
using AttentionLab.Papers.LightningAttention;
using AttentionLab.Papers.Flowformer;
using AttentionLab.Papers.LandmarkAttention;
using AttentionLab.Papers.RoutingTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>
/// Every mixer on the <see cref="AttentionMixer"/> base inside a TinyGpt: RunWithCache returns q, k, v, the pattern and z
/// for every layer; the pattern is the mixer's real attention (z = pattern·V, editing it changes the output); hooks leave
/// the output unchanged; ablation and the head detector run; W_Q/W_K/W_V/W_O are views of the projections.
/// </summary>
public class MixerHooksTests
{
    const int D = 16, H = 4, Vocab = 13, T = 9;

    static TinyGptConfig Config => new(Layers: 2, DModel: D, Heads: H, MlpRatio: 2, VocabSize: Vocab, MaxLength: 32);

    /// <summary>Name → the mixer factory for a TinyGpt (each on the base).</summary>
    public static readonly Dictionary<string, Func<int, nn.Module<Tensor, Tensor>>> Mixers = new()
    {
        ["softmax (TinyGpt)"] = CausalSelfAttention.Factory(Config),
        ["softmax, RoPE, sink logit"] = CausalSelfAttention.Factory(Config with { Positions = PositionKind.Rope, Attention = AttentionKind.SinkLogit }),
        ["Aaren"] = AarenStack.Mixers(Config),
        ["Landmark"] = _ => new LandmarkAttentionLayer(D, H, blockSize: 3),
        ["Flow (causal)"] = FlowMixers.Factory(FlowMixerKind.Flow, D, H, causal: true),
        ["Flow (encoder)"] = FlowMixers.Factory(FlowMixerKind.Flow, D, H, causal: false),
        ["σ-linear (causal)"] = FlowMixers.Factory(FlowMixerKind.Linear, D, H, causal: true),
        ["softmax (encoder)"] = FlowMixers.Factory(FlowMixerKind.Softmax, D, H, causal: false),
        ["sliding window (BASED)"] = _ => new SlidingWindowAttention(D, H, windowKeys: 3),
        ["BASED Taylor linear (d′ 4)"] = _ => new BasedLinearAttention(D, featureDim: 4, heads: H),
        ["BASED pure linear (elu+1)"] = _ => new BasedLinearAttention(D, featureDim: 4, heads: H, featureMap: FeatureMaps.EluPlusOne),
        ["TNL (Lightning)"] = LightningStack.Mixers(Config),
        ["S2 (heterogeneous)"] = _ => new AttentionLab.Papers.S2Attention.S2SelfAttention(D, H, block: 2, localBlocks: 2, vertStride: 4),
        ["Routing (nearest, 2 local heads)"] = _ => new RoutingAttention(D, H, clusters: 3, window: 2, balanced: false, localHeads: 2, localWindow: 3),
        ["Routing (balanced, separate Q/K)"] = _ => new RoutingAttention(D, H, clusters: 3, window: 4, sharedQk: false, localHeads: 1, localWindow: 2),
        ["NoMix (P18)"] = _ => new NoMixAttention(D, H),
        ["StaticMix (P18)"] = _ =>                                                // b starts at 0 (= the uniform causal pattern): draw it
        {
            var mixer = new StaticMixAttention(D, H, maxLength: 32);
            using (torch.no_grad()) mixer.StaticBias.normal_();
            return mixer;
        },
        ["ReLU-normalised (P18)"] = _ => new ReluNormAttention(D, H),
        ["distance kernel (P18)"] = _ => new DistanceKernelAttention(D, H),
        // RCMHA's hook_v is v before its convolution (z = A·DWConv(v)), so the z = pattern·v contract is checked on its relative-only ablation
        ["RMHA (P24, relative scores)"] = _ => new AttentionLab.Papers.Rcmha.RcmhaAttention(D, H, AttentionLab.Papers.Rcmha.RcmhaVariant.Rmha),
        ["Affine-scaled (P31, eval: EMA frozen)"] = _ =>                          // training-mode calls move α's EMA, so two calls differ
        {
            var mixer = new AttentionLab.Papers.AffineScaled.AffineScaledAttention(D, H);
            mixer.eval();
            return mixer;
        },
    };

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var name in Mixers.Keys) data.Add(name);
        return data;
    }

    static TinyGpt Model(string name, ScalarType dtype = ScalarType.Float32)
    {
        torch.manual_seed(5);
        var model = new TinyGpt(Config, Mixers[name]);
        model.to(dtype);
        return model;
    }

    static Tensor Tokens() => torch.randint(0, Vocab, new long[] { 2, T }, generator: new Generator(6));

    [Theory]
    [MemberData(nameof(Names))]
    public void RunWithCacheReturnsThePatternOfEveryLayer(string name)
    {
        using var model = Model(name, ScalarType.Float64);
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var plain = model.call(tokens);
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            AssertClose.Tensors(logits, plain, atol: 1e-12, rtol: 1e-12, what: $"{name}: logits with the cache hooks");
            for (int layer = 0; layer < Config.Layers; layer++)
            {
                var pattern = cache["pattern", layer];
                Assert.Equal(new long[] { 2, H, T, T }, pattern.shape);
                var z = cache["z", layer];
                Assert.Equal(new long[] { 2, T, H, D / H }, z.shape);
                foreach (var act in new[] { "q", "k", "v", "attn_scores" }) Assert.True(cache.Contains(ActName.Get(act, layer)),
                    $"{name}: no {act} in layer {layer}");
                var v = cache["v", layer];
                AssertClose.Tensors(pattern.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3), z, atol: 1e-10, rtol: 1e-10,
                    what: $"{name}: z = pattern·V (layer {layer})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void EditingThePatternOrAblatingAHeadChangesTheOutput(string name)
    {
        using var model = Model(name, ScalarType.Float64);
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var plain = model.call(tokens);
        var uniform = torch.ones(T, T, dtype: ScalarType.Float64).tril();
        uniform /= uniform.sum(-1, keepdim: true);
        var edited = model.RunWithHooks(tokens, (ActName.Get("pattern", 1), (p, _) => uniform.expand_as(p).contiguous()));
        Assert.True((edited - plain).abs().max().item<double>() > 1e-6, $"{name}: replacing the pattern did not reach the output");
        var ablated = model.RunWithHooks(tokens, Ablation.ZeroHead(model, 1, 2));
        Assert.True((ablated - plain).abs().max().item<double>() > 1e-6, $"{name}: zeroing head 2's z did not change the output");
        var scores = HeadDetector.Detect(model, tokens, HeadPattern.PreviousToken);
        Assert.Equal(new long[] { Config.Layers, H }, scores.shape);
        Assert.False(scores.isnan().any().item<bool>());
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void PerHeadWeightsAreViewsOfTheProjections(string name)
    {
        using var model = Model(name, ScalarType.Float64);
        using var scope = NewDisposeScope();
        var mixer = (AttentionMixer)model.Blocks[0].Mixer;
        var x = torch.randn(2, 5, D, dtype: ScalarType.Float64);
        var (q, k, v) = mixer.Project(x);
        int dk = mixer.KeyDim;
        var bias = mixer.Qkv.bias ?? torch.zeros(mixer.Qkv.weight!.shape[0], dtype: ScalarType.Float64);
        Func<Tensor, Tensor> act = mixer is TnlAttention ? t => nn.functional.silu(t) : t => t;              // TNL: SiLU on q, k, v
        if (mixer.ProjectsQuery)
        {
            var qByHand = act(torch.einsum("btd,hde->bthe", x, mixer.W_Q) + bias.narrow(0, 0, H * dk).view(H, dk));
            AssertClose.Tensors(q, qByHand, atol: 1e-12, rtol: 1e-12, what: $"{name}: x W_Q + b_Q");
            Assert.Equal(new long[] { H, D, D }, mixer.QK.shape);
        }
        long kRow = mixer.ProjectsQuery ? H * dk : 0;
        AssertClose.Tensors(k, act(torch.einsum("btd,hde->bthe", x, mixer.W_K) + bias.narrow(0, kRow, H * dk).view(H, dk)), atol: 1e-12, rtol: 1e-12,
            what: $"{name}: x W_K + b_K");
        AssertClose.Tensors(v, act(torch.einsum("btd,hde->bthe", x, mixer.W_V) + bias.narrow(0, kRow + H * dk, H * mixer.ValueDim).view(H, mixer.ValueDim)),
            atol: 1e-12, rtol: 1e-12, what: $"{name}: x W_V + b_V");
        // y = Σ_h z_h W_O[h] + b_O: the per-head output weights recombine W_O
        var z = torch.randn(2, 5, H, mixer.ValueDim, dtype: ScalarType.Float64);
        var byHeads = torch.einsum("bthe,hed->btd", z, mixer.W_O) + (mixer.Proj.bias ?? torch.zeros(D, dtype: ScalarType.Float64));
        AssertClose.Tensors(mixer.Proj.call(z.reshape(2, 5, H * mixer.ValueDim)), byHeads, atol: 1e-12, rtol: 1e-12, what: $"{name}: Σ_h z_h W_O[h]");
        Assert.Equal(new long[] { H, D, D }, mixer.OV.shape);
    }

    [Fact]
    public void AStateFromAnotherMixerIsRefused()
    {
        using var a = new CausalSelfAttention(D, H);
        using var b = new CausalSelfAttention(D, H);
        using var state = a.NewState(1, ScalarType.Float32, torch.CPU);
        using var x = torch.randn(1, D);
        var e = Assert.Throws<ArgumentException>(() => b.Step(x, state));
        Assert.Equal("state", e.ParamName);
        Assert.Contains("another CausalSelfAttention", e.Message);
        a.Step(x, state);
        Assert.Equal(1, state.Position);
    }

    [Fact]
    public void AMixerWithoutADecodeFormSaysSoAndTinyGptRefusesToStreamIt()
    {
        using var model = new TinyGpt(Config, _ => new RoutingAttention(D, H, clusters: 3, window: 2, balanced: false));
        var mixer = (AttentionMixer)model.Blocks[0].Mixer;
        Assert.False(mixer.CanStream);
        Assert.Throws<NotSupportedException>(() => mixer.NewState(1, ScalarType.Float32, torch.CPU));
        var e = Assert.Throws<InvalidOperationException>(() => model.NewState(1));
        Assert.Contains("RoutingAttention", e.Message);
        Assert.True(((AttentionMixer)Mixers["softmax (TinyGpt)"](0)).CanStream);
    }
}
