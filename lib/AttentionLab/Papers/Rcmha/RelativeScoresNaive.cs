using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>
/// The loop twin of <see cref="RelativeScores"/>: an explicit loop over every (i, j), the paper's four terms written out one by one,
/// the distance i − j indexing p directly (no shift, no gather). Differentiable; use float64.
/// </summary>
public static class RelativeScoresNaive
{
    /// <summary>
    /// s [B, H, T, T] for q, k [B, T, H, D], u, v [H, D], p [L, H, D] (L ≥ T):
    /// s_ij = (q_i·k_j + q_i·p_{i−j} + u·k_j + v·p_{i−j}) / √D for j ≤ i, −∞ for j &gt; i.
    /// </summary>
    public static Tensor Scores(Tensor q, Tensor k, Tensor u, Tensor v, Tensor p)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        Guard.Rank(p, 3, nameof(p), "L, H, D");
        long b = q.size(0), t = q.size(1), h = q.size(2);
        if (p.size(0) < t) throw new ArgumentException($"p must hold at least T = {t} distances, got {Guard.ShapeText(p)}.", nameof(p));
        using var scope = NewDisposeScope();
        double scale = 1.0 / Math.Sqrt(q.size(3));
        var hidden = torch.full(new[] { b, h }, double.NegativeInfinity, dtype: q.dtype, device: q.device);
        var rows = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var qi = q.select(1, i);                                                    // [B, H, D]
            var row = new List<Tensor>();
            for (long j = 0; j < t; j++)
            {
                if (j > i) { row.Add(hidden); continue; }                               // the future is hidden
                var kj = k.select(1, j);
                var pd = p.select(0, i - j);                                            // W_R r_{i−j}  [H, D]
                var a = (qi * kj).sum(-1)                                               // q_i·k_j
                      + (qi * pd).sum(-1)                                               // q_i·W_R r_{i−j}
                      + (u * kj).sum(-1)                                                // u·k_j
                      + (v * pd).sum(-1);                                               // v·W_R r_{i−j}
                row.Add(a * scale);
            }
            rows.Add(torch.stack(row, -1));                                             // [B, H, T]
        }
        return torch.stack(rows, 2).MoveToOuterDisposeScope();                          // [B, H, T, T]
    }
}
