using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>The spec's four attention variants: the two switches of <see cref="RcmhaAttention"/>.</summary>
/// <param name="Name">MHA, MDHA, RMHA or RCMHA.</param>
/// <param name="Conv">Causal depthwise convolution on Q, K and V (Primer's MDHA).</param>
/// <param name="Relative">Transformer-XL relative scores (and no absolute positions in the model).</param>
public sealed record RcmhaVariant(string Name, bool Conv, bool Relative)
{
    public static RcmhaVariant Mha { get; } = new("MHA", false, false);
    public static RcmhaVariant Mdha { get; } = new("MDHA", true, false);
    public static RcmhaVariant Rmha { get; } = new("RMHA", false, true);
    public static RcmhaVariant Rcmha { get; } = new("RCMHA", true, true);

    /// <summary>The four, in the paper's order.</summary>
    public static IReadOnlyList<RcmhaVariant> All { get; } = [Mha, Mdha, Rmha, Rcmha];

    /// <summary>Absolute positions of the model around the mixer: sinusoids for MHA and MDHA, none for the relative variants.</summary>
    public PositionKind ModelPositions => Relative ? PositionKind.None : PositionKind.Sinusoidal;
}

/// <summary>
/// RCMHA (Sugiharto, Aradea and Mubarok 2023) and its three ablations on the <see cref="AttentionMixer"/> base: a causal depthwise convolution on
/// Q, K and V (<see cref="CausalDepthwiseConv"/>, kernel w, left-padded by w − 1) and Transformer-XL relative scores
/// (<see cref="RelativeScores"/>; override of <see cref="Scores"/>). conv = relative = false is plain position-free MHA.
/// </summary>
/// <remarks>
/// q, k, v = split_h(x W_QKV)                      (hook_q/k/v carry them before the convolution)
/// Q = DWConv_w(q), K = DWConv_w(k), V = DWConv_w(v):   Y_t = b + Σ_{m=0}^{w−1} w_m ⊙ u_{t−(w−1)+m}   (u_{&lt;0} = 0)
/// a_ij = Q_i·K_j + Q_i·(W_R r_{i−j}) + u·K_j + v·(W_R r_{i−j})   (r: sinusoid of i − j, width d; u, v ∈ ℝ^{H×Dk} learned)
/// s_ij = a_ij / √Dk, −∞ for j &gt; i  (hook_attn_scores);  A = softmax_j(s) (hook_pattern);  z = A·V (hook_z);  y = concat_h(z) W_O
/// Decoding keeps the convolutions' last w − 1 inputs and a KV cache of the convolved K, V (<see cref="RcmhaState"/>).
/// </remarks>
public sealed class RcmhaAttention : AttentionMixer
{
    readonly CausalDepthwiseConv? conv_q, conv_k, conv_v;
    readonly Linear? w_r;
    readonly Parameter? pos_u, pos_v;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H (d / H per head).</param>
    /// <param name="conv">Depthwise convolution on Q, K, V (MDHA, RCMHA).</param>
    /// <param name="relative">Relative scores (RMHA, RCMHA).</param>
    /// <param name="kernel">w, the convolution width (Primer: 3).</param>
    public RcmhaAttention(int dModel, int heads, bool conv, bool relative, int kernel = 3) : base(nameof(RcmhaAttention), dModel, heads)
    {
        Guard.Positive(kernel, nameof(kernel));
        (Conv, Relative, Kernel) = (conv, relative, kernel);
        if (conv)
        {
            conv_q = new CausalDepthwiseConv(heads * KeyDim, kernel);
            conv_k = new CausalDepthwiseConv(heads * KeyDim, kernel);
            conv_v = new CausalDepthwiseConv(heads * ValueDim, kernel);
        }
        if (relative)
        {
            w_r = nn.Linear(dModel, heads * KeyDim, hasBias: false);                   // W_R: r_δ ∈ ℝ^d → H heads of Dk
            pos_u = nn.Parameter(torch.zeros(heads, KeyDim));                          // u (content bias)
            pos_v = nn.Parameter(torch.zeros(heads, KeyDim));                          // v (position bias)
        }
        RegisterComponents();
    }

    /// <summary>The mixer of <paramref name="variant"/>.</summary>
    public RcmhaAttention(int dModel, int heads, RcmhaVariant variant, int kernel = 3)
        : this(dModel, heads, (variant ?? throw new ArgumentNullException(nameof(variant))).Conv, variant.Relative, kernel) { }

    public bool Conv { get; }
    public bool Relative { get; }
    /// <summary>w.</summary>
    public int Kernel { get; }
    /// <summary>How the relative term is placed in the full forward (the decode step always gathers).</summary>
    public RelShiftMode Mode { get; set; } = RelShiftMode.Shift;

