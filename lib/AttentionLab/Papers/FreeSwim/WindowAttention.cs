using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>
/// Softmax attention restricted to a <see cref="WindowIndex"/> by gathering each query's K keys: O(N·K) instead of
/// O(N²) — the TorchSharp stand-in for the official FlexAttention block mask. Layout [B, N, H, D].
/// </summary>
/// <remarks>
/// K̃_n = K[idx_n], Ṽ_n = V[idx_n] (gathered, [K, H, D]);  s_nk = scale · q_n·K̃_nk  (−∞ on padding slots);
/// p_n = softmax_k(s_n);  o_n = Σ_k p_nk Ṽ_nk. Equal to dense masked attention with <see cref="WindowIndex.ToDense"/>
/// (<see cref="FreeSwimNaive.WindowAttention"/>). Every query's own token lies in its window, so no row is empty. Queries are processed in
/// chunks whose gathered [B, c, K, H, D] temporaries stay under <see cref="ChunkBytes"/>: a 12-image, CFG-doubled
/// 16×16-token batch would otherwise gather 127 MB per tensor and layer, above the heap's mmap threshold, and pay fresh
/// page faults on every call (4× slower per step in a notebook run).
/// </remarks>
public static class WindowAttention
{
    /// <summary>Output [B, N, H, Dv] for q [B, N, H, D], k [B, N, H, D], v [B, N, H, Dv]; scale default 1/√D.</summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, WindowIndex window, double? scale = null)
    {
        Validate(q, k, v, window);
        using var scope = NewDisposeScope();
        long b = q.shape[0], n = q.shape[1], h = q.shape[2], d = q.shape[3], dv = v.shape[3], slots = window.Slots;
        double s = scale ?? 1.0 / Math.Sqrt(d);
        long perQuery = Math.Max(1, b * slots * h * Math.Max(d, dv) * q.ElementSize);
        long chunk = Math.Clamp(ChunkBytes / perQuery, 1, n);
        var outputs = new List<Tensor>();
        for (long start = 0; start < n; start += chunk)
        {
            using var inner = NewDisposeScope();
            long c = Math.Min(chunk, n - start);
            var flat = window.Indices.narrow(0, start, c).reshape(-1);
            var kg = k.index_select(1, flat).view(b, c, slots, h, d);                         // K̃ [B, c, K, H, D]
            var vg = v.index_select(1, flat).view(b, c, slots, h, dv);                        // Ṽ [B, c, K, H, Dv]
            var scores = (q.narrow(1, start, c).unsqueeze(2) * kg).sum(-1) * s;               // s_nk = scale · q_n·K̃_nk  [B, c, K, H]
            scores = scores.masked_fill(window.Valid.narrow(0, start, c).logical_not().view(1, c, slots, 1), double.NegativeInfinity);
            var p = scores.softmax(2);                                                        // p_n = softmax_k(s_n)
            outputs.Add((p.unsqueeze(-1) * vg).sum(2).MoveToOuterDisposeScope());            // o_n = Σ_k p_nk Ṽ_nk  [B, c, H, Dv]
        }
        var o = outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 1);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>Largest gathered temporary per query chunk, bytes (8 MiB: well under the heap's mmap threshold and near the L3).</summary>
    public const long ChunkBytes = 8L << 20;

    internal static void Validate(Tensor q, Tensor k, Tensor v, WindowIndex window)
    {
        ArgumentNullException.ThrowIfNull(window);
        Guard.Qkv(q, k, v, "B, N, H, D", "B, N, H, D", "B, N, H, Dv");
        Guard.SameDevice(q, nameof(q), window.Indices, nameof(window));
        long n = window.Grid.Tokens;
        if (q.shape[1] != n)
            throw new ArgumentException(
                $"q has {q.shape[1]} tokens but the window's grid {window.Grid.Frames}×{window.Grid.Height}×{window.Grid.Width} " +
                $"has {n} (q {Guard.ShapeText(q)}).", nameof(q));
        if (!k.shape.Take(3).SequenceEqual(q.shape.Take(3)) || k.shape[3] != q.shape[3])
            throw new ArgumentException($"k {Guard.ShapeText(k)} must match q {Guard.ShapeText(q)}.", nameof(k));
        if (!v.shape.Take(3).SequenceEqual(q.shape.Take(3)))
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match q {Guard.ShapeText(q)} in batch, tokens and heads.", nameof(v));
    }
}

/// <summary>FreeSwim's attention scale.</summary>
public static class EntropyScale
{
    /// <summary>
    /// s = √(log_N(2N) / d_head) with N = native latent tokens per frame (official: <c>math.sqrt(math.log(30*52*2, 30*52) / d)</c>):
    /// log_N(2N) = 1 + ln 2 / ln N, a constant sharpening of 1/√d_head by √(1 + ln 2/ln N) (≈ 4 % at N = 1560, 8 % at N = 64).
    /// </summary>
    public static double Factor(int nNative, int dHead)
    {
        if (nNative < 2) throw new ArgumentOutOfRangeException(nameof(nNative), nNative, "nNative must be ≥ 2 (log base N).");
        Guard.Positive(dHead, nameof(dHead));
        return Math.Sqrt(Math.Log(2.0 * nNative) / Math.Log(nNative) / dHead);
    }
}
