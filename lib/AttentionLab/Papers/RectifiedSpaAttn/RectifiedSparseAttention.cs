using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>
/// Rectified SpaAttn (2025): block-sparse attention for video DiTs whose output is rectified towards full attention
/// with a pooled "implicit full attention" estimate: the kept blocks are scaled by their estimated share of the full
/// mass (IPAR), and the dropped blocks whose pooling is trustworthy (GAPR) are added back as pooled values.
/// Layout [Bt, T, H, D]; the last <c>isolatedTail</c> tokens are text (kept unpooled, always attended; text queries use
/// full attention). Non-causal (video diffusion).
/// </summary>
/// <remarks>
/// Visual tokens in blocks J of B consecutive tokens (n_J = B except a short last block), pooled x̄_J = mean_{j∈J} x_j.
/// <list type="bullet">
/// <item>Pooled scores: s̄_IJ = q̄_I·k̄_J/√d (visual blocks), s_It = q̄_I·k_t/√d (text tokens), p = softmax over [blocks ; text].</item>
/// <item>IPAR: P_IJ = p_IJ·n_J / (Σ_J n_J p_IJ + Σ_t p_It),  P_I,text = Σ_t p_It / (same)  — computed as one softmax over
/// [s̄_IJ + log n_J ; s_It], the same numbers without the renormalisation round trip.</item>
/// <item>Critical set: sort P_I· (the text mass is one entry), keep the smallest prefix with cumulative mass ≤ τ plus one
/// more, at least <c>minTopK</c> entries; add the neighbour blocks and all text. τ ≥ 1 keeps everything (dense).</item>
/// <item>GAPR for J ∉ S_I: G_IJ = n_I n_J |q̄_I·k̄_J|,  E_IJ = n_I n_J (|mean_i|q_i − q̄_I|·k̄_J| + |q̄_I·mean_j|k_j − k̄_J||);
/// beneficial iff G &gt; E.</item>
/// <item>Output: O_I = R_I·O_sparse,I + Σ_{J∉S_I, beneficial} P_IJ·v̄_J,  R_I = Σ_{J∈S_I ∪ non-beneficial} P_IJ (+ text mass),
/// so the weights sum to 1; R and the compensation are per query block.</item>
/// </list>
/// Variants (what the notebook compares, all with the same critical sets, hence the same density): plain top-p
/// (<c>ipar: false</c>: R = 1, no compensation); IPAR scaling only (<c>compensate: false</c>: R_I = Σ_{J∈S_I} P_IJ + text);
/// IPAR + compensation of every dropped block (<c>gapr: false</c>); the full method (defaults).
/// </remarks>
public static class RectifiedSparseAttention
{
    /// <summary>Rectified block-sparse attention. q, k [Bt, T, H, D], v [Bt, T, H, Dv] → (output [Bt, T, H, Dv], diagnostics).</summary>
    /// <param name="q">queries [Bt, T, H, D] (visual tokens in tile order, then the text tokens).</param>
    /// <param name="k">keys [Bt, T, H, D].</param>
    /// <param name="v">values [Bt, T, H, Dv].</param>
    /// <param name="block">B, tokens per block (queries and keys).</param>
    /// <param name="tau">τ, the cumulative estimated mass of the critical prefix (0 = top-<paramref name="minTopK"/> only, ≥ 1 = dense).</param>
    /// <param name="minTopK">at least this many entries (blocks, or the text mass) per critical set; ≥ 1.</param>
    /// <param name="ipar">rectify with the IPAR estimate (false: plain top-p sparse attention).</param>
    /// <param name="gapr">compensate only the dropped blocks GAPR judges beneficial; the rest of their mass goes to R.</param>
    /// <param name="isolatedTail">text tokens at the end of the sequence (unpooled).</param>
    /// <param name="neighbours">optional [nb, nb] spatial neighbour blocks added to every critical set (see <see cref="TileOrder.NeighbourBlocks"/>).</param>
    /// <param name="compensate">add the pooled term for dropped blocks (false: IPAR scaling only).</param>
    /// <param name="trueMass">also compute the true full-attention block mass for the diagnostics (O(T²)).</param>
    public static (Tensor Output, RectifyDiagnostics Diagnostics) Forward(Tensor q, Tensor k, Tensor v, int block = 128, double tau = 0.5,
        int minTopK = 1, bool ipar = true, bool gapr = true, int isolatedTail = 0, bool[,]? neighbours = null, bool compensate = true, bool trueMass = false)
    {
        Checks.Inputs(q, k, v, block, tau, minTopK, isolatedTail, neighbours);
        using var scope = NewDisposeScope();
        var (qh, kh, vh) = (q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3));   // [Bt, H, T, ·]
        int tail = isolatedTail, tv = (int)q.shape[1] - tail;
        var e = EstimateCore(qh, kh, tv, tail, block, tau, minTopK, neighbours);
        long bt = q.shape[0], h = q.shape[2], dv = v.shape[3];
        int nb = e.Blocks;
        var vbar = Blocks(vh, tv, block).sum(3) / e.Counts.view(nb, 1);                          // v̄_J

