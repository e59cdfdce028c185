using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Titans;

/// <summary>
/// Sliding-window attention over [P ‖ x]: N_p learned persistent tokens P in front of the sequence, always visible, and the
/// last <see cref="WindowKeys"/> tokens (Titans' SW-Attn*, spec §2 Persistent memory and MAG). x [B, T, d] → [B, T, d].
/// </summary>
/// <remarks>
/// k_P, v_P = split(P W_K,V) [N_p, H, D] (the mixer's own projection, no hooks);  real tokens at positions 0 … T−1, P at −N_p … −1
/// y_p = W_O concat_h Σ_{s ∈ P ∪ (p−n, p]} softmax_s(q_p·k_s/√D) v_s           (n = WindowKeys; the window as
/// <see cref="SlidingWindowAttention"/> counts it). Only the real tokens are outputs. With N_p = 0 this is
/// <see cref="SlidingWindowAttention"/>.
/// </remarks>
public sealed class PersistentWindowAttention : AttentionMixer
{
    readonly Parameter? persistent;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="windowKeys">n: keys of real tokens each query attends, itself included.</param>
    /// <param name="persistentTokens">N_p ≥ 0.</param>
    public PersistentWindowAttention(int dModel, int heads, int windowKeys, int persistentTokens) : base(nameof(PersistentWindowAttention), dModel, heads)
    {
        Guard.Positive(windowKeys, nameof(windowKeys));
        if (persistentTokens < 0) throw new ArgumentException($"persistentTokens must be ≥ 0, got {persistentTokens}.", nameof(persistentTokens));
        (WindowKeys, PersistentTokens) = (windowKeys, persistentTokens);
        if (persistentTokens > 0) persistent = nn.Parameter(torch.randn(persistentTokens, dModel) * 0.02);     // P [N_p, d]
        RegisterComponents();
    }

    /// <summary>n.</summary>
    public int WindowKeys { get; }
    /// <summary>N_p.</summary>
    public int PersistentTokens { get; }
    /// <summary>P [N_p, d], or null when N_p = 0.</summary>
    public Parameter? Persistent => persistent;

    /// <summary>k_P, v_P [B, N_p, H, D] (expanded over the batch), or null when N_p = 0.</summary>
    public (Tensor K, Tensor V)? PersistentKeys(long batch)
    {
        if (persistent is null) return null;
        using var scope = NewDisposeScope();
        var all = Qkv.call(persistent).view(PersistentTokens, 3, Heads, KeyDim);      // P W_QKV
        var k = all.select(1, 1).unsqueeze(0).expand(batch, -1, -1, -1);
        var v = all.select(1, 2).unsqueeze(0).expand(batch, -1, -1, -1);
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var pos = torch.arange(q.size(1), device: q.device);
        if (PersistentKeys(q.size(0)) is not { } p) return Attend(q, k, v, pos, pos).Z;
        var kPos = torch.cat(new[] { torch.arange(-PersistentTokens, 0, 1, device: q.device), pos });   // P at −N_p … −1
        return Attend(q, torch.cat(new[] { p.K, k }, 1), torch.cat(new[] { p.V, v }, 1), pos, kPos).Z;
    }

    /// <summary>s_ps = q_p·k_s/√D for persistent s (kPos &lt; 0) and p − n &lt; s ≤ p, −∞ elsewhere.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = base.Scores(q, k, qPos, kPos, cachedKeys: true);
        if (cachedKeys) return s;                                                       // the decode state holds the visible keys only
        var visible = SlidingWindowAttention.Visible(qPos, kPos, WindowKeys) | (kPos < 0).unsqueeze(0);
        return s.masked_fill(visible.logical_not(), double.NegativeInfinity);
    }

    /// <summary>Bytes of one sequence's decode state (float32): keys and values of the window and of P.</summary>
    public long StateBytes(long batch = 1) => batch * 2L * (WindowKeys + PersistentTokens) * DModel * sizeof(float);

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new PersistentWindowState(WindowKeys);
}

/// <summary>The decode state of <see cref="PersistentWindowAttention"/>: the last n keys and values; P's are recomputed from the parameters.</summary>
public sealed class PersistentWindowState(int window) : AttentionState
{
    readonly WindowKvState cache = new(window);

    public override long Bytes => cache.Bytes;

    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var owner = (PersistentWindowAttention)Owner!;
        cache.Append(k, v);
        long t = Position, kept = cache.Keys!.shape[1];
        var qPos = torch.full(1, t, dtype: ScalarType.Int64, device: q.device);
        var (keys, values, kPos) = (cache.Keys, cache.Values!, torch.arange(t - kept + 1, t + 1, device: q.device));
        if (owner.PersistentKeys(q.size(0)) is { } p)
        {
            keys = torch.cat(new[] { p.K.to(q.dtype), keys }, 1);
            values = torch.cat(new[] { p.V.to(q.dtype), values }, 1);
            kPos = torch.cat(new[] { torch.arange(-owner.PersistentTokens, 0, 1, device: q.device), kPos });
        }
        var z = owner.Attend(q, keys, values, qPos, kPos, cachedKeys: true).Z;
        Advance();
        return z;
    }

    public override void Dispose() => cache.Dispose();
}
