using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// A small pre-LN encoder–decoder (Transformer, Vaswani et al. 2017, with pre-LN blocks) with hooked self- and
/// cross-attention: source (token ids [B, Tenc] or frames [B, Tenc, F]) → <see cref="EncoderStack"/> → memory; target ids
/// [B, Tdec] (teacher forcing: BOS y₁ … y_{n−1}) → decoder blocks (<see cref="EncoderDecoderBlock"/>) → LN → logits [B, Tdec, V].
/// Decoding (<see cref="Greedy"/>, <see cref="Beam"/>) keeps a KV cache per decoder layer and projects the cross K/V once.
/// Hook names: decoder blocks are "blocks.{L}" (so <see cref="ActName"/> and <see cref="ActivationCache"/>'s layer look-ups
/// reach them; cross-attention is ("pattern", L, "cross_attn") = blocks.{L}.cross_attn.hook_pattern [B, H, Tdec, Tenc]);
/// the encoder's are under "encoder." (encoder.blocks.{L}.attn.hook_pattern). <see cref="WithSource"/> gives an
/// <see cref="IHookedModel"/> for RunWithCache and the other Interp tools.
/// </summary>
/// <remarks>
/// memory = Enc(x);  h⁰ = E_y[y] + PE_sin(t);  hˡ⁺¹ = blockˡ(hˡ, memory);  logits = W_U LN(h^L) + b_U.
/// Embeddings start at N(0, 0.02²); linear layers keep TorchSharp's default init.
/// </remarks>
public sealed class EncoderDecoder : nn.Module
{
    readonly EncoderStack encoder;
    readonly Embedding embed;
    readonly HookPoint hook_embed = new(), hook_pos_embed = new();
    readonly ModuleList<EncoderDecoderBlock> blocks = new();
    readonly HookedLayerNorm ln_final;
    readonly Linear unembed;
    readonly Dictionary<string, HookPoint> points = new();

