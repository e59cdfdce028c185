using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>One Δ-layer's selection at one decode step (sequence 0): its page scores and the pages it picked.</summary>
public sealed record DeltaSelection(long Step, int Layer, double[] Scores, long[] Pages);

/// <summary>
/// Analysis of one decode step (sequence 0), recorded when <see cref="DeltaDecoder.Capture"/> is on: every layer's page
/// scores from full attention of its own query (computed for sparse layers too, off the decode path), and for each
/// sparse layer the share of its full attention mass that falls on the pages it attended (mean over heads).
/// </summary>
public sealed record DeltaCapture(long Step, double[][] LayerPageScores, IReadOnlyDictionary<int, double> SparseRecall);

/// <summary>
/// DELTA's decode path for a softmax <see cref="TinyGpt"/>: a full, never-evicted KV cache per layer; full and Δ-layers
/// attend to all of it, each Δ-layer scores pages and selects K of them, and the sparse layers after it gather only those
/// pages' keys and values. Prefill attends fully everywhere. Records <see cref="DecodeStepStats"/> (attended tokens and
/// KV bytes read per layer and step) for decode steps.
/// </summary>
/// <remarks>
/// Per decode step t and layer ℓ (pre-norm block, x = LN₁(h)): q, k, v = split(W_qkv x); RoPE at the true position t
/// (keys are cached rotated: DELTA never re-indexes);
///   Full / Δ: o = Σ_{j≤t} softmax_j(q·k_j/√D) v_j;   Δ additionally: S ← select(s), s_p = Σ_{j∈p} max_h a_{h,j};
///   Sparse:  o = Σ_{j∈pages(S)} softmax_j(q·k_j/√D) v_j   (gather; <see cref="Masked"/> = the naive twin that masks the
///   full score row to −∞ outside pages(S) instead).
/// IKvPolicy cannot express this (it evicts, and one policy sees one layer); hence a decode path of its own.
/// Hooks inside the blocks do not fire on this path.
/// </remarks>
public sealed class DeltaDecoder : IDisposable
{
    readonly TinyGpt model;
    readonly KvCache[] caches;
    readonly List<DecodeStepStats> trace = new();
    readonly List<DeltaSelection> selections = new();
    readonly List<DeltaCapture> captures = new();
    bool disposed;

    /// <param name="model">a token TinyGpt with softmax <see cref="CausalSelfAttention"/> mixers, no ALiBi, no register.</param>
    /// <param name="policy">layer roles and selection; must fit the model's layers.</param>
    /// <param name="batch">sequences decoded together (each gets its own page set).</param>
    /// <param name="masked">use the naive twin for sparse layers (mask the full row instead of gathering pages).</param>
    /// <param name="perLayer">baseline instead of DELTA: every sparse layer selects its own top-K pages from its own full
    /// attention (an oracle per-layer selection, the upper bound that Quest-like page bounds approximate).</param>
    public DeltaDecoder(TinyGpt model, DeltaPolicy policy, long batch = 1, bool masked = false, bool perLayer = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(policy);
        Guard.Positive(batch, nameof(batch));
        var c = model.Config;
        if (!c.TokenInputs) throw new ArgumentException("model must read token ids (VocabSize > 0).", nameof(model));
        if (c.Attention != AttentionKind.Softmax) throw new ArgumentException($"model must use softmax attention, got {c.Attention}.", nameof(model));
        if (c.Positions == PositionKind.Alibi)
            throw new ArgumentException("ALiBi models are not supported (use RoPE, learned, sinusoidal or none).", nameof(model));
        if (model.Blocks.Any(b => b.Mixer is not CausalSelfAttention))
            throw new ArgumentException("every block's mixer must be CausalSelfAttention.", nameof(model));
        policy.CheckLayers(c.Layers, nameof(policy));
        (this.model, Policy, Batch, Masked, PerLayer) = (model, policy, batch, masked, perLayer);
        var w = model.FinalNorm.Weight;
        caches = Enumerable.Range(0, c.Layers).Select(_ => new KvCache(batch, c.Heads, c.HeadDim, c.HeadDim, w.dtype, w.device)).ToArray();
    }

