using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>The memory's architecture: what M(x; W) is, per head.</summary>
public enum MemoryArchitecture
{
    /// <summary>M(x) = W x, one matrix W [Dv, D] per head.</summary>
    Linear,
    /// <summary>
    /// M(x) = W₂ σ(W₁ x), optionally layer-normalised and with a residual (<see cref="AssociativeMemoryOptions.LayerNorm"/>,
    /// <see cref="AssociativeMemoryOptions.Residual"/>), W₁ [Dh, D], W₂ [Dv, Dh] per head.
    /// </summary>
    Mlp,
}

/// <summary>The MLP memory's activation σ.</summary>
public enum MemoryActivation
{
    /// <summary>GELU, exact (erf) form: σ(z) = z Φ(z) (lucidrains' MemoryMLP; Miras).</summary>
    Gelu,
    /// <summary>SiLU: σ(z) = z·sigmoid(z).</summary>
    Silu,
}

/// <summary>The settings of an <see cref="AssociativeMemory"/>: architecture, attentional bias, retention, chunk size.</summary>
public sealed record AssociativeMemoryOptions
{
    /// <summary>Linear (one matrix per head) or a 2-layer MLP per head.</summary>
    public MemoryArchitecture Architecture { get; init; } = MemoryArchitecture.Linear;
    /// <summary>σ of the MLP memory.</summary>
    public MemoryActivation Activation { get; init; } = MemoryActivation.Gelu;
    /// <summary>MLP memory only: M(x) = x + W₂ σ(W₁ x) (needs Dv = D).</summary>
    public bool Residual { get; init; }
    /// <summary>
    /// MLP memory only: a parameter-free LayerNorm over Dv on the MLP's output, M(x) = (x +) LN(W₂ σ(W₁ x)) — Miras's
    /// x + LN(W₁ GELU(W₂ x)) with <see cref="Residual"/>, lucidrains' ResidualNorm wrapper. ε = 1e-5.
    /// </summary>
    public bool LayerNorm { get; init; }
    /// <summary>The inner loss ℓ(M(k), v).</summary>
    public AttentionalBias Bias { get; init; } = AttentionalBias.L2;
    /// <summary>How the memory forgets (the map from accumulator to weights).</summary>
    public Retention Retention { get; init; } = Retention.L2Decay;
    /// <summary>Tokens per chunk of <see cref="AssociativeMemory.Chunked"/> (gradients at the chunk-start memory).</summary>
    public int ChunkSize { get; init; } = 16;

    /// <summary>Linear memory, ℓ2 bias, L2 decay, chunk 16 (Titans' linear memory).</summary>
    public static AssociativeMemoryOptions Default { get; } = new();

    /// <summary>Number of weight matrices per head: 1 (linear) or 2 (MLP).</summary>
    public int WeightCount => Architecture == MemoryArchitecture.Linear ? 1 : 2;
}

