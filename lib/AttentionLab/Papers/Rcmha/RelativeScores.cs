using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>How <see cref="RelativeScores"/> places the position term q_i·(W_R r_{i−j}) at (i, j).</summary>
public enum RelShiftMode
{
    /// <summary>Transformer-XL's relative shift: one [T, T] product against the distances T−1 … 0, then pad, reshape and drop a row.</summary>
    Shift,
    /// <summary>One [Tq, L] product against the distances 0 … L−1, then a gather of column i − j (any query and key positions).</summary>
    Gather,
}

/// <summary>
/// Transformer-XL relative-position attention scores (Dai et al. 2019, eq. (3) with the learned biases u and v), as RCMHA uses
/// them: s_ij = [(q_i + u)·k_j + (q_i + v)·p_{i−j}] / √D for j ≤ i, −∞ for j &gt; i, where p_δ = W_R r_δ is the projected sinusoid of
/// the distance δ. Inputs are per head: q, k [B, T, H, D]; u, v [H, D]; p [L, H, D] (row δ = distance δ). The loop twin is
/// <see cref="RelativeScoresNaive"/>.
/// </summary>
/// <remarks>
/// a_ij = q_i·k_j  +  q_i·(W_R r_{i−j})  +  u·k_j  +  v·(W_R r_{i−j})    (the paper's four terms)
///      = (q_i + u)·k_j  +  (q_i + v)·p_{i−j}                            (AC + BD, the form computed here)
/// Shift: BD_raw[i, m] = (q_i + v)·p_{T−1−m}; pad a zero column on the left ([T, T+1]), read it as [T+1, T], drop the first row:
/// entry (i, j ≤ i) lands on BD_raw[i, T−1−(i−j)] = (q_i + v)·p_{i−j}. Entries j &gt; i hold other numbers and are masked.
/// Gather: BD[i, j] = BD_full[i, clamp(qPos_i − kPos_j, 0, L−1)], BD_full = (q + v)·pᵀ [Tq, L]; future keys are masked.
/// </remarks>
public static class RelativeScores
{
    /// <summary>
    /// s [B, H, T, T]: scaled relative scores of q, k [B, T, H, D] (queries and keys at positions 0 … T−1), −∞ where j &gt; i.
    /// <paramref name="p"/> [L, H, D] with L ≥ T: row δ is W_R r_δ.
    /// </summary>
    public static Tensor Scores(Tensor q, Tensor k, Tensor u, Tensor v, Tensor p, RelShiftMode mode = RelShiftMode.Shift)
    {
        Check(q, k, u, v, p);
        long t = q.size(1);
        if (k.size(1) != t) throw new ArgumentException($"k must have T = {t} tokens like q, got {Guard.ShapeText(k)}.", nameof(k));
        if (p.size(0) < t) throw new ArgumentException($"p must hold at least T = {t} distances, got {Guard.ShapeText(p)}.", nameof(p));
        using var scope = NewDisposeScope();
        if (mode == RelShiftMode.Gather)
        {
            var pos = torch.arange(t, device: q.device);
            return ScoresAt(q, k, u, v, p, pos, pos).MoveToOuterDisposeScope();
        }
        var (qu, qv, kh) = Heads(q, k, u, v);                                          // [B, H, T, D] each
        var ac = qu.matmul(kh.transpose(-2, -1));                                       // (q_i + u)·k_j            [B, H, T, T]
        var reversed = p.narrow(0, 0, t).flip(0).permute(1, 2, 0);                      // column m = distance T−1−m  [H, D, T]
        var bd = Shift(qv.matmul(reversed));                                            // (q_i + v)·p_{i−j}        [B, H, T, T]
        var s = (ac + bd) * (1.0 / Math.Sqrt(q.size(3)));
        var future = torch.ones(t, t, dtype: ScalarType.Bool, device: q.device).triu(1);  // j > i
        return s.masked_fill(future, double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// s [B, H, Tq, Tk] for queries at <paramref name="qPos"/> [Tq] and keys at <paramref name="kPos"/> [Tk] (integers): the gather form,
    /// −∞ where kPos_j &gt; qPos_i unless <paramref name="cachedKeys"/> (every key precedes the query: no mask is built).
    /// <paramref name="p"/> must hold every visible distance (L &gt; max qPos_i − kPos_j).
    /// </summary>
    public static Tensor ScoresAt(Tensor q, Tensor k, Tensor u, Tensor v, Tensor p, Tensor qPos, Tensor kPos, bool cachedKeys = false)
    {
        Check(q, k, u, v, p);
        Guard.Rank(qPos, 1, nameof(qPos), "Tq");
        Guard.Rank(kPos, 1, nameof(kPos), "Tk");
        if (qPos.size(0) != q.size(1)) throw new ArgumentException($"qPos has {qPos.size(0)} positions, q {q.size(1)} tokens.", nameof(qPos));
        if (kPos.size(0) != k.size(1)) throw new ArgumentException($"kPos has {kPos.size(0)} positions, k {k.size(1)} tokens.", nameof(kPos));
        using var scope = NewDisposeScope();
        var (qu, qv, kh) = Heads(q, k, u, v);
        var ac = qu.matmul(kh.transpose(-2, -1));                                       // (q_i + u)·k_j            [B, H, Tq, Tk]
        var full = qv.matmul(p.permute(1, 2, 0));                                       // (q_i + v)·p_δ, δ = 0…L−1  [B, H, Tq, L]
        var distance = qPos.unsqueeze(1) - kPos.unsqueeze(0);                           // i − j                    [Tq, Tk]
        var index = distance.clamp(0, p.size(0) - 1).expand(full.size(0), full.size(1), -1, -1);
        var bd = full.gather(3, index);                                                 // (q_i + v)·p_{i−j}
        var s = (ac + bd) * (1.0 / Math.Sqrt(q.size(3)));
        if (cachedKeys) return s.MoveToOuterDisposeScope();
        return s.masked_fill(distance < 0, double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Transformer-XL's relative shift of x [..., T, T] (column m = distance T−1−m): out[..., i, j] = x[..., i, T−1−(i−j)] for j ≤ i.
    /// </summary>
    public static Tensor Shift(Tensor x)
    {
        if (x.dim() < 2 || x.size(-1) != x.size(-2))
            throw new ArgumentException($"x must be [..., T, T], got {Guard.ShapeText(x)}.", nameof(x));
        using var scope = NewDisposeScope();
        long t = x.size(-1);
        var lead = x.shape.Take((int)x.dim() - 2).ToArray();
        var padded = nn.functional.pad(x, new long[] { 1, 0 });                         // a zero column on the left: [..., T, T+1]
        var rows = padded.reshape(lead.Concat(new[] { t + 1, t }).ToArray());           // read as [..., T+1, T]
        return rows.narrow(-2, 1, t).MoveToOuterDisposeScope();                          // drop the first row: [..., T, T]
    }

    static (Tensor Qu, Tensor Qv, Tensor K) Heads(Tensor q, Tensor k, Tensor u, Tensor v)
    {
        var qh = q.permute(0, 2, 1, 3);                                                 // [B, H, Tq, D]
        var shape = new long[] { 1, u.size(0), 1, u.size(1) };
        return (qh + u.view(shape), qh + v.view(shape), k.permute(0, 2, 1, 3));
    }

    static void Check(Tensor q, Tensor k, Tensor u, Tensor v, Tensor p)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Rank(u, 2, nameof(u), "H, D");
        Guard.Rank(v, 2, nameof(v), "H, D");
        Guard.Rank(p, 3, nameof(p), "L, H, D");
        Guard.FloatingPoint(q, nameof(q));
        long b = q.size(0), h = q.size(2), d = q.size(3);
        if (k.size(0) != b || k.size(2) != h || k.size(3) != d)
            throw new ArgumentException($"k {Guard.ShapeText(k)} must match q {Guard.ShapeText(q)} in B, H and D.", nameof(k));
        foreach (var (x, name) in new[] { (u, nameof(u)), (v, nameof(v)) })
            if (x.size(0) != h || x.size(1) != d)
                throw new ArgumentException($"{name} must be [H, D] = [{h}, {d}], got {Guard.ShapeText(x)}.", name);
        if (p.size(1) != h || p.size(2) != d || p.size(0) < 1)
            throw new ArgumentException($"p must be [L, H, D] with H = {h}, D = {d}, got {Guard.ShapeText(p)}.", nameof(p));
    }
}