    /// <summary>The convolutions on Q, K, V (null without conv).</summary>
    public (CausalDepthwiseConv Q, CausalDepthwiseConv K, CausalDepthwiseConv V)? Convs => conv_q is null ? null : (conv_q, conv_k!, conv_v!);
    /// <summary>W_R [H·Dk, d] (null without relative scores).</summary>
    public Linear? RelativeWeight => w_r;
    /// <summary>u [H, Dk] (null without relative scores).</summary>
    public Parameter? ContentBias => pos_u;
    /// <summary>v [H, Dk] (null without relative scores).</summary>
    public Parameter? PositionBias => pos_v;

    /// <summary>p [L, H, Dk]: row δ = W_R r_δ, the projected sinusoid of distance δ = 0 … L−1.</summary>
    public Tensor RelativeTable(long length, ScalarType dtype, Device device)
    {
        if (w_r is null) throw new InvalidOperationException("this variant has no relative scores.");
        Guard.Positive(length, nameof(length));
        using var scope = NewDisposeScope();
        var r = Positions.Sinusoidal(0, length, DModel, dtype, device);                 // r_δ [L, d]
        return w_r.call(r).view(length, Heads, KeyDim).MoveToOuterDisposeScope();
    }

    /// <summary>The learned position profile of each head: (v·W_R r_δ) / √Dk for δ = 0 … L−1 → [H, L] (the query-independent bias).</summary>
    public Tensor BiasProfile(long length)
    {
        if (pos_v is null) throw new InvalidOperationException("this variant has no relative scores.");
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var p = RelativeTable(length, pos_v.dtype, pos_v.device);                      // [L, H, Dk]
        return ((p * pos_v.unsqueeze(0)).sum(-1).t() / Math.Sqrt(KeyDim)).MoveToOuterDisposeScope();
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (conv_q is not null) (q, k, v) = (ConvHeads(conv_q, q), ConvHeads(conv_k!, k), ConvHeads(conv_v!, v));   // Q = DWConv(x W_Q) …
        var pos = torch.arange(q.size(1), device: q.device);
        return Attend(q, k, v, pos, pos).Z;
    }

    /// <summary>[B, T, H, D] through a per-channel causal convolution over T.</summary>
    internal static Tensor ConvHeads(CausalDepthwiseConv conv, Tensor u) => conv.call(u.reshape(u.size(0), u.size(1), -1)).view(u.shape);

    /// <summary>Relative scores when the variant has them, else the base's q·k / √Dk.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        if (w_r is null) return base.Scores(q, k, qPos, kPos, cachedKeys);
        long length = Math.Max(1, (qPos.max() - kPos.min()).item<long>() + 1);          // every distance i − j ≥ 0 that occurs
        var p = RelativeTable(length, q.dtype, q.device);
        bool aligned = !cachedKeys && q.size(1) == k.size(1) && Mode == RelShiftMode.Shift;
        return aligned
            ? RelativeScores.Scores(q, k, pos_u!, pos_v!, p, RelShiftMode.Shift)        // forward: positions 0 … T−1
            : RelativeScores.ScoresAt(q, k, pos_u!, pos_v!, p, qPos, kPos, cachedKeys);
    }

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new RcmhaState(this, batch, dtype, device);
}

/// <summary>The decode state of an <see cref="RcmhaAttention"/>: the convolutions' last w − 1 inputs and a KV cache of the convolved K, V.</summary>
public sealed class RcmhaState : AttentionState
{
    internal RcmhaState(RcmhaAttention mixer, long batch, ScalarType dtype, Device device) : base(mixer)
    {
        Cache = new KvCache(batch, mixer.Heads, mixer.KeyDim, mixer.ValueDim, dtype, device);
        if (mixer.Convs is { } c)
            (ConvQ, ConvK, ConvV) = ((ConvState)c.Q.NewState(batch, dtype, device), (ConvState)c.K.NewState(batch, dtype, device),
                (ConvState)c.V.NewState(batch, dtype, device));
    }

    public KvCache Cache { get; }
    internal ConvState? ConvQ { get; }
    internal ConvState? ConvK { get; }
    internal ConvState? ConvV { get; }

    public override long Bytes => Cache.Bytes + (ConvQ?.Bytes ?? 0) + (ConvK?.Bytes ?? 0) + (ConvV?.Bytes ?? 0);

    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var mixer = (RcmhaAttention)Owner!;
        if (mixer.Convs is { } c)
        {
            Tensor Step(CausalDepthwiseConv conv, Tensor u, ConvState s) => conv.Step(u.reshape(u.size(0), -1), s).view(u.shape);
            (q, k, v) = (Step(c.Q, q, ConvQ!), Step(c.K, k, ConvK!), Step(c.V, v, ConvV!));
        }
        Cache.Append(k, v);
        long tk = Cache.Length;
        var keyPos = torch.arange(tk, device: q.device);
        var z = mixer.Attend(q, Cache.Keys, Cache.Values, keyPos.narrow(0, tk - 1, 1), keyPos, cachedKeys: true).Z;
        Advance();
        return z;
    }

    public override void Dispose()
    {
        Cache.Dispose();
        ConvQ?.Dispose(); ConvK?.Dispose(); ConvV?.Dispose();
    }
}
