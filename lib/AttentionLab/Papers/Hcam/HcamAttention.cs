using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Hcam;

/// <summary>What one hierarchical read did: the output and, per query, the chunks it chose and their weights.</summary>
/// <param name="Z">z [B, T, H, Dv]: Σ_j w_tj r_tj (zeros where no chunk is complete before t).</param>
/// <param name="Selected">[B, T, k'] the chosen chunk indices, k' = min(k, M) (arbitrary where the weight is 0).</param>
/// <param name="Weights">[B, T, k'] w_tj, softmax over the chosen chunks only; 0 for a chunk the query may not see.</param>
/// <param name="Fine">[B, T, H, k', C] the within-chunk softmax a_tjc of each head.</param>
public sealed record HcamRead(Tensor Z, Tensor Selected, Tensor Weights, Tensor Fine);

/// <summary>
/// HCAM's hierarchical read (Lampinen et al. 2021, official Haiku module <c>htm_attention.py</c>): chunk summaries, coarse
/// attention over them, the top-k chunks, fine attention inside those chunks, the fine results weighted by chunk relevance.
/// The memory of a sequence is its own past, cut into chunks of C positions; chunk m (positions mC … mC+C−1) is visible to
/// the query at t once it is complete: (m+1)·C ≤ t.
/// </summary>
/// <remarks>
/// summary_m = mean_{c &lt; C} k_{mC+c}                                     [B, M, H, D], M = ⌊T/C⌋ complete chunks
/// ℓ_tm = Σ_h q_th·summary_mh / √(H·D),  −∞ unless (m+1)·C ≤ t              one coarse score per query (a single head
///                                                                           over the concatenated heads, as the official
///                                                                           module's one query/key projection)
/// S_t = top-k_m ℓ_tm;  w_tj = exp ℓ_tj / Σ_{i ∈ S_t} exp ℓ_ti             softmax over the k chosen only
/// a_tjch = softmax_c(q_th·k_{jC+c,h} / √D);  r_tjh = Σ_c a_tjch v_{jC+c,h}  fine attention inside chunk j, per head
/// z_th = Σ_{j ∈ S_t} w_tj r_tjh
/// Selection is not differentiable; gradients flow through w (the chosen scores) and the fine attention.
/// </remarks>
public static class HcamAttention
{
    /// <summary>Number of complete chunks of <paramref name="chunkSize"/> in <paramref name="length"/> positions: ⌊T/C⌋.</summary>
    public static long Chunks(long length, int chunkSize)
    {
        Guard.Positive(chunkSize, nameof(chunkSize));
        return length / chunkSize;
    }

    /// <summary>The chunk summaries: mean over each complete chunk, k [B, T, H, D] → [B, ⌊T/C⌋, H, D].</summary>
    public static Tensor Summaries(Tensor k, int chunkSize)
    {
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Positive(chunkSize, nameof(chunkSize));
        using var scope = NewDisposeScope();
        long b = k.size(0), m = Chunks(k.size(1), chunkSize), h = k.size(2), d = k.size(3);
        return k.narrow(1, 0, m * chunkSize).view(b, m, chunkSize, h, d).mean(new long[] { 2 }).MoveToOuterDisposeScope();   // mean_c k_{mC+c}
    }