    public EncoderDecoder(EncoderDecoderConfig config) : base(nameof(EncoderDecoder))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config.Validate();
        encoder = new EncoderStack(config);
        embed = nn.Embedding(config.TargetVocab, config.DModel);
        using (torch.no_grad()) nn.init.normal_(embed.weight!, 0, 0.02);
        for (int l = 0; l < config.DecoderLayers; l++) blocks.Add(new EncoderDecoderBlock(config));
        ln_final = new HookedLayerNorm(config.DModel);
        unembed = nn.Linear(config.DModel, config.TargetVocab);
        RegisterComponents();
        foreach (var (name, module) in named_modules())
            if (module is HookPoint point) { point.Name = name; points[name] = point; }
    }

    public EncoderDecoderConfig Config { get; }
    public EncoderStack Encoder => encoder;
    public IReadOnlyList<EncoderDecoderBlock> Blocks => blocks.ToList();
    /// <summary>Every hook point by full name (encoder's first, then the decoder's).</summary>
    public IReadOnlyDictionary<string, HookPoint> HookPoints => points;
    public long ParameterCount => parameters().Sum(p => p.numel());
    Device Device => unembed.weight!.device;
    ScalarType Dtype => unembed.weight!.dtype;

    // ---------------------------------------------------------------- teacher-forced forward

    /// <summary>
    /// Encodes the source once: memory [B, Tenc, d] and each decoder layer's cross k, v. <paramref name="sourceMask"/> [B, Tenc]
    /// (1/true = real, 0 = padding) or null (all real). Keeps autograd when grad is on; dispose the result.
    /// </summary>
    public EncoderMemory Encode(Tensor source, Tensor? sourceMask = null)
    {
        CheckSource(source, sourceMask);
        using var scope = NewDisposeScope();
        long b = source.size(0), t = source.size(1);
        var keep = (sourceMask is null ? torch.ones(b, t, ScalarType.Bool, Device) : sourceMask.to(Device).ne(0)).view(b, 1, 1, t);
        var input = Config.TokenSource ? source.to(Device) : source;
        var hidden = encoder.call(input, keep);
        var layers = blocks.Select(block => block.CrossAttention.ProjectMemory(hidden)).ToList();
        foreach (var (k, v) in layers) { k.DetachFromDisposeScope(); v.DetachFromDisposeScope(); }
        return new EncoderMemory(hidden.DetachFromDisposeScope(), keep.DetachFromDisposeScope(), layers);
    }

    /// <summary>Teacher-forced logits [B, Tdec, V] of the decoder input <paramref name="targetIn"/> [B, Tdec] (BOS y₁ … y_{n−1}).</summary>
    public Tensor Logits(Tensor source, Tensor? sourceMask, Tensor targetIn)
    {
        using var memory = Encode(source, sourceMask);
        return Logits(memory, targetIn);
    }

    /// <summary>Teacher-forced logits [B, Tdec, V] over an already encoded source.</summary>
    public Tensor Logits(EncoderMemory memory, Tensor targetIn)
    {
        using var scope = NewDisposeScope();
        return unembed.call(DecoderStates(memory, targetIn)).MoveToOuterDisposeScope();
    }

    /// <summary>The decoder's final normalised states LN(h^L) [B, Tdec, d] (for a head other than the unembedding, e.g. a pointer).</summary>
    public Tensor DecoderStates(EncoderMemory memory, Tensor targetIn)
    {
        ArgumentNullException.ThrowIfNull(memory);
        CheckTarget(targetIn, memory.Batch, sequence: true, nameof(targetIn));
        using var scope = NewDisposeScope();
        var h = Embedded(targetIn.to(Device), start: 0);
        for (int l = 0; l < blocks.Count; l++) h = blocks[l].Forward(h, memory.Layers[l].K, memory.Layers[l].V, memory.Keep);
        return ln_final.call(h).MoveToOuterDisposeScope();
    }

    Tensor Embedded(Tensor ids, long start)
    {
        using var scope = NewDisposeScope();
        long b = ids.size(0), t = ids.size(1);
        var word = hook_embed.call(embed.call(ids));                                                   // E_y[y]
        var pos = hook_pos_embed.call(Positions.Sinusoidal(start, t, Config.DModel, word.dtype, word.device).unsqueeze(0).expand(b, t, Config.DModel));
        return (word + pos).MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- cached decoding

    /// <summary>Empty self-attention KV caches for <paramref name="batch"/> target sequences.</summary>
    public EncoderDecoderState NewState(long batch)
    {
        Guard.Positive(batch, nameof(batch));
        return new EncoderDecoderState(blocks.Select(b => b.SelfAttention.NewState(batch, Dtype, Device)).ToList());
    }

    /// <summary>
    /// One decoder step: the tokens <paramref name="tokens"/> [B] at position state.Position → logits [B, V]; appends to the
    /// caches. Equals the teacher-forced logits at that position.
    /// </summary>
    public Tensor Step(EncoderMemory memory, EncoderDecoderState state, Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(state);
        CheckTarget(tokens, memory.Batch, sequence: false, nameof(tokens));
        if (state.Layers.Count != blocks.Count)
            throw new ArgumentException($"state has {state.Layers.Count} layers, the decoder {blocks.Count}.", nameof(state));
        using var scope = NewDisposeScope();
        var h = Embedded(tokens.to(Device).unsqueeze(1), start: state.Position).squeeze(1);         // [B, d]
        for (int l = 0; l < blocks.Count; l++) h = blocks[l].Step(h, state.Layers[l], memory.Layers[l].K, memory.Layers[l].V, memory.Keep);
        return unembed.call(ln_final.call(h)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Greedy decoding with the KV cache: from BOS, y_t = argmax_v logits_t until each sequence has emitted EOS or
    /// <paramref name="maxLength"/> tokens. No autograd.
    /// </summary>
    public GreedyDecoding Greedy(Tensor source, Tensor? sourceMask, int bos, int eos, int maxLength)
    {
        CheckDecodeArguments(bos, eos, maxLength);
        using var noGrad = torch.no_grad();
        using var memory = Encode(source, sourceMask);
        int b = (int)memory.Batch;
        using var state = NewState(b);
        var tokens = Enumerable.Range(0, b).Select(_ => new List<long>()).ToArray();
        var logProbs = new double[b];
        var finished = new bool[b];
        using var scope = NewDisposeScope();
        var steps = new List<Tensor>();
        var current = torch.full(b, bos, ScalarType.Int64, Device);
        for (int step = 0; step < maxLength && !finished.All(f => f); step++)
        {
            var logits = Step(memory, state, current);                                                 // [B, V]
            steps.Add(logits);
            var next = logits.argmax(-1);                                                              // y_t = argmax_v
            var logP = nn.functional.log_softmax(logits.to(ScalarType.Float64), -1).gather(1, next.unsqueeze(1)).squeeze(1);
            var ids = next.cpu().data<long>().ToArray();
            var lp = logP.cpu().data<double>().ToArray();
            for (int i = 0; i < b; i++)
            {
                if (finished[i]) continue;
                tokens[i].Add(ids[i]);
                logProbs[i] += lp[i];
                finished[i] = ids[i] == eos;
            }
            current = next;
        }
        var all = torch.stack(steps, 1).DetachFromDisposeScope();                                       // [B, L, V]
        return new GreedyDecoding(tokens.Select(t => t.ToArray()).ToArray(), logProbs, all);
    }

    /// <summary>
    /// Beam search of width W with the KV cache (rows reordered as beams move). Each step expands every live beam by every
    /// token, keeps the best 2W candidates; a candidate ending in EOS among the best W becomes a finished hypothesis scored
    /// log p / length^α (α = <paramref name="lengthPenalty"/>, length counting EOS), the best W others live on. A source
    /// is done once it holds W finished hypotheses and its best live beam, scored at its current length, cannot beat the
    /// worst of them (exact for α = 0, where scores only fall). At <paramref name="maxLength"/> live beams join as
    /// hypotheses. Returns each source's best W hypotheses. Width 1 with α = 0 gives greedy decoding's output. No autograd.
    /// </summary>
    public BeamDecoding Beam(Tensor source, Tensor? sourceMask, int bos, int eos, int maxLength, int width, double lengthPenalty = 0)
    {
        CheckDecodeArguments(bos, eos, maxLength);
        Guard.Positive(width, nameof(width));
        if (!double.IsFinite(lengthPenalty) || lengthPenalty < 0)
            throw new ArgumentException($"lengthPenalty must be finite and ≥ 0, got {lengthPenalty}.", nameof(lengthPenalty));
        using var noGrad = torch.no_grad();
        using var encoded = Encode(source, sourceMask);
        using var memory = encoded.RepeatEach(width);                                                  // row b·W + j = beam j of b
        int b = (int)encoded.Batch, w = width, rows = b * w;
        long vocab = Config.TargetVocab;
        double Normalised(double logP, int length) => lengthPenalty == 0 ? logP : logP / Math.Pow(length, lengthPenalty);
        var scores = new double[rows];
        for (int r = 0; r < rows; r++) scores[r] = r % w == 0 ? 0 : double.NegativeInfinity;        // one live beam at the start
        var beams = Enumerable.Range(0, rows).Select(_ => new List<long>()).ToArray();
        var last = Enumerable.Repeat((long)bos, rows).ToArray();
        var hypotheses = Enumerable.Range(0, b).Select(_ => new List<(double Score, double LogP, long[] Tokens)>()).ToArray();
        var done = new bool[b];
        using var state = NewState(rows);
        for (int step = 0; step < maxLength && !done.All(d => d); step++)
        {
            using var scope = NewDisposeScope();
            var logits = Step(memory, state, torch.tensor(last, device: Device));
            var logP = nn.functional.log_softmax(logits.to(ScalarType.Float64), -1);                    // [B·W, V]
            var candidates = (logP + torch.tensor(scores, device: Device).unsqueeze(1)).view(b, w * vocab);
            int k = (int)Math.Min(2L * w, w * vocab);
            var (topValues, topIndices) = candidates.topk(k, dim: 1);
            var values = topValues.cpu().data<double>().ToArray();
            var indices = topIndices.cpu().data<long>().ToArray();
            var nextScores = Enumerable.Repeat(double.NegativeInfinity, rows).ToArray();
            var nextBeams = new List<long>[rows];
            var nextLast = Enumerable.Repeat((long)eos, rows).ToArray();
            var from = new long[rows];
            for (int i = 0; i < b; i++)
            {
                int alive = 0;
                for (int r = 0; r < k && alive < w && !done[i]; r++)
                {
                    double s = values[i * k + r];
                    if (double.IsNegativeInfinity(s)) break;
                    long index = indices[i * k + r], token = index % vocab;
                    int origin = i * w + (int)(index / vocab);
                    if (token == eos)
                    {
                        if (r < w) hypotheses[i].Add((Normalised(s, beams[origin].Count + 1), s, beams[origin].Append(token).ToArray()));
                        continue;
                    }
                    int slot = i * w + alive++;
                    (nextScores[slot], nextBeams[slot], nextLast[slot], from[slot]) = (s, beams[origin].Append(token).ToList(), token, origin);
                }
                for (int slot = i * w + alive; slot < (i + 1) * w; slot++) (nextBeams[slot], from[slot]) = (new List<long>(), i * w);
                var best = hypotheses[i].OrderByDescending(h => h.Score).Take(w).ToList();
                hypotheses[i] = best;
                double bestAlive = alive == 0 ? double.NegativeInfinity : Normalised(nextScores[i * w], step + 1);
                if (alive == 0 || (best.Count >= w && bestAlive <= best[^1].Score)) done[i] = true;       // nothing live, or nothing better to find
            }
            state.Reorder(torch.tensor(from, device: Device));
            (scores, beams, last) = (nextScores, nextBeams, nextLast);
        }
        for (int i = 0; i < b; i++)
            if (!done[i])
                for (int j = 0; j < w; j++)
                    if (!double.IsNegativeInfinity(scores[i * w + j]))
                        hypotheses[i].Add((Normalised(scores[i * w + j], beams[i * w + j].Count), scores[i * w + j], beams[i * w + j].ToArray()));
        return new BeamDecoding(hypotheses.Select(h => (IReadOnlyList<BeamHypothesis>)h.OrderByDescending(x => x.Score).Take(w)
            .Select(x => new BeamHypothesis(x.Tokens, x.LogP, x.Score)).ToList()).ToList());
    }

    // ---------------------------------------------------------------- hooks

    /// <summary>
    /// The model with its source fixed, as an <see cref="IHookedModel"/> whose input is the decoder input [B, Tdec] and whose
    /// output is the teacher-forced logits: <c>model.WithSource(x, mask).RunWithCache(yIn)</c>. Layers are the decoder's.
    /// The view keeps references to <paramref name="source"/> and <paramref name="sourceMask"/>: keep them alive while it is used.
    /// </summary>
    public IHookedModel WithSource(Tensor source, Tensor? sourceMask = null)
    {
        CheckSource(source, sourceMask);
        return new SourceBound(this, source, sourceMask);
    }

    sealed class SourceBound(EncoderDecoder model, Tensor source, Tensor? sourceMask) : IHookedModel
    {
        public int LayerCount => model.Config.DecoderLayers;
        public int HeadCount => model.Config.Heads;
        public IReadOnlyDictionary<string, HookPoint> HookPoints => model.points;
        public Tensor Run(Tensor input) => model.Logits(source, sourceMask, input);
    }

    // ---------------------------------------------------------------- checks

    void CheckSource(Tensor source, Tensor? sourceMask)
    {
        if (Config.TokenSource)
        {
            Guard.Rank(source, 2, nameof(source), "B, Tenc token ids");
            if (source.dtype != ScalarType.Int64) throw new ArgumentException($"source must hold int64 token ids, got {source.dtype}.", nameof(source));
            Guard.TokenIds(source, Config.SourceVocab, nameof(source));
        }
        else
        {
            Guard.Rank(source, 3, nameof(source), "B, Tenc, features");
            Guard.Dim(source, 2, Config.SourceFeatures, nameof(source), "features");
            Guard.FloatingPoint(source, nameof(source));
            if (source.dtype != Dtype) throw new ArgumentException($"source has dtype {source.dtype}, the model {Dtype}.", nameof(source));
        }
        if (source.size(0) == 0 || source.size(1) == 0)
            throw new ArgumentException($"source must hold at least one position, got {Guard.ShapeText(source)}.", nameof(source));
        if (sourceMask is null) return;
        Guard.Rank(sourceMask, 2, nameof(sourceMask), "B, Tenc");
        if (sourceMask.size(0) != source.size(0) || sourceMask.size(1) != source.size(1))
            throw new ArgumentException($"sourceMask {Guard.ShapeText(sourceMask)} must be [B, Tenc] of source {Guard.ShapeText(source)}.", nameof(sourceMask));
    }

    void CheckTarget(Tensor ids, long batch, bool sequence, string name)
    {
        Guard.Rank(ids, sequence ? 2 : 1, name, sequence ? "B, Tdec token ids" : "B token ids");
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must hold int64 token ids, got {ids.dtype}.", name);
        if (ids.size(0) != batch) throw new ArgumentException($"{name} has batch {ids.size(0)}, the memory {batch}.", name);
        if (sequence && ids.size(1) == 0) throw new ArgumentException($"{name} must hold at least one position.", name);
        Guard.TokenIds(ids, Config.TargetVocab, name);
    }

    void CheckDecodeArguments(int bos, int eos, int maxLength)
    {
        if (bos < 0 || bos >= Config.TargetVocab) throw new ArgumentException($"bos must be in [0, {Config.TargetVocab}), got {bos}.", nameof(bos));
        if (eos < 0 || eos >= Config.TargetVocab) throw new ArgumentException($"eos must be in [0, {Config.TargetVocab}), got {eos}.", nameof(eos));
        Guard.Positive(maxLength, nameof(maxLength));
    }
}
