using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.DeconstructingAttention;

/// <summary>
/// The naive twins of the variants: the mixing matrix built entry by entry (loops over i and j ≤ i, a [B, H] vector per
/// entry) from its definition, then z_i = Σ_j A_ij v_j by a loop. Slow, float64-capable, differentiable.
/// </summary>
public static class DeconstructedNaive
{
    /// <summary>
    /// A [B, H, T, T] of <paramref name="kind"/> from q, k [B, T, H, Dk] (ignored by NoMix, FixedMix, StaticMix);
    /// <paramref name="staticBias"/> b [H, ≥T] for StaticMix. DecoupledQK's weights are Standard's on q, k from E.
    /// </summary>
    public static Tensor Pattern(MixerKind kind, Tensor q, Tensor k, Tensor? staticBias = null)
    {
        using var scope = NewDisposeScope();
        long b = q.size(0), t = q.size(1), h = q.size(2);
        double scale = 1.0 / Math.Sqrt(q.size(3));
        var rows = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var row = new List<Tensor>();                                               // one [B, H] per j ≤ i
            for (long j = 0; j <= i; j++)
            {
                var qi = q.select(1, i);
                var kj = k.select(1, j);
                row.Add(kind switch
                {
                    MixerKind.NoMix => torch.full(b, h, i == j ? 1.0 : 0.0, dtype: q.dtype, device: q.device),
                    MixerKind.FixedMix => torch.full(b, h, 1.0 / (i + 1), dtype: q.dtype, device: q.device),
                    MixerKind.StaticMix => staticBias!.to(q.dtype).select(1, i - j).unsqueeze(0).expand(b, h),                  // b_h[i − j]
                    MixerKind.Standard or MixerKind.DecoupledQK or MixerKind.ReluNorm => (qi * kj).sum(-1) * scale,             // q_i·k_j/√Dk
                    MixerKind.DistanceKernel => (qi - kj).square().sum(-1).neg() * scale,                                       // −‖q_i − k_j‖²/√Dk
                    _ => throw new ArgumentException($"kind {(int)kind} is not a known MixerKind.", nameof(kind)),
                });
            }
            var s = torch.stack(row, -1);                                               // [B, H, i + 1]
            var a = kind switch
            {
                MixerKind.NoMix or MixerKind.FixedMix => s,
                MixerKind.ReluNorm => ReluRow(s),
                _ => SoftmaxRow(s),                                                      // softmax over j ≤ i
            };
            rows.Add(nn.functional.pad(a, new long[] { 0, t - i - 1 }));                // zeros for j > i
        }
        if (kind == MixerKind.StaticMix && staticBias is null) throw new ArgumentException("StaticMix needs its bias.", nameof(staticBias));
        return torch.stack(rows, 2).MoveToOuterDisposeScope();                          // [B, H, T, T]
    }

    static Tensor SoftmaxRow(Tensor s)
    {
        var e = (s - s.amax(new long[] { -1 }, keepdim: true)).exp();
        return e / e.sum(-1, keepdim: true);
    }

    static Tensor ReluRow(Tensor s)
    {
        var r = s.relu();
        var sum = r.sum(-1, keepdim: true);
        var mean = torch.full_like(s, 1.0 / s.size(-1));
        return torch.where(sum.eq(0), mean, r / sum.masked_fill(sum.eq(0), 1.0));   // a NaN sum stays NaN
    }

    /// <summary>z [B, T, H, Dv] with z_i = Σ_{j≤i} A_ij v_j, by a loop over i and j.</summary>
    public static Tensor Combine(Tensor pattern, Tensor v)
    {
        using var scope = NewDisposeScope();
        long t = v.size(1);
        var outputs = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var z = torch.zeros_like(v.select(1, 0));                                   // [B, H, Dv]
            for (long j = 0; j <= i; j++)
                z = z + pattern.select(2, i).select(2, j).unsqueeze(-1) * v.select(1, j);   // A_ij v_j
            outputs.Add(z);
        }
        return torch.stack(outputs, 1).MoveToOuterDisposeScope();
    }

    /// <summary>The naive twin's output of <paramref name="mixer"/>: its own projections, the naive pattern and combine, its W_O.</summary>
    public static Tensor Output(DeconstructedAttention mixer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        using var scope = NewDisposeScope();
        var (q, k, v) = mixer.Project(x);
        var a = Pattern(mixer.Kind, q, k, (mixer as StaticMixAttention)?.StaticBias);
        var z = Combine(a, v);
        return mixer.Proj.call(z.reshape(z.size(0), z.size(1), -1)).MoveToOuterDisposeScope();
    }
}
