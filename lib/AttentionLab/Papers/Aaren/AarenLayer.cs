using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Aaren;

/// <summary>
/// An Aaren layer: multi-head softmax attention of a learned, input-independent query per head over every prefix.
/// x [B, T, d] → [B, T, d]. Trains in parallel (<see cref="AttentionMixer.forward"/>, prefix scan) and streams with a constant-size
/// state (<see cref="AttentionMixer.Step"/>, the RNN). A mixer for <see cref="TinyGpt"/>.
/// </summary>
/// <remarks>
/// k_t = W_K x_t,  v_t = W_V x_t  (per head h: k_{t,h}, v_{t,h} ∈ ℝ^{d/H})
/// s_{t,h} = q_h·k_{t,h} / √(d/H)   with q_h a parameter (never a function of x)
/// o_{k,h} = Σ_{t≤k} softmax_t(s_{1..k,h}) v_{t,h}   (by scan or RNN, see <see cref="AarenAttention"/>)
/// y_k = W_O [o_{k,1}; …; o_{k,H}]
/// </remarks>
public sealed class AarenLayer : AttentionMixer
{
    readonly Parameter query;

    public AarenLayer(int dModel, int heads, ScanAlgo algo = ScanAlgo.HillisSteele) : base(nameof(AarenLayer), dModel, heads, projectQuery: false)
    {
        Algo = algo;
        query = nn.Parameter(torch.randn(heads, dModel / heads));                  // q_h, learned
        RegisterComponents();
    }

    /// <summary>The scan used by <see cref="AttentionMixer.forward"/>.</summary>
    public ScanAlgo Algo { get; set; }
    /// <summary>The learned queries [H, d/H].</summary>
    public Tensor LearnedQuery => query;

    /// <summary>hook_q: the learned query at every position [B, T, H, Dh] (a view; the scan reads the parameter).</summary>
    protected override Tensor Query(Tensor x) => query.expand(x.size(0), x.size(1), Heads, KeyDim);

    /// <summary>
    /// o by a parallel prefix scan; while a hook listens on the pattern, by the explicit weights of the learned query
    /// (softmax over t ≤ k of q_h·k_t/√Dh — the same numbers), so pattern edits reach the output.
    /// </summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x) =>
        PatternObserved ? base.Mix(q, k, v, x) : AarenAttention.Scan(query, k, v, algo: Algo);

    /// <summary>Attention weights [B, H, T, T] of the learned query: row k holds the weights of output k over t ≤ k.</summary>
    public Tensor Weights(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (_, k, v) = Project(x);
        using var att = AarenNaive.Attention(query, k, v);
        return att.Probabilities.alias().MoveToOuterDisposeScope();
    }

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        new AarenState(this, SoftmaxMonoid.Identity(new[] { batch, (long)Heads }, KeyDim, dtype, device));

    /// <summary>One RNN step: s_t = q·k_t/√Dh, (m, u, w) ← (m, u, w) ⊕ (s_t, 1, v_t), o_t = w/u.</summary>
    internal Tensor Update(AarenState state, Tensor k, Tensor v)
    {
        var s = AarenAttention.Scores(query, k).squeeze(1);                         // s_t [B, H]
        var next = AarenAttention.Update(state.Current, s, v.squeeze(1));           // (m_t, u_t, w_t)
        state.Replace(next);
        return SoftmaxMonoid.Output(next).unsqueeze(1);                             // o_t = w_t / u_t  [B, 1, H, Dh]
    }
}

/// <summary>The streaming state of one <see cref="AarenLayer"/>: (m, u) [B, H] and w [B, H, d/H], whatever t is.</summary>
public sealed class AarenState : AttentionState
{
    readonly AarenLayer layer;

    public AarenState(AarenLayer layer, SoftmaxState initial) : base(layer) => (this.layer, Current) = (layer, initial.DetachFromDisposeScope());

    /// <summary>The state after the tokens seen so far.</summary>
    public SoftmaxState Current { get; private set; }
    public override long Bytes => Current.Bytes;

    /// <summary>k_t, v_t of the new token → o_t; the state's (m, u, w) is replaced by the next one (constant size).</summary>
    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x) => layer.Update(this, k, v);

    /// <summary>Takes ownership of <paramref name="next"/>, frees the previous state, and counts one token.</summary>
    public void Replace(SoftmaxState next)
    {
        next.DetachFromDisposeScope();
        Current.Dispose();
        Current = next;
        Advance();
    }

    public override void Dispose() => Current.Dispose();
}

/// <summary>A stack of Aaren layers: <see cref="TinyGpt"/> blocks whose mixer is an <see cref="AarenLayer"/>.</summary>
public static class AarenStack
{
    /// <summary>The mixer factory: one <see cref="AarenLayer"/> per block.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Mixers(TinyGptConfig config, ScanAlgo algo = ScanAlgo.HillisSteele) =>
        _ => new AarenLayer(config.DModel, config.Heads, algo);

    /// <summary>The model: forward by scan, <see cref="TinyGpt.Step"/> by the RNN with constant memory per layer.</summary>
    public static TinyGpt Create(TinyGptConfig config, ScanAlgo algo = ScanAlgo.HillisSteele) => new(config, Mixers(config, algo));
}
