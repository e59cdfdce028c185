using AttentionLab.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>
/// The flows of one Flow-Attention call, head-major: φ(Q) [B, H, n, D], φ(K) [B, H, m, D] and per sink i / source j the
/// incoming flow I, outgoing flow O, conserved flows Î, Ô (clamped), allocation A and competition C. Owns its tensors.
/// </summary>
/// <remarks>
/// Normal (ε = 1e-6, sums over all sinks / sources):
///   I_i = (φq_i + ε)·(Σ_j φk_j + ε)                O_j = (φk_j + ε)·(Σ_i φq_i + ε)
///   Î_i = (φq_i + ε)·(Σ_j φk_j / O_j + ε)          Ô_j = clamp((φk_j + ε)·(Σ_i φq_i / I_i + ε), −1, 1)
///   A_i = σ(Î_i · n/m)                             C_j = m · softmax_j(Ô_j)
/// Causal (n = m = T; every sum a prefix sum, divided by its count to give means):
///   I_i = (φq_i + ε)·(Σ_{j≤i} φk_j + ε)/(i+1)      O_j = (φk_j + ε)·(Σ_{i≤j} φq_i + ε)/(j+1)
///   Î_i = (φq_i + ε)·(Σ_{j≤i} φk_j / O_j + ε)/(i+1) Ô_j = clamp((φk_j + ε)·(Σ_{i≤j} φq_i / I_i + ε)/(j+1), −1, 1)
///   A_i = σ(Î_i)  (no n/m)                         C_j = (j+1) · exp(Ô_j) / Σ_{j′≤j} exp(Ô_j′)
/// </remarks>
public sealed class FlowWeights : IDisposable
{
    internal FlowWeights(bool causal, Tensor phiQ, Tensor phiK, Tensor incoming, Tensor outgoing, Tensor conservedSink, Tensor conservedSource,
        Tensor allocation, Tensor competition)
    {
        Causal = causal;
        PhiQ = phiQ; PhiK = phiK; Incoming = incoming; Outgoing = outgoing;
        ConservedSink = conservedSink; ConservedSource = conservedSource; Allocation = allocation; Competition = competition;
    }

    /// <summary>Whether these are the causal (prefix-sum) flows.</summary>
    public bool Causal { get; }
    /// <summary>φ(Q) = σ(Q): [B, H, n, D].</summary>
    public Tensor PhiQ { get; }
    /// <summary>φ(K) = σ(K): [B, H, m, D].</summary>
    public Tensor PhiK { get; }
    /// <summary>Incoming flow I of each sink: [B, H, n] (a mean in the causal variant).</summary>
    public Tensor Incoming { get; }
    /// <summary>Outgoing flow O of each source: [B, H, m].</summary>
    public Tensor Outgoing { get; }
    /// <summary>Conserved incoming flow Î: [B, H, n].</summary>
    public Tensor ConservedSink { get; }
    /// <summary>Conserved outgoing flow Ô, clamped to [−1, 1]: [B, H, m].</summary>
    public Tensor ConservedSource { get; }
    /// <summary>Allocation A = σ(·) ∈ (0, 1) per sink: [B, H, n].</summary>
    public Tensor Allocation { get; }
    /// <summary>Competition C per source: [B, H, m]; Σ_j C_j = m (normal).</summary>
    public Tensor Competition { get; }

