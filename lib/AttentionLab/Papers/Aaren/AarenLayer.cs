using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Aaren;

/// <summary>
/// An Aaren layer: multi-head softmax attention of a learned, input-independent query per head over every prefix.
/// x [B, T, d] → [B, T, d]. Trains in parallel (<see cref="forward"/>, prefix scan) and streams with a constant-size
/// state (<see cref="Step"/>, the RNN). A mixer for <see cref="TinyGpt"/>.
/// </summary>
/// <remarks>
/// k_t = W_K x_t,  v_t = W_V x_t  (per head h: k_{t,h}, v_{t,h} ∈ ℝ^{d/H})
/// s_{t,h} = q_h·k_{t,h} / √(d/H)   with q_h a parameter (never a function of x)
/// o_{k,h} = Σ_{t≤k} softmax_t(s_{1..k,h}) v_{t,h}   (by scan or RNN, see <see cref="AarenAttention"/>)
/// y_k = W_O [o_{k,1}; …; o_{k,H}]
/// </remarks>
public sealed class AarenLayer : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Parameter query;
    readonly Linear key, value, proj;

    public AarenLayer(int dModel, int heads, ScanAlgo algo = ScanAlgo.HillisSteele) : base(nameof(AarenLayer))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads}.", nameof(heads));
        (DModel, Heads, Algo) = (dModel, heads, algo);
        query = nn.Parameter(torch.randn(heads, dModel / heads));                  // q_h, learned
        key = nn.Linear(dModel, dModel);
        value = nn.Linear(dModel, dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    /// <summary>The scan used by <see cref="forward"/>.</summary>
    public ScanAlgo Algo { get; set; }
    /// <summary>The learned queries [H, d/H].</summary>
    public Tensor Query => query;

    /// <summary>x [B, T, d] → [B, T, d] by a parallel prefix scan.</summary>
    public override Tensor forward(Tensor x)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        var (k, v) = KeysValues(x);
        var o = AarenAttention.Scan(query, k, v, algo: Algo);                       // [B, T, H, Dh]
        return proj.call(o.reshape(x.shape[0], x.shape[1], DModel)).MoveToOuterDisposeScope();
    }

    /// <summary>Attention weights [B, H, T, T] of the learned query: row k holds the weights of output k over t ≤ k.</summary>
    public Tensor Weights(Tensor x)
    {
        CheckInput(x);
        using var scope = NewDisposeScope();
        var (k, v) = KeysValues(x);
        using var att = AarenAttention.Naive(query, k, v);
        return att.Probabilities.alias().MoveToOuterDisposeScope();
    }

    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new AarenState(SoftmaxMonoid.Identity(new[] { batch, (long)Heads }, DModel / Heads, dtype, device));

    /// <summary>One token x_t [B, d] → y_t [B, d]; replaces the state's (m, u, w) by the next one (constant size).</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        if (state is not AarenState rnn) throw new ArgumentException($"state must come from AarenLayer.NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        var (k, v) = KeysValues(xT.unsqueeze(1));                                   // [B, 1, H, Dh]
        var s = AarenAttention.Scores(query, k).squeeze(1);                         // s_t [B, H]
        var next = AarenAttention.Update(rnn.Current, s, v.squeeze(1));             // (m_t, u_t, w_t)
        rnn.Replace(next);
        var o = SoftmaxMonoid.Output(next);                                         // o_t = w_t / u_t
        return proj.call(o.reshape(xT.shape[0], DModel)).MoveToOuterDisposeScope();
    }

    (Tensor K, Tensor V) KeysValues(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        return (key.call(x).view(b, t, Heads, DModel / Heads), value.call(x).view(b, t, Heads, DModel / Heads));
    }

    void CheckInput(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
    }
}

/// <summary>The streaming state of one <see cref="AarenLayer"/>: (m, u) [B, H] and w [B, H, d/H], whatever t is.</summary>
public sealed class AarenState : MixerState
{
    public AarenState(SoftmaxState initial) => Current = initial.DetachFromDisposeScope();

    /// <summary>The state after the tokens seen so far.</summary>
    public SoftmaxState Current { get; private set; }
    public override long Bytes => Current.Bytes;

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
