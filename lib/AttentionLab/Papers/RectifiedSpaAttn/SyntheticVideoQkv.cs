using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>
/// Video-DiT-like queries, keys and values on a T × H × W latent grid in tile (Hilbert) order, plus a tail of "text"
/// tokens (P33 §4). Training-free stand-in for Q/K/V captured from HunyuanVideo or Wan: attention is local with a
/// tunable sharpness, and the rest of the mass is spread over smooth content.
/// </summary>
/// <remarks>
/// Position p = (f, y, x). Positional features φ(p) = √(2/d)·cos(Ω p + β) with Ω ~ N(0, 1/ℓ²) (random Fourier features,
/// φ(p)·φ(p') ≈ exp(−|p − p'|²/2ℓ²)), ℓ = <c>lengthScale</c>. Smooth content c(p) = A ψ(p) with ψ the same kind of
/// features at length scale ℓ_c = <c>contentScale</c> and A ~ N(0, 1): every coordinate is a smooth unit-variance field.
///   q = γ·d^{1/4}·φ(p) + c_q(p) + σ ε,   k = γ·d^{1/4}·φ(p) + c_k(p) + σ ε',   v = c_v(p) + σ ε''.
/// So q·k/√d = γ²·φ(p)·φ(p') + content terms: γ is the locality (γ² the logit of a token's own neighbourhood), σ the
/// noise. Text tokens: q, k, v ~ N(0, 1), no position. Every head draws its own Ω, A. Float64 throughout.
/// </remarks>
public static class SyntheticVideoQkv
{
    /// <summary>
    /// Q, K, V [1, t·h·w + textTokens, heads, d]: visual tokens in <paramref name="order"/> (default
    /// <see cref="TileOrder.Hilbert3D"/>), then the text tokens. Same seed → same bits.
    /// </summary>
    public static (Tensor Q, Tensor K, Tensor V) Generate(int t, int h, int w, int d, double locality, double noise, int textTokens, int seed,
        int heads = 1, double lengthScale = 1.0, double contentScale = 4.0, int[]? order = null, ScalarType dtype = ScalarType.Float64)
    {
        if (t <= 0) throw new ArgumentException($"t must be positive, got {t}.", nameof(t));
        if (h <= 0) throw new ArgumentException($"h must be positive, got {h}.", nameof(h));
        if (w <= 0) throw new ArgumentException($"w must be positive, got {w}.", nameof(w));
        if (d <= 0) throw new ArgumentException($"d must be positive, got {d}.", nameof(d));
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}.", nameof(heads));
        if (!(locality >= 0) || double.IsInfinity(locality))
            throw new ArgumentException($"locality must be finite and ≥ 0, got {locality}.", nameof(locality));
        if (!(noise >= 0) || double.IsInfinity(noise)) throw new ArgumentException($"noise must be finite and ≥ 0, got {noise}.", nameof(noise));
        if (textTokens < 0) throw new ArgumentException($"textTokens must be ≥ 0, got {textTokens}.", nameof(textTokens));
        if (!(lengthScale > 0) || !(contentScale > 0)) throw new ArgumentException("length scales must be positive.", nameof(lengthScale));
        int n = t * h * w;
        order ??= TileOrder.Hilbert3D(t, h, w);
        if (order.Length != n) throw new ArgumentException($"order has {order.Length} entries for {n} tokens.", nameof(order));

        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var coords = new double[n * 3];
        for (int i = 0; i < n; i++)
        {
            int r = order[i];
            coords[3 * i] = r / (h * w); coords[3 * i + 1] = r / w % h; coords[3 * i + 2] = r % w;
        }
        var pos = torch.tensor(coords, new long[] { n, 3 }, ScalarType.Float64);

        Tensor Features(int m, double scale)                                   // √(2/m)·cos(Ω p + β)  [n, m]
        {
            var omega = torch.randn(new long[] { 3, m }, ScalarType.Float64, generator: gen) / scale;
            var phase = torch.rand(new long[] { m }, ScalarType.Float64, generator: gen) * (2 * Math.PI);
            return Math.Sqrt(2.0 / m) * torch.cos(pos.matmul(omega) + phase);
        }
        Tensor Field() => Features(d, contentScale).matmul(torch.randn(new long[] { d, d }, ScalarType.Float64, generator: gen));   // c(p) = A ψ(p)
        Tensor Noise(long rows) => noise * torch.randn(new long[] { rows, d }, ScalarType.Float64, generator: gen);

        var qs = new List<Tensor>(); var ks = new List<Tensor>(); var vs = new List<Tensor>();
        for (int head = 0; head < heads; head++)
        {
            var positional = locality * Math.Pow(d, 0.25) * Features(d, lengthScale);   // γ·d^{1/4}·φ(p)
            var q = positional + Field() + Noise(n);
            var k = positional + Field() + Noise(n);
            var v = Field() + Noise(n);
            if (textTokens > 0)
            {
                q = torch.cat(new[] { q, torch.randn(new long[] { textTokens, d }, ScalarType.Float64, generator: gen) });
                k = torch.cat(new[] { k, torch.randn(new long[] { textTokens, d }, ScalarType.Float64, generator: gen) });
                v = torch.cat(new[] { v, torch.randn(new long[] { textTokens, d }, ScalarType.Float64, generator: gen) });
            }
            qs.Add(q); ks.Add(k); vs.Add(v);
        }
        Tensor Stack(List<Tensor> xs) => torch.stack(xs, 1).unsqueeze(0).to(dtype).contiguous();   // [1, N, heads, d]
        return (Stack(qs).MoveToOuterDisposeScope(), Stack(ks).MoveToOuterDisposeScope(), Stack(vs).MoveToOuterDisposeScope());
    }
}
