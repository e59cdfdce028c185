using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// The associative memory one token at a time, for decoding: holds the state (A, S) and reproduces
/// <see cref="AssociativeMemory.Recurrent"/> step by step at a constant cost and a constant state per token.
/// </summary>
/// <remarks>
/// Step: y_t = M(q_t; W_{t−1}); S_t = η_t S_{t−1} − θ_t ∇ℓ(M(k_t; W_{t−1}), v_t); A_t = (1 − α_t) A_{t−1} + S_t — the very
/// function the recurrence loops over. Decoding is inference: the stream keeps detached states (no graph grows across steps).
/// </remarks>
public sealed class AssociativeMemoryStream : IDisposable
{
    MemoryState state;

    /// <param name="start">the memory to start from (copied, detached): [B, H, out, in] accumulators, momentum iff the steps give η.</param>
    /// <param name="options">architecture, bias, retention (the chunk size is unused).</param>
    public AssociativeMemoryStream(MemoryState start, AssociativeMemoryOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(start);
        Options = options ?? AssociativeMemoryOptions.Default;
        if (start.Weights.Length != Options.WeightCount)
            throw new ArgumentException($"start has {start.Weights.Length} weight matrices; the {Options.Architecture} memory has {Options.WeightCount}.",
                nameof(start));
        state = start.DetachedCopy().DetachFromDisposeScope();
    }

    public AssociativeMemoryOptions Options { get; }
    /// <summary>Tokens consumed so far.</summary>
    public long Position { get; private set; }
    /// <summary>The current state (owned by the stream; replaced by every step — copy it to keep it).</summary>
    public MemoryState State => state;
    /// <summary>Bytes of the state: constant in the number of tokens.</summary>
    public long Bytes => state.Bytes;

    /// <summary>
    /// One token: q, k [B, H, D], v [B, H, Dv], gates θ (η, α, δ) [B, H] → y_t [B, H, Dv], then the memory is written.
    /// </summary>
    public Tensor Step(Tensor q, Tensor k, Tensor v, Tensor theta, Tensor? eta = null, Tensor? alpha = null, Tensor? delta = null)
    {
        Guard.Rank(q, 3, nameof(q), "B, H, D");
        Guard.Rank(k, 3, nameof(k), "B, H, D");
        Guard.Rank(v, 3, nameof(v), "B, H, Dv");
        using var scope = NewDisposeScope();
        Tensor? T1(Tensor? x) => x?.unsqueeze(1);                                       // one-token sequences for the shared checks
        AssociativeMemory.Validate(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), new MemoryGates(T1(theta)!, T1(eta), T1(alpha), T1(delta)), state,
            Options);
        var (y, a, s) = AssociativeMemory.Step(Options, q, k, v, theta, eta, alpha, delta, state.Weights, state.Momentum);
        var next = new MemoryState(a.Select(x => x.detach()).ToArray(), s?.Select(x => x.detach()).ToArray()).DetachFromDisposeScope();
        state.Dispose();
        state = next;
        Position++;
        return y.MoveToOuterDisposeScope();
    }

    public void Dispose() => state.Dispose();
}
