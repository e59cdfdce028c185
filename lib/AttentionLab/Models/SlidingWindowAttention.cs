using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Sliding-window attention (SWA): exact causal softmax attention over a window of recent tokens, as a mixer on the
/// <see cref="AttentionMixer"/> base (BASED's local mixer, Titans' MAC/MAL core, Longformer's local band). x [B, T, d] →
/// [B, T, d]. The window is counted in <b>keys</b>: query p attends to itself and the <see cref="WindowKeys"/> − 1 tokens
/// before it. Streams with a KV cache that keeps only those keys and values, so its state is 2·WindowKeys·d floats at most.
/// </summary>
/// <remarks>
/// q, k, v = split(W_qkv x) [B, T, H, d/H];  y_p = W_O concat_h Σ_{p−n &lt; s ≤ p} softmax_s(q_p·k_s/√(d/H)) v_s,  n = WindowKeys
/// (no positions here — the model's embeddings carry them). Libraries count windows differently (flash-attn's
/// <c>window_size=(left, 0)</c> attends left + 1 keys); a paper folder converts its own convention to a key count.
/// </remarks>
public sealed class SlidingWindowAttention : AttentionMixer
{
    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="windowKeys">n: the keys each query attends, itself included (p − n &lt; s ≤ p).</param>
    public SlidingWindowAttention(int dModel, int heads, int windowKeys = 64) : base(nameof(SlidingWindowAttention), dModel, heads)
    {
        Guard.Positive(windowKeys, nameof(windowKeys));
        WindowKeys = windowKeys;
        RegisterComponents();
    }

    /// <summary>n: the keys each query attends, itself included (p − n &lt; s ≤ p).</summary>
    public int WindowKeys { get; }

    /// <summary>
    /// Exact softmax over the last <paramref name="windowKeys"/> keys (p − n &lt; s ≤ p): q, k [B, T, H, D], v [B, T, H, Dv] →
    /// [B, T, H, Dv].
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, int windowKeys)
    {
        Guard.Positive(windowKeys, nameof(windowKeys));
        ReferenceAttention.Validate(q, k, v);
        if (q.shape[1] > k.shape[1])
            throw new ArgumentException(
                $"q has {q.shape[1]} tokens but k only {k.shape[1]}: queries are end-aligned to the keys (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).",
                nameof(q));
        using var scope = NewDisposeScope();
        var keep = AttentionMasks.SlidingWindow(q.shape[1], k.shape[1], windowKeys, q.device);   // p − n < s ≤ p
        using var r = ReferenceAttention.Softmax(q, k, v, causal: false, mask: keep);
        return r.Output.alias().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The window by position: key s is visible to query p when 0 ≤ p − s &lt; n, for any positions qPos [Tq], kPos [Tk]
    /// → bool [Tq, Tk]. On the end-aligned grid (kPos = 0 … Tk−1, qPos its last Tq) it is <see cref="AttentionMasks.SlidingWindow"/>.
    /// </summary>
    public static Tensor Visible(Tensor qPos, Tensor kPos, int windowKeys)
    {
        Guard.Positive(windowKeys, nameof(windowKeys));
        using var scope = NewDisposeScope();
        var lag = qPos.unsqueeze(1) - kPos.unsqueeze(0);                              // p − s
        return ((lag >= 0) & (lag < windowKeys)).MoveToOuterDisposeScope();
    }

    /// <summary>s_ps = q_p·k_s/√D where p − n &lt; s ≤ p (by position), −∞ elsewhere.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = base.Scores(q, k, qPos, kPos, cachedKeys: true);                      // unmasked q_p·k_s/√D
        if (cachedKeys) return s;                                                     // the window cache holds the visible keys only
        return s.masked_fill(Visible(qPos, kPos, WindowKeys).logical_not(), double.NegativeInfinity);   // s > p or s ≤ p − n hidden
    }

    /// <summary>Bytes of a full window's keys and values for <paramref name="batch"/> sequences (float32): 2·n·d·4.</summary>
    public long StateBytes(long batch = 1) => batch * 2L * WindowKeys * DModel * sizeof(float);

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new WindowKvState(WindowKeys);
}

/// <summary>The last n keys and values [B, ≤n, H, Dh] (detached; decoding is inference).</summary>
public sealed class WindowKvState : AttentionState
{
    readonly int window;

    public WindowKvState(int window) => this.window = window;

    /// <summary>Append (k_t, v_t), drop what fell out of the window, attend over what is left (positions t − n′ + 1 … t).</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        Append(k, v);
        long t = Position, kept = Keys!.shape[1];
        var keyPos = torch.arange(t - kept + 1, t + 1, device: q.device);
        var z = Owner!.Attend(q, Keys, Values!, keyPos.narrow(0, kept - 1, 1), keyPos, cachedKeys: true).Z;
        Advance();
        return z;
    }

    public Tensor? Keys { get; private set; }
    public Tensor? Values { get; private set; }
    public override long Bytes => Keys is null ? 0 : Keys.NumberOfElements * Keys.ElementSize + Values!.NumberOfElements * Values.ElementSize;

    /// <summary>Appends k_t, v_t [B, 1, H, Dh] and keeps the last n.</summary>
    public void Append(Tensor k, Tensor v)
    {
        using var scope = NewDisposeScope();
        var keys = Keys is null ? k.detach() : torch.cat(new[] { Keys, k.detach() }, 1);
        var values = Values is null ? v.detach() : torch.cat(new[] { Values, v.detach() }, 1);
        long n = keys.shape[1], drop = Math.Max(0, n - window);
        var nextK = keys.narrow(1, drop, n - drop).contiguous().DetachFromDisposeScope();
        var nextV = values.narrow(1, drop, n - drop).contiguous().DetachFromDisposeScope();
        Keys?.Dispose(); Values?.Dispose();
        (Keys, Values) = (nextK, nextV);
    }

    public override void Dispose() { Keys?.Dispose(); Values?.Dispose(); }
}