    /// <summary>Chunk m is visible to the query at t when it is complete before t: (m+1)·C ≤ t. bool [T, M].</summary>
    public static Tensor Visible(long length, long chunks, int chunkSize, Device device)
    {
        Guard.Positive(chunkSize, nameof(chunkSize));
        using var scope = NewDisposeScope();
        var t = torch.arange(length, device: device).unsqueeze(1);
        var end = (torch.arange(chunks, device: device) + 1) * chunkSize;           // (m+1)·C
        return (end.unsqueeze(0) <= t).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The coarse scores ℓ [B, T, M]: Σ_h q_th·summary_mh / √(H·D), −∞ where the chunk is not yet complete.
    /// </summary>
    public static Tensor CoarseScores(Tensor q, Tensor summaries, int chunkSize)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(summaries, 4, nameof(summaries), "B, M, H, D");
        using var scope = NewDisposeScope();
        long b = q.size(0), t = q.size(1), m = summaries.size(1);
        double scale = 1.0 / Math.Sqrt(q.size(2) * q.size(3));
        var s = q.reshape(b, t, -1).matmul(summaries.reshape(b, m, -1).transpose(1, 2)) * scale;    // [B, T, M]
        return s.masked_fill(Visible(t, m, chunkSize, q.device).logical_not(), double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The hierarchical read by gathering the k chosen chunks: q [B, T, H, D] (queries), summaries [B, M, H, D] (coarse keys),
    /// k [B, Tm, H, D] and v [B, Tm, H, Dv] (the memory's fine keys and values, Tm ≥ M·C; positions past M·C are never read).
    /// </summary>
    /// <param name="q">queries [B, T, H, D].</param>
    /// <param name="summaries">coarse keys [B, M, H, D] (<see cref="Summaries"/> of the keys, or the mixer's own).</param>
    /// <param name="k">fine keys [B, Tm, H, D].</param>
    /// <param name="v">fine values [B, Tm, H, Dv].</param>
    /// <param name="chunkSize">C.</param>
    /// <param name="topK">k ≥ 1: chunks read per query (k' = min(k, M)).</param>
    public static HcamRead Read(Tensor q, Tensor summaries, Tensor k, Tensor v, int chunkSize, int topK)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, Tm, H, D");
        Guard.Rank(v, 4, nameof(v), "B, Tm, H, Dv");
        Guard.Positive(topK, nameof(topK));
        long b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3), m = summaries.size(1), dv = v.size(3);
        if (summaries.size(0) != b || summaries.size(2) != h || summaries.size(3) != d)
            throw new ArgumentException($"summaries {Guard.ShapeText(summaries)} do not match q {Guard.ShapeText(q)}.", nameof(summaries));
        if (k.size(1) < m * chunkSize || v.size(1) != k.size(1) || k.size(0) != b || k.size(2) != h || k.size(3) != d)
            throw new ArgumentException($"k {Guard.ShapeText(k)} and v {Guard.ShapeText(v)} must hold {m} chunks of {chunkSize} for q {Guard.ShapeText(q)}.",
                nameof(k));
        using var scope = NewDisposeScope();
        if (m == 0)
        {
            var none = torch.zeros(b, t, 0, dtype: ScalarType.Int64, device: q.device);
            var zero = q.new_zeros(b, t, h, dv) + q.narrow(3, 0, 0).sum() + v.narrow(3, 0, 0).sum();   // 0, on the graph of q and v
            return Outer(new HcamRead(zero, none, q.new_zeros(new long[] { b, t, 0 }), q.new_zeros(new long[] { b, t, h, 0, chunkSize })));
        }
        int kk = (int)Math.Min(topK, m);
        var coarse = CoarseScores(q, summaries, chunkSize);                              // ℓ [B, T, M]
        var (top, idx) = coarse.topk(kk, dim: -1);                                        // S_t: the k largest ℓ_tm
        var w = ReferenceAttention.Normalize(top).Probabilities;                          // softmax over the chosen (hidden → 0)

        var flat = idx + (torch.arange(b, device: q.device) * m).view(b, 1, 1);            // row of chunk j in [B·M]
        var kc = k.narrow(1, 0, m * chunkSize).reshape(b * m, chunkSize, h, d).index_select(0, flat.reshape(-1)).view(b, t, kk, chunkSize, h, d);
        var vc = v.narrow(1, 0, m * chunkSize).reshape(b * m, chunkSize, h, dv).index_select(0, flat.reshape(-1)).view(b, t, kk, chunkSize, h, dv);
        var fineScores = torch.einsum("bthd,btjchd->bthjc", q, kc) * (1.0 / Math.Sqrt(d));   // q_th·k_{jC+c,h}/√D
        var fine = fineScores.softmax(-1);                                                 // a_tjch over c
        var r = torch.einsum("bthjc,btjchv->bthjv", fine, vc);                             // r_tjh = Σ_c a v
        var z = (r * w.unsqueeze(2).unsqueeze(-1)).sum(3);                                 // z_th = Σ_j w_tj r_tjh
        return Outer(new HcamRead(z, idx, w, fine));
    }

    /// <summary>
    /// The read as an equivalent T×Tm weight matrix (the documented analogue of <c>hook_pattern</c>): A_{h,t,jC+c} = w_tj·a_tjch,
    /// so z = A·v. [B, H, T, Tm]; rows sum to 1 where a chunk is visible, 0 elsewhere.
    /// </summary>
    public static Tensor DensePattern(HcamRead read, long memoryLength, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(read);
        using var scope = NewDisposeScope();
        long b = read.Fine.size(0), t = read.Fine.size(1), h = read.Fine.size(2), kk = read.Fine.size(3);
        var pattern = read.Fine.new_zeros(b, h, t, memoryLength);
        if (kk == 0) return pattern.MoveToOuterDisposeScope();
        var cols = read.Selected.unsqueeze(-1) * chunkSize + torch.arange(chunkSize, device: read.Selected.device);   // jC + c [B, T, k', C]
        var vals = read.Fine * read.Weights.unsqueeze(2).unsqueeze(-1);                    // w_tj·a_tjch [B, T, H, k', C]
        var index = cols.unsqueeze(2).expand(b, t, h, kk, chunkSize).reshape(b, t, h, kk * chunkSize).permute(0, 2, 1, 3);
        return pattern.scatter_add(3, index, vals.reshape(b, t, h, kk * chunkSize).permute(0, 2, 1, 3)).MoveToOuterDisposeScope();
    }

    static HcamRead Outer(HcamRead r) =>
        new(r.Z.MoveToOuterDisposeScope(), r.Selected.MoveToOuterDisposeScope(), r.Weights.MoveToOuterDisposeScope(), r.Fine.MoveToOuterDisposeScope());
}
