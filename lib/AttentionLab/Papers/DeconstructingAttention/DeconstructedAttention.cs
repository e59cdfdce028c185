using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.DeconstructingAttention;

/// <summary>
/// The attention variants of the study, one principle relaxed each. The paper's exact definitions were not retrievable:
/// every formula here is [ours] (spec §2), one per principle.
/// </summary>
public enum MixerKind
{
    /// <summary>S: softmax(q·k/√Dk + causal)·V.</summary>
    Standard,
    /// <summary>V0: A = I — no token mixing, y_t = W_O W_V x_t.</summary>
    NoMix,
    /// <summary>V1: causal mean, A_ij = 1/(i+1) for j ≤ i — mixes, neither learned nor input-dependent.</summary>
    FixedMix,
    /// <summary>V2: A = softmax(b_{h, i−j} + causal), a learned Toeplitz bias per head — learned, input-independent.</summary>
    StaticMix,
    /// <summary>V3a: A_ij = relu(q·k)/Σ_j relu(q·k) — input-dependent, not softmax.</summary>
    ReluNorm,
    /// <summary>V3b: A = softmax(−‖q_i − k_j‖²/√Dk) — input-dependent, a distance instead of a dot product.</summary>
    DistanceKernel,
    /// <summary>V4: q, k from the layer-0 embeddings E (token + position), v from the current hidden state.</summary>
    DecoupledQK,
}

/// <summary>
/// The base of the study's mixers: an <see cref="AttentionMixer"/> (projections, head split, TransformerLens hooks) with
/// its kind and a <see cref="Pattern"/> reader. Each variant overrides only what it relaxes.
/// </summary>
public abstract class DeconstructedAttention : AttentionMixer
{
    /// <param name="kind">The variant.</param>
    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="usesQueryKey">False for variants whose weights ignore q and k (NoMix, FixedMix, StaticMix): W_Q is
    /// dropped and W_K shrinks to one vestigial column per head (the base always projects a key; it never enters the output).</param>
    protected DeconstructedAttention(MixerKind kind, int dModel, int heads, bool usesQueryKey = true)
        : base(kind.ToString(), dModel, heads, keyDim: usesQueryKey ? null : 1, valueDim: usesQueryKey ? null : CheckedHeadDim(dModel, heads),
            projectQuery: usesQueryKey)
    {
        Kind = kind;
    }

    static int CheckedHeadDim(int dModel, int heads)
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads}.", nameof(heads));
        return dModel / heads;
    }

    /// <summary>The variant.</summary>
    public MixerKind Kind { get; }

    /// <summary>Trainable parameters of this mixer (the vestigial key column of a q/k-free variant included).</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>A q/k-free variant's query: zeros [B, T, H, 1] (never used by its weights).</summary>
    protected override Tensor Query(Tensor x) => torch.zeros(x.size(0), x.size(1), Heads, KeyDim, dtype: x.dtype, device: x.device);

    /// <summary>The mixing matrix A [B, H, T, T] this mixer applies to x [B, T, d] (read from hook_pattern; no gradient).</summary>
    public Tensor Pattern(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor? captured = null;
        using (torch.no_grad())
        using (hook_pattern.AddHook((a, _) => { captured = a.detach().clone().DetachFromDisposeScope(); return null; }))
            call(x);
        using var held = captured ?? throw new InvalidOperationException($"{GetType().Name} wrote no pattern.");
        return held.alias().MoveToOuterDisposeScope();                                  // owned by the caller's scope
    }

    /// <summary>A new mixer of <paramref name="kind"/>; DecoupledQK needs the model's <paramref name="embeddings"/> tap, StaticMix a maximum length.</summary>
    public static DeconstructedAttention Create(MixerKind kind, int dModel, int heads, int maxLength = 256, EmbeddingTap? embeddings = null) => kind switch
    {
        MixerKind.Standard => new StandardAttention(dModel, heads),
        MixerKind.NoMix => new NoMixAttention(dModel, heads),
        MixerKind.FixedMix => new FixedMixAttention(dModel, heads),
        MixerKind.StaticMix => new StaticMixAttention(dModel, heads, maxLength),
        MixerKind.ReluNorm => new ReluNormAttention(dModel, heads),
        MixerKind.DistanceKernel => new DistanceKernelAttention(dModel, heads),
        MixerKind.DecoupledQK => new DecoupledQkAttention(dModel, heads,
            embeddings ?? throw new ArgumentException("DecoupledQK needs the model's embedding tap.", nameof(embeddings))),
        _ => throw new ArgumentException($"kind {(int)kind} is not a known MixerKind.", nameof(kind)),
    };
}

