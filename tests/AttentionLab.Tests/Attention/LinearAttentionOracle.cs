using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>
/// The definition of causal linear attention written out independently of the engine, in float64:
/// o_t = Σ_{s≤t} λ^{t−s} (φ(q_t)·φ(k_s)) v_s + λ^{t+1} φ(q_t)ᵀ S₀ (normalised: divided by the same with v → 1, plus ε),
/// S_T = λ^T S₀ + Σ_s λ^{T−1−s} φ(k_s) v_sᵀ. The powers λ^{t−s} are computed one by one in C# doubles.
/// </summary>
static class LinearAttentionOracle
{
    public sealed record Result(Tensor Output, Tensor S, Tensor? Z);

    public static Result Run(Tensor q, Tensor k, Tensor v, IFeatureMap map, double[]? logDecay, bool normalize, double eps,
        Tensor? s0 = null, Tensor? z0 = null, double scale = 1.0)
    {
        long t = q.shape[1], h = q.shape[2];
        var qf = map.Apply(q.to(float64) * scale);                                      // [B, T, H, F]
        var kf = map.Apply(k.to(float64));
        var vd = v.to(float64);
        double Log(long head) => logDecay is null ? 0 : Math.Max(logDecay[head], -1e4);
        // W[h, i, j] = λ_h^{i−j} for j ≤ i; P[h, i] = λ_h^{i+1}; R[h, j] = λ_h^{T−1−j}; G[h] = λ_h^T
        var w = new double[h * t * t]; var p = new double[h * t]; var r = new double[h * t]; var g = new double[h];
        for (long hh = 0; hh < h; hh++)
        {
            g[hh] = Math.Exp(t * Log(hh));
            for (long i = 0; i < t; i++)
            {
                p[hh * t + i] = Math.Exp((i + 1) * Log(hh));
                r[hh * t + i] = Math.Exp((t - 1 - i) * Log(hh));
                for (long j = 0; j <= i; j++) w[(hh * t + i) * t + j] = Math.Exp((i - j) * Log(hh));
            }
        }
        var wT = torch.tensor(w, float64).view(h, t, t);
        var pT = torch.tensor(p, float64).view(h, t);
        var rT = torch.tensor(r, float64).view(h, t);
        var gT = torch.tensor(g, float64);
        var scores = torch.einsum("bihf,bjhf->bhij", qf, kf) * wT;                     // λ^{i−j} φq_i·φk_j, causal
        var num = torch.einsum("bhij,bjhd->bihd", scores, vd);
        var den = scores.sum(-1).permute(0, 2, 1);                                     // [B, T, H]
        if (s0 is not null)
        {
            num = num + torch.einsum("bihf,bhfd,hi->bihd", qf, s0.to(float64), pT);
            if (z0 is not null) den = den + torch.einsum("bihf,bhf,hi->bih", qf, z0.to(float64), pT);
        }
        var o = normalize ? num / (den + eps).unsqueeze(-1) : num;
        var s = torch.einsum("bjhf,bjhd,hj->bhfd", kf, vd, rT);
        if (s0 is not null) s = s + gT.view(1, h, 1, 1) * s0.to(float64);
        Tensor? z = null;
        if (normalize)
        {
            z = torch.einsum("bjhf,hj->bhf", kf, rT);
            if (z0 is not null) z = z + gT.view(1, h, 1) * z0.to(float64);
        }
        return new Result(o, s, z);
    }
}
