using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>
/// Recycled Attention (Xu, Goyal, Choi 2024) for one layer: a full-attention step every <see cref="Stride"/> tokens;
/// between them each KV head attends only to the <see cref="TopK"/> tokens its group attended to most at the last
/// full step, plus every token generated since. Nothing is evicted: the layer keeps its full KV cache
/// (<see cref="SelectiveKvCache"/>). One instance per layer and decode run.
/// </summary>
/// <remarks>
/// Full step at t₀ (every token t &lt; <see cref="Prefill"/>, and then whenever t − t₀ ≥ S):
///   A = softmax over all j ≤ t₀;  score_c(j) = Σ_{h∈group(c)} A_{h,t₀,j};  I_c = TopK_j score_c(j)   (per KV head c)
/// Recycle step t ∈ (t₀, t₀ + S):  J_c(t) = I_c ∪ {t₀+1, …, t},  |J_c(t)| = min(K, t₀+1) + (t − t₀);  softmax renormalised over J_c(t).
/// Subtle points: the tokens after t₀ are always appended (a); selection is per KV head, never over all heads (b);
/// prefill and the step that produces the first new token are full steps (c); I comes from this layer's own full-step
/// probabilities (d); sinks are not special-cased (e). K ≥ t₀ + 1 (or S = 1) gives full attention.
/// Dynamic schedule (optional τ): also a full step when cos(q̄_t, q̄_{t₀}) &lt; τ, q̄ = this layer's query averaged over
/// heads (the paper's rule; it names one layer's query — here every layer decides from its own). With a batch the
/// schedule is shared: a full step when any sequence's query has drifted (min over the batch). S stays an upper bound on
/// the gap (pass a large S for the purely dynamic rule).
/// </remarks>
public sealed class RecycledAttentionPolicy : IKvSelector, IDisposable
{
    Tensor? recycled;                      // I [B, Hkv, K′] ascending token indices
    Tensor? anchor;                        // q̄_{t₀} [B, D]: the query of the last full step, averaged over heads (τ only)
    bool fullStep;
    long step, kvHeads;

    /// <param name="topK">K: tokens recycled per KV head.</param>
    /// <param name="stride">S: a full step every S tokens (1 = always full).</param>
    /// <param name="prefill">tokens 0 … prefill − 1 are full steps (the prompt; the last one produces the first new token).</param>
    /// <param name="tau">τ of the dynamic schedule (full step when cos(q̄_t, q̄_{t₀}) &lt; τ), in [−1, 1]; null: fixed stride only.</param>
    public RecycledAttentionPolicy(int topK, int stride, int prefill = 1, double? tau = null)
    {
        if (tau is { } t && !(t >= -1 && t <= 1)) throw new ArgumentException($"tau must be in [−1, 1], got {t}.", nameof(tau));
        Tau = tau;
        if (topK <= 0) throw new ArgumentException($"topK must be positive, got {topK}.", nameof(topK));
        if (stride <= 0) throw new ArgumentException($"stride must be positive, got {stride}.", nameof(stride));
        if (prefill <= 0) throw new ArgumentException($"prefill must be positive (the first step is full), got {prefill}.", nameof(prefill));
        (TopK, Stride, Prefill) = (topK, stride, prefill);
    }

    public int TopK { get; }
    public int Stride { get; }
    public int Prefill { get; }
    /// <summary>τ of the dynamic schedule, or null.</summary>
    public double? Tau { get; }
    public string Name => Tau is { } tau ? $"recycled(K={TopK}, S≤{Stride}, τ={tau})" : $"recycled(K={TopK}, S={Stride})";
    /// <summary>t₀: the token of the last full step (−1 before the first).</summary>
    public long LastFullStep { get; private set; } = -1;
    /// <summary>Full steps so far.</summary>
    public int FullSteps { get; private set; }
    /// <summary>Steps so far.</summary>
    public long Steps => step;
    /// <summary>The recycled set I [B, Hkv, K′] of the last full step (a view; null before it).</summary>
    public Tensor? Recycled => recycled;

