using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SynapticResonance;

/// <summary>
/// The naive twin of the resonance memory ([ours], spec §2): one token loop that carries the context trace c and the fast
/// weights S explicitly — r_t from c_{t−1}, read m_t = S_{t−1} φ(q_t)/√D, then c_t and S_t = λ S_{t−1} + η r_t φ(v_t) φ(k_t)ᵀ.
/// Float64-capable, never fast. It also returns ‖S_t‖ (the spec's state-norm trace) and the final S.
/// </summary>
public static class SynapticResonanceNaive
{
    /// <summary>
    /// (m [B, T, H, Dv], r [B, T], ‖S_t‖_F [B, T] (summed over heads), S_{T−1} [B, H, Dv, D]) from x [B, T, d], q, k, v
    /// [B, T, H, ·], a, b, γ (0-dim), log λ [H], η [H].
    /// </summary>
    public static (Tensor Read, Tensor Resonance, Tensor StateNorms, Tensor FinalState) Forward(Tensor x, Tensor q, Tensor k, Tensor v,
        Tensor a, Tensor b, Tensor gamma, Tensor logLambda, Tensor eta)
    {
        SynapticResonanceOps.Validate(q, k, v, torch.zeros(new[] { q.size(0), q.size(1) }), logLambda, eta);
        using var scope = NewDisposeScope();
        long batch = q.size(0), t = q.size(1), h = q.size(2), dk = q.size(3), dv = v.size(3);
        var lambda = logLambda.exp().view(1, h, 1, 1);
        var c = torch.zeros(new[] { batch, x.size(2) }, dtype: x.dtype, device: x.device);
        var s = torch.zeros(new[] { batch, h, dv, dk }, dtype: q.dtype, device: q.device);
        var reads = new List<Tensor>();
        var gates = new List<Tensor>();
        var norms = new List<Tensor>();
        for (int i = 0; i < t; i++)
        {
            var xi = x[.., i];
            var ri = torch.sigmoid(a * SynapticResonanceOps.Cosine(xi, c) + b);                       // r_t from c_{t−1}
            var phiQ = SynapticResonanceOps.Phi(q[.., i]) / Math.Sqrt(dk);                             // [B, H, D]
            reads.Add(torch.einsum("bhed,bhd->bhe", s, phiQ));                                         // S_{t−1} φ(q_t)
            c = gamma * c + (1 - gamma) * xi;
            var outer = torch.einsum("bhe,bhd->bhed", SynapticResonanceOps.Phi(v[.., i]), SynapticResonanceOps.Phi(k[.., i]));
            s = lambda * s + eta.view(1, h, 1, 1) * ri.view(batch, 1, 1, 1) * outer;
            gates.Add(ri);
            norms.Add(s.square().sum(new long[] { 1, 2, 3 }).sqrt());
        }
        return (torch.stack(reads, 1).MoveToOuterDisposeScope(), torch.stack(gates, 1).MoveToOuterDisposeScope(),
            torch.stack(norms, 1).MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    /// <summary>The whole <paramref name="layer"/> with its memory read by <see cref="Forward"/>'s token loop: y [B, T, d] from x [B, T, d].</summary>
    public static Tensor Layer(SynapticResonanceLayer layer, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var scope = NewDisposeScope();
        var (q, k, v) = layer.Project(x);
        var pos = torch.arange(q.size(1), device: q.device);
        var z = layer.Attend(q, k, v, pos, pos).Z;
        if (layer.HasResonance)
        {
            var (a, b, gamma, logLambda, eta) = layer.Knobs();
            z = z + Forward(x, q, k, v, a, b, gamma, logLambda, eta).Read;
        }
        return layer.Proj.call(z.reshape(z.size(0), z.size(1), -1)).MoveToOuterDisposeScope();
    }
}
