using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Aaren;

/// <summary>
/// Softmax attention of one fixed query over every prefix (Feng et al. 2024, "Attention as an RNN"), in three forms
/// that agree: <see cref="AarenNaive.Attention"/> (masked softmax), <see cref="Recurrent"/> (the RNN) and <see cref="Scan"/>
/// (parallel prefix scan). Layout: q [H, D] or [B, H, D] (input-independent), k [B, T, H, D], v [B, T, H, Dv];
/// outputs o [B, T, H, Dv] with o_k = Σ_{i≤k} softmax_i(s_1..s_k) v_i.
/// </summary>
/// <remarks>
/// s_i = scale · q·k_i
/// RNN, from (m_0, u_0, w_0) = (−∞, 0, 0):
///   m_k = max(m_{k−1}, s_k)
///   u_k = u_{k−1} e^{m_{k−1}−m_k} + e^{s_k−m_k}
///   w_k = w_{k−1} e^{m_{k−1}−m_k} + v_k e^{s_k−m_k}
///   o_k = w_k / u_k
/// Scan: (m_k, u_k, w_k) = leaf_1 ⊕ … ⊕ leaf_k with leaf_i = (s_i, 1, v_i) and ⊕ from <see cref="SoftmaxMonoid"/>.
/// The max is a running max (a global max underflows on long sequences); the query must not depend on the input
/// (an input-dependent query would need the whole history at every step).
/// </remarks>
public static class AarenAttention
{
    /// <summary>Scores s [B, T, H] = scale · q·k_t, with scale 1/√D by default.</summary>
    public static Tensor Scores(Tensor q, Tensor k, double? scale = null)
    {
        Validate(q, k, null);
        using var scope = NewDisposeScope();
        var qb = q.dim() == 2 ? q.unsqueeze(0) : q;                                 // [1|B, H, D]
        double c = scale ?? 1.0 / Math.Sqrt(k.size(3));
        return ((k * qb.unsqueeze(1)).sum(-1) * c).MoveToOuterDisposeScope();      // s_i = scale · q·k_i
    }

    /// <summary>One RNN step: the state after also seeing key scores <paramref name="s"/> [B, H] with values <paramref name="v"/> [B, H, Dv].</summary>
    public static SoftmaxState Update(SoftmaxState state, Tensor s, Tensor v)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!s.shape.SequenceEqual(state.M.shape) || !v.shape.SequenceEqual(state.W.shape))
            throw new ArgumentException(
                $"s {Guard.ShapeText(s)} and v {Guard.ShapeText(v)} must match the state (m {Guard.ShapeText(state.M)}, w {Guard.ShapeText(state.W)}).",
                nameof(s));
        using var scope = NewDisposeScope();
        var m = torch.maximum(state.M, s);                                          // m_k = max(m_{k−1}, s_k)
        var mSafe = torch.where(m.isneginf(), torch.zeros_like(m), m);             // (−∞, −∞) guard
        var decay = (state.M - mSafe).exp();                                        // e^{m_{k−1} − m_k}
        var fresh = (s - mSafe).exp();                                              // e^{s_k − m_k}
        var u = state.U * decay + fresh;                                            // u_k = u_{k−1} e^{m_{k−1}−m_k} + e^{s_k−m_k}
        var w = state.W * decay.unsqueeze(-1) + v * fresh.unsqueeze(-1);            // w_k = w_{k−1} e^{m_{k−1}−m_k} + v_k e^{s_k−m_k}
        return new SoftmaxState(m, u, w).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The RNN, one token at a time, with constant-size state. Returns outputs [B, T, H, Dv] and the final state
    /// (m, u [B, H], w [B, H, Dv]). <paramref name="initial"/> continues from an earlier state (default: empty).
    /// </summary>
    public static (Tensor Output, SoftmaxState Final) Recurrent(Tensor q, Tensor k, Tensor v, double? scale = null, SoftmaxState? initial = null)
    {
        Validate(q, k, v);
        using var scope = NewDisposeScope();
        var s = Scores(q, k, scale);                                                // [B, T, H]
        long b = k.size(0), t = k.size(1), h = k.size(2), dv = v.size(3);
        var state = initial is null ? SoftmaxMonoid.Identity(new[] { b, h }, dv, v.dtype, v.device)
                                    : new SoftmaxState(initial.M.alias(), initial.U.alias(), initial.W.alias());
        var outputs = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            using var si = s.select(1, i);
            using var vi = v.select(1, i);
            var next = Update(state, si, vi);
            outputs[i] = SoftmaxMonoid.Output(next);                                // o_k = w_k / u_k
            state.Dispose();                                                        // only the newest state stays alive
            state = next;
        }
        var o = torch.stack(outputs, 1);
        return (o.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }

    /// <summary>All prefix states (m, u [B, T, H], w [B, T, H, Dv]) by a parallel prefix scan over the leaves (s_i, 1, v_i).</summary>
    public static SoftmaxState ScanStates(Tensor q, Tensor k, Tensor v, double? scale = null, ScanAlgo algo = ScanAlgo.HillisSteele)
    {
        Validate(q, k, v);
        using var scope = NewDisposeScope();
        var leaves = SoftmaxMonoid.Leaf(Scores(q, k, scale), v);                   // leaf_i = (s_i, 1, v_i)
        return PrefixScan.Inclusive(leaves, SoftmaxMonoid.Combine, dim: 1, algo)   // leaf_1 ⊕ … ⊕ leaf_k
            .MoveToOuterDisposeScope();
    }

    /// <summary>Outputs [B, T, H, Dv] by a parallel prefix scan (the form Aaren trains with).</summary>
    public static Tensor Scan(Tensor q, Tensor k, Tensor v, double? scale = null, ScanAlgo algo = ScanAlgo.HillisSteele)
    {
        using var scope = NewDisposeScope();
        return SoftmaxMonoid.Output(ScanStates(q, k, v, scale, algo)).MoveToOuterDisposeScope();   // o_k = w_k / u_k
    }

    internal static void Validate(Tensor q, Tensor k, Tensor? v)
    {
        Guard.NotNull(q, nameof(q));
        Guard.Rank(k, 4, nameof(k), "B, T, H, D");
        if (q.dim() != 2 && q.dim() != 3)
            throw new ArgumentException($"q must have rank 2 (H, D) or 3 (B, H, D), got shape {Guard.ShapeText(q)}.", nameof(q));
        Guard.FloatingPoint(q, nameof(q));
        Guard.SameDtype(q, nameof(q), k, nameof(k));
        Guard.SameDevice(q, nameof(q), k, nameof(k));
        if (q.size(-1) != k.size(3) || q.size(-2) != k.size(2) || (q.dim() == 3 && q.size(0) != k.size(0)))
            throw new ArgumentException($"k {Guard.ShapeText(k)} does not fit q {Guard.ShapeText(q)}: heads, head dim (and batch) must agree.", nameof(k));
        if (k.size(1) == 0) throw new ArgumentException($"k has no time steps: {Guard.ShapeText(k)}.", nameof(k));
        if (v is null) return;
        Guard.Rank(v, 4, nameof(v), "B, T, H, Dv");
        Guard.SameDtype(q, nameof(q), v, nameof(v));
        Guard.SameDevice(q, nameof(q), v, nameof(v));
        if (v.size(0) != k.size(0) || v.size(1) != k.size(1) || v.size(2) != k.size(2))
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match k {Guard.ShapeText(k)} in batch, length and heads.", nameof(v));
    }
}