    public DeltaPolicy Policy { get; }
    public long Batch { get; }
    /// <summary>True when sparse layers run the masked naive twin.</summary>
    public bool Masked { get; }
    /// <summary>True for the per-layer oracle baseline (each sparse layer selects from its own attention).</summary>
    public bool PerLayer { get; }
    /// <summary>Record <see cref="DeltaCapture"/>s at decode steps (extra full-attention work for analysis).</summary>
    public bool Capture { get; set; }
    /// <summary>Tokens consumed.</summary>
    public long Position { get; private set; }
    /// <summary>Per layer and decode step: attended tokens per head and KV bytes held / read.</summary>
    public IReadOnlyList<DecodeStepStats> Trace => trace;
    /// <summary>Every Δ-layer's selection at every decode step.</summary>
    public IReadOnlyList<DeltaSelection> Selections => selections;
    /// <summary>Analysis records (when <see cref="Capture"/>).</summary>
    public IReadOnlyList<DeltaCapture> Captures => captures;
    /// <summary>Bytes of the full caches (never evicted).</summary>
    public long KvBytes => caches.Sum(k => k.Bytes);

    /// <summary>Feeds prompt ids [B, T] with full attention in every layer; returns the last position's logits [B, V].</summary>
    public Tensor Prefill(Tensor ids)
    {
        CheckIds(ids, 2, nameof(ids));
        if (ids.shape[1] == 0) throw new ArgumentException($"ids must hold at least one token, got {Guard.ShapeText(ids)}.", nameof(ids));
        using var scope = NewDisposeScope();
        Tensor? logits = null;
        for (long t = 0; t < ids.shape[1]; t++)
        {
            logits?.Dispose();
            using var step = NewDisposeScope();
            logits = Run(ids.select(1, t), sparse: false).MoveToOuterDisposeScope();
        }
        return logits!.MoveToOuterDisposeScope();
    }

    /// <summary>One decode step with DELTA's layer roles: ids [B] → logits [B, V].</summary>
    public Tensor Step(Tensor ids)
    {
        CheckIds(ids, 1, nameof(ids));
        using var scope = NewDisposeScope();
        return Run(ids, sparse: true).MoveToOuterDisposeScope();
    }