/// <summary>
/// The memory after some prefix of the sequence: the accumulators A (one per weight matrix, [B, H, out, in]; the weights
/// are W = R(A) of the retention) and, with momentum, the surprise S (same shapes). Owns its tensors.
/// </summary>
/// <remarks>
/// Linear memory: A = [A (Dv × D)]. MLP memory: A = [A₁ (Dh × D), A₂ (Dv × Dh)]. With L2 decay A is W itself; with the KL
/// retention A = log W (rows log-softmax-normalised); with ℓq A is Moneta's A and W = A / ‖A‖_q^{q−2}.
/// </remarks>
public sealed class MemoryState : IDisposable
{
    /// <param name="weights">the accumulators [B, H, out, in], one per weight matrix.</param>
    /// <param name="momentum">the surprise S per weight matrix (same shapes), or null without momentum.</param>
    public MemoryState(Tensor[] weights, Tensor[]? momentum = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Length is < 1 or > 2) throw new ArgumentException($"a memory has 1 or 2 weight matrices, got {weights.Length}.", nameof(weights));
        for (int i = 0; i < weights.Length; i++) Guard.Rank(weights[i], 4, $"{nameof(weights)}[{i}]", "B, H, out, in");
        if (momentum is not null)
        {
            if (momentum.Length != weights.Length)
                throw new ArgumentException($"momentum has {momentum.Length} tensors but there are {weights.Length} weight matrices.", nameof(momentum));
            for (int i = 0; i < momentum.Length; i++)
            {
                Guard.NotNull(momentum[i], $"{nameof(momentum)}[{i}]");
                if (!momentum[i].shape.SequenceEqual(weights[i].shape))
                    throw new ArgumentException(
                        $"momentum[{i}] {Guard.ShapeText(momentum[i])} must have the shape of weights[{i}] {Guard.ShapeText(weights[i])}.", nameof(momentum));
            }
        }
        Weights = weights; Momentum = momentum;
    }

    /// <summary>The accumulators A, [B, H, out, in] each.</summary>
    public Tensor[] Weights { get; }
    /// <summary>The surprise S per weight matrix, or null without momentum.</summary>
    public Tensor[]? Momentum { get; }

    /// <summary>Bytes held now (accumulators and momentum, all batch rows and heads).</summary>
    public long Bytes => Weights.Concat(Momentum ?? []).Sum(t => t.NumberOfElements * t.ElementSize);

    /// <summary>Bytes per head and sequence: <see cref="Bytes"/> / (B·H).</summary>
    public long BytesPerHead => Bytes / (Weights[0].shape[0] * Weights[0].shape[1]);

    /// <summary>
    /// A start state from per-head initial weights [H, out, in] (e.g. a mixer's parameters): expanded over the batch (the
    /// expansion keeps the autograd path to them) with zero momentum when <paramref name="momentum"/>.
    /// </summary>
    public static MemoryState FromHeads(long batch, bool momentum, params Tensor[] perHead)
    {
        Guard.Positive(batch, nameof(batch));
        ArgumentNullException.ThrowIfNull(perHead);
        for (int i = 0; i < perHead.Length; i++) Guard.Rank(perHead[i], 3, $"{nameof(perHead)}[{i}]", "H, out, in");
        using var scope = NewDisposeScope();
        var w = perHead.Select(p => p.unsqueeze(0).expand(batch, -1, -1, -1)).ToArray();
        var s = momentum ? w.Select(x => torch.zeros(x.shape, dtype: x.dtype, device: x.device)).ToArray() : null;
        return new MemoryState(w, s).MoveToOuterDisposeScope();
    }

    /// <summary>A detached copy (for decoding, where no graph grows across steps).</summary>
    public MemoryState DetachedCopy()
    {
        using var scope = NewDisposeScope();
        return new MemoryState(Weights.Select(w => w.detach().clone()).ToArray(), Momentum?.Select(s => s.detach().clone()).ToArray())
            .MoveToOuterDisposeScope();
    }

    /// <summary>Moves the tensors to the enclosing dispose scope.</summary>
    public MemoryState MoveToOuterDisposeScope()
    {
        foreach (var t in Weights.Concat(Momentum ?? [])) t.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Detaches the tensors from every dispose scope (this object owns them).</summary>
    public MemoryState DetachFromDisposeScope()
    {
        foreach (var t in Weights.Concat(Momentum ?? [])) t.DetachFromDisposeScope();
        return this;
    }

    public void Dispose()
    {
        foreach (var t in Weights.Concat(Momentum ?? [])) t.Dispose();
    }
}

/// <summary>The memory's outputs y [B, T, H, Dv] and its state after the last token.</summary>
public sealed class AssociativeMemoryResult(Tensor output, MemoryState finalState) : IDisposable
{
    /// <summary>y_t = M(q_t; W_{t−1}) [B, T, H, Dv].</summary>
    public Tensor Output { get; } = output;
    /// <summary>(A, S) after the last token.</summary>
    public MemoryState FinalState { get; } = finalState;

    /// <summary>Moves the tensors to the enclosing dispose scope.</summary>
    public AssociativeMemoryResult MoveToOuterDisposeScope()
    {
        Output.MoveToOuterDisposeScope();
        FinalState.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Output.Dispose();
        FinalState.Dispose();
    }
}

/// <summary>
/// The per-token gates, [B, T, H] each (the mixer computes them from x): θ_t the inner learning rate, η_t the momentum
/// (null: no momentum, S_t = −θ_t ∇ℓ), α_t the forget gate (null: no forgetting) and δ_t the Huber threshold (Huber only).
/// </summary>
public sealed record MemoryGates(Tensor Theta, Tensor? Eta = null, Tensor? Alpha = null, Tensor? Delta = null);