        // Sparse attention over S_I ∪ text, gathered per query block.
        var oSparse = GatherAttention(e.QBlocks, e.KBlocks, Blocks(vh, tv, block), e.Selected, e.TokenValid,
            tail > 0 ? kh.narrow(2, tv, tail) : null, tail > 0 ? vh.narrow(2, tv, tail) : null, out double density, e.Counts, (int)q.shape[1]);

        Tensor r, compWeight, compensated, comp;
        var pVis = e.Mass.narrow(-1, 0, nb);
        var pText = tail > 0 ? e.Mass.narrow(-1, nb, 1).squeeze(-1) : torch.zeros(bt, h, nb, dtype: q.dtype, device: q.device);
        if (!ipar)
        {
            r = torch.ones(bt, h, nb, dtype: q.dtype, device: q.device);                         // plain top-p: R = 1
            compWeight = torch.zeros_like(r);
            compensated = torch.zeros_like(e.Selected);
            comp = torch.zeros(bt, h, nb, dv, dtype: q.dtype, device: q.device);
        }
        else
        {
            var keep = compensate && gapr ? e.Selected | e.Beneficial.logical_not() : e.Selected;   // S_I ∪ non-beneficial
            r = pVis.masked_fill(keep.logical_not(), 0.0).sum(-1) + pText;                       // R_I = Σ_{J∈keep} P_IJ + P_I,text
            if (compensate)
            {
                var cw = pVis.masked_fill(keep, 0.0);                                            // P_IJ for J ∉ S_I, beneficial
                comp = cw.matmul(vbar);                                                          // Σ_J P_IJ v̄_J
                compWeight = cw.sum(-1);
                compensated = keep.logical_not();
            }
            else
            {
                comp = torch.zeros(bt, h, nb, dv, dtype: q.dtype, device: q.device);
                compWeight = torch.zeros_like(r);
                compensated = torch.zeros_like(e.Selected);
            }
        }
        var oVis = oSparse * r.view(bt, h, nb, 1, 1) + comp.unsqueeze(3);                        // O_I = R_I·O_sparse,I + comp_I
        oVis = oVis.reshape(bt, h, nb * (long)block, dv).narrow(2, 0, tv).permute(0, 2, 1, 3);
        var output = oVis;
        if (tail > 0)
        {
            using var text = ReferenceAttention.Softmax(q.narrow(1, tv, tail), k, v);              // text queries: full attention
            output = torch.cat(new[] { oVis, text.Output }, 1);
        }
        output = output.contiguous();
        var truth = trueMass ? TrueBlockMass(q, k, v, tv, tail, block, e.Counts) : null;
        var diag = new RectifyDiagnostics(density, block, tv, tail, r.MoveToOuterDisposeScope(), compWeight.MoveToOuterDisposeScope(),
            e.Selected.MoveToOuterDisposeScope(), e.Beneficial.MoveToOuterDisposeScope(), compensated.MoveToOuterDisposeScope(),
            e.Mass.MoveToOuterDisposeScope(), truth?.MoveToOuterDisposeScope());
        return (output.MoveToOuterDisposeScope(), diag);
    }

    /// <summary>The estimation stage alone: pooled scores, IPAR mass P, critical sets and the GAPR verdicts (O((T/B)²·d)).</summary>
    public static RectifyEstimate Estimate(Tensor q, Tensor k, int block = 128, double tau = 0.5, int minTopK = 1, int isolatedTail = 0,
        bool[,]? neighbours = null)
    {
        Checks.Inputs(q, k, k, block, tau, minTopK, isolatedTail, neighbours);
        using var scope = NewDisposeScope();
        var e = EstimateCore(q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), (int)q.shape[1] - isolatedTail, isolatedTail, block, tau, minTopK, neighbours);
        return new RectifyEstimate(e.Mass.MoveToOuterDisposeScope(), e.Selected.MoveToOuterDisposeScope(), e.Beneficial.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Block-sparse attention alone: every query block I of the visual tokens attends (softmax over the kept keys only)
    /// to its selected key blocks plus the text tokens; text queries attend to everything. q, k, v [Bt, T, H, ·];
    /// <paramref name="selected"/> [Bt, H, nb, nb] bool. The kernel the rectification rescales (R = 1, no compensation).
    /// </summary>
    public static Tensor BlockSparse(Tensor q, Tensor k, Tensor v, Tensor selected, int block, int isolatedTail = 0)
    {
        Checks.Inputs(q, k, v, block, 0, 1, isolatedTail, null);
        using var scope = NewDisposeScope();
        int tail = isolatedTail, tv = (int)q.shape[1] - tail, nb = (tv + block - 1) / block;
        Guard.Rank(selected, 4, nameof(selected), "batch, heads, query block, key block");
        if (selected.dtype != ScalarType.Bool || selected.shape[0] != q.shape[0] || selected.shape[1] != q.shape[2] || selected.shape[2] != nb
            || selected.shape[3] != nb)
            throw new ArgumentException(
                $"selected must be bool [{q.shape[0]}, {q.shape[2]}, {nb}, {nb}], got {selected.dtype} {Guard.ShapeText(selected)}.", nameof(selected));
        var (qh, kh, vh) = (q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3));
        var counts = BlockPooling.Counts(tv, block, q.dtype, q.device);
        var tokenValid = (torch.arange(nb * (long)block, device: q.device) < tv).view(nb, block);
        var o = GatherAttention(Blocks(qh, tv, block), Blocks(kh, tv, block), Blocks(vh, tv, block), selected.to(q.device), tokenValid,
            tail > 0 ? kh.narrow(2, tv, tail) : null, tail > 0 ? vh.narrow(2, tv, tail) : null, out _, counts, (int)q.shape[1]);
        long bt = q.shape[0], h = q.shape[2], dv = v.shape[3];
        var output = o.reshape(bt, h, nb * (long)block, dv).narrow(2, 0, tv).permute(0, 2, 1, 3);
        if (tail > 0)
        {
            using var text = ReferenceAttention.Softmax(q.narrow(1, tv, tail), k, v);
            output = torch.cat(new[] { output, text.Output }, 1);
        }
        return output.contiguous().MoveToOuterDisposeScope();
    }

    internal sealed record Est(int Blocks, Tensor Counts, Tensor TokenValid, Tensor QBlocks, Tensor KBlocks, Tensor Mass, Tensor Selected, Tensor Beneficial);

    /// <summary>x [Bt, H, T, E] → its first tv tokens in blocks, zero-padded: [Bt, H, nb, B, E].</summary>
    static Tensor Blocks(Tensor x, int tv, int block)
    {
        int nb = (tv + block - 1) / block;
        return nn.functional.pad(x.narrow(2, 0, tv), new long[] { 0, 0, 0, nb * (long)block - tv })
            .view(x.shape[0], x.shape[1], nb, block, x.shape[3]);
    }

    static Est EstimateCore(Tensor qh, Tensor kh, int tv, int tail, int block, double tau, int minTopK, bool[,]? neighbours)
    {
        long bt = qh.shape[0], h = qh.shape[1], d = qh.shape[3];
        int nb = (tv + block - 1) / block, nc = nb + (tail > 0 ? 1 : 0);
        var dev = qh.device;
        double scale = 1.0 / Math.Sqrt(d);
        var counts = BlockPooling.Counts(tv, block, qh.dtype, dev);                               // n_J
        var tokenValid = (torch.arange(nb * (long)block, device: dev) < tv).view(nb, block);      // padding of the last block
        var qb = Blocks(qh, tv, block);
        var kb = Blocks(kh, tv, block);
        var qbar = qb.sum(3) / counts.view(nb, 1);                                               // q̄_I
        var kbar = kb.sum(3) / counts.view(nb, 1);                                               // k̄_J
        var raw = qbar.matmul(kbar.transpose(-2, -1));                                           // q̄_I·k̄_J  [Bt, H, nb, nb]
        var logits = raw * scale + counts.log();                                                 // s̄_IJ + log n_J
        if (tail > 0) logits = torch.cat(new[] { logits, qbar.matmul(kh.narrow(2, tv, tail).transpose(-2, -1)) * scale }, -1);   // s_It
        var p = torch.softmax(logits, -1);                                                       // IPAR: p_IJ n_J / (Σ n_J p_IJ + Σ_t p_It)
        var mass = tail > 0 ? torch.cat(new[] { p.narrow(-1, 0, nb), p.narrow(-1, nb, tail).sum(-1, keepdim: true) }, -1) : p;   // P [.., nc]

        Tensor selected;
        if (tau >= 1) selected = torch.ones(bt, h, nb, nb, dtype: ScalarType.Bool, device: dev);
        else
        {
            var (sorted, order) = mass.sort(-1, descending: true, stable: true);
            var need = (sorted.cumsum(-1) <= tau).sum(-1) + 1;                                   // smallest prefix with Σ ≤ τ, plus one
            need = need.clamp(min: minTopK, max: nc);                                            // at least top_k
            var take = (torch.arange(nc, device: dev).view(1, 1, 1, nc) < need.unsqueeze(-1)).to(ScalarType.Float32);
            selected = torch.zeros(bt, h, nb, nc, dtype: ScalarType.Float32, device: dev).scatter(-1, order, take).narrow(-1, 0, nb) > 0.5;
        }
        if (neighbours is not null)
        {
            var flat = new bool[nb * nb];
            for (int i = 0; i < nb; i++) for (int j = 0; j < nb; j++) flat[i * nb + j] = neighbours[i, j];
            selected = selected | torch.tensor(flat, new long[] { nb, nb }, device: dev);      // + spatial neighbours
        }
        selected = selected.contiguous();

        // GAPR: gain n_I n_J |q̄·k̄| vs pooling error n_I n_J (|mean|Δq|·k̄| + |q̄·mean|Δk||).
        var valid = tokenValid.view(nb, block, 1).to(qh.dtype);
        var dq = ((qb - qbar.unsqueeze(3)).abs() * valid).sum(3) / counts.view(nb, 1);          // mean_i |q_i − q̄_I|
        var dk = ((kb - kbar.unsqueeze(3)).abs() * valid).sum(3) / counts.view(nb, 1);          // mean_j |k_j − k̄_J|
        var pairs = counts.view(nb, 1) * counts.view(1, nb);                                     // n_I n_J
        var gain = raw.abs() * pairs;
        var error = (dq.matmul(kbar.transpose(-2, -1)).abs() + qbar.matmul(dk.transpose(-2, -1)).abs()) * pairs;
        var beneficial = gain > error;
        return new Est(nb, counts, tokenValid, qb, kb, mass, selected, beneficial);
    }

    /// <summary>
    /// Per query block I: K̃ = [K_J for J ∈ S_I ; text keys], softmax over the valid slots, O = p Ṽ. Lists padded to the
    /// longest (padding masked). qb, kb, vb [Bt, H, nb, B, ·] → [Bt, H, nb, B, Dv]. Work ∝ Σ kept blocks.
    /// </summary>
    static Tensor GatherAttention(Tensor qb, Tensor kb, Tensor vb, Tensor selected, Tensor tokenValid, Tensor? kt, Tensor? vt,
        out double density, Tensor counts, int totalTokens)
    {
        long bt = qb.shape[0], h = qb.shape[1], d = qb.shape[4], dv = vb.shape[4];
        int nb = (int)qb.shape[2], block = (int)qb.shape[3], tail = kt is null ? 0 : (int)kt.shape[2];
        var dev = qb.device;
        var sel = selected.cpu().contiguous().data<bool>().ToArray();
        var n = counts.to(ScalarType.Float64).cpu().data<double>().ToArray();
        int rows = (int)(bt * h * nb), width = 0;
        var lists = new List<int>[rows];
        double pairs = 0;
        for (int row = 0; row < rows; row++)
        {
            lists[row] = new List<int>();
            for (int j = 0; j < nb; j++) if (sel[row * nb + j]) lists[row].Add(j);
            width = Math.Max(width, lists[row].Count);
            pairs += n[row % nb] * (lists[row].Sum(j => n[j]) + tail);                         // visual query pairs computed
        }
        pairs += bt * h * (double)tail * totalTokens;                                           // text queries: dense
        density = pairs / (bt * h * (double)totalTokens * totalTokens);
        width = Math.Max(width, 1);
        var idx = new long[rows * width];
        var slot = new bool[rows * width];
        for (int row = 0; row < rows; row++)
            for (int m = 0; m < lists[row].Count; m++)
            {
                idx[row * width + m] = row / nb * nb + lists[row][m];                             // flat (batch·head, key block)
                slot[row * width + m] = true;
            }
        var flat = torch.tensor(idx, device: dev);
        var kg = kb.reshape(bt * h * nb, block, d).index_select(0, flat).view(bt, h, nb, width * block, d);
        var vg = vb.reshape(bt * h * nb, block, dv).index_select(0, flat).view(bt, h, nb, width * block, dv);
        var keyOk = torch.tensor(slot, new long[] { bt, h, nb, width, 1 }, device: dev)
                    & tokenValid.index_select(0, flat.remainder(nb)).view(bt, h, nb, width, block);
        keyOk = keyOk.view(bt, h, nb, width * block);
        if (kt is not null && vt is not null)
        {
            kg = torch.cat(new[] { kg, kt.unsqueeze(2).expand(bt, h, nb, tail, d) }, 3);
            vg = torch.cat(new[] { vg, vt.unsqueeze(2).expand(bt, h, nb, tail, dv) }, 3);
            keyOk = torch.cat(new[] { keyOk, torch.ones(bt, h, nb, tail, dtype: ScalarType.Bool, device: dev) }, 3);
        }
        var scores = qb.matmul(kg.transpose(-2, -1)) * (1.0 / Math.Sqrt(d));                  // [Bt, H, nb, B, L]
        scores = scores.masked_fill(keyOk.unsqueeze(3).logical_not(), double.NegativeInfinity);
        return torch.softmax(scores, -1).matmul(vg);                                             // O_sparse
    }

    /// <summary>True full-attention mass of each key block (and of all text) averaged over the queries of each visual block [Bt, H, nb, nc].</summary>
    static Tensor TrueBlockMass(Tensor q, Tensor k, Tensor v, int tv, int tail, int block, Tensor counts)
    {
        using var full = ReferenceAttention.Softmax(q.narrow(1, 0, tv), k, v);
        var p = full.Probabilities;                                                               // [Bt, H, tv, T]
        long bt = p.shape[0], h = p.shape[1];
        int nb = (tv + block - 1) / block;
        var vis = nn.functional.pad(p.narrow(-1, 0, tv), new long[] { 0, nb * (long)block - tv }).view(bt, h, tv, nb, block).sum(-1);
        var cols = tail > 0 ? torch.cat(new[] { vis, p.narrow(-1, tv, tail).sum(-1, keepdim: true) }, -1) : vis;
        var nc = cols.shape[3];
        return nn.functional.pad(cols, new long[] { 0, 0, 0, nb * (long)block - tv }).view(bt, h, nb, block, nc).sum(3) / counts.view(nb, 1);
    }
}