    /// <summary>
    /// The per-sink query scale of the dot product: φq_i / I_i (normal) or φq_i / (I_i·(i+1)) (causal) — the "value
    /// normalisation" that makes each row of (φQ/I)φKᵀ sum to ≈ 1 (normal).
    /// </summary>
    public Tensor ScaledQueries()
    {
        using var scope = NewDisposeScope();
        var denom = Causal ? Incoming * Counts(Incoming.shape[^1], Incoming) : Incoming;
        return (PhiQ / denom.unsqueeze(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>1, 2, …, T as [T] in x's dtype and device (the causal count normalisation).</summary>
    internal static Tensor Counts(long t, Tensor like) => torch.arange(1, t + 1, dtype: like.dtype, device: like.device);

    /// <summary>Moves every tensor out of the current dispose scope.</summary>
    public FlowWeights MoveToOuterDisposeScope()
    {
        foreach (var t in All) t.MoveToOuterDisposeScope();
        return this;
    }

    Tensor[] All => new[] { PhiQ, PhiK, Incoming, Outgoing, ConservedSink, ConservedSource, Allocation, Competition };

    public void Dispose()
    {
        foreach (var t in All) t.Dispose();
    }

    /// <summary>
    /// The flows of projected q [B, n, H, D] and k [B, m, H, D] (before σ), vectorised: O((n + m)·D). Causal needs n = m.
    /// Computed in the engine's accumulation dtype (float64 stays float64, half types in float32).
    /// </summary>
    public static FlowWeights Compute(Tensor q, Tensor k, bool causal, double eps = FlowAttention.DefaultEps)
    {
        FlowAttention.ValidateQk(q, k, causal, eps);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(q.dtype);
        var fq = LinearAttention.MapHeads(q, acc, FeatureMaps.Sigmoid, 1.0);           // φ(Q) = σ(Q) [B, H, n, D]
        var fk = LinearAttention.MapHeads(k, acc, FeatureMaps.Sigmoid, 1.0);           // φ(K) = σ(K) [B, H, m, D]
        var w = causal ? CausalFlows(fq, fk, eps) : NormalFlows(fq, fk, eps);
        return w.MoveToOuterDisposeScope();
    }

    /// <summary>(x + ε)·(y + ε) row by row: x [.., L, D], y [.., L, D] or [.., D] → [.., L].</summary>
    static Tensor Dot(Tensor x, Tensor y, double eps)
    {
        long d = x.shape[^1];
        if (y.dim() == x.dim())                                                          // Σ_d (x+ε)(y+ε) = x·y + ε(Σx + Σy) + Dε²
            return (x * y).sum(-1) + (x.sum(-1) + y.sum(-1)) * eps + d * eps * eps;      // (no two shifted copies of [B, H, T, D])
        return x.matmul((y + eps).unsqueeze(-1)).squeeze(-1) + (y + eps).sum(-1, keepdim: true) * eps;   // y [B, H, D]: (x+ε)·(y+ε)
    }

    /// <summary>
    /// Σ_{j≤i} x_j along the sequence axis (dim 2 of [B, H, T, D]), in blocks of 64: a cumsum inside each block plus the
    /// block totals before it — the same sums as <c>cumsum(2)</c>, about twice as fast on CPU for long T (strided cumsum).
    /// </summary>
    internal static Tensor PrefixSum(Tensor x)
    {
        const long block = 64;
        long t = x.shape[2], nb = t / block;
        if (nb < 2) return x.cumsum(2);
        long b = x.shape[0], h = x.shape[1], d = x.shape[3], main = nb * block;
        var inner = x.narrow(2, 0, main).reshape(b, h, nb, block, d).cumsum(3);              // within each block
        var totals = inner.select(3, block - 1);                                             // [B, H, nb, D]
        var before = totals.cumsum(2) - totals;                                              // Σ of the blocks before
        var head = (inner + before.unsqueeze(3)).reshape(b, h, main, d);
        if (main == t) return head;
        var carry = (before.select(2, nb - 1) + totals.select(2, nb - 1)).unsqueeze(2);     // all full blocks
        return torch.cat(new[] { head, x.narrow(2, main, t - main).cumsum(2) + carry }, 2);
    }

    static FlowWeights NormalFlows(Tensor fq, Tensor fk, double eps)
    {
        double n = fq.shape[2], m = fk.shape[2];
        var incoming = Dot(fq, fk.sum(2), eps);                                          // I_i = (φq_i+ε)·(Σ_j φk_j+ε)
        var outgoing = Dot(fk, fq.sum(2), eps);                                          // O_j = (φk_j+ε)·(Σ_i φq_i+ε)
        var sink = Dot(fq, (fk / outgoing.unsqueeze(-1)).sum(2), eps);                   // Î_i = (φq_i+ε)·(Σ_j φk_j/O_j+ε)
        var source = Dot(fk, (fq / incoming.unsqueeze(-1)).sum(2), eps).clamp(-1.0, 1.0); // Ô_j = clamp((φk_j+ε)·(Σ_i φq_i/I_i+ε))
        var allocation = torch.sigmoid(sink * (n / m));                                  // A_i = σ(Î_i·n/m)
        var competition = torch.softmax(source, -1) * m;                                 // C_j = m·softmax_j(Ô_j)
        return new FlowWeights(false, fq, fk, incoming, outgoing, sink, source, allocation, competition);
    }

    static FlowWeights CausalFlows(Tensor fq, Tensor fk, double eps)
    {
        var count = Counts(fq.shape[2], fq);                                             // i + 1
        var incoming = Dot(fq, PrefixSum(fk), eps) / count;                               // I_i = (φq_i+ε)·(Σ_{j≤i} φk_j+ε)/(i+1)
        var outgoing = Dot(fk, PrefixSum(fq), eps) / count;                               // O_j = (φk_j+ε)·(Σ_{i≤j} φq_i+ε)/(j+1)
        var sink = Dot(fq, PrefixSum(fk / outgoing.unsqueeze(-1)), eps) / count;        // Î_i = (φq_i+ε)·(Σ_{j≤i} φk_j/O_j+ε)/(i+1)
        var source = (Dot(fk, PrefixSum(fq / incoming.unsqueeze(-1)), eps) / count).clamp(-1.0, 1.0); // Ô_j, clamped
        var allocation = torch.sigmoid(sink);                                            // A_i = σ(Î_i), no n/m
        var e = source.exp();                                                            // |Ô| ≤ 1: no max-subtraction needed
        var competition = e / e.cumsum(-1) * count;                                      // C_j = (j+1)·e^{Ô_j}/Σ_{j′≤j} e^{Ô_j′}
        return new FlowWeights(true, fq, fk, incoming, outgoing, sink, source, allocation, competition);
    }
}
