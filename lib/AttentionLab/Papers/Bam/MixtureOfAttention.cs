using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>
/// BAM's soft mixture of attention ("BAM-all", Zhang et al. 2024, §3): E attention experts, each a full causal multi-head
/// attention with its own W_Q, W_K, W_V and W_O (taken from the E branched models), mixed per token by a soft router over
/// the experts' <b>outputs</b> (after W_O), never over their attention probabilities. One mixer on the
/// <see cref="AttentionMixer"/> base with E·H heads: the heads of expert i are heads i·H … i·H + H − 1, so the hooks
/// (hook_q, hook_pattern, hook_z, …) see every expert's heads, and decoding keeps E·H heads in its KV cache (E × the dense
/// cache, as the paper says of BAM-all). The loop over experts is the naive twin (<see cref="MixtureOfAttentionNaive"/>).
/// </summary>
/// <remarks>
/// r_t = hook_router(softmax(W_a x_t)) ∈ Δ^E                                     (<see cref="ExpertRouter"/>, soft)
/// A_i(x)_t = concat_h(z^i_{t,h}) W_O^i + b_O^i,  z^i = causal softmax attention with W_Q^i, W_K^i, W_V^i (+ their biases)
/// MoA(x)_t = Σ_i r_{t,i} A_i(x)_t = (concat_{i,h} r_{t,i} z^i_{t,h}) W_O + r_t B_O    (W_O = [W_O^1 … W_O^E], B_O = [b_O^i] ∈ R^{E×d})
/// Identical experts: Σ_i r_{t,i} A(x)_t = A(x)_t for any router, since Σ_i r_{t,i} = 1.
/// </remarks>
public sealed class MixtureOfAttention : AttentionMixer
{
    readonly ExpertRouter router;
    readonly Parameter qkv_bias;      // [E·H·(2Dk + Dv)]: b_Q, b_K, b_V of every expert, in W_QKV's row order
    readonly Parameter out_bias;      // B_O [E, d]
    readonly HookPoint hook_router = new();

    /// <summary>A fresh mixture of <paramref name="experts"/> experts of <paramref name="heads"/> heads each (width d / H per head).</summary>
    /// <param name="dModel">d.</param>
    /// <param name="heads">H per expert.</param>
    /// <param name="experts">E.</param>
    /// <param name="zeroRouter">W_a = 0: every expert weighs 1/E at the start (BAM allows random or zero).</param>
    /// <param name="keyDim">Dk per head (default d / H).</param>
    /// <param name="valueDim">Dv per head (default d / H).</param>
    public MixtureOfAttention(int dModel, int heads, int experts, bool zeroRouter = false, int? keyDim = null, int? valueDim = null)
        : base(nameof(MixtureOfAttention), dModel, heads * Checked(experts, heads), keyDim ?? PerHead(dModel, heads), valueDim ?? PerHead(dModel, heads),
            bias: false)
    {
        (Experts, HeadsPerExpert) = (experts, heads);
        router = new ExpertRouter(dModel, experts, mode: RouterMode.Soft, zeroInit: zeroRouter);
        int rows = Heads * (2 * KeyDim + ValueDim);
        double bound = 1 / Math.Sqrt(dModel);                                          // Linear's default bias init
        qkv_bias = nn.Parameter(torch.empty(rows).uniform_(-bound, bound));
        out_bias = nn.Parameter(torch.empty(experts, dModel).uniform_(-1 / Math.Sqrt(heads * ValueDim), 1 / Math.Sqrt(heads * ValueDim)));
        RegisterComponents();
    }

    static int Checked(int experts, int heads)
    {
        Guard.Positive(experts, nameof(experts));
        Guard.Positive(heads, nameof(heads));
        return experts;
    }