    Tensor Run(Tensor ids, bool sparse)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var noGrad = torch.no_grad();
        long t = Position;
        var h = model.Embedded(ids.unsqueeze(1), start: t).squeeze(1);                         // [B, d]
        Tensor? pages = null;
        var scores = Capture && sparse ? new double[model.Blocks.Count][] : null;
        var recall = new Dictionary<int, double>();
        for (int l = 0; l < model.Blocks.Count; l++)
        {
            var block = model.Blocks[l];
            var role = sparse ? Policy.Role(l) : LayerRole.Full;
            var a = Attention(l, block, block.Norm1.call(h), t, role, sparse, ref pages, scores, recall);
            h = Residual(block, h, a, model.Config.ParallelBlock);
        }
        Position++;
        if (scores is not null) captures.Add(new DeltaCapture(t, scores, recall));
        var normalized = model.FinalNorm.call(h);
        return model.Unembed is { } unembed ? unembed.call(normalized)
            : nn.functional.linear(normalized, ((TorchSharp.Modules.Embedding)model.Embed).weight!);   // tied: h W_Eᵀ
    }

    /// <summary>The block's residual stream around attention output a: sequential, parallel or attention-only (as <see cref="TinyGptBlock"/>).</summary>
    static Tensor Residual(TinyGptBlock block, Tensor x, Tensor a, bool parallel)
    {
        if (block.Mlp is null || block.Norm2 is null) return x + a;                           // attention-only
        if (parallel) return x + a + block.Mlp.call(block.Norm2.call(x));                      // x + a + MLP(LN₂(x))
        var hMid = x + a;
        return hMid + block.Mlp.call(block.Norm2.call(hMid));                                   // h + MLP(LN₂(h))
    }

    Tensor Attention(int layer, TinyGptBlock block, Tensor x, long t, LayerRole role, bool decode, ref Tensor? pages, double[][]? scores,
        Dictionary<int, double> recall)
    {
        var attn = (CausalSelfAttention)block.Mixer;
        long b = x.shape[0], d = x.shape[1], hd = d / attn.Heads;
        var (q, k, v) = attn.Project(x.unsqueeze(1));                                          // q, k, v [B, 1, H, Dh] (hooks fire)
        if (model.Config.Positions == PositionKind.Rope)
        {
            var pos = torch.tensor(new[] { t }, device: x.device);
            (q, k) = (Positions.Rope(q, pos, model.Config.RopeBase), Positions.Rope(k, pos, model.Config.RopeBase));   // R_t q, R_t k
        }
        var cache = caches[layer];
        cache.Append(k, v);                                                                     // never evicted
        long n = cache.Length;
        double scale = 1.0 / Math.Sqrt(hd);
        AttentionResult? full = null;
        if (role != LayerRole.Sparse || scores is not null || Masked || PerLayer)
            full = ReferenceAttention.Softmax(q, cache.Keys, cache.Values, scale: scale);        // a_{h,j}, j ≤ t
        if (scores is not null) scores[layer] = Row(PageScores.MaxOverHeads(full!.Probabilities, Policy.PageSize));
        Tensor z;
        long attended = n;
        if (role == LayerRole.Sparse)
        {
            var own = PerLayer ? Policy.SelectPages(PageScores.MaxOverHeads(full!.Probabilities, Policy.PageSize)) : pages!;   // S_ℓ (oracle) or S_Δ
            var idx = Policy.TokenIndices(own, n);                                              // [B, n′] tokens of S
            attended = idx.shape[1];
            if (Masked)
            {
                var keep = torch.zeros(new[] { b, n }, dtype: ScalarType.Bool, device: x.device).scatter_(1, idx, torch.ones_like(idx, dtype: ScalarType.Bool));
                z = ReferenceAttention.Softmax(q, cache.Keys, cache.Values, scale: scale, mask: keep.view(b, 1, 1, n)).Output;
            }
            else
            {
                var gi = idx.view(b, attended, 1, 1).expand(b, attended, attn.Heads, hd);
                z = ReferenceAttention.Softmax(q, cache.Keys.gather(1, gi), cache.Values.gather(1, gi), scale: scale).Output;   // gather pages(S)
            }
            if (scores is not null)
            {
                var mass = full!.Probabilities.squeeze(2).gather(2, idx.unsqueeze(1).expand(b, attn.Heads, attended)).sum(2);   // Σ_{j∈S} a_{h,j}
                recall[layer] = mass.select(0, 0).mean().item<float>();
            }
        }
        else
        {
            z = full!.Output;
            if (role == LayerRole.Delta)
            {
                var s = PageScores.MaxOverHeads(full.Probabilities, Policy.PageSize);           // s_p = Σ_{j∈p} max_h a_{h,j}
                pages = Policy.SelectPages(s);                                                  // top-K, recency forced, sorted
                selections.Add(new DeltaSelection(t, layer, Row(s), pages.select(0, 0).cpu().data<long>().ToArray()));
            }
        }
        if (decode)                                                                             // bytes read = attended · B·H·(D + Dv)·size
            trace.Add(new DecodeStepStats(layer, t, Enumerable.Repeat(attended, attn.Heads).ToArray(), cache.Bytes, cache.AllocatedBytes,
                attended * cache.Bytes / n));
        return attn.Proj.call(z.reshape(b, d));                                                 // W_O concat_h(z_h)
    }

    static double[] Row(Tensor s) => s.select(0, 0).to(ScalarType.Float64).cpu().data<double>().ToArray();

    void CheckIds(Tensor ids, int rank, string name)
    {
        Guard.Rank(ids, rank, name, rank == 2 ? "B, T token ids" : "B token ids");
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must hold int64 token ids, got {ids.dtype}.", name);
        if (ids.shape[0] != Batch) throw new ArgumentException($"{name} {Guard.ShapeText(ids)} must hold {Batch} sequences.", name);
        Guard.TokenIds(ids, model.Config.VocabSize, name);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var c in caches) c.Dispose();
    }
}
