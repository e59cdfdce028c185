using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using AttentionLab.Papers.AffineScaled;
using AttentionLab.Papers.Bam;
using AttentionLab.Papers.Based;
using AttentionLab.Papers.DeconstructingAttention;
using AttentionLab.Papers.Flowformer;
using AttentionLab.Papers.LandmarkAttention;
using AttentionLab.Papers.LightningAttention;
using AttentionLab.Papers.Moh;
using AttentionLab.Papers.Rcmha;
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
/// <param name="GrowsWithLength">True for a mixer whose decode state grows with T (a KV cache, pruned or not); false for a
/// fixed-size state (a window, a recurrent state).</param>
/// <param name="StateFormula">The bytes the method's paper says its streamed state holds, checked against the measurement; or null.</param>
/// <param name="AuxLoss">The mixer's auxiliary training loss after a forward call, weighted as its paper trains (MoH: β·L_b); or null.</param>
public sealed record AtlasMixer(string Name, string Family, Func<int, int, nn.Module<Tensor, Tensor>> Build,
    AtlasSequences? Sequences = null, Func<int, int, int, long>? CountedStateBytes = null, bool GrowsWithLength = false,
    AtlasStateFormula? StateFormula = null, Func<nn.Module, Tensor?>? AuxLoss = null);

/// <summary>
/// What a mixer's paper says its decode state holds after T tokens, as a claim the atlas checks: the streamed bytes must
/// equal the conv layer's plus <see cref="Bytes"/>(the built mixer, T), and, when <see cref="BelowSoftmax"/>, stay below
/// softmax attention's whole state.
/// </summary>
/// <param name="Id">The claim id's tail (after the mixer's slug).</param>
/// <param name="Statement">The claim.</param>
/// <param name="Criterion">The formula, as the claim record shows it.</param>
/// <param name="PaperFigure">Where the paper says it.</param>
/// <param name="Bytes">(the built mixer, T) → the mixer's state bytes after T tokens.</param>
/// <param name="BelowSoftmax">The state must also be smaller than softmax attention's.</param>
public sealed record AtlasStateFormula(string Id, string Statement, string Criterion, string PaperFigure, Func<nn.Module, int, long> Bytes,
    bool BelowSoftmax);

/// <summary>
/// A mixer's own reading of the MQAR sequences: <see cref="ExtraVocab"/> token ids it adds, the token sequence it reads
/// (tokens [N, T], vocab → [N, T′]) and the labels aligned with it (labels [N, T] → [N, T′], −100 on tokens it inserted).
/// </summary>
public sealed record AtlasSequences(int ExtraVocab, Func<Tensor, int, Tensor> Tokens, Func<Tensor, Tensor> Labels);

