using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>
/// The naive twin of <see cref="RcmhaAttention"/>: the convolution as an explicit sum over taps and times, the scores by
/// <see cref="RelativeScoresNaive"/> (or a loop of q_i·k_j for the non-relative variants), the softmax and A·V written out.
/// Shares only the base's projection <see cref="AttentionMixer.Project"/> (tested with the base). Differentiable; use float64.
/// </summary>
public static class RcmhaNaive
{
    /// <summary>y [B, T, d] for x [B, T, d] with the mixer's weights.</summary>
    public static Tensor Output(RcmhaAttention mixer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var (q, k, v) = mixer.Project(x);
        if (mixer.Convs is { } c) (q, k, v) = (Conv(c.Q, q), Conv(c.K, k), Conv(c.V, v));
        long b = x.size(0), t = x.size(1);
        int h = mixer.Heads;
        Tensor s;
        if (mixer.Relative)
        {
            var r = Positions.Sinusoidal(0, t, mixer.DModel, x.dtype, x.device);       // r_δ, δ = 0 … T−1
            var p = r.matmul(mixer.RelativeWeight!.weight!.t()).view(t, h, mixer.KeyDim);   // W_R r_δ
            s = RelativeScoresNaive.Scores(q, k, mixer.ContentBias!, mixer.PositionBias!, p);
        }
        else
        {
            var zero = torch.zeros(h, mixer.KeyDim, dtype: x.dtype, device: x.device);
            s = RelativeScoresNaive.Scores(q, k, zero, zero, torch.zeros(t, h, mixer.KeyDim, dtype: x.dtype, device: x.device));  // q_i·k_j / √Dk
        }
        var rows = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var si = s.select(2, i).narrow(-1, 0, i + 1);                               // visible keys j ≤ i  [B, H, i+1]
            var e = (si - si.max(-1, keepdim: true).values).exp();
            var a = e / e.sum(-1, keepdim: true);                                       // softmax_j
            var zi = torch.zeros(b, h, mixer.ValueDim, dtype: x.dtype, device: x.device);
            for (long j = 0; j <= i; j++) zi = zi + a.select(-1, j).unsqueeze(-1) * v.select(1, j);   // Σ_j A_ij v_j
            rows.Add(zi);
        }
        var z = torch.stack(rows, 1).reshape(b, t, h * mixer.ValueDim);                // [B, T, H·Dv]
        var y = z.matmul(mixer.Proj.weight!.t());
        if (mixer.Proj.bias is { } bias) y = y + bias;
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Y_t = b + Σ_m w_m ⊙ u_{t−(w−1)+m} (u_{&lt;0} = 0) for u [B, T, H, D], one loop over times and taps.</summary>
    public static Tensor Conv(CausalDepthwiseConv conv, Tensor u)
    {
        ArgumentNullException.ThrowIfNull(conv);
        Guard.Rank(u, 4, nameof(u), "B, T, H, D");
        using var scope = NewDisposeScope();
        long b = u.size(0), t = u.size(1);
        var flat = u.reshape(b, t, -1);                                                 // [B, T, C]
        var w = conv.Weight.squeeze(1);                                                 // [C, w]
        int width = conv.Kernel;
        var outs = new List<Tensor>();
        for (long time = 0; time < t; time++)
        {
            var y = conv.Bias is { } bias ? bias.unsqueeze(0).expand(b, -1) : torch.zeros(b, flat.size(2), dtype: u.dtype, device: u.device);
            for (int m = 0; m < width; m++)
            {
                long src = time - (width - 1) + m;
                if (src < 0) continue;                                                  // left padding: u_{<0} = 0
                y = y + w.select(1, m) * flat.select(1, src);
            }
            outs.Add(y);
        }
        return torch.stack(outs, 1).view(u.shape).MoveToOuterDisposeScope();
    }
}
