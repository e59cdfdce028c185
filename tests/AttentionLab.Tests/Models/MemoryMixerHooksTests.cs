using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.Hcam;
using AttentionLab.Papers.Miras;
using AttentionLab.Papers.Moh;
using AttentionLab.Papers.Titans;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>
/// The mixers whose output is not pattern·V — test-time memories (Titans, Miras), HCAM's local window plus a chunk memory,
/// MoH's gated heads — inside a TinyGpt: the analogue of <see cref="MixerHooksTests"/>. RunWithCache returns q, k, v and
/// z for every layer and leaves the logits unchanged; z is the mixer's real per-head output (zeroing one head's z changes
/// the logits, and so does editing v, which the memories write); a memory fires no T×T pattern; the streaming form decodes
/// like the forward.
/// </summary>
public class MemoryMixerHooksTests
{
    const int D = 16, H = 4, Vocab = 13, T = 11;

    static TinyGptConfig Config => new(Layers: 2, DModel: D, Heads: H, MlpRatio: 2, VocabSize: Vocab, MaxLength: 32);

    /// <summary>
    /// Name → (factory given the memories' chunk size, whether the mixer fires a T×T hook_pattern). A chunk of c &gt; 1 tokens
    /// takes its inner gradients at the chunk's start (the papers' mini-batch form, another model than the token
    /// recurrence); decode runs the recurrence, so the decode test builds the memories with chunk 1.
    /// </summary>
    public static readonly Dictionary<string, (Func<int, Func<int, nn.Module<Tensor, Tensor>>> Build, bool HasPattern)> Mixers = new()
    {
        ["Titans memory (MLP)"] = (c => _ => new TitansMemory(D, H, new TitansMemoryOptions { ChunkSize = c }), false),
        ["Titans memory (linear, no conv)"] =
            (c => _ => new TitansMemory(D, H, new TitansMemoryOptions { Architecture = MemoryArchitecture.Linear, ConvKernel = 0, ChunkSize = c }), false),
        ["Moneta"] = (c => _ => new Moneta(D, H, new MirasOptions { ChunkSize = c }), false),
        ["Yaad"] = (c => _ => new Yaad(D, H, new MirasOptions { ChunkSize = c }), false),
        ["Memora"] = (c => _ => new Memora(D, H, new MirasOptions { ChunkSize = c }), false),
        ["ℓ2 memory (Miras baseline)"] = (c => _ => new L2Memory(D, H, new MirasOptions { ChunkSize = c }), false),
        ["HCAM (chunk 3, top-2)"] = (_ => _ => new HcamMixer(D, H, chunkSize: 3, topK: 2), true),
        ["MoH (1 shared, top-2 of 3)"] = (_ => _ => new MixtureOfHeadAttention(D, H, shared: 1, topK: 2), true),
    };

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var name in Mixers.Keys) data.Add(name);
        return data;
    }

    static TinyGpt Model(string name, int memoryChunk = 4)
    {
        torch.manual_seed(7);
        var model = new TinyGpt(Config, Mixers[name].Build(memoryChunk));
        model.to(ScalarType.Float64);
        return model;
    }

    static Tensor Tokens() => torch.randint(0, Vocab, new long[] { 2, T }, generator: new Generator(8));

    [Theory]
    [MemberData(nameof(Names))]
    public void RunWithCacheReturnsQkvAndZOfEveryLayerAndLeavesTheLogits(string name)
    {
        using var model = Model(name);
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var plain = model.call(tokens);
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            AssertClose.Tensors(logits, plain, atol: 1e-12, rtol: 1e-12, what: $"{name}: logits with the cache hooks");
            for (int layer = 0; layer < Config.Layers; layer++)
            {
                var mixer = (AttentionMixer)model.Blocks[layer].Mixer;
                foreach (var act in new[] { "q", "k", "v" }) Assert.True(cache.Contains(ActName.Get(act, layer)), $"{name}: no {act} in layer {layer}");
                Assert.Equal(new long[] { 2, T, H, mixer.ValueDim }, cache["z", layer].shape);
                Assert.Equal(Mixers[name].HasPattern, cache.Contains(ActName.Get("pattern", layer)));
                Assert.False(cache["z", layer].isnan().any().item<bool>(), $"{name}: NaN in z (layer {layer})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void ZeroingAHeadOrEditingVChangesTheLogits(string name)
    {
        using var model = Model(name);
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var plain = model.call(tokens);
        // MoH: head 0 is the shared head, which every token runs; a routed head may be unchosen at some positions.
        var ablated = model.RunWithHooks(tokens, Ablation.ZeroHead(model, 1, 0));
        Assert.True((ablated - plain).abs().max().item<double>() > 1e-6, $"{name}: zeroing head 0's z did not change the logits");
        var edited = model.RunWithHooks(tokens, (ActName.Get("v", 0), (v, _) => v * 0.5));
        Assert.True((edited - plain).abs().max().item<double>() > 1e-6, $"{name}: halving layer 0's v did not change the logits");
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void TheStreamingFormDecodesLikeTheForward(string name)
    {
        using var model = Model(name, memoryChunk: 1);
        var mixer = (AttentionMixer)model.Blocks[0].Mixer;
        if (!mixer.CanStream)
        {
            var e = Assert.Throws<InvalidOperationException>(() => model.NewState(1));          // said, not silently wrong
            Assert.Contains(mixer.GetType().Name, e.Message);
            return;
        }
        using var scope = NewDisposeScope();
        using var _ = torch.no_grad();
        var tokens = Tokens();
        var full = model.call(tokens);
        using var state = model.NewState(2);
        var steps = Enumerable.Range(0, T).Select(t => model.Step(tokens.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-10, rtol: 1e-10, what: $"{name}: decode vs forward");
    }
}
