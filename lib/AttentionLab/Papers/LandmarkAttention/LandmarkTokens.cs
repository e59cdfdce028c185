using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// The data side of Landmark Attention: a landmark token ⟨LM⟩ after every ℓ_b ordinary tokens, so the sequence is made
/// of blocks of ℓ_b + 1 positions whose last position is the block's landmark.
/// </summary>
/// <remarks>
/// Original positions t = 0 … T−1 map to t + ⌊t / ℓ_b⌋; landmark c (c = 0 … ⌊T/ℓ_b⌋ − 1) sits at (c+1)(ℓ_b+1) − 1.
/// A trailing partial block (T not a multiple of ℓ_b) gets no landmark — it is still being written.
/// Labels get −100 at landmark positions (the paper: the landmark's own target is trivially predictable and must not
/// be trained), while the token before a landmark keeps its original label, the next <i>ordinary</i> token, exactly as
/// the official memory inference drops the landmark outputs (<c>get_final_logits</c>).
/// </remarks>
public static class LandmarkTokens
{
    /// <summary>Length after insertion: T + ⌊T / ℓ_b⌋.</summary>
    public static long InsertedLength(long length, int blockSize) => length + length / blockSize;

    /// <summary>
    /// Inserts <paramref name="landmarkId"/> after every <paramref name="blockSize"/> tokens of ids [B, T] (int64):
    /// returns ids [B, T + ⌊T/ℓ_b⌋] and isLandmark [B, T + ⌊T/ℓ_b⌋] (bool).
    /// </summary>
    public static (Tensor Ids, Tensor IsLandmark) Insert(Tensor ids, int blockSize, long landmarkId)
    {
        Guard.Rank(ids, 2, nameof(ids), "B, T token ids");
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"ids must hold int64 token ids, got {ids.dtype}.", nameof(ids));
        Guard.Positive(blockSize, nameof(blockSize));
        if (landmarkId < 0) throw new ArgumentOutOfRangeException(nameof(landmarkId), landmarkId, "landmarkId must be ≥ 0.");
        using var scope = NewDisposeScope();
        var inserted = InsertFill(ids, blockSize, landmarkId);
        var isLandmark = Mask(inserted.shape[1], blockSize, ids.device).unsqueeze(0).expand(ids.shape[0], -1).contiguous();
        return (inserted.MoveToOuterDisposeScope(), isLandmark.MoveToOuterDisposeScope());
    }

    /// <summary>Labels [B, T] → [B, T + ⌊T/ℓ_b⌋] with −100 (ignored by the loss) at every landmark position.</summary>
    public static Tensor InsertLabels(Tensor labels, int blockSize)
    {
        Guard.Rank(labels, 2, nameof(labels), "B, T labels");
        if (labels.dtype != ScalarType.Int64) throw new ArgumentException($"labels must be int64, got {labels.dtype}.", nameof(labels));
        Guard.Positive(blockSize, nameof(blockSize));
        using var scope = NewDisposeScope();
        return InsertFill(labels, blockSize, Data.TokenBatch.Ignore).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The landmark pattern [length] (bool) of a sequence that already holds landmarks: position p is a landmark iff
    /// (p + 1) mod (ℓ_b + 1) = 0.
    /// </summary>
    public static Tensor Mask(long length, int blockSize, Device? device = null)
    {
        Guard.Positive(blockSize, nameof(blockSize));
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "length must be ≥ 0.");
        using var scope = NewDisposeScope();
        return torch.arange(length, device: device).add(1).remainder(blockSize + 1).eq(0).MoveToOuterDisposeScope();
    }

    /// <summary>Drops the landmark positions from x [B, T_inserted, …] (dim 1): the inverse of <see cref="Insert"/> for outputs.</summary>
    public static Tensor Remove(Tensor x, int blockSize)
    {
        Guard.NotNull(x, nameof(x));
        if (x.dim() < 2) throw new ArgumentException($"x must have rank ≥ 2 (B, T, …), got shape {Guard.ShapeText(x)}.", nameof(x));
        Guard.Positive(blockSize, nameof(blockSize));
        using var scope = NewDisposeScope();
        var keep = Mask(x.shape[1], blockSize, x.device).logical_not().nonzero().squeeze(1);
        return x.index_select(1, keep).MoveToOuterDisposeScope();
    }

    static Tensor InsertFill(Tensor x, int blockSize, long fill)
    {
        long b = x.shape[0], t = x.shape[1], full = t / blockSize, rest = t - full * blockSize;
        var blocks = x.narrow(1, 0, full * blockSize).view(b, full, blockSize);                       // [B, nb, ℓ_b]
        var marks = torch.full(new[] { b, full, 1L }, fill, dtype: x.dtype, device: x.device);        // ⟨LM⟩
        var body = torch.cat(new[] { blocks, marks }, 2).view(b, full * (blockSize + 1));            // [B, nb(ℓ_b+1)]
        return rest == 0 ? body : torch.cat(new[] { body, x.narrow(1, full * blockSize, rest) }, 1);
    }
}