    static int PerHead(int dModel, int heads)
    {
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0)
            throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads} (or give keyDim and valueDim).", nameof(heads));
        return dModel / heads;
    }

    /// <summary>
    /// BAM's attention upcycling: expert i carries all four matrices (and biases) of <paramref name="experts"/>[i] (copied), behind a
    /// fresh soft router (zero or random). The experts must be plain softmax attention whose positions live outside the mixer
    /// (none, learned or sinusoidal embeddings). Same dtype and device as the first expert.
    /// </summary>
    public static MixtureOfAttention FromExperts(IReadOnlyList<CausalSelfAttention> experts, bool zeroRouter = true)
    {
        ArgumentNullException.ThrowIfNull(experts);
        if (experts.Count == 0) throw new ArgumentException("give at least one attention expert.", nameof(experts));
        var first = experts[0];
        for (int i = 0; i < experts.Count; i++)
        {
            var a = experts[i];
            if (a.PositionKind is PositionKind.Rope or PositionKind.Alibi || a.Kind != AttentionKind.Softmax || a.Qkv.bias is null || a.Proj.bias is null)
                throw new ArgumentException($"expert {i} must be plain softmax attention with biases and positions outside the mixer " +
                    $"(got {a.PositionKind}, {a.Kind}).", nameof(experts));
            if (a.DModel != first.DModel || a.Heads != first.Heads || a.KeyDim != first.KeyDim || a.ValueDim != first.ValueDim)
                throw new ArgumentException($"expert {i} has d {a.DModel}, H {a.Heads}, Dk {a.KeyDim}, Dv {a.ValueDim}; expert 0 has " +
                    $"d {first.DModel}, H {first.Heads}, Dk {first.KeyDim}, Dv {first.ValueDim}.", nameof(experts));
        }
        var w = first.Qkv.weight!;
        var moa = new MixtureOfAttention(first.DModel, first.Heads, experts.Count, zeroRouter, first.KeyDim, first.ValueDim);
        moa.to(w.device).to(w.dtype);
        long hk = first.Heads * (long)first.KeyDim, hv = first.Heads * (long)first.ValueDim, e = experts.Count;
        using var noGrad = torch.no_grad();
        for (int i = 0; i < experts.Count; i++)
        {
            var a = experts[i];
            // W_QKV rows: [q of every expert | k of every expert | v of every expert], expert i at slot i of each block
            var blocks = new[] { (From: 0L, To: 0L, Width: hk), (From: hk, To: e * hk, Width: hk), (From: 2 * hk, To: 2 * e * hk, Width: hv) };
            foreach (var (from, to, width) in blocks)
            {
                moa.Qkv.weight!.narrow(0, to + i * width, width).copy_(a.Qkv.weight!.narrow(0, from, width));
                moa.qkv_bias.narrow(0, to + i * width, width).copy_(a.Qkv.bias!.narrow(0, from, width));
            }
            moa.Proj.weight!.narrow(1, i * hv, hv).copy_(a.Proj.weight!);              // W_O = [W_O^1 … W_O^E] along its input
            moa.out_bias[i].copy_(a.Proj.bias!);
        }
        return moa;
    }

    /// <summary>E.</summary>
    public int Experts { get; }
    /// <summary>H per expert (the base's <see cref="AttentionMixer.Heads"/> is E·H).</summary>
    public int HeadsPerExpert { get; }
    /// <summary>The soft router W_a [E, d].</summary>
    public ExpertRouter Router => router;
    /// <summary>b_Q, b_K, b_V of every expert [E·H·(2Dk + Dv)], in W_QKV's row order.</summary>
    public Parameter QkvBias => qkv_bias;
    /// <summary>B_O [E, d]: expert i's output bias in row i.</summary>
    public Parameter OutputBias => out_bias;

    /// <summary>r = softmax(W_a x) [..., E] (no hook).</summary>
    public Tensor RouterProbabilities(Tensor x)
    {
        Guard.NotNull(x, nameof(x));
        using var scope = NewDisposeScope();
        return torch.softmax(router.call(x), -1).MoveToOuterDisposeScope();
    }

    /// <summary>Adds each expert's b_Q, b_K, b_V to its heads (the base projects without bias).</summary>
    protected override (Tensor Q, Tensor K, Tensor V) Activate(Tensor q, Tensor k, Tensor v)
    {
        long hk = Heads * (long)KeyDim;
        var bq = qkv_bias.narrow(0, 0, hk).view(Heads, KeyDim);
        var bk = qkv_bias.narrow(0, hk, hk).view(Heads, KeyDim);
        var bv = qkv_bias.narrow(0, 2 * hk, Heads * (long)ValueDim).view(Heads, ValueDim);
        return (q + bq, k + bk, v + bv);
    }

    /// <summary>MoA_t = (concat_{i,h} r_{t,i} z^i_{t,h}) W_O + r_t B_O: the router weighs each expert's output after its W_O.</summary>
    protected override Tensor Output(Tensor z, Tensor x)
    {
        long b = z.size(0), t = z.size(1);
        var r = hook_router.call(torch.softmax(router.call(x), -1));                  // r_t = softmax(W_a x_t) [B, T, E]
        var weighted = z.view(b, t, Experts, HeadsPerExpert, ValueDim) * r.view(b, t, Experts, 1, 1);   // r_{t,i} z^i_{t,h}
        var y = nn.functional.linear(weighted.reshape(b, t, Heads * (long)ValueDim), Proj.weight!);     // Σ_i r_{t,i} z^i W_O^i
        return y + r.matmul(out_bias);                                                  // + Σ_i r_{t,i} b_O^i
    }
}
