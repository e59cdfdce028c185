using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// The base of every attention-like mixer in the library: the projections W_Q, W_K, W_V and the one head split, the
/// TransformerLens hook points (<c>hook_q</c>, <c>hook_k</c>, <c>hook_v</c>, <c>hook_attn_scores</c>, <c>hook_pattern</c>,
/// <c>hook_z</c>), the output projection W_O, and overridable steps — <see cref="Scores"/>, <see cref="Normalise"/>,
/// <see cref="Combine"/> — in the spirit of labml's <c>get_scores</c> override. A paper's mixer overrides only what the
/// paper changes; <c>RunWithCache</c>, ablation, patching and the head detector then work on it.
/// Decoding: <see cref="NewState"/> returns an <see cref="AttentionState"/> that owns its attend-and-update step.
/// </summary>
/// <remarks>
/// q, k, v = hook_q/k/v(split_h(x W_QKV))        q, k [B, T, H, Dk], v [B, T, H, Dv]   (one fused projection)
/// z = hook_z(Mix(q, k, v, x))                   [B, T, H, Dv]
///   default Mix = softmax attention by position: s = hook_attn_scores(Scores(q, k) masked j ≤ i), A = hook_pattern(Normalise(s)),
///   z = Combine(A, v) = A·V
/// y = Output(z, x) = concat_h(z_h) W_O           [B, T, d]
/// A mixer whose attention is implicit (linear attention, flows) documents what its hook_pattern carries — the
/// equivalent T×T weights, computed only while a hook listens (<see cref="PatternObserved"/>).
/// </remarks>
public abstract class AttentionMixer : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear qkv, proj;
    protected readonly HookPoint hook_q = new(), hook_k = new(), hook_v = new(), hook_attn_scores = new(), hook_pattern = new(), hook_z = new();

    /// <param name="name">The module's name.</param>
    /// <param name="dModel">d, the residual width.</param>
    /// <param name="heads">H.</param>
    /// <param name="keyDim">Dk per head for queries and keys (default d / H).</param>
    /// <param name="valueDim">Dv per head for values (default d / H); W_O maps H·Dv back to d.</param>
    /// <param name="projectQuery">False for a mixer whose query is not a projection of x (Aaren's learned query): W_QKV then
    /// computes only k and v, and the mixer supplies q in <see cref="Query"/>.</param>
    /// <param name="bias">Bias on W_QKV and W_O.</param>
    protected AttentionMixer(string name, int dModel, int heads, int? keyDim = null, int? valueDim = null, bool projectQuery = true, bool bias = true)
        : base(name)
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (keyDim is null || valueDim is null)
            if (dModel % heads != 0)
                throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads} (or give keyDim and valueDim).", nameof(heads));
        (DModel, Heads, KeyDim, ValueDim, ProjectsQuery) = (dModel, heads, keyDim ?? dModel / heads, valueDim ?? dModel / heads, projectQuery);
        Guard.Positive(KeyDim, nameof(keyDim));
        Guard.Positive(ValueDim, nameof(valueDim));
        qkv = nn.Linear(dModel, heads * ((projectQuery ? 2 : 1) * KeyDim + ValueDim), hasBias: bias);
        proj = nn.Linear(heads * ValueDim, dModel, hasBias: bias);
    }

    public int DModel { get; }
    public int Heads { get; }
    /// <summary>Dk: width of a query/key head.</summary>
    public int KeyDim { get; }
    /// <summary>Dv: width of a value head (and of z).</summary>
    public int ValueDim { get; }
    /// <summary>False when the query is not a projection of the input (see the constructor).</summary>
    public bool ProjectsQuery { get; }

    /// <summary>W_QKV: [H·(2Dk + Dv), d] (rows q, k, v, each head-major); [H·(Dk + Dv), d] without a query projection.</summary>
    public Linear Qkv => qkv;
    /// <summary>W_O: [d, H·Dv].</summary>
    public Linear Proj => proj;

    /// <summary>True while a hook listens on <c>hook_pattern</c>: a mixer whose weights are implicit computes them only then.</summary>
    protected bool PatternObserved => hook_pattern.HookCount > 0 || hook_attn_scores.HookCount > 0;

    /// <summary>x [B, T, d] → q, k [B, T, H, Dk], v [B, T, H, Dv] after hook_q/k/v: the library's one head split.</summary>
    public (Tensor Q, Tensor K, Tensor V) Project(Tensor x)
    {
        CheckInput(x, 3, nameof(x), "B, T, d");
        long b = x.size(0), t = x.size(1);
        var all = qkv.call(x);                                                          // x W_QKV
        Tensor q, k, v;
        if (KeyDim == ValueDim)
        {
            var parts = all.view(b, t, ProjectsQuery ? 3 : 2, Heads, KeyDim).unbind(2);  // [B, T, H, D] each
            (q, k, v) = ProjectsQuery ? (parts[0], parts[1], parts[2]) : (Query(x), parts[0], parts[1]);
        }
        else
        {
            long qk = Heads * KeyDim;
            var sizes = ProjectsQuery ? new[] { qk, qk, Heads * (long)ValueDim } : new[] { qk, Heads * (long)ValueDim };
            var parts = all.split(sizes, -1);
            q = ProjectsQuery ? parts[0].view(b, t, Heads, KeyDim) : Query(x);
            k = parts[^2].view(b, t, Heads, KeyDim);
            v = parts[^1].view(b, t, Heads, ValueDim);
        }
        (q, k, v) = Activate(q, k, v);
        return (hook_q.call(q), hook_k.call(k), hook_v.call(v));
    }

    /// <summary>
    /// Up-front checks of a mixer input (rank, width d, floating dtype and device of the weights), so misuse names the argument
    /// and both shapes instead of surfacing as a native matmul error.
    /// </summary>
    void CheckInput(Tensor x, int rank, string name, string layout)
    {
        Guard.Rank(x, rank, name, layout);
        if (x.size(-1) != DModel)
            throw new ArgumentException($"{name} has width {x.size(-1)}, the mixer d = {DModel}: " +
                $"{name} {Guard.ShapeText(x)}, W_QKV {Guard.ShapeText(qkv.weight!)}.", name);
        Guard.FloatingPoint(x, name);
        if (x.dtype != qkv.weight!.dtype)
            throw new ArgumentException($"{name} has dtype {x.dtype} but the mixer's weights are {qkv.weight!.dtype} (convert one of them).", name);
        if (x.device_type != qkv.weight!.device_type || x.device_index != qkv.weight!.device_index)
            throw new ArgumentException($"{name} is on {x.device} but the mixer's weights are on {qkv.weight!.device}.", name);
    }

    /// <summary>A paper's activation on the projected heads before the hooks (TNL: SiLU on q, k, v). Default: none.</summary>
    protected virtual (Tensor Q, Tensor K, Tensor V) Activate(Tensor q, Tensor k, Tensor v) => (q, k, v);

    /// <summary>The query [B, T, H, Dk] of a mixer that does not project it (Aaren: its learned query for every position).</summary>
    protected virtual Tensor Query(Tensor x) =>
        throw new InvalidOperationException($"{GetType().Name} projects no query: override Query.");

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x);
        var z = hook_z.call(Mix(q, k, v, x));
        return Output(z, x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The mixer's attention over the whole sequence: z [B, T, H, Dv] from q, k, v (after their hooks) and the mixer's input x.
    /// Default: causal softmax attention by position through <see cref="Attend"/>.
    /// </summary>
    protected virtual Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var pos = torch.arange(q.size(1), device: q.device);
        return Attend(q, k, v, pos, pos).Z;
    }

    /// <summary>
    /// Softmax-style attention of queries at positions <paramref name="qPos"/> [Tq] over keys at <paramref name="kPos"/> [Tk]
    /// (j visible to i when kPos_j ≤ qPos_i): z [B, Tq, H, Dv] and the pattern A [B, H, Tq, Tk]. Decode states call it with
    /// their cached keys; <see cref="Scores"/>, <see cref="Normalise"/> and <see cref="Combine"/> are the override points.
    /// <paramref name="cachedKeys"/>: k is a decode cache — every key precedes the query and the cache already dropped what
    /// the mixer's window hides — so the position mask is not built (the positions still feed RoPE, ALiBi, block patterns).
    /// </summary>
    public (Tensor Z, Tensor Pattern) Attend(Tensor q, Tensor k, Tensor v, Tensor qPos, Tensor kPos, bool cachedKeys = false)
    {
        var scores = hook_attn_scores.call(Scores(q, k, qPos, kPos, cachedKeys));      // s [B, H, Tq, Tk], −∞ where hidden
        var pattern = hook_pattern.call(Normalise(scores));                             // A = normalise_j(s)
        return (Combine(pattern, v), pattern);
    }

    /// <summary>
    /// s_ij = q_i·k_j / √Dk, −∞ where kPos_j &gt; qPos_i (not built for <paramref name="cachedKeys"/>): [B, H, Tq, Tk].
    /// Override for positions, biases or other scores.
    /// </summary>
    protected virtual Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var qh = q.permute(0, 2, 1, 3);                                                 // [B, H, Tq, Dk]
        var kh = k.permute(0, 2, 1, 3);                                                 // [B, H, Tk, Dk]
        var s = qh.matmul(kh.transpose(-2, -1)) * (1.0 / Math.Sqrt(q.size(3)));        // q_i·k_j / √Dk
        if (cachedKeys) return s;
        var hidden = kPos.unsqueeze(0) > qPos.unsqueeze(1);                            // causal by position: j > i hidden
        return s.masked_fill(hidden, double.NegativeInfinity);
    }

    /// <summary>A = softmax_j(s) [B, H, Tq, Tk] (a fully hidden row gives zeros, never NaN). Override for other normalisers.</summary>
    protected virtual Tensor Normalise(Tensor scores) => ReferenceAttention.Normalize(scores).Probabilities;

    /// <summary>z_i = Σ_j A_ij v_j: [B, Tq, H, Dv] from A [B, H, Tq, Tk] and v [B, Tk, H, Dv].</summary>
    protected virtual Tensor Combine(Tensor pattern, Tensor v) =>
        ReferenceAttention.WeightedValues(pattern, v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).contiguous();

    /// <summary>y = concat_h(z_h) W_O: [B, T, d] from z [B, T, H, Dv] and the mixer's input x (a gate may use x).</summary>
    protected virtual Tensor Output(Tensor z, Tensor x) => proj.call(z.reshape(z.size(0), z.size(1), Heads * ValueDim));

    /// <summary>True when the mixer decodes token by token (<see cref="NewState"/>, <see cref="Step"/>); a mixer without a decode form overrides it.</summary>
    public virtual bool CanStream => true;

    /// <summary>An empty decode state for <paramref name="batch"/> sequences, owned by this mixer (<see cref="CreateState"/> makes it).</summary>
    public MixerState NewState(long batch, ScalarType dtype, Device device)
    {
        Guard.Positive(batch, nameof(batch));
        Guard.FloatingDtype(dtype, nameof(dtype));
        ArgumentNullException.ThrowIfNull(device);
        var state = CreateState(batch, dtype, device);
        if (state is AttentionState attention) attention.Owner = this;
        return state;
    }

    /// <summary>The mixer's decode state. Default: a KV cache (softmax attention by position).</summary>
    protected virtual MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        new KvCacheState(this, new KvCache(batch, Heads, KeyDim, ValueDim, dtype, device));

    /// <summary>One token: x_t [B, d] → [B, d]. The state attends and updates itself, position included (<see cref="AttentionState.Attend"/>).</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        CheckInput(xT, 2, nameof(xT), "B, d");
        if (state is not AttentionState attention || (attention.Owner ??= this) != this)
            throw new ArgumentException($"state must come from this mixer's NewState, got {state?.GetType().Name ?? "null"}" +
                                        $"{(state is AttentionState { Owner: { } o } ? $" of another {o.GetType().Name}" : "")}.", nameof(state));
        using var scope = NewDisposeScope();
        var x = xT.unsqueeze(1);                                                        // [B, 1, d]
        var (q, k, v) = Project(x);
        var z = hook_z.call(attention.Attend(q, k, v, x));
        return Output(z, x).squeeze(1).MoveToOuterDisposeScope();
    }

    // ---- Per-head weights as TransformerLens users expect ----

    /// <summary>W_Q [H, d, Dk] (a view of W_QKV's query rows).</summary>
    public Tensor W_Q => ProjectsQuery ? HeadRows(0, KeyDim) : throw new InvalidOperationException($"{GetType().Name} projects no query.");
    /// <summary>W_K [H, d, Dk].</summary>
    public Tensor W_K => HeadRows(ProjectsQuery ? Heads * KeyDim : 0, KeyDim);
    /// <summary>W_V [H, d, Dv].</summary>
    public Tensor W_V => HeadRows((ProjectsQuery ? 2 : 1) * Heads * KeyDim, ValueDim);
    /// <summary>W_O [H, Dv, d].</summary>
    public Tensor W_O => proj.weight!.view(DModel, Heads, ValueDim).permute(1, 2, 0);
    /// <summary>The QK circuit W_Q W_Kᵀ [H, d, d]: x_i QK x_jᵀ is head h's score before scaling.</summary>
    public Tensor QK => W_Q.matmul(W_K.transpose(1, 2));
    /// <summary>The OV circuit W_V W_O [H, d, d]: what head h writes for a unit of attention on x_j.</summary>
    public Tensor OV => W_V.matmul(W_O);

    Tensor HeadRows(long first, int width) => qkv.weight!.narrow(0, first, Heads * (long)width).view(Heads, width, DModel).transpose(1, 2);
}