static class Checks
{
    internal static void Inputs(Tensor q, Tensor k, Tensor v, int block, double tau, int minTopK, int isolatedTail, bool[,]? neighbours)
    {
        Guard.Rank(q, 4, nameof(q), "batch, tokens, heads, dim");
        Guard.Rank(k, 4, nameof(k), "batch, tokens, heads, dim");
        Guard.Rank(v, 4, nameof(v), "batch, tokens, heads, value dim");
        Guard.FloatingPoint(q, nameof(q));
        Guard.SameDtype(q, nameof(q), k, nameof(k)); Guard.SameDtype(q, nameof(q), v, nameof(v));
        Guard.SameDevice(q, nameof(q), k, nameof(k)); Guard.SameDevice(q, nameof(q), v, nameof(v));
        for (int dim = 0; dim < 3; dim++)
        {
            if (k.shape[dim] != q.shape[dim])
                throw new ArgumentException($"k {Guard.ShapeText(k)} must match q {Guard.ShapeText(q)} in batch, tokens and heads.", nameof(k));
            if (v.shape[dim] != q.shape[dim])
                throw new ArgumentException($"v {Guard.ShapeText(v)} must match q {Guard.ShapeText(q)} in batch, tokens and heads.", nameof(v));
        }
        Guard.Dim(k, 3, q.shape[3], nameof(k), "head dim");
        if (q.shape[1] == 0 || q.shape[3] == 0 || v.shape[3] == 0) throw new ArgumentException($"q has an empty dimension: {Guard.ShapeText(q)}.", nameof(q));
        if (block <= 0) throw new ArgumentException($"block must be positive, got {block}.", nameof(block));
        if (!(tau >= 0) || double.IsNaN(tau)) throw new ArgumentException($"tau must be ≥ 0, got {tau}.", nameof(tau));
        if (minTopK < 1) throw new ArgumentException($"minTopK must be ≥ 1, got {minTopK}.", nameof(minTopK));
        if (isolatedTail < 0 || isolatedTail >= q.shape[1])
            throw new ArgumentException(
                $"isolatedTail must be in [0, {q.shape[1] - 1}] (at least one visual token), got {isolatedTail}.", nameof(isolatedTail));
        if (neighbours is not null)
        {
            long nb = (q.shape[1] - isolatedTail + block - 1) / block;
            if (neighbours.GetLength(0) != nb || neighbours.GetLength(1) != nb)
                throw new ArgumentException(
                    $"neighbours must be [{nb}, {nb}] (visual blocks), got [{neighbours.GetLength(0)}, {neighbours.GetLength(1)}].", nameof(neighbours));
        }
    }
}
