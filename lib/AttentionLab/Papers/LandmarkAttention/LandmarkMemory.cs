using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>How the blocks to retrieve are chosen from the landmark softmax.</summary>
public enum LandmarkSelect
{
    /// <summary>Each query token and head keeps its own top-k blocks (the paper's default).</summary>
    PerTokenAndHead,
    /// <summary>All heads of a token share the top-k of max_h softmax (fewer distinct blocks to fetch).</summary>
    MaxOverHeads,
}

/// <summary>
/// Where position remapping puts the k retrieved blocks (S &gt; k stored blocks; the chunk sits at slot k + 1).
/// </summary>
public enum LandmarkSlots
{
    /// <summary>
    /// The official code (lm_benchmark <c>mem_cache.py</c> and <c>llama_mem.py</c>): the r-th kept block (original order,
    /// r = 0 … k−1) sits at slot r + 1 when it is one of the k most recent stored blocks, at slot r otherwise.
    /// </summary>
    Official,
    /// <summary>The spec's reading: the r-th kept block at slot r + 1, contiguous right before the chunk.</summary>
    Contiguous,
}

/// <summary>
/// Inference with memory (the paper's §3.2; official <c>mem_cache.py</c>): the inserted sequence runs through a
/// <see cref="TinyGpt"/> whose mixers are <see cref="LandmarkAttentionLayer"/>s in chunks of ChunkBlocks·(ℓ_b + 1)
/// positions; every completed block (its ℓ_b tokens and its landmark, keys un-rotated and values) goes to the layer's
/// block store; each query token and head retrieves the top-k stored blocks by landmark score and attends with the
/// grouped softmax over [retrieved blocks ∪ current chunk].
/// </summary>
/// <remarks>
/// Retrieval:  r_{i,c} = softmax_c(q_i·k_{L_c}/√D) over the S stored blocks;  top-k per (i, h) (or of max_h r), kept in
/// original order.  Attention: G(i) = {L_c of the k retrieved} ∪ {L_c of earlier blocks in the chunk} ∪ {own block
/// tokens ≤ i}; retrieved blocks read their ordinary tokens with P_{i,L_c}·p^c_ij exactly as in training.
/// Position remapping (RemapPositions = true) keeps every relative distance inside the training range. Slots are
/// blocks of ℓ_b + 1 positions:
///   • S ≤ k: every block keeps its own slot c and the chunk sits at slot S (identical to the training form);
///   • S &gt; k: the chunk sits at slot k + 1; for scoring, the k most recent landmarks take slots 1 … k and all older
///     landmarks share slot 0; the r-th retrieved block (original order) takes slot r + [it is one of the k most
///     recent] (<see cref="LandmarkSlots.Official"/>) or r + 1 (<see cref="LandmarkSlots.Contiguous"/>).
/// RemapPositions = false keeps the true positions (what breaks length extrapolation).
/// TopK = 0 attends to the current chunk only (a chunk window). <see cref="LandmarkMemoryNaive"/> is the loop twin.
/// </remarks>
/// <param name="TopK">k, blocks retrieved per token and head (paper: 2 or 4).</param>
/// <param name="Mode">selection rule.</param>
/// <param name="RemapPositions">position remapping on/off.</param>
/// <param name="ChunkBlocks">blocks per processed chunk (chunk = ChunkBlocks·(ℓ_b+1) positions).</param>
/// <param name="Slots">where remapping puts the retrieved blocks (official code by default).</param>
public sealed record LandmarkMemory(int TopK, LandmarkSelect Mode = LandmarkSelect.PerTokenAndHead, bool RemapPositions = true, int ChunkBlocks = 1,
    LandmarkSlots Slots = LandmarkSlots.Official)
{
    /// <summary>
    /// Logits [B, T, V] for ids [B, T] that already hold landmarks (<see cref="LandmarkTokens.Insert"/>), with the memory
    /// costs. Runs under no_grad; the model's mixers must all be <see cref="LandmarkAttentionLayer"/>s with one ℓ_b, and the
    /// model must not add absolute position embeddings (learned/sinusoidal cannot be remapped).
    /// </summary>
    public LandmarkRun Run(TinyGpt model, Tensor ids)
    {
        ArgumentNullException.ThrowIfNull(model);
        Validate();
        Guard.Rank(ids, 2, nameof(ids), "B, T token ids (landmarks inserted)");
        if (model.Config.Positions is Attention.PositionKind.Learned or Attention.PositionKind.Sinusoidal)
            throw new ArgumentException($"memory inference needs a model without absolute position embeddings, got {model.Config.Positions}.", nameof(model));
        var layers = model.Blocks.Select((blk, i) => blk.Mixer as LandmarkAttentionLayer
            ?? throw new ArgumentException($"block {i} has mixer {blk.Mixer.GetType().Name}, not LandmarkAttentionLayer.", nameof(model))).ToList();
        int blockSize = layers[0].BlockSize;
        if (layers.Any(l => l.BlockSize != blockSize)) throw new ArgumentException("all layers must share one block size.", nameof(model));
        long t = ids.shape[1], chunk = ChunkBlocks * (blockSize + 1);
        var sessions = layers.Select(_ => new LandmarkLayerSession(this, ids.shape[0])).ToList();
        bool wasTraining = model.training;
        try
        {
            model.eval();
            for (int i = 0; i < layers.Count; i++) layers[i].Session = sessions[i];
            using var noGrad = torch.no_grad();
            using var scope = NewDisposeScope();
            var logits = new List<Tensor>();
            for (long start = 0; start < t; start += chunk)
                logits.Add(model.call(ids.narrow(1, start, Math.Min(chunk, t - start))));
            var all = torch.cat(logits, 1);
            var last = sessions[0];
            return new LandmarkRun(all.MoveToOuterDisposeScope(), sessions.Select(s => s.TakeLastRetrieval()).ToList(),
                sessions.Select(s => s.TakeLastSelected()).ToList(),
                StoredBlocks: last.Stored, RetrievedBlocks: Math.Min(TopK, last.StoredBeforeLastChunk), LastChunkLength: last.LastChunkLength,
                BlockSize: blockSize, Heads: layers[0].Heads, HeadDim: model.Config.DModel / layers[0].Heads, Layers: layers.Count);
        }
        finally
        {
            foreach (var l in layers) l.Session = null;
            foreach (var s in sessions) s.Dispose();
            model.train(wasTraining);
        }
    }

    /// <summary>
    /// One layer's memory-form attention over a whole sequence, chunk by chunk (the path <see cref="Run"/> takes inside
    /// every layer): q, k, v [B, T, H, D] projected but not rotated, of a sequence that already holds a landmark after
    /// every ℓ_b = <paramref name="blockSize"/> tokens from position 0; RoPE with <paramref name="ropeBase"/> (null: no
    /// positions). Returns o [B, T, H, D].
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, int blockSize, double? ropeBase = 10000)
    {
        Validate();
        LandmarkAttention.CheckQkv(q, k, v);
        Guard.Positive(blockSize, nameof(blockSize));
        if (ropeBase is { } rb && (!(rb > 1) || q.shape[3] % 2 != 0))
            throw new ArgumentException($"RoPE needs base > 1 and an even head dim, got base {rb}, q {Guard.ShapeText(q)}.", nameof(ropeBase));
        using var scope = NewDisposeScope();
        using var session = new LandmarkLayerSession(this, q.shape[0]);
        Tensor Rotate(Tensor x, Tensor positions) => ropeBase is { } b ? Positions.Rope(x, positions, b) : x;
        long t = q.shape[1], chunk = ChunkBlocks * (blockSize + 1);
        var outputs = new List<Tensor>();
        for (long start = 0; start < t; start += chunk)
        {
            long c = Math.Min(chunk, t - start);
            outputs.Add(session.Attend(blockSize, Rotate, q.narrow(1, start, c), k.narrow(1, start, c), v.narrow(1, start, c)));
        }
        return torch.cat(outputs, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Throws ArgumentException naming the field that is out of range.</summary>
    internal void Validate()
    {
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be ≥ 0.");
        Guard.Positive(ChunkBlocks, nameof(ChunkBlocks));
        if (!Enum.IsDefined(Mode)) throw new ArgumentException($"Mode is not a LandmarkSelect: {(int)Mode}.", nameof(Mode));
        if (!Enum.IsDefined(Slots)) throw new ArgumentException($"Slots is not a LandmarkSlots: {(int)Slots}.", nameof(Slots));
    }

    /// <summary>
    /// The k blocks kept per (b, h, i) from retrieval probabilities r [B, H, C, S], in ascending (original) order:
    /// top-k of r (PerTokenAndHead) or of max_h r, shared by all heads (MaxOverHeads).
    /// </summary>
    public static Tensor SelectBlocks(Tensor retrieval, int k, LandmarkSelect mode = LandmarkSelect.PerTokenAndHead)
    {
        Guard.Rank(retrieval, 4, nameof(retrieval), "B, H, C, S");
        if (k < 1 || k > retrieval.shape[3]) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be in [1, S = {retrieval.shape[3]}].");
        using var scope = NewDisposeScope();
        var score = mode == LandmarkSelect.MaxOverHeads ? retrieval.amax(new long[] { 1 }, keepdim: true).expand_as(retrieval) : retrieval;
        return score.topk(k, -1).indexes.sort(-1).Values.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// What a memory run produced: logits [B, T, V], per layer the landmark retrieval probabilities of the last chunk
/// [B, H, C, S] and the blocks it kept [B, H, C, k] (null when nothing was retrieved), and the costs of the last query.
/// </summary>
public sealed record LandmarkRun(Tensor Logits, IReadOnlyList<Tensor?> LastRetrieval, IReadOnlyList<Tensor?> LastSelected, long StoredBlocks,
    long RetrievedBlocks, long LastChunkLength, int BlockSize, int Heads, int HeadDim, int Layers) : IDisposable
{
    /// <summary>
    /// Keys the last query touches per head and layer: the S′ landmark keys it scores (blocks stored before its chunk),
    /// k(ℓ_b+1) retrieved keys and its chunk — k(ℓ_b+1) + chunk + S′, against n for full attention.
    /// </summary>
    public long AttendedTokens => (RetrievedBlocks > 0 ? StoredBeforeLast : 0) + RetrievedBlocks * (BlockSize + 1) + LastChunkLength;
    long StoredBeforeLast => StoredBlocks - (LastChunkLength / (BlockSize + 1));

    /// <summary>
    /// KV bytes the last step reads over all layers (float32): landmark keys for scoring (S′·H·D·4), the retrieved blocks'
    /// keys and values (k(ℓ_b+1)·2·H·D·4) and the chunk's keys and values.
    /// </summary>
    public long KvBytesPerStep => Layers * 4L * Heads * HeadDim *
        ((RetrievedBlocks > 0 ? StoredBeforeLast : 0) + 2L * RetrievedBlocks * (BlockSize + 1) + 2L * LastChunkLength);

    public void Dispose()
    {
        Logits.Dispose();
        foreach (var r in LastRetrieval) r?.Dispose();
        foreach (var r in LastSelected) r?.Dispose();
    }
}

/// <summary>One layer's block store and the memory-form attention of one chunk.</summary>
internal sealed class LandmarkLayerSession : IDisposable
{
    readonly LandmarkMemory memory;
    Tensor? keys, values;                 // [B, S, ℓ_b+1, H, Dh], keys un-rotated
    Tensor? lastRetrieval;                // [B, H, C, S] of the last chunk
    Tensor? lastSelected;                 // [B, H, C, k] of the last chunk

    public LandmarkLayerSession(LandmarkMemory memory, long batch) => (this.memory, Batch) = (memory, batch);

    public long Batch { get; }
    /// <summary>Positions consumed so far (start of the next chunk).</summary>
    public long Position { get; private set; }
    public long Stored => keys is null ? 0 : keys.shape[1];
    public long StoredBeforeLastChunk { get; private set; }
    public long LastChunkLength { get; private set; }

    public Tensor? TakeLastRetrieval() { var r = lastRetrieval; lastRetrieval = null; return r; }
    public Tensor? TakeLastSelected() { var r = lastSelected; lastSelected = null; return r; }

    /// <summary>
    /// Output z [B, C, H, Dh] of a chunk q, k, v [B, C, H, Dh] (un-rotated) starting at <see cref="Position"/>;
    /// <paramref name="rotate"/>(x [B′, T, H′, Dh], positions [T] or [B′, T]) applies the layer's positions.
    /// </summary>
    public Tensor Attend(int lb, Func<Tensor, Tensor, Tensor> rotate, Tensor q, Tensor k, Tensor v)
    {
        long l = lb + 1, b = q.shape[0], c = q.shape[1], h = q.shape[2], dh = q.shape[3], s = Stored;
        if (b != Batch) throw new ArgumentException($"chunk batch {b} differs from the run's batch {Batch}.", nameof(q));
        if (Position % l != 0)
            throw new InvalidOperationException(
                $"a chunk must start on a block boundary; position {Position} is not a multiple of {l} (only the last chunk may be partial).");
        int kk = (int)Math.Min(memory.TopK, s);
        var device = q.device;
        long chunkSlot = !memory.RemapPositions ? Position / l : s <= memory.TopK ? s : memory.TopK + 1;
        var qPos = torch.arange(c, device: device) + chunkSlot * l;                       // chunk positions (remapped)
        var qr = rotate(q, qPos);
        var kr = rotate(k, qPos);
        var view = LandmarkAttention.BlockView.Of(LandmarkAttention.Scores(qr, kr), lb);  // in-chunk blocks
        Tensor z;
        if (kk == 0)
        {
            var (innerW, currentW) = LandmarkAttention.Combine(view.Gate, view.Earlier, view.Inner, view.Current, view.CurrentMask);
            z = view.Assemble(innerW, currentW).matmul(v.permute(0, 2, 1, 3));            // [B, H, C, Dh]
        }
        else
        {
            var scale = 1.0 / Math.Sqrt(dh);
            var qh = qr.permute(0, 2, 1, 3);                                               // [B, H, C, Dh]
            // 1. Retrieval: landmark keys at their scoring slots, softmax over the S stored blocks, top-k per (i, h).
            var blockIdx = torch.arange(s, device: device);
            var scoreSlot = !memory.RemapPositions || s <= memory.TopK ? blockIdx
                : (blockIdx - (s - memory.TopK) + 1).clamp_min(0);                         // k most recent → 1…k, older → 0
            var landmarks = rotate(keys!.select(2, lb), scoreSlot * l + lb);               // R k_{L_c}  [B, S, H, Dh]
            var r = torch.softmax(qh.matmul(landmarks.permute(0, 2, 3, 1)) * scale, -1);   // r_{i,c}  [B, H, C, S]
            lastRetrieval?.Dispose();
            lastRetrieval = r.detach().clone().DetachFromDisposeScope();
            var idx = LandmarkMemory.SelectBlocks(r, kk, memory.Mode);                      // [B, H, C, k]
            lastSelected?.Dispose();
            lastSelected = idx.clone().DetachFromDisposeScope();
            // 2. Gather the retrieved blocks (keys and values) per (b, h, i).
            Tensor Gather(Tensor store) => store.permute(0, 3, 1, 2, 4).reshape(b, h, s, l * dh)
                .gather(2, idx.reshape(b, h, c * kk, 1).expand(b, h, c * kk, l * dh)).view(b, h, c, kk, l, dh);
            var gk = Gather(keys!);
            var gv = Gather(values!);
            // 3. Slots of the retrieved blocks: their own (no remap, or S ≤ k); else r + [c is one of the k most recent]
            //    (official) or r + 1 (contiguous) for the r-th kept block c.
            var rank = torch.arange(kk, device: device);
            var slot = !memory.RemapPositions || s <= memory.TopK ? idx
                : memory.Slots == LandmarkSlots.Contiguous ? (rank + 1).expand_as(idx)
                : rank + idx.ge(s - memory.TopK).to(ScalarType.Int64);                     // [B, H, C, k]
            var within = torch.arange(l, device: device);
            var rk = rotate(gk.reshape(b * h * c, kk * l, 1, dh), (slot.unsqueeze(-1) * l + within).reshape(b * h * c, kk * l));
            var ms = rk.view(b, h, c, kk * l, dh).matmul(qh.unsqueeze(-1)).squeeze(-1).mul(scale).view(b, h, c, kk, l);
            // 4. One grouped softmax over [retrieved landmarks ; in-chunk earlier landmarks ; own block].
            var gate = torch.cat(new[] { ms.select(4, lb), view.Gate }, 3);
            var gateMask = torch.cat(new[] { torch.ones(c, kk, dtype: ScalarType.Bool, device: device), view.Earlier }, 1);
            var inner = torch.cat(new[] { ms.narrow(4, 0, lb), view.Inner }, 3);
            var (innerW, currentW) = LandmarkAttention.Combine(gate, gateMask, inner, view.Current, view.CurrentMask);
            var memW = innerW.narrow(3, 0, kk);                                             // P_{i,L_c}·p^c_ij, retrieved
            var chunkW = view.Assemble(innerW.narrow(3, kk, innerW.shape[3] - kk), currentW);
            z = chunkW.matmul(v.permute(0, 2, 1, 3))
                + (memW.unsqueeze(-1) * gv.narrow(4, 0, lb)).sum(new long[] { 3, 4 });      // landmark values never read
        }
        // 5. Completed blocks of this chunk go to the store (un-rotated keys).
        long complete = c / l;
        StoredBeforeLastChunk = s;
        LastChunkLength = c;
        if (complete > 0)
        {
            var nk = k.narrow(1, 0, complete * l).view(b, complete, l, h, dh);
            var nv = v.narrow(1, 0, complete * l).view(b, complete, l, h, dh);
            var (ok, ov) = (keys, values);
            keys = (ok is null ? nk.clone() : torch.cat(new[] { ok, nk }, 1)).DetachFromDisposeScope();
            values = (ov is null ? nv.clone() : torch.cat(new[] { ov, nv }, 1)).DetachFromDisposeScope();
            ok?.Dispose(); ov?.Dispose();
        }
        Position += c;
        return z.permute(0, 2, 1, 3);
    }

    public void Dispose()
    {
        keys?.Dispose(); values?.Dispose(); lastRetrieval?.Dispose(); lastSelected?.Dispose();
        keys = values = lastRetrieval = lastSelected = null;
    }
}