/// <summary>S: the base's causal softmax attention, nothing overridden.</summary>
public sealed class StandardAttention : DeconstructedAttention
{
    public StandardAttention(int dModel, int heads) : base(MixerKind.Standard, dModel, heads) => RegisterComponents();
}

/// <summary>
/// V0 NoMix: A = I. Scores are 0 on the diagonal and −∞ elsewhere, so the softmax gives the identity exactly; the fast
/// form skips the T×T matrix (z = v) unless a hook listens on the pattern.
/// </summary>
/// <remarks>s_ij = 0 if j = i else −∞;  A = softmax_j(s) = I;  z_i = v_i;  y_i = W_O W_V x_i.</remarks>
public sealed class NoMixAttention : DeconstructedAttention
{
    public NoMixAttention(int dModel, int heads) : base(MixerKind.NoMix, dModel, heads, usesQueryKey: false) => RegisterComponents();

    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var other = kPos.unsqueeze(0) != qPos.unsqueeze(1);                            // j ≠ i hidden (cached keys too)
        var zero = torch.zeros(q.size(0), Heads, qPos.size(0), kPos.size(0), dtype: q.dtype, device: q.device);
        return zero.masked_fill(other, double.NegativeInfinity);
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x) =>
        PatternObserved ? base.Mix(q, k, v, x) : v.alias();                            // z_i = v_i
}

/// <summary>
/// V1 FixedMix: the causal mean. Scores are 0 for j ≤ i (−∞ after), so the softmax gives 1/(i+1); the fast form is a
/// cumulative sum divided by the count.
/// </summary>
/// <remarks>A_ij = 1/(i+1) for j ≤ i;  z_i = (Σ_{j≤i} v_j)/(i+1).</remarks>
public sealed class FixedMixAttention : DeconstructedAttention
{
    public FixedMixAttention(int dModel, int heads) : base(MixerKind.FixedMix, dModel, heads, usesQueryKey: false) => RegisterComponents();

    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var zero = torch.zeros(q.size(0), Heads, qPos.size(0), kPos.size(0), dtype: q.dtype, device: q.device);
        return cachedKeys ? zero : zero.masked_fill(kPos.unsqueeze(0) > qPos.unsqueeze(1), double.NegativeInfinity);
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (PatternObserved) return base.Mix(q, k, v, x);
        var count = torch.arange(1, v.size(1) + 1, dtype: v.dtype, device: v.device).view(1, -1, 1, 1);   // i + 1
        return v.cumsum(1) / count;                                                     // Σ_{j≤i} v_j / (i+1)
    }
}

/// <summary>
/// V2 StaticMix: A = softmax_j(b_{h, i−j}) over j ≤ i with a learned Toeplitz bias per head (length-generalising, the
/// Synthesizer-random idea): learned, but the same matrix for every input. Masked causally before the softmax.
/// </summary>
/// <remarks>s_ij = b_h[i − j] for j ≤ i, −∞ otherwise;  A = softmax_j(s);  z = A V.</remarks>
public sealed class StaticMixAttention : DeconstructedAttention
{
    readonly Parameter static_bias;

    public StaticMixAttention(int dModel, int heads, int maxLength) : base(MixerKind.StaticMix, dModel, heads, usesQueryKey: false)
    {
        Guard.Positive(maxLength, nameof(maxLength));
        MaxLength = maxLength;
        static_bias = nn.Parameter(torch.zeros(heads, maxLength));                      // b starts at 0: A starts as the causal mean
        RegisterComponents();
    }

