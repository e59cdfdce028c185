using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Moh;

/// <summary>
/// The naive twin of <see cref="MixtureOfHeadAttention"/>: token by token and head by head, every head computed (shared
/// and routed alike), then weighted by its gate (0 for an unchosen routed head) — the paper's Σ_i g_i H_i W_O^i as
/// written, with the top-K chosen by sorting the probabilities in C#. Differentiable; use float64.
/// </summary>
public static class MohNaive
{
    /// <summary>y [B, T, d] for x [B, T, d] with the mixer's weights (its projections, router, shared and balance gates, W_O).</summary>
    public static Tensor Output(MixtureOfHeadAttention mixer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var (q, k, v) = mixer.Project(x);                                              // the base's head split (tested elsewhere)
        long bs = x.size(0), ts = x.size(1);
        int h = mixer.Heads, dv = mixer.ValueDim;
        var wo = mixer.Proj.weight!;                                                    // [d, H·Dv]
        var rows = new List<Tensor>();
        for (long b = 0; b < bs; b++)
            for (long t = 0; t < ts; t++)
            {
                var xt = x[b, t];                                                       // [d]
                var g = Gates(mixer, xt);
                var y = mixer.Proj.bias is null ? torch.zeros(mixer.DModel, dtype: x.dtype, device: x.device) : mixer.Proj.bias;
                for (int i = 0; i < h; i++)
                {
                    var kj = k[b, TensorIndex.Slice(0, t + 1), i];                      // keys j ≤ t: [t+1, Dk]
                    var vj = v[b, TensorIndex.Slice(0, t + 1), i];
                    var s = kj.matmul(q[b, t, i]) / Math.Sqrt(mixer.KeyDim);           // q_t·k_j / √Dk
                    var a = (s - s.max()).exp();
                    var head = (a / a.sum()).matmul(vj);                                // H_{t,i} = Σ_j A_tj v_j  (computed for every head)
                    y = y + g[i] * wo.narrow(1, (long)i * dv, dv).matmul(head);         // + g_i H_{t,i} W_O^i
                }
                rows.Add(y);
            }
        return torch.stack(rows).view(bs, ts, mixer.DModel).MoveToOuterDisposeScope();
    }

    /// <summary>g [H] for one token x_t [d], as the official ViT code: routed K·renormalised top-K, shared h_s·softmax (or 1), α = 2·softmax.</summary>
    public static Tensor Gates(MixtureOfHeadAttention mixer, Tensor xt)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(xt, 1, nameof(xt), "d");
        using var scope = NewDisposeScope();
        int hs = mixer.Shared, e = mixer.Routed, kTop = mixer.TopK;
        var parts = new List<Tensor>();
        Tensor alpha1 = torch.ones(Array.Empty<long>(), dtype: xt.dtype), alpha2 = alpha1;
        if (mixer.BalanceWeight is { } wh)
        {
            var bal = Softmax(wh.weight!.matmul(xt)) * 2;                               // [α1, α2]
            (alpha1, alpha2) = (bal[0], bal[1]);
        }
        if (hs > 1)
        {
            var sg = Softmax(mixer.SharedWeight!.weight!.matmul(xt)) * hs;              // h_s · softmax(W_s x)
            for (int i = 0; i < hs; i++) parts.Add(alpha1 * sg[i]);
        }
        else if (hs == 1) parts.Add(alpha1 * 1.0);
        if (e > 0)
        {
            var p = Softmax(mixer.RouterWeight!.weight!.matmul(xt));                    // p = softmax(W_r x)
            var values = p.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
            var chosen = Enumerable.Range(0, e).OrderByDescending(i => values[i]).ThenBy(i => i).Take(kTop).ToHashSet();   // top-K by sorting
            Tensor kept = torch.zeros(Array.Empty<long>(), dtype: xt.dtype);
            foreach (int i in chosen) kept = kept + p[i];                               // Σ_{j∈S} p_j
            for (int i = 0; i < e; i++)
                parts.Add(chosen.Contains(i) ? alpha2 * (p[i] / kept * kTop) : alpha2 * p[i] * 0.0);   // K p_i / Σ_S p_j, else 0
        }
        return torch.stack(parts.Select(t => t.reshape(Array.Empty<long>())).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>L_b = E² · mean_i(P_i f_i) for x [B, T, d], by loops over tokens and routed heads (0 without routed heads).</summary>
    public static double LoadBalance(MixtureOfHeadAttention mixer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        int e = mixer.Routed;
        if (e == 0) return 0;
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = x.reshape(-1, x.size(2)).to(ScalarType.Float64);
        var w = mixer.RouterWeight!.weight!.to(ScalarType.Float64);
        long n = flat.size(0);
        var pSum = new double[e];
        var fSum = new double[e];
        for (long t = 0; t < n; t++)
        {
            var p = Softmax(w.matmul(flat[t])).cpu().data<double>().ToArray();
            for (int i = 0; i < e; i++) pSum[i] += p[i];
            foreach (int i in Enumerable.Range(0, e).OrderByDescending(i => p[i]).ThenBy(i => i).Take(mixer.TopK)) fSum[i] += 1;
        }
        double mean = 0;
        for (int i = 0; i < e; i++) mean += pSum[i] / n * (fSum[i] / n) / e;          // mean_i P_i f_i
        return e * (double)e * mean;
    }

    static Tensor Softmax(Tensor logits)
    {
        var a = (logits - logits.max()).exp();
        return a / a.sum();
    }
}
