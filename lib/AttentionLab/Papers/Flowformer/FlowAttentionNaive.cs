using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>
/// The naive twin of <see cref="FlowAttention"/>: every flow and every output row from its definition, one position at a
/// time, with explicit sums over the visible sources / sinks (no cumsum, no engine) — O(n·m·D), float64-capable,
/// differentiable. Sink i sees sources R_i = {j ≤ i} (causal) or all m; source j is seen by R′_j = {i ≤ j} or all n;
/// c_i = i + 1 (causal) or 1 is the count that turns the causal sums into means.
/// </summary>
/// <remarks>
///   I_i = (φq_i+ε)·(Σ_{j∈R_i} φk_j + ε)/c_i               O_j = (φk_j+ε)·(Σ_{i∈R′_j} φq_i + ε)/c_j
///   Î_i = (φq_i+ε)·(Σ_{j∈R_i} φk_j/O_j + ε)/c_i           Ô_j = clamp((φk_j+ε)·(Σ_{i∈R′_j} φq_i/I_i + ε)/c_j, −1, 1)
///   A_i = σ(Î_i·n/m) or σ(Î_i)                          C_j = m·e^{Ô_j}/Σ_{all} e^{Ô} or (j+1)·e^{Ô_j}/Σ_{j′≤j} e^{Ô_j′}
///   R_i = A_i Σ_{j∈R_i} (φq_i·φk_j)/(I_i c_i) · C_j v_j
/// </remarks>
public static class FlowAttentionNaive
{
    /// <summary>R [B, n, H, Dv] of projected q [B, n, H, D], k [B, m, H, D] (before σ) and v [B, m, H, Dv], in q's dtype.</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, bool causal, double eps = FlowAttention.DefaultEps)
    {
        FlowAttention.ValidateQk(q, k, causal, eps);
        Attention.LinearAttention.ValidateQkv(q, k, v, causal);
        using var scope = NewDisposeScope();
        var w = Weights(q, k, causal, eps);                                              // [B, H, n, m]
        var o = w.matmul(v.permute(0, 2, 1, 3));                                         // R_i = Σ_j W_ij v_j
        return o.permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>The implied matrix W [B, H, n, m] (W_ij = 0 outside R_i), built row by row from the definitions.</summary>
    public static Tensor Weights(Tensor q, Tensor k, bool causal, double eps = FlowAttention.DefaultEps)
    {
        FlowAttention.ValidateQk(q, k, causal, eps);
        using var scope = NewDisposeScope();
        var fq = torch.sigmoid(q.permute(0, 2, 1, 3));                                   // φq [B, H, n, D]
        var fk = torch.sigmoid(k.permute(0, 2, 1, 3));                                   // φk [B, H, m, D]
        long n = fq.shape[2], m = fk.shape[2];
        Tensor Sinks(long i, Tensor x) => causal ? x.narrow(2, 0, i + 1) : x;            // the sources sink i sees (R_i)
        Tensor Sources(long j, Tensor x) => causal ? x.narrow(2, 0, j + 1) : x;          // the sinks that see source j (R′_j)
        double Count(long i) => causal ? i + 1 : 1;
        Tensor Flow(Tensor x, Tensor sum) => ((x + eps) * (sum + eps)).sum(-1);          // (x+ε)·(Σ + ε)

        var incoming = new Tensor[n]; var outgoing = new Tensor[m];
        for (long i = 0; i < n; i++) incoming[i] = Flow(fq.select(2, i), Sinks(i, fk).sum(2)) / Count(i);        // I_i
        for (long j = 0; j < m; j++) outgoing[j] = Flow(fk.select(2, j), Sources(j, fq).sum(2)) / Count(j);      // O_j
        var I = torch.stack(incoming, 2); var O = torch.stack(outgoing, 2);                                      // [B, H, n], [B, H, m]
        var kOverO = fk / O.unsqueeze(-1); var qOverI = fq / I.unsqueeze(-1);
        var sink = new Tensor[n]; var source = new Tensor[m];
        for (long i = 0; i < n; i++) sink[i] = Flow(fq.select(2, i), Sinks(i, kOverO).sum(2)) / Count(i);        // Î_i
        for (long j = 0; j < m; j++) source[j] = (Flow(fk.select(2, j), Sources(j, qOverI).sum(2)) / Count(j)).clamp(-1.0, 1.0); // Ô_j
        var Ihat = torch.stack(sink, 2); var Ohat = torch.stack(source, 2);
        var A = torch.sigmoid(causal ? Ihat : Ihat * ((double)n / m));                                           // A_i
        var e = Ohat.exp();
        var competition = new Tensor[m];
        for (long j = 0; j < m; j++)                                                                             // C_j
            competition[j] = causal ? e.select(2, j) / e.narrow(2, 0, j + 1).sum(2) * (j + 1) : e.select(2, j) / e.sum(2) * m;
        var C = torch.stack(competition, 2);
        var rows = new Tensor[n];
        for (long i = 0; i < n; i++)                                                                             // W_ij = A_i (φq_i·φk_j) C_j/(I_i c_i)
        {
            var scores = (fq.select(2, i).unsqueeze(-2) * fk).sum(-1) * C * (A.select(2, i) / (I.select(2, i) * Count(i))).unsqueeze(-1);
            if (causal && i + 1 < m) scores = torch.cat(new[] { scores.narrow(2, 0, i + 1), torch.zeros_like(scores.narrow(2, i + 1, m - i - 1)) }, 2);
            rows[i] = scores;
        }
        return torch.stack(rows, 2).MoveToOuterDisposeScope();
    }
}