/// <summary>A decode state that owns its step: given the new token's q, k, v it attends and updates itself.</summary>
public abstract class AttentionState : MixerState
{
    /// <param name="owner">The mixer that made the state (null: bound to the first mixer that steps it).</param>
    protected AttentionState(AttentionMixer? owner = null) => Owner = owner;

    /// <summary>The mixer this state decodes for; another mixer's step refuses it.</summary>
    public AttentionMixer? Owner { get; internal set; }

    /// <summary>
    /// q, k [B, 1, H, Dk], v [B, 1, H, Dv] of the new token (after the hooks) and the mixer input x_t [B, 1, d] → z [B, 1, H, Dv];
    /// updates the state and counts the token (<see cref="MixerState.Advance"/>).
    /// </summary>
    public abstract Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x);
}

/// <summary>The plain KV cache of a softmax mixer: append, then attend over every cached key (positions 0 … t).</summary>
public sealed class KvCacheState(AttentionMixer mixer, KvCache cache) : AttentionState(mixer)
{
    /// <summary>The cache (keys as the mixer projected them; a positional mixer rotates at use).</summary>
    public KvCache Cache { get; } = cache;
    public override long Bytes => Cache.Bytes;

    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        Cache.Append(k, v);
        long tk = Cache.Length;
        var keyPos = torch.arange(tk, device: q.device);
        var z = Owner!.Attend(q, Cache.Keys, Cache.Values, keyPos.narrow(0, tk - 1, 1), keyPos, cachedKeys: true).Z;
        Advance();
        return z;
    }

    public override void Dispose() => Cache.Dispose();
}
