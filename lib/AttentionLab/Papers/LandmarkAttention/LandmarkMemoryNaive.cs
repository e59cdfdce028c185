using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// The obviously-correct twin of the memory inference (<see cref="LandmarkMemory.Attend"/>, the path every layer of
/// <see cref="LandmarkMemory.Run"/> takes): plain loops in float64 over every batch row, query position and head, written
/// from the paper's definition and the official <c>mem_cache.py</c> / <c>llama_mem.py</c> — no tensors, no gathers,
/// its own RoPE. Slow: for tests and the experiment's exactness phase only.
/// </summary>
/// <remarks>
/// For the query at position p (landmarks inserted, blocks of l = ℓ_b + 1 positions; block c = positions cl … cl + ℓ_b,
/// landmark L_c at cl + ℓ_b), in the chunk that starts at c₀ = ⌊p / (ChunkBlocks·l)⌋·ChunkBlocks·l:
///   S = c₀ / l blocks are stored; k′ = min(k, S).
///   Slots: chunk slot σ = c₀/l (no remap), S (S ≤ k) or k + 1; chunk position j sits at σl + (j − c₀).
///   Scoring slot of stored block c: c (no remap, or S ≤ k); else c − (S − k) + 1 for the k most recent, 0 for older.
///   r_c = softmax_c( R(pos_p) q_p · R(slot_c·l + ℓ_b) k_{L_c} / √D ),  per head (PerTokenAndHead) or max over heads;
///   kept = the k′ largest r_c, in original order (ties: lower c first).
///   Retrieved slot of the r-th kept block c: c (no remap, or S ≤ k); r + [c ≥ S − k] (official); r + 1 (contiguous).
///   G(p) = {L_c : c kept} ∪ {L_c : c₀/l ≤ c &lt; b(p)} ∪ {ordinary j ≤ p in b(p)};  P = softmax over G(p);
///   o_p = Σ_{j own} P_j v_j + Σ_{c} P_{L_c} Σ_{m ordinary in c} softmax_m(s_m) v_m   (landmark values never read).
/// RoPE (rotate-half): for i &lt; D/2, θ = pos·base^{−2i/D}: (x_i, x_{i+D/2}) → (x_i cos θ − x_{i+D/2} sin θ, x_{i+D/2} cos θ + x_i sin θ).
/// </remarks>
public static class LandmarkMemoryNaive
{
    /// <summary>o [B, T, H, D] (float64, on q's device) for un-rotated q, k, v [B, T, H, D] of an inserted sequence.</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, int blockSize, LandmarkMemory memory, double? ropeBase = 10000)
    {
        ArgumentNullException.ThrowIfNull(memory);
        memory.Validate();
        LandmarkAttention.CheckQkv(q, k, v);
        Guard.Positive(blockSize, nameof(blockSize));
        if (ropeBase is { } rb && (!(rb > 1) || q.shape[3] % 2 != 0))
            throw new ArgumentException($"RoPE needs base > 1 and an even head dim, got base {rb}, q {Guard.ShapeText(q)}.", nameof(ropeBase));
        int bs = (int)q.shape[0], t = (int)q.shape[1], hs = (int)q.shape[2], d = (int)q.shape[3];
        double[] Read(Tensor x) { using var c = x.to(ScalarType.Float64).cpu().contiguous(); return c.data<double>().ToArray(); }
        var (qa, ka, va) = (Read(q), Read(k), Read(v));
        double[] Vec(double[] a, int b, int pos, int h) => a.AsSpan(((b * t + pos) * hs + h) * d, d).ToArray();
        double[] Rot(double[] x, long pos)
        {
            if (ropeBase is not { } bse) return x;
            var y = new double[d];
            for (int i = 0; i < d / 2; i++)
            {
                double theta = pos * Math.Pow(bse, -2.0 * i / d), cos = Math.Cos(theta), sin = Math.Sin(theta);
                y[i] = x[i] * cos - x[i + d / 2] * sin;
                y[i + d / 2] = x[i + d / 2] * cos + x[i] * sin;
            }
            return y;
        }
        double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < d; i++) s += a[i] * b[i]; return s; }
        double scale = 1.0 / Math.Sqrt(d);
        int l = blockSize + 1, lb = blockSize, chunkLen = memory.ChunkBlocks * l, topK = memory.TopK;
        bool remap = memory.RemapPositions;
        var output = new double[qa.Length];

        for (int b = 0; b < bs; b++)
            for (int p = 0; p < t; p++)
            {
                int c0 = p / chunkLen * chunkLen, stored = c0 / l, kept = Math.Min(topK, stored);
                bool ownSlots = !remap || stored <= topK;                                       // blocks keep their own slot
                long chunkSlot = !remap ? c0 / l : stored <= topK ? stored : topK + 1;
                long PosInChunk(int j) => chunkSlot * l + (j - c0);

                // Retrieval: r_{h,c} over the stored blocks, then the kept blocks per head.
                var keptBlocks = new int[hs][];
                var r = new double[hs, stored];
                for (int h = 0; h < hs && kept > 0; h++)
                {
                    var qp = Rot(Vec(qa, b, p, h), PosInChunk(p));
                    for (int c = 0; c < stored; c++)
                    {
                        long scoreSlot = ownSlots ? c : Math.Max(0, c - (stored - topK) + 1);
                        r[h, c] = Dot(qp, Rot(Vec(ka, b, c * l + lb, h), scoreSlot * l + lb)) * scale;
                    }
                    double max = double.NegativeInfinity, sum = 0;
                    for (int c = 0; c < stored; c++) max = Math.Max(max, r[h, c]);
                    for (int c = 0; c < stored; c++) { r[h, c] = Math.Exp(r[h, c] - max); sum += r[h, c]; }
                    for (int c = 0; c < stored; c++) r[h, c] /= sum;
                }
                for (int h = 0; h < hs && kept > 0; h++)
                {
                    var score = new double[stored];
                    for (int c = 0; c < stored; c++)
                        if (memory.Mode == LandmarkSelect.MaxOverHeads)
                        { score[c] = double.NegativeInfinity; for (int g = 0; g < hs; g++) score[c] = Math.Max(score[c], r[g, c]); }
                        else score[c] = r[h, c];
                    keptBlocks[h] = Enumerable.Range(0, stored).OrderByDescending(c => score[c]).ThenBy(c => c).Take(kept).OrderBy(c => c).ToArray();
                }

                for (int h = 0; h < hs; h++)
                {
                    var qp = Rot(Vec(qa, b, p, h), PosInChunk(p));
                    // G(p) as (logit, inner values) groups: a landmark gates its block's ordinary tokens; an own token is itself.
                    var logits = new List<double>();
                    var reads = new List<double[]>();                                           // what the group reads (Σ p^c_m v_m, or v_j)
                    void Block(int c, Func<int, long> position)
                    {
                        var s = new double[lb];
                        for (int m = 0; m < lb; m++) s[m] = Dot(qp, Rot(Vec(ka, b, c * l + m, h), position(m))) * scale;
                        double max = s.Max(), sum = 0;
                        var read = new double[d];
                        for (int m = 0; m < lb; m++) { s[m] = Math.Exp(s[m] - max); sum += s[m]; }
                        for (int m = 0; m < lb; m++)
                        {
                            var vm = Vec(va, b, c * l + m, h);
                            for (int i = 0; i < d; i++) read[i] += s[m] / sum * vm[i];
                        }
                        logits.Add(Dot(qp, Rot(Vec(ka, b, c * l + lb, h), position(lb))) * scale);   // s_{p,L_c}
                        reads.Add(read);
                    }
                    for (int rank = 0; rank < kept; rank++)                                      // retrieved blocks
                    {
                        int c = keptBlocks[h][rank];
                        long slot = ownSlots ? c : memory.Slots == LandmarkSlots.Contiguous ? rank + 1 : rank + (c >= stored - topK ? 1 : 0);
                        Block(c, m => slot * l + m);
                    }
                    int own = p / l;
                    for (int c = c0 / l; c < own; c++) Block(c, m => PosInChunk(c * l + m));          // earlier blocks of the chunk
                    for (int j = own * l; j <= p; j++)                                           // own block, ordinary, j ≤ p
                        if ((j + 1) % l != 0)
                        {
                            logits.Add(Dot(qp, Rot(Vec(ka, b, j, h), PosInChunk(j))) * scale);
                            reads.Add(Vec(va, b, j, h));
                        }
                    double top = logits.Max(), total = 0;
                    var weights = logits.Select(x => Math.Exp(x - top)).ToArray();
                    foreach (var w in weights) total += w;
                    int at = ((b * t + p) * hs + h) * d;
                    for (int g = 0; g < weights.Length; g++)
                        for (int i = 0; i < d; i++) output[at + i] += weights[g] / total * reads[g][i];
                }
            }
        return torch.tensor(output, new long[] { bs, t, hs, d }, dtype: ScalarType.Float64, device: q.device);
    }
}