/// <summary>
/// The library's sequence mixers that can be trained on MQAR. Decode-time policies (Recycled Attention, DELTA, StreamingLLM,
/// H2O) choose what a trained softmax model reads and are not mixers; the atlas leaves them out, and so it leaves out
/// SinkLoRA's S²-Attn and SF-Attn (P09): training-time approximations whose model decodes with full attention, so their
/// state is softmax's. DHA (P14) converts a trained MHA into <see cref="GroupedKvAttention"/> with learned fusion; the
/// atlas trains that layer from scratch with GQA's fixed mean fusion (<see cref="Gqa"/>): the same cache, and DHA's gain is
/// in the conversion, which notebook 14 measures.
/// </summary>
/// <remarks>This folder sits above Papers/: it is the one place that combines papers (a paper folder never uses another).</remarks>
public static class AtlasMixers
{
    /// <summary>Softmax attention: the KV cache grows with T.</summary>
    public static AtlasMixer Softmax { get; } = new("softmax attention", "full attention", (d, h) => new CausalSelfAttention(d, h),
        GrowsWithLength: true);
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
        (d, h) => new S2SelfAttention(d, h, block, localBlocks, vertStride), GrowsWithLength: true, StateFormula: new(
            "state-is-pruned-cache", "streams with its pruned per-head KV cache: each head holds its stride blocks plus the local window",
            "streamed bytes = conv + Σ_h held_h(T) × 2·d_h·4 B, and below softmax's (P22 spec §2)",
            "a KV head needs only its stride blocks + the last ℓ blocks (P22 spec §2; dkernel)",
            (m, t) => { var s2 = (S2SelfAttention)m; return Enumerable.Range(0, s2.Heads).Sum(h => s2.HeldTokens(h, t)) * 2L * s2.KeyDim * sizeof(float); },
            BelowSoftmax: true));

    /// <summary>
    /// Landmark Attention (P07): grouped softmax over blocks of ℓ_b tokens + landmark, RoPE. Recall is measured with the
    /// training form over the whole sequence; its state is <i>counted</i>, not streamed: the bytes a decode step must hold
    /// near the compute — every stored landmark key, the k retrieved blocks' keys and values and the current block
    /// (<see cref="LandmarkCost"/>) — while the full block store (every K and V, like attention's cache) can sit in slow memory.
    /// </summary>
    public static AtlasMixer Landmark(int blockSize = 8, int topK = 2) => new($"Landmark ℓ_b={blockSize} k={topK}", "Landmark",
        (d, h) => new LandmarkAttentionLayer(d, h, blockSize, rope: true),
        new AtlasSequences(1, (tokens, vocab) => LandmarkTokens.Insert(tokens, blockSize, vocab).Ids, labels => LandmarkTokens.InsertLabels(labels, blockSize)),
        (length, heads, headDim) => LandmarkCost.At(length, blockSize, topK, heads, headDim).LandmarkKvBytes, GrowsWithLength: true);

    /// <summary>
    /// RCMHA (P24): depthwise causal convolutions (kernel 3) on q, k, v and Transformer-XL relative scores (shift-and-gather);
    /// decodes with a KV cache of the convolved k, v plus the convolutions' last two inputs.
    /// </summary>
    public static AtlasMixer Rcmha { get; } = new("RCMHA", "head variants", (d, h) => new RcmhaAttention(d, h, RcmhaVariant.Rcmha),
        GrowsWithLength: true);

    /// <summary>Affine-Scaled Attention (P31): softmax rows rescaled by α and shifted by β (EMA statistics), KV cache as softmax.</summary>
    public static AtlasMixer AffineScaled { get; } = new("Affine-scaled", "head variants", (d, h) => new AffineScaledAttention(d, h),
        GrowsWithLength: true);

    /// <summary>
    /// BAM's soft mixture of <paramref name="experts"/> attention experts (P04, "BAM-all"), each with H heads, mixed per token
    /// by a soft router over their outputs; its KV cache holds every expert's heads.
    /// </summary>
    public static AtlasMixer Bam(int experts = 2) => new($"BAM mixture E={experts}", "head variants",
        (d, h) => new MixtureOfAttention(d, h, experts), GrowsWithLength: true, StateFormula: new(
            "state-is-e-caches", $"decodes with E = {experts} experts' KV caches, E × a dense layer's (BAM-all)",
            "streamed bytes = conv + T · E·H · (D_k + D_v) · 4 B",
            "BAM-all keeps every expert's K and V: E × the dense KV cache (P04 spec §2)",
            (m, t) => { var moa = (MixtureOfAttention)m; return (long)t * moa.Heads * (moa.KeyDim + moa.ValueDim) * sizeof(float); },
            BelowSoftmax: false));

    /// <summary>
    /// MoH (P21): 2H heads of width d / 2H, max(1, H/2) shared and H routed per token (top-k of the rest): 75 % of the heads
    /// active per token for even H, the paper's headline setting; trained with its load-balance loss (β = 0.01). Decoding caches
    /// every head (a later token may route to any head).
    /// </summary>
    public static AtlasMixer Moh { get; } = new("MoH 75 % heads", "head variants",
        (d, h) => new MixtureOfHeadAttention(d, 2 * h, shared: Math.Max(1, h / 2), topK: Math.Max(1, 3 * h / 2 - Math.Max(1, h / 2))),
        GrowsWithLength: true, AuxLoss: m => ((MixtureOfHeadAttention)m).LastRouting is { } r ? 0.01 * r.AuxLoss : null);

    /// <summary>
    /// GQA with <paramref name="groups"/> key/value heads (G = 1: multi-query), mean fusion of the H projected heads (the
    /// layer DHA (P14) converts into with learned fusion): its cache holds G heads of K and V.
    /// </summary>
    public static AtlasMixer Gqa(int groups = 1) => new($"GQA G={groups}", "grouped KV",
        (d, h) => new GroupedKvAttention(d, h, KvHeadMap.MeanPool(h, groups), KvHeadMap.MeanPool(h, groups)), GrowsWithLength: true,
        StateFormula: new("state-is-grouped-cache", $"caches G = {groups} key and value heads: G/H of multi-head attention's KV cache",
            "streamed bytes = conv + T · (S_K·D_k + S_V·D_v) · 4 B, and below softmax's",
            "GQA/DHA cache S_K + S_V heads instead of 2H (P14 spec §2)",
            (m, t) => t * ((GroupedKvAttention)m).KvBytesPerToken(), BelowSoftmax: true));

    /// <summary>
    /// One of the Deconstructing Attention variants (P18, formulas [ours]); each decodes with the base's KV cache
    /// (StaticMix's Toeplitz bias covers up to 256 positions).
    /// </summary>
    public static AtlasMixer Deconstructed(MixerKind kind) => kind == MixerKind.DecoupledQK
        ? throw new ArgumentException("DecoupledQK reads the model's layer-0 embeddings through a tap the atlas's models do not build.", nameof(kind))
        : new($"{kind} (P18)", "deconstructed", (d, h) => DeconstructedAttention.Create(kind, d, h), GrowsWithLength: true);

    /// <summary>The smoke set: one or two points per family.</summary>
    public static IReadOnlyList<AtlasMixer> Smoke { get; } = new[]
    {
        Softmax, SlidingWindow(8), SlidingWindow(16), Based(4), Based(16), Lightning, Flowformer, SigmoidLinear, Aaren, Routing(), S2(), Landmark(4, 2),
        Rcmha, AffineScaled, Bam(2), Moh, Gqa(1), Deconstructed(MixerKind.ReluNorm),
    };

    /// <summary>The full set: each family's state knob swept.</summary>
    public static IReadOnlyList<AtlasMixer> Full { get; } = new[]
    {
        Softmax, SlidingWindow(16), SlidingWindow(32), SlidingWindow(64), SlidingWindow(128), Based(8), Based(16), Based(24),
        Lightning, Flowformer, SigmoidLinear, Aaren, Routing(16, 32), S2(16, 4, 4), Landmark(32, 2),
        Rcmha, AffineScaled, Bam(2), Moh, Gqa(1), Gqa(2), Deconstructed(MixerKind.NoMix), Deconstructed(MixerKind.FixedMix),
        Deconstructed(MixerKind.StaticMix), Deconstructed(MixerKind.ReluNorm), Deconstructed(MixerKind.DistanceKernel),
    };
}