    /// <summary>Whether token t's step is a full step.</summary>
    public bool IsFull(long t) => recycled is null || t < Prefill || t - LastFullStep >= Stride;

    public Tensor? Select(KvSelectQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        long t = query.Count - 1;                                                    // the new token
        step = query.Count;
        kvHeads = query.KvHeads;
        fullStep = IsFull(t) || Drifted(query);
        if (fullStep)
        {
            if (Tau is not null) Anchor(query);
            return null;                                                             // attend to all j ≤ t
        }
        if (recycled!.shape[0] != query.Batch || recycled.shape[1] != query.KvHeads)
            throw new ArgumentException($"query has B = {query.Batch}, Hkv = {query.KvHeads}; the recycled set is {Guard.ShapeText(recycled)}.", nameof(query));
        var fresh = torch.arange(LastFullStep + 1, t + 1, dtype: ScalarType.Int64, device: query.Device)   // {t₀+1, …, t}: pitfall (a)
            .expand(query.Batch, query.KvHeads, t - LastFullStep);
        return torch.cat(new[] { recycled, fresh }, 2);                              // J = I ∪ {t₀+1 … t}
    }

    /// <summary>cos(q̄_t, q̄_{t₀}) per sequence [B] for the dynamic schedule (q [B, Hq, D] averaged over heads).</summary>
    public static Tensor QueryCosine(Tensor query, Tensor anchor)
    {
        Guard.Rank(query, 3, nameof(query), "B, Hq, D");
        var mean = query.mean(new long[] { 1 });                                     // q̄ [B, D]
        return nn.functional.cosine_similarity(mean, anchor.to(mean.dtype), dim: -1);
    }

    bool Drifted(KvSelectQuery query)
    {
        if (Tau is not { } tau || anchor is null) return false;
        if (query.Query is null) throw new ArgumentException("the dynamic schedule (tau) needs the step's query (KvSelectQuery.Query).", nameof(query));
        using var scope = NewDisposeScope();
        return QueryCosine(query.Query, anchor).min().to(ScalarType.Float64).item<double>() < tau;      // any sequence drifted → full step
    }

    void Anchor(KvSelectQuery query)
    {
        if (query.Query is null) throw new ArgumentException("the dynamic schedule (tau) needs the step's query (KvSelectQuery.Query).", nameof(query));
        using var scope = NewDisposeScope();
        var next = query.Query.mean(new long[] { 1 }).detach().DetachFromDisposeScope();
        anchor?.Dispose();
        anchor = next;
    }

    public void Observe(Tensor probabilities)
    {
        if (!fullStep) return;
        long n = probabilities.shape[3];
        if (n != step) throw new InvalidOperationException($"a full step must attend to all {step} tokens, got {n}.");
        using var scope = NewDisposeScope();
        var score = GroupScore(probabilities, kvHeads);                              // score_c(j) [B, Hkv, n]: pitfall (b)
        var top = score.topk((int)Math.Min(TopK, n), dim: -1).indexes.sort(-1).Values; // I_c = TopK_j score_c(j), ascending
        recycled?.Dispose();
        recycled = top.contiguous().DetachFromDisposeScope();
        LastFullStep = step - 1;
        FullSteps++;
    }

    /// <summary>score_c(j) = Σ_{h∈group(c)} A_{h,·,j}: probabilities [B, Hq, 1, n] summed over the query heads of each of the
    /// <paramref name="kvHeads"/> groups (consecutive heads share a KV head) → [B, Hkv, n].</summary>
    public static Tensor GroupScore(Tensor probabilities, long kvHeads)
    {
        Guard.Rank(probabilities, 4, nameof(probabilities), "B, Hq, Tq, n");
        long b = probabilities.shape[0], hq = probabilities.shape[1], n = probabilities.shape[3];
        if (kvHeads <= 0 || hq % kvHeads != 0) throw new ArgumentException($"kvHeads {kvHeads} must divide Hq = {hq}.", nameof(kvHeads));
        return probabilities.sum(2).view(b, kvHeads, hq / kvHeads, n).sum(2);
    }

    public void Dispose() { recycled?.Dispose(); recycled = null; anchor?.Dispose(); anchor = null; }
}
