using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>
/// The naive twin of <see cref="MixtureOfAttention"/>: the paper's formula read literally — a loop over experts i and their
/// heads h, each a causal softmax attention from its own slices of the mixer's weights, then expert i's W_O^i and b_O^i, and
/// the sum weighted by the soft router. Uses the mixer's parameters, so its gradients land on the same tensors.
/// </summary>
/// <remarks>
/// r_t = softmax(W_a x_t);  q^{i,h} = x W_Q^{i,h} + b,  s_{tj} = q_t·k_j / √Dk (j ≤ t),  z^{i,h} = softmax_j(s) V^{i,h}
/// A_i(x) = Σ_h z^{i,h} W_O^{i,h} + b_O^i;   MoA(x)_t = Σ_i r_{t,i} A_i(x)_t
/// </remarks>
public static class MixtureOfAttentionNaive
{
    /// <summary>x [B, T, d] → [B, T, d] by the loop over experts and heads.</summary>
    public static Tensor Forward(MixtureOfAttention mixer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var (w, bias) = (mixer.Qkv.weight!, mixer.QkvBias);
        int e = mixer.Experts, h = mixer.HeadsPerExpert, dk = mixer.KeyDim, dv = mixer.ValueDim;
        long allHeads = mixer.Heads, t = x.size(1);
        var r = torch.softmax(nn.functional.linear(x, mixer.Router.Weight.weight!), -1);  // r_t [B, T, E]
        var hidden = torch.ones(t, t, dtype: ScalarType.Bool, device: x.device).triu(1);   // j > t
        Tensor? y = null;
        for (int i = 0; i < e; i++)
        {
            var expert = torch.zeros_like(x) + mixer.OutputBias[i];                      // b_O^i
            for (int head = 0; head < h; head++)
            {
                long g = i * h + head;                                                   // the head's index among E·H
                var q = Slice(x, w, bias, g * dk, dk);
                var k = Slice(x, w, bias, allHeads * dk + g * dk, dk);
                var v = Slice(x, w, bias, 2 * allHeads * dk + g * dv, dv);
                var s = q.matmul(k.transpose(1, 2)) / Math.Sqrt(dk);                     // [B, T, T]
                var a = torch.softmax(s.masked_fill(hidden, double.NegativeInfinity), -1);
                var z = a.matmul(v);                                                     // [B, T, Dv]
                var wo = mixer.Proj.weight!.narrow(1, g * dv, dv);                       // W_O^{i,h} [d, Dv]
                expert = expert + z.matmul(wo.t());
            }
            var term = expert * r.narrow(2, i, 1);                                       // r_{t,i} A_i(x)_t
            y = y is null ? term : y + term;
        }
        return y!.MoveToOuterDisposeScope();
    }

    static Tensor Slice(Tensor x, Tensor w, Tensor bias, long row, int width) =>
        nn.functional.linear(x, w.narrow(0, row, width), bias.narrow(0, row, width));
}