    /// <summary>The longest offset i − j the bias covers.</summary>
    public int MaxLength { get; }
    /// <summary>b [H, MaxLength]: b[h, δ] is head h's score for a key δ positions back.</summary>
    public Parameter StaticBias => static_bias;

    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var offset = qPos.unsqueeze(1) - kPos.unsqueeze(0);                             // δ = i − j [Tq, Tk]
        if (offset.max().item<long>() >= MaxLength)
            throw new ArgumentException($"offsets up to {offset.max().item<long>()} exceed MaxLength {MaxLength}.", nameof(qPos));
        var s = static_bias.to(q.dtype).index_select(1, offset.clamp_min(0).flatten()).view(1, Heads, offset.size(0), offset.size(1));
        return s.expand(q.size(0), -1, -1, -1).masked_fill(offset < 0, double.NegativeInfinity);   // causal before the softmax
    }
}

/// <summary>V3a ReluNorm: A_ij = relu(s_ij)/Σ_j relu(s_ij) with s = q·k/√Dk; a row with no positive score falls back to the causal mean.</summary>
/// <remarks>A_ij = relu(s_ij) / Σ_{j'≤i} relu(s_ij'), or 1/(i+1) for j ≤ i when that sum is 0.</remarks>
public sealed class ReluNormAttention : DeconstructedAttention
{
    public ReluNormAttention(int dModel, int heads) : base(MixerKind.ReluNorm, dModel, heads) => RegisterComponents();

    protected override Tensor Normalise(Tensor scores)
    {
        var r = scores.relu();                                                          // −∞ (hidden) → 0
        var sum = r.sum(-1, keepdim: true);
        var visible = scores.isneginf().logical_not().to(scores.dtype);
        var mean = visible / visible.sum(-1, keepdim: true).clamp_min(1);               // fallback: causal mean
        var none = sum.eq(0);                                                           // no positive score (a NaN sum is not: NaN in, NaN out)
        return torch.where(none, mean, r / sum.masked_fill(none, 1.0));
    }
}

/// <summary>
/// V3b DistanceKernel: A = softmax_j(−‖q_i − k_j‖²/√Dk). Expanded as (2 q_i·k_j − ‖k_j‖² − ‖q_i‖²)/√Dk; the ‖q_i‖² term is
/// constant along j, so it is kept (it changes no weight) only to make the hooked scores the distances themselves.
/// </summary>
public sealed class DistanceKernelAttention : DeconstructedAttention
{
    public DistanceKernelAttention(int dModel, int heads) : base(MixerKind.DistanceKernel, dModel, heads) => RegisterComponents();

    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var qh = q.permute(0, 2, 1, 3);                                                 // [B, H, Tq, Dk]
        var kh = k.permute(0, 2, 1, 3);
        var d2 = qh.square().sum(-1, keepdim: true) - 2 * qh.matmul(kh.transpose(-2, -1)) + kh.square().sum(-1).unsqueeze(-2);  // ‖q_i − k_j‖²
        var s = d2.neg() / Math.Sqrt(q.size(3));
        return cachedKeys ? s : s.masked_fill(kPos.unsqueeze(0) > qPos.unsqueeze(1), double.NegativeInfinity);
    }
}

/// <summary>
/// V4 DecoupledQK: queries and keys come from the model's layer-0 embeddings E (token + position, normalised without
/// affine), values from the current hidden state. The same W_QKV is applied to E for q, k and to x for v, so the
/// parameter count equals the standard layer's.
/// </summary>
/// <remarks>q = LN(E) W_Q, k = LN(E) W_K, v = x W_V;  A = softmax(q kᵀ/√Dk + causal);  z = A V.</remarks>
public sealed class DecoupledQkAttention : DeconstructedAttention
{
    readonly EmbeddingTap tap;

    public DecoupledQkAttention(int dModel, int heads, EmbeddingTap embeddings) : base(MixerKind.DecoupledQK, dModel, heads)
    {
        ArgumentNullException.ThrowIfNull(embeddings);
        tap = embeddings;
        RegisterComponents();
    }

    protected override (Tensor Q, Tensor K, Tensor V) Activate(Tensor q, Tensor k, Tensor v)
    {
        var e = tap.Current;
        if (e.size(0) != q.size(0) || e.size(1) != q.size(1))
            throw new InvalidOperationException($"the embedding tap holds [{e.size(0)}, {e.size(1)}, ·], the layer sees [{q.size(0)}, {q.size(1)}, ·].");
        var en = nn.functional.layer_norm(e.to(q.dtype), new long[] { DModel });        // LN(E), no affine
        var parts = Qkv.call(en).view(q.size(0), q.size(1), 3, Heads, KeyDim).unbind(2);
        return (parts[0], parts[1], v);                                                 // q, k from E; v from x
    }
}

