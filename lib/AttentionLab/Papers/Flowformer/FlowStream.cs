using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>
/// Causal Flow-Attention one token at a time. Every causal flow is a prefix sum, so decoding keeps five running sums and
/// one linear-attention state — constant memory in t, like any linear RNN. Reproduces <see cref="FlowAttention.Attend"/>
/// (causal) token by token.
/// </summary>
/// <remarks>
/// At position i (count c = i + 1), with φq = σ(q_i), φk = σ(k_i):
///   Σφk ← Σφk + φk,  Σφq ← Σφq + φq
///   I_i = (φq+ε)·(Σφk+ε)/c,   O_i = (φk+ε)·(Σφq+ε)/c
///   Σ(φk/O) ← Σ(φk/O) + φk/O_i,   Î_i = (φq+ε)·(Σ(φk/O)+ε)/c,   A_i = σ(Î_i)
///   Σ(φq/I) ← Σ(φq/I) + φq/I_i,   Ô_i = clamp((φk+ε)·(Σ(φq/I)+ε)/c, −1, 1)
///   Σe ← Σe + e^{Ô_i},   C_i = c·e^{Ô_i}/Σe
///   S ← S + φk (C_i v_i)ᵀ,   r_i = A_i · (φq/(I_i·c))ᵀ S
/// </remarks>
public sealed class FlowStreamState : AttentionState
{
    Tensor keySum, querySum, keyOverOutgoing, queryOverIncoming, expSum, state;

    /// <param name="batch">B.</param>
    /// <param name="heads">H.</param>
    /// <param name="headDim">D = Dv (Flow-Attention's value width equals its key width).</param>
    /// <param name="dtype">dtype of the inputs (sums are kept in its accumulation dtype).</param>
    /// <param name="device">device of the inputs.</param>
    /// <param name="eps">ε of the flows.</param>
    public FlowStreamState(long batch, long heads, long headDim, ScalarType dtype, Device device, double eps = FlowAttention.DefaultEps)
    {
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        if (!(eps > 0)) throw new ArgumentException($"eps must be positive, got {eps}.", nameof(eps));
        Eps = eps;
        var acc = LinearAttention.AccumulationDtype(dtype);
        Tensor Zeros(params long[] shape) => torch.zeros(shape, dtype: acc, device: device);
        keySum = Zeros(batch, heads, headDim); querySum = Zeros(batch, heads, headDim);
        keyOverOutgoing = Zeros(batch, heads, headDim); queryOverIncoming = Zeros(batch, heads, headDim);
        expSum = Zeros(batch, heads); state = Zeros(batch, heads, headDim, headDim);
    }

    /// <summary>ε of the flows.</summary>
    public double Eps { get; }

    public override long Bytes => new[] { keySum, querySum, keyOverOutgoing, queryOverIncoming, expSum, state }
        .Sum(t => t.NumberOfElements * t.ElementSize);

    /// <summary>The mixer's decode step: q, k, v [B, 1, H, D] of the new token → r_t [B, 1, H, D] (<see cref="Step"/>).</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x) => Step(q.squeeze(1), k.squeeze(1), v.squeeze(1)).unsqueeze(1);

    /// <summary>q_t, k_t, v_t [B, H, D] (projected, before σ) → r_t [B, H, D] in q's dtype; advances the state.</summary>
    public Tensor Step(Tensor q, Tensor k, Tensor v)
    {
        foreach (var (t, name) in new[] { (q, nameof(q)), (k, nameof(k)), (v, nameof(v)) })
        {
            Guard.Rank(t, 3, name, "B, H, D");
            Guard.FloatingPoint(t, name);
            if (!t.shape.SequenceEqual(keySum.shape))
                throw new ArgumentException($"{name} {Guard.ShapeText(t)} does not fit the state's [B, H, D] = {Guard.ShapeText(keySum)}.", name);
        }
        using var scope = NewDisposeScope();
        var acc = keySum.dtype;
        double c = Position + 1, eps = Eps;
        var fq = torch.sigmoid(q.to(acc));                                                   // φq = σ(q_i)
        var fk = torch.sigmoid(k.to(acc));                                                   // φk = σ(k_i)
        Tensor Dot(Tensor x, Tensor y) => ((x + eps) * (y + eps)).sum(-1);
        var keySumNext = keySum + fk;                                                        // Σ_{j≤i} φk_j
        var querySumNext = querySum + fq;                                                    // Σ_{j≤i} φq_j
        var incoming = Dot(fq, keySumNext) / c;                                              // I_i
        var outgoing = Dot(fk, querySumNext) / c;                                            // O_i
        var kOverO = keyOverOutgoing + fk / outgoing.unsqueeze(-1);                          // Σ φk_j/O_j
        var qOverI = queryOverIncoming + fq / incoming.unsqueeze(-1);                        // Σ φq_j/I_j
        var sink = Dot(fq, kOverO) / c;                                                      // Î_i
        var source = (Dot(fk, qOverI) / c).clamp(-1.0, 1.0);                                 // Ô_i
        var allocation = torch.sigmoid(sink);                                                // A_i = σ(Î_i)
        var e = source.exp();
        var expSumNext = expSum + e;                                                         // Σ_{j≤i} e^{Ô_j}
        var competition = e / expSumNext * c;                                                // C_i
        var stateNext = state + fk.unsqueeze(-1) * (v.to(acc) * competition.unsqueeze(-1)).unsqueeze(-2);   // S += φk (C_i v_i)ᵀ
        var scaledQuery = fq / (incoming * c).unsqueeze(-1);                                 // φq/(I_i·c)
        var r = scaledQuery.unsqueeze(-2).matmul(stateNext).squeeze(-2) * allocation.unsqueeze(-1);   // A_i · q′ᵀ S
        Replace(ref keySum, keySumNext); Replace(ref querySum, querySumNext);
        Replace(ref keyOverOutgoing, kOverO); Replace(ref queryOverIncoming, qOverI);
        Replace(ref expSum, expSumNext); Replace(ref state, stateNext);
        Advance();
        return r.to(q.dtype).MoveToOuterDisposeScope();
    }

    static void Replace(ref Tensor field, Tensor next)
    {
        var kept = next.detach().DetachFromDisposeScope();                                   // decoding is inference: no graph across steps
        field.Dispose();
        field = kept;
    }

    public override void Dispose()
    {
        foreach (var t in new[] { keySum, querySum, keyOverOutgoing, queryOverIncoming, expSum, state }) t.Dispose();
    }
}
