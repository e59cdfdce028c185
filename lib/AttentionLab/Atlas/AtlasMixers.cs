using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using AttentionLab.Papers.Based;
using AttentionLab.Papers.Flowformer;
using AttentionLab.Papers.LandmarkAttention;
using AttentionLab.Papers.LightningAttention;
using AttentionLab.Papers.RoutingTransformer;
using AttentionLab.Papers.S2Attention;
using static TorchSharp.torch;

namespace AttentionLab.Atlas;

/// <summary>
/// One efficient mixer of the atlas: a name, its family (the colour of the plots) and how to build it at width d with H
/// heads. Every model is zoology's 2-layer MQAR layout — a <see cref="BaseConv"/> (the local shift) and then this mixer —
/// so only the mixer differs.
/// </summary>
/// <param name="Name">The point's label.</param>
/// <param name="Family">The plots' colour group.</param>
/// <param name="Build">(d, H) → the mixer.</param>
/// <param name="Sequences">How the mixer's sequences differ from plain MQAR (Landmark inserts its landmark tokens), or null.</param>
/// <param name="CountedStateBytes">For a mixer whose state is counted rather than streamed: (T, H, D_h) → the bytes its decode
/// step must hold, beyond the conv layer's state; null streams the model and measures the state.</param>
public sealed record AtlasMixer(string Name, string Family, Func<int, int, nn.Module<Tensor, Tensor>> Build,
    AtlasSequences? Sequences = null, Func<int, int, int, long>? CountedStateBytes = null);

/// <summary>
/// A mixer's own reading of the MQAR sequences: <see cref="ExtraVocab"/> token ids it adds, the token sequence it reads
/// (tokens [N, T], vocab → [N, T′]) and the labels aligned with it (labels [N, T] → [N, T′], −100 on tokens it inserted).
/// </summary>
public sealed record AtlasSequences(int ExtraVocab, Func<Tensor, int, Tensor> Tokens, Func<Tensor, Tensor> Labels);

/// <summary>
/// The library's sequence mixers that can be trained on MQAR. Decode-time policies (Recycled Attention, DELTA, StreamingLLM,
/// H2O) choose what a trained softmax model reads and are not mixers; the atlas leaves them out.
/// </summary>
/// <remarks>This folder sits above Papers/: it is the one place that combines papers (a paper folder never uses another).</remarks>
public static class AtlasMixers
{
    /// <summary>Softmax attention: the KV cache grows with T.</summary>
    public static AtlasMixer Softmax { get; } = new("softmax attention", "full attention", (d, h) => new CausalSelfAttention(d, h));
    /// <summary>Exact softmax over the last <paramref name="window"/> tokens.</summary>
    public static AtlasMixer SlidingWindow(int window) =>
        new($"sliding window w={window}", "sliding window", (d, h) => new SlidingWindowAttention(d, h, window));
    /// <summary>BASED's Taylor linear attention with feature dim d′.</summary>
    public static AtlasMixer Based(int featureDim) => new($"BASED d′={featureDim}", "BASED", (d, h) => new BasedLinearAttention(d, featureDim, h));
    /// <summary>TransNormer-LLM attention (Lightning Attention-2 with per-head decay).</summary>
    public static AtlasMixer Lightning { get; } = new("Lightning (TNL)", "Lightning", (d, h) => new TnlAttention(d, h));
    /// <summary>Flowformer's causal Flow-Attention (streams with five running sums and one linear state).</summary>
    public static AtlasMixer Flowformer { get; } = new("Flowformer (causal)", "Flowformer", (d, h) => new FlowSelfAttention(d, h, causal: true));
    /// <summary>Plain causal linear attention with a sigmoid feature map (Flowformer's ablation).</summary>
    public static AtlasMixer SigmoidLinear { get; } = new("σ-linear attention", "Flowformer", (d, h) => new SigmoidLinearAttention(d, h));
    /// <summary>Aaren: attention with a learned query as an RNN.</summary>
    public static AtlasMixer Aaren { get; } = new("Aaren", "Aaren", (d, h) => new AarenLayer(d, h));

    /// <summary>
    /// Routing Transformer with the causal-correct nearest-centroid routing (balanced top-k leaks the future) on half the
    /// heads and a local window on the other half; no streaming state.
    /// </summary>
    public static AtlasMixer Routing(int clusters = 4, int window = 8) => new($"Routing C={clusters}", "Routing",
        (d, h) =>
            new RoutingAttention(d, h, clusters, window, causal: true, balanced: false, localHeads: Math.Max(1, h / 2), localWindow: window, decay: 0.99));

    /// <summary>
    /// S2-Attention: per-head local + vertical-stride block pattern (heterogeneous residues, so the heads together read
    /// every block); streams with a pruned per-head KV cache — each head keeps only its stride blocks and the local window.
    /// </summary>
    public static AtlasMixer S2(int block = 4, int localBlocks = 2, int vertStride = 2) => new($"S2 b={block} ℓ={localBlocks} s={vertStride}", "S2",
        (d, h) => new S2SelfAttention(d, h, block, localBlocks, vertStride));

    /// <summary>
    /// Landmark Attention (P07): grouped softmax over blocks of ℓ_b tokens + landmark, RoPE. Recall is measured with the
    /// training form over the whole sequence; its state is <i>counted</i>, not streamed: the bytes a decode step must hold
    /// near the compute — every stored landmark key, the k retrieved blocks' keys and values and the current block
    /// (<see cref="LandmarkCost"/>) — while the full block store (every K and V, like attention's cache) can sit in slow memory.
    /// </summary>
    public static AtlasMixer Landmark(int blockSize = 8, int topK = 2) => new($"Landmark ℓ_b={blockSize} k={topK}", "Landmark",
        (d, h) => new LandmarkAttentionLayer(d, h, blockSize, rope: true),
        new AtlasSequences(1, (tokens, vocab) => LandmarkTokens.Insert(tokens, blockSize, vocab).Ids, labels => LandmarkTokens.InsertLabels(labels, blockSize)),
        (length, heads, headDim) => LandmarkCost.At(length, blockSize, topK, heads, headDim).LandmarkKvBytes);

    /// <summary>The smoke set: one or two points per family.</summary>
    public static IReadOnlyList<AtlasMixer> Smoke { get; } = new[]
    {
        Softmax, SlidingWindow(8), SlidingWindow(16), Based(4), Based(16), Lightning, Flowformer, SigmoidLinear, Aaren, Routing(), S2(), Landmark(4, 2),
    };

    /// <summary>The full set: each family's state knob swept.</summary>
    public static IReadOnlyList<AtlasMixer> Full { get; } = new[]
    {
        Softmax, SlidingWindow(16), SlidingWindow(32), SlidingWindow(64), SlidingWindow(128), Based(8), Based(16), Based(24),
        Lightning, Flowformer, SigmoidLinear, Aaren, Routing(16, 32), S2(16, 4, 4), Landmark(32, 2),
    };
}
