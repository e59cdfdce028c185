using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// What a <see cref="PolicyKvCache"/> shows its policy after each appended token. Entries ("slots") are kept in the
/// order their tokens arrived; all tensors are views valid only during the call.
/// </summary>
/// <param name="Count">entries held per (sequence, KV head), the new token included.</param>
/// <param name="Seen">tokens appended so far, t (the new token is t − 1).</param>
/// <param name="Positions">[B, Hkv, Count] int64: each entry's token index in the original sequence.</param>
/// <param name="AttentionMass">[B, Hkv, Count]: attention each entry has received so far, summed over steps and over
/// the query heads of its KV group (the new token has 0).</param>
public sealed record KvPolicyState(long Count, long Seen, Tensor Positions, Tensor AttentionMass);

/// <summary>A per-step KV-cache eviction policy: after each appended token it says which entries stay.</summary>
public interface IKvPolicy
{
    /// <summary>Short name for tables and plots.</summary>
    string Name { get; }
    /// <summary>Most entries kept per head; null = unbounded.</summary>
    long? Budget { get; }
    /// <summary>
    /// The entries to keep, [B, Hkv, n′] int64 slot indices in ascending order (the same n′ for every head), or null
    /// to keep everything. Called after every appended token, before that token's query attends.
    /// </summary>
    Tensor? Keep(KvPolicyState state);
}

/// <summary>The three policies of the decode block.</summary>
public static class KvPolicy
{
    /// <summary>Keep every token (the cached decode that must equal the full forward).</summary>
    public static IKvPolicy Full { get; } = new FullPolicy();
    /// <summary>StreamingLLM: the first <paramref name="nSink"/> tokens plus the last <paramref name="window"/>.</summary>
    public static IKvPolicy SinkWindow(long window, long nSink = 4) => new SinkWindowPolicy(window, nSink);
    /// <summary>H2O: the <paramref name="recent"/> newest tokens plus <paramref name="heavy"/> heavy hitters per head.</summary>
    public static IKvPolicy H2O(long heavy, long recent) => new H2OPolicy(heavy, recent);
}

/// <summary>Keeps every token.</summary>
public sealed class FullPolicy : IKvPolicy
{
    public string Name => "full";
    public long? Budget => null;
    public Tensor? Keep(KvPolicyState state) => null;
}

/// <summary>
/// StreamingLLM (Xiao et al. 2024): keep the attention sinks [0, n_s) and the window [t − w, t); evict the middle.
/// After t tokens the kept set is [0, min(n_s, t)) ∪ [max(n_s, t − w), t) — the keys the sink+window mask
/// (<see cref="AttentionMasks.SinkWindow"/>) lets query t − 1 see. Positions are re-indexed inside the cache
/// (entry i has position i, <see cref="PolicyKvCache.CachePositions"/>); applying them (RoPE on un-rotated cached
/// keys, or re-indexed learned positions) is the model's job.
/// </summary>
public sealed class SinkWindowPolicy : IKvPolicy
{
    public SinkWindowPolicy(long window, long nSink = 4)
    {
        if (window <= 0) throw new ArgumentException($"window must be positive, got {window}.", nameof(window));
        if (nSink < 0) throw new ArgumentException($"nSink must be ≥ 0, got {nSink}.", nameof(nSink));
        Window = window; NSink = nSink;
    }

    public long Window { get; }
    public long NSink { get; }
    public string Name => NSink == 0 ? $"window({Window})" : $"sink{NSink}+window({Window})";
    public long? Budget => NSink + Window;

    public Tensor? Keep(KvPolicyState state)
    {
        if (state.Count <= NSink + Window) return null;
        var device = state.Positions.device;
        long b = state.Positions.shape[0], h = state.Positions.shape[1];
        var idx = torch.cat(new[]
        {
            torch.arange(NSink, dtype: ScalarType.Int64, device: device),                              // [0, n_s)
            torch.arange(state.Count - Window, state.Count, dtype: ScalarType.Int64, device: device),  // the last w entries
        });
        return idx.expand(b, h, idx.shape[0]);
    }
}

/// <summary>
/// H2O heavy hitters (Zhang et al. 2023): per head keep the <see cref="Recent"/> newest tokens and the
/// <see cref="Heavy"/> older tokens with the largest accumulated attention mass F(j) = Σ_steps A_tj.
/// </summary>
/// <remarks>
/// Once the cache holds more than heavy + recent entries (one token over after an append), the entry with the
/// smallest accumulated mass among those outside the recent window is evicted (the first one on ties), one at a
/// time: S_t = (S_{t−1} ∪ {t}) \ {argmin_{j ∈ S_{t−1} ∪ {t}, j not recent} F(j)}. Each head (and sequence) has its
/// own set. This cache evicts before the new token's query attends, so every step attends to at most
/// heavy + recent tokens; the paper's Algorithm 1 attends to S_{t−1} ∪ {t} (one more) and evicts after.
/// With heavy = 0 it is a sliding window of <see cref="Recent"/> tokens.
/// </remarks>
public sealed class H2OPolicy : IKvPolicy
{
    public H2OPolicy(long heavy, long recent)
    {
        if (heavy < 0) throw new ArgumentException($"heavy must be ≥ 0, got {heavy}.", nameof(heavy));
        if (recent <= 0) throw new ArgumentException($"recent must be positive (the current token must stay), got {recent}.", nameof(recent));
        Heavy = heavy; Recent = recent;
    }

    public long Heavy { get; }
    public long Recent { get; }
    public string Name => $"h2o({Heavy}+{Recent})";
    public long? Budget => Heavy + Recent;

    public Tensor? Keep(KvPolicyState state)
    {
        long n = state.Count, excess = n - (Heavy + Recent);
        if (excess <= 0) return null;
        long b = state.Positions.shape[0], h = state.Positions.shape[1], older = n - Recent;
        var mass = state.AttentionMass.narrow(2, 0, older).clone();                 // F(j) for j outside the recent window
        var evicted = torch.zeros(new[] { b, h, older }, dtype: ScalarType.Bool, device: mass.device);
        for (long e = 0; e < excess; e++)
        {
            var j = mass.argmin(-1, keepdim: true);                                  // argmin F(j), first on ties
            evicted.scatter_(2, j, torch.ones_like(j, dtype: ScalarType.Bool));
            mass.scatter_(2, j, torch.full_like(j, double.PositiveInfinity, dtype: mass.dtype));
        }
        var keepMask = torch.cat(new[] { evicted.logical_not(), torch.ones(new[] { b, h, Recent }, dtype: ScalarType.Bool, device: mass.device) }, 2);
        var slots = torch.arange(n, dtype: ScalarType.Int64, device: mass.device).expand(b, h, n);
        return slots.masked_select(keepMask).view(b, h, n - excess);                 // ascending per (b, h)
    }
}