/// <summary>
/// Holds a <see cref="TinyGpt"/>'s layer-0 embeddings E = W_E[x] (+ W_pos) of the current forward pass (or decode step),
/// read from its <c>hook_embed</c> / <c>hook_pos_embed</c> hooks, for <see cref="DecoupledQkAttention"/>. Gradients flow
/// through E into the embeddings. Dispose to remove the hooks and free E.
/// </summary>
public sealed class EmbeddingTap : IDisposable
{
    readonly List<IDisposable> handles = new();
    Tensor? token, position;

    /// <summary>Listens on <paramref name="model"/>'s embedding hooks (call once, after the model is built).</summary>
    public void Attach(TinyGpt model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (handles.Count > 0) throw new InvalidOperationException("the tap is already attached.");
        handles.Add(model.HookPoints["hook_embed"].AddHook((e, _) => { Replace(ref token, e); Clear(ref position); return null; }));
        if (model.HookPoints.TryGetValue("hook_pos_embed", out var pos))
            handles.Add(pos.AddHook((p, _) => { Replace(ref position, p); return null; }));
    }

    /// <summary>Sets E [B, T, d] by hand (a mixer used outside a TinyGpt, e.g. in a test); the next hooked pass replaces it.</summary>
    public void Set(Tensor embeddings)
    {
        Guard.Rank(embeddings, 3, nameof(embeddings), "B, T, d");
        Replace(ref token, embeddings);
        Clear(ref position);
    }

    /// <summary>E [B, T, d] of the current pass.</summary>
    public Tensor Current => token is null ? throw new InvalidOperationException("the embedding tap has seen no forward pass (attach it to the model).")
        : position is null ? token : token + position;

    static void Replace(ref Tensor? slot, Tensor value)
    {
        slot?.Dispose();
        slot = value.alias().DetachFromDisposeScope();                                 // keeps the graph: gradients reach W_E
    }

    static void Clear(ref Tensor? slot) { slot?.Dispose(); slot = null; }

    public void Dispose()
    {
        foreach (var h in handles) h.Dispose();
        handles.Clear();
        Clear(ref token);
        Clear(ref position);
    }
}

/// <summary>A schedule of mixers, one letter per layer: S = standard, V = the variant (e.g. "SVSV", "VVVV").</summary>
public static class LayerSchedule
{
    /// <summary>The kind of every layer of <paramref name="schedule"/> with V = <paramref name="variant"/>.</summary>
    public static IReadOnlyList<MixerKind> Parse(string schedule, MixerKind variant)
    {
        ArgumentException.ThrowIfNullOrEmpty(schedule);
        if (!Enum.IsDefined(variant)) throw new ArgumentException($"variant {(int)variant} is not a known MixerKind.", nameof(variant));
        return schedule.Select((c, i) => c switch
        {
            'S' => MixerKind.Standard,
            'V' => variant,
            _ => throw new ArgumentException($"schedule '{schedule}' has '{c}' at {i}: use S (standard) or V (variant).", nameof(schedule)),
        }).ToArray();
    }

    /// <summary>
    /// A TinyGpt whose layer ℓ is <paramref name="kinds"/>[ℓ]; the tap (for DecoupledQK layers) is attached and returned
    /// with it — dispose it with the model.
    /// </summary>
    public static (TinyGpt Model, EmbeddingTap Tap) Build(TinyGptConfig config, IReadOnlyList<MixerKind> kinds)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(kinds);
        if (kinds.Count != config.Layers) throw new ArgumentException($"{kinds.Count} kinds for {config.Layers} layers.", nameof(kinds));
        var tap = new EmbeddingTap();
        var model = new TinyGpt(config, layer => DeconstructedAttention.Create(kinds[layer], config.DModel, config.Heads, config.MaxLength, tap));
        tap.Attach(model);
        return (model, tap);
    }
}
