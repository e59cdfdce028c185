using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// The obviously-correct twin of <see cref="LandmarkAttention"/>: for every (b, h, i) it lists G(i) explicitly, takes
/// max-subtracted exponentials per group and writes w_ij entry by entry. Blocks are read from isLandmark itself (block of
/// j = number of landmarks before j), so it does not rely on the regular layout. Runs in the scores' dtype (use float64)
/// and keeps the autograd graph, so gradients can be compared too. Slow: for tests and small pictures only.
/// </summary>
public static class LandmarkNaive
{
    /// <summary>Grouped weights w [B, H, T, T] from scores [B, H, T, T] and isLandmark [B, T] (bool).</summary>
    public static Tensor GroupedWeights(Tensor scores, Tensor isLandmark)
    {
        Guard.Rank(scores, 4, nameof(scores), "B, H, T, T");
        Guard.FloatingPoint(scores, nameof(scores));
        Guard.Rank(isLandmark, 2, nameof(isLandmark), "B, T");
        if (isLandmark.dtype != ScalarType.Bool) throw new ArgumentException($"isLandmark must be bool, got {isLandmark.dtype}.", nameof(isLandmark));
        if (scores.shape[2] != scores.shape[3] || isLandmark.shape[0] != scores.shape[0] || isLandmark.shape[1] != scores.shape[2])
            throw new ArgumentException(
                $"need scores [B, H, T, T] and isLandmark [B, T], got {Guard.ShapeText(scores)} and {Guard.ShapeText(isLandmark)}.", nameof(isLandmark));
        using var scope = NewDisposeScope();
        long bs = scores.shape[0], hs = scores.shape[1], t = scores.shape[2];
        var marks = isLandmark.cpu().data<bool>().ToArray();
        var rows = new List<Tensor>();
        for (long b = 0; b < bs; b++)
        {
            var block = new int[t];                                          // block(j) = #landmarks before j
            for (int j = 0, c = 0; j < t; j++) { block[j] = c; if (marks[b * t + j]) c++; }
            bool Mark(long j) => marks[b * t + j];
            for (long h = 0; h < hs; h++)
                for (long i = 0; i < t; i++)
                {
                    var s = scores[b, h, i];                                  // s_i· [T]
                    // G(i): own-block ordinary tokens j ≤ i, then the landmarks of earlier blocks.
                    var group = new List<long>();
                    for (long j = 0; j <= i; j++)
                        if (!Mark(j) && block[j] == block[i]) group.Add(j);
                    for (long j = 0; j <= i; j++)
                        if (Mark(j) && block[j] < block[i]) group.Add(j);
                    var top = Softmax(s, group);                               // P_ij over G(i)
                    var (at, values) = (new List<long>(), new List<Tensor>());
                    for (int g = 0; g < group.Count; g++)
                    {
                        long j = group[g];
                        if (!Mark(j)) { at.Add(j); values.Add(top[g]); continue; }                          // w_ij = P_ij
                        var members = new List<long>();                       // block c = block(L_c): its ordinary tokens
                        for (long m = 0; m < j; m++) if (!Mark(m) && block[m] == block[j]) members.Add(m);
                        if (members.Count == 0) continue;
                        var inner = Softmax(s, members);                      // p^c_ij
                        for (int m = 0; m < members.Count; m++)
                        { at.Add(members[m]); values.Add(top[g] * inner[m]); }                           // w_ij = P_{i,L_c}·p^c_ij
                    }
                    rows.Add(torch.zeros(t, dtype: scores.dtype, device: scores.device)                 // w_{i,L_c} stays 0
                        .index_add(0, torch.tensor(at.ToArray(), device: scores.device), torch.stack(values), 1));
                }
        }
        return torch.stack(rows).view(bs, hs, t, t).MoveToOuterDisposeScope();
    }

    /// <summary>Output [B, T, H, Dv] = Σ_j w_ij v_j with the naive weights of s = q kᵀ/√D (q, k, v [B, T, H, ·]).</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor isLandmark)
    {
        LandmarkAttention.CheckQkv(q, k, v);
        using var scope = NewDisposeScope();
        var w = GroupedWeights(LandmarkAttention.Scores(q, k), isLandmark);
        return w.matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>exp(s_j − max) / Σ exp(s_j′ − max) over the listed entries, written out.</summary>
    static Tensor Softmax(Tensor s, List<long> entries)
    {
        var x = s.index_select(0, torch.tensor(entries.ToArray(), device: s.device));
        var e = (x - x.max().detach()).exp();                                  // subtract the group's max
        return e / e.sum();
    }
}
