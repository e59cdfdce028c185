using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// A partial softmax over a set of keys: running max <see cref="M"/>, denominator <see cref="U"/> and numerator
/// <see cref="W"/>. M and U have a shape S (e.g. [B, T, H]); W has S + [Dv]. An element of <see cref="SoftmaxMonoid"/>.
/// </summary>
public sealed class SoftmaxState : IScanElement<SoftmaxState>, IDisposable
{
    public SoftmaxState(Tensor m, Tensor u, Tensor w)
    {
        M = m; U = u; W = w;
    }

    /// <summary>m = max_i s_i (−∞ for the empty set).</summary>
    public Tensor M { get; }
    /// <summary>u = Σ_i exp(s_i − m).</summary>
    public Tensor U { get; }
    /// <summary>w = Σ_i exp(s_i − m) · v_i.</summary>
    public Tensor W { get; }

    /// <summary>Bytes held by the three tensors.</summary>
    public long Bytes => M.NumberOfElements * M.ElementSize + U.NumberOfElements * U.ElementSize + W.NumberOfElements * W.ElementSize;

    public IReadOnlyList<Tensor> Parts => new[] { M, U, W };
    public SoftmaxState WithParts(IReadOnlyList<Tensor> parts) => new(parts[0], parts[1], parts[2]);

    /// <summary>Moves the three tensors out of the current dispose scope.</summary>
    public SoftmaxState MoveToOuterDisposeScope()
    {
        M.MoveToOuterDisposeScope(); U.MoveToOuterDisposeScope(); W.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Takes the three tensors out of every dispose scope: the caller (a long-lived holder) disposes them.</summary>
    public SoftmaxState DetachFromDisposeScope()
    {
        M.DetachFromDisposeScope(); U.DetachFromDisposeScope(); W.DetachFromDisposeScope();
        return this;
    }

    public void Dispose()
    {
        M.Dispose(); U.Dispose(); W.Dispose();
    }
}

/// <summary>
/// The log-sum-exp monoid behind softmax attention with a fixed query: a key i becomes the leaf (s_i, 1, v_i);
/// combining two partial softmaxes gives the partial softmax of their union; the output is w/u.
/// </summary>
/// <remarks>
/// (m_A, u_A, w_A) ⊕ (m_B, u_B, w_B) = (m, u_A e^{m_A−m} + u_B e^{m_B−m}, w_A e^{m_A−m} + w_B e^{m_B−m}),
/// m = max(m_A, m_B). Identity: (−∞, 0, 0). When both m are −∞ the exponent would be −∞ − (−∞) = NaN; the guard
/// subtracts 0 instead, so identity ⊕ identity = identity and no NaN reaches values or gradients. A NaN (or +∞) score
/// makes its leaf's u = e^{s − s} NaN, as the reference softmax and the RNN step do, so a one-key prefix is NaN too.
/// Associative up to floating-point rounding (the same algebra as flash-decoding's LSE merge).
/// </remarks>
public static class SoftmaxMonoid
{
    /// <summary>Leaf of one key: (m, u, w) = (s, 1, v). <paramref name="s"/> has shape S, <paramref name="v"/> S + [Dv].</summary>
    public static SoftmaxState Leaf(Tensor s, Tensor v)
    {
        Guard.NotNull(s, nameof(s));
        Guard.NotNull(v, nameof(v));
        Guard.FloatingPoint(s, nameof(s));
        Guard.SameDtype(s, nameof(s), v, nameof(v));
        Guard.SameDevice(s, nameof(s), v, nameof(v));
        if (v.dim() != s.dim() + 1 || !v.shape.Take((int)s.dim()).SequenceEqual(s.shape))
            throw new ArgumentException($"v must have shape s + [Dv]; s is {Guard.ShapeText(s)}, v is {Guard.ShapeText(v)}.", nameof(v));
        using var scope = NewDisposeScope();
        var ordinary = s.isfinite().logical_or(s.isneginf());                      // u = e^{s − s} = 1, except NaN (and +∞ − +∞): NaN
        var u = torch.ones_like(s).masked_fill(ordinary.logical_not(), double.NaN);
        return new SoftmaxState(s.alias(), u, v.alias()).MoveToOuterDisposeScope();   // (s_i, 1, v_i)
    }

    /// <summary>The identity (−∞, 0, 0) with M, U of <paramref name="shape"/> and W of shape + [valueDim].</summary>
    public static SoftmaxState Identity(long[] shape, long valueDim, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Guard.Positive(valueDim, nameof(valueDim));
        using var scope = NewDisposeScope();
        var m = torch.full(shape, double.NegativeInfinity, dtype: dtype, device: device);   // m_0 = −∞
        var u = torch.zeros(shape, dtype: dtype, device: device);                            // u_0 = 0
        var w = torch.zeros(shape.Append(valueDim).ToArray(), dtype: dtype, device: device); // w_0 = 0
        return new SoftmaxState(m, u, w).MoveToOuterDisposeScope();
    }

    /// <summary>a ⊕ b: the partial softmax of the union of both key sets (a's keys first).</summary>
    public static SoftmaxState Combine(SoftmaxState a, SoftmaxState b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.M.shape.SequenceEqual(b.M.shape) || !a.W.shape.SequenceEqual(b.W.shape))
            throw new ArgumentException(
                $"b (m {Guard.ShapeText(b.M)}, w {Guard.ShapeText(b.W)}) must match a (m {Guard.ShapeText(a.M)}, w {Guard.ShapeText(a.W)}).", nameof(b));
        using var scope = NewDisposeScope();
        var m = torch.maximum(a.M, b.M);                                          // m = max(m_A, m_B)
        var mSafe = torch.where(m.isneginf(), torch.zeros_like(m), m);           // guard: −∞ − (−∞) would be NaN
        var alpha = (a.M - mSafe).exp();                                          // e^{m_A − m}
        var beta = (b.M - mSafe).exp();                                           // e^{m_B − m}
        var u = a.U * alpha + b.U * beta;                                         // u = u_A e^{m_A−m} + u_B e^{m_B−m}
        var w = a.W * alpha.unsqueeze(-1) + b.W * beta.unsqueeze(-1);             // w = w_A e^{m_A−m} + w_B e^{m_B−m}
        return new SoftmaxState(m, u, w).MoveToOuterDisposeScope();
    }

    /// <summary>o = w / u, and 0 where u = 0 (the empty set).</summary>
    public static Tensor Output(SoftmaxState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var scope = NewDisposeScope();
        var empty = state.U.eq(0).unsqueeze(-1);
        var u = torch.where(empty, torch.ones_like(state.W), state.U.unsqueeze(-1));
        return torch.where(empty, torch.zeros_like(state.W), state.W / u).MoveToOuterDisposeScope();   // o = w / u
    }

    /// <summary>log Σ_i exp(s_i) = m + log u (−∞ for the empty set).</summary>
    public static Tensor LogSumExp(SoftmaxState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var scope = NewDisposeScope();
        return torch.where(state.U.eq(0), state.M, state.M + state.U.log()).MoveToOuterDisposeScope();
    }
}
