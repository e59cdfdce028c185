using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SinkLora;

/// <summary>
/// The loop twins of <see cref="ShiftedSparseAttention"/> and <see cref="SinkFixedAttention"/>: for every sequence, head and
/// query the list of visible keys is built by walking the groups (no masks), the roll variant literally rolls q, k, v
/// by −s in the shifted heads, attends inside consecutive groups in rolled order and rolls the output back (LongLoRA's
/// non-flash <c>shift</c>), and softmax and the weighted sum are spelled out. Inputs q, k [B, T, H, Dk], v [B, T, H, Dv]
/// (already positioned: apply RoPE before calling); output z [B, T, H, Dv]. Differentiable (float64 for the checks).
/// </summary>
public static class SinkLoraNaive
{
    /// <summary>The loop twin of <paramref name="mixer"/> (its group size, mode or sinks) on positioned q, k, v.</summary>
    public static Tensor ForMixer(GroupAttention mixer, Tensor q, Tensor k, Tensor v) => mixer switch
    {
        ShiftedSparseAttention s => ShiftedSparse(q, k, v, s.GroupSize, s.Mode),
        SinkFixedAttention f => SinkFixed(q, k, v, f.GroupSize, f.Sinks),
        _ => throw new ArgumentException($"no twin for {mixer?.GetType().Name ?? "null"}.", nameof(mixer)),
    };

    /// <summary>S2-Attn by loops (<paramref name="mode"/>: roll with wrap, or no-wrap blocks).</summary>
    public static Tensor ShiftedSparse(Tensor q, Tensor k, Tensor v, int groupSize, S2Mode mode)
    {
        Check(q, k, v, groupSize);
        long t = q.shape[1], s = groupSize / 2;
        int heads = (int)q.shape[2];
        using var scope = NewDisposeScope();
        var perHead = new List<Tensor>();
        for (int h = 0; h < heads; h++)
        {
            var (qh, kh, vh) = (q.select(2, h), k.select(2, h), v.select(2, h));          // [B, T, D]
            bool shifted = h >= heads / 2;
            if (shifted && mode == S2Mode.RollWrap)
            {
                var r = Roll(qh, -s); var rk = Roll(kh, -s); var rv = Roll(vh, -s);      // qkv.roll(−G/2, dim T)
                var zr = Attend(r, rk, rv, i => BlockPrefix(i, 0, groupSize));         // groups [mG, (m+1)G) in rolled order
                perHead.Add(Roll(zr, s));                                              // output.roll(+G/2)
            }
            else
            {
                long offset = shifted ? s : 0;                                         // no-wrap: blocks [0, s), [s, s+G), …
                perHead.Add(Attend(qh, kh, vh, i => BlockPrefix(i, offset, groupSize)));
            }
        }
        return torch.stack(perHead.ToArray(), 2).MoveToOuterDisposeScope();
    }

    /// <summary>SF-Attn by loops: plain groups (first half of the heads) or no-wrap shifted groups (second half), plus the first <paramref name="sinks"/>
    /// keys.</summary>
    public static Tensor SinkFixed(Tensor q, Tensor k, Tensor v, int groupSize, int sinks)
    {
        Check(q, k, v, groupSize);
        if (sinks < 0) throw new ArgumentException($"sinks must be ≥ 0, got {sinks}.", nameof(sinks));
        int heads = (int)q.shape[2];
        long s = groupSize / 2;
        using var scope = NewDisposeScope();
        var perHead = new List<Tensor>();
        for (int h = 0; h < heads; h++)
        {
            long offset = h >= heads / 2 ? s : 0;
            perHead.Add(Attend(q.select(2, h), k.select(2, h), v.select(2, h), i =>
            {
                var group = BlockPrefix(i, offset, groupSize);
                var keys = new SortedSet<long>(group);
                for (long j = 0; j < Math.Min(sinks, i + 1); j++) keys.Add(j);          // sinks j < n, j ≤ i
                return keys.ToList();
            }));
        }
        return torch.stack(perHead.ToArray(), 2).MoveToOuterDisposeScope();
    }

    /// <summary>The keys j ≤ i of i's block, blocks starting at 0, offset, offset + G, … (offset 0: [mG, (m+1)G)).</summary>
    static List<long> BlockPrefix(long i, long offset, long groupSize)
    {
        long start;
        if (i < offset) start = 0;                                                     // the short first block [0, s)
        else start = offset + (i - offset) / groupSize * groupSize;
        var keys = new List<long>();
        for (long j = start; j <= i; j++) keys.Add(j);
        return keys;
    }

    /// <summary>x [B, T, D] rolled along T by <paramref name="shift"/> (torch.roll: out[p] = x[(p − shift) mod T]), by gathering rows.</summary>
    static Tensor Roll(Tensor x, long shift)
    {
        long t = x.shape[1];
        var rows = new List<Tensor>();
        for (long p = 0; p < t; p++) rows.Add(x.select(1, ((p - shift) % t + t) % t));
        return torch.stack(rows.ToArray(), 1);
    }

    /// <summary>z_i = Σ_{j ∈ keys(i)} softmax_j(q_i·k_j/√D) v_j, per sequence, by loops: [B, T, Dv].</summary>
    static Tensor Attend(Tensor q, Tensor k, Tensor v, Func<long, List<long>> keys)
    {
        long b = q.shape[0], t = q.shape[1];
        double scale = 1.0 / Math.Sqrt(q.shape[2]);
        var outRows = new List<Tensor>();
        for (long n = 0; n < b; n++)
        {
            var rows = new List<Tensor>();
            for (long i = 0; i < t; i++)
            {
                var js = keys(i);
                var qi = q[n, i];
                var scores = torch.stack(js.Select(j => (qi * k[n, j]).sum() * scale).ToArray());   // q_i·k_j / √D
                var e = (scores - scores.max()).exp();
                var p = e / e.sum();                                                   // softmax over the visible keys
                var z = torch.zeros_like(v[n, 0]);
                for (int a = 0; a < js.Count; a++) z = z + p[a] * v[n, js[a]];
                rows.Add(z);
            }
            outRows.Add(torch.stack(rows.ToArray()));
        }
        return torch.stack(outRows.ToArray());
    }

    static void Check(Tensor q, Tensor k, Tensor v, int groupSize)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, Dk");
        Guard.Rank(k, 4, nameof(k), "B, T, H, Dk");
        Guard.Rank(v, 4, nameof(v), "B, T, H, Dv");
        if (!q.shape.SequenceEqual(k.shape)) throw new ArgumentException($"q {Guard.ShapeText(q)} and k {Guard.ShapeText(k)} differ.", nameof(k));
        if (v.shape[0] != q.shape[0] || v.shape[1] != q.shape[1] || v.shape[2] != q.shape[2])
            throw new ArgumentException($"v {Guard.ShapeText(v)} does not match q {Guard.ShapeText(q)} in B, T, H.", nameof(v));
        GroupMasks.CheckLength(q.shape[1], groupSize, nameof(q));
    }
}
