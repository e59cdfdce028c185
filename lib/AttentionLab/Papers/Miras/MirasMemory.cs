using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Miras;

/// <summary>Which fast form of the associative-memory core a Miras mixer runs over a whole sequence.</summary>
public enum MirasForm
{
    /// <summary>Parallel training: gradients of a chunk at its start memory (<see cref="AssociativeMemory.Chunked"/>); an approximation.</summary>
    Chunked,
    /// <summary>The exact token recurrence (<see cref="AssociativeMemory.Recurrent"/>); equals Chunked at chunk 1.</summary>
    Recurrent,
}

/// <summary>Settings shared by the Miras mixers (spec §2 and §3).</summary>
public sealed record MirasOptions
{
    /// <summary>The memory per head: the 2-layer MLP M(x) = x + LN(W₂ GELU(W₁ x)) (the paper's) or a linear memory.</summary>
    public MemoryArchitecture Architecture { get; init; } = MemoryArchitecture.Mlp;
    /// <summary>MLP memory: Dh = Expansion × Dk (spec: 4).</summary>
    public int Expansion { get; init; } = 4;
    /// <summary>θ_t = MaxLr·σ(·), the inner step size (the paper's η_t).</summary>
    public double MaxLr { get; init; } = 0.5;
    /// <summary>Tokens per chunk of the chunked form (spec: 16 or 64).</summary>
    public int ChunkSize { get; init; } = 16;
    /// <summary>Kernel of the causal depthwise conv after q, k, v (spec: 4; 0: none).</summary>
    public int ConvKernel { get; init; } = 4;
    /// <summary>Moneta's loss exponent p (spec: 3).</summary>
    public double P { get; init; } = 3;
    /// <summary>Moneta's retention exponent q (spec: 4); the norm is over each whole weight matrix (docs/decisions.md).</summary>
    public double Q { get; init; } = 4;
    /// <summary>Chunked (training) or Recurrent.</summary>
    public MirasForm Form { get; init; } = MirasForm.Chunked;
}

/// <summary>
/// A Miras sequence layer as a mixer on the <see cref="AttentionMixer"/> base: q, k, v from the base's projection, a causal
/// depthwise conv after each, ℓ2-normalised q and k, per-token per-head gates from x, a memory per head written online by the
/// associative-memory core with the subclass's attentional bias and retention, then a per-head output norm and a SiLU gate.
/// x [B, T, d] → [B, T, d]. Subclasses: <see cref="Moneta"/>, <see cref="Yaad"/>, <see cref="Memora"/> and the ℓ2 baseline
/// <see cref="L2Memory"/>; they differ only in the bias and the retention (the four-axis design, spec §1).
/// </summary>
/// <remarks>
/// q, k, v = conv(x W_Q,K,V) per channel;  q ← q/‖q‖, k ← k/‖k‖                                   (spec §2 Block)
/// θ_t = MaxLr·σ(x_t w_θ,h) (step, the paper's η_t),  α_t = σ(x_t w_α,h) (forget, the paper's 1 − α_t)  [B, T, H]
/// δ_t = softplus(x_t w_δ,h) (Yaad only)
/// y_t = M(q_t; W_{t−1}),   A_t = (1 − α_t) A_{t−1} − θ_t ∇_W ℓ(M(k_t; W_{t−1}), v_t),   W_t = R(A_t)
/// out = W_O concat_h( RMSNorm(y_h) ) ⊙ SiLU(x W_G)                                                 (output norm and gate)
/// Per-head gates (the paper's are channel-wise from a low-rank projection; see docs/decisions.md). No momentum: Miras's
/// update is plain GD with retention (the core's η = null).
/// The hooks hook_q/hook_k/hook_v carry q, k, v before the conv; hook_z the memory's read-out before the norm and gate.
/// hook_attn_scores and hook_pattern are not fired: the memory has no T×T weights.
/// </remarks>
public abstract class MirasMixer : AttentionMixer
{
    readonly CausalDepthwiseConv? conv_q, conv_k, conv_v;
    readonly Linear gates, gate_out;
    readonly Parameter a0;
    readonly Parameter? a0_2;

    /// <param name="name">The module's name.</param>
    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="options">settings; null: <c>new MirasOptions()</c>.</param>
    protected MirasMixer(string name, int dModel, int heads, MirasOptions? options) : base(name, dModel, heads)
    {
        Options = options ?? new MirasOptions();
        if (!(Options.MaxLr > 0)) throw new ArgumentException($"MaxLr must be positive, got {Options.MaxLr}.", nameof(options));
        if (Options.ChunkSize < 1) throw new ArgumentException($"ChunkSize must be ≥ 1, got {Options.ChunkSize}.", nameof(options));
        if (Options.ConvKernel < 0) throw new ArgumentException($"ConvKernel must be ≥ 0, got {Options.ConvKernel}.", nameof(options));
        if (Options.Architecture == MemoryArchitecture.Mlp && Options.Expansion < 1)
            throw new ArgumentException($"Expansion must be ≥ 1, got {Options.Expansion}.", nameof(options));
        if (Options.Architecture == MemoryArchitecture.Mlp && KeyDim != ValueDim)
            throw new ArgumentException("the residual MLP memory needs Dk = Dv.", nameof(options));
        if (Options.ConvKernel > 0)
        {
            conv_q = new CausalDepthwiseConv(heads * KeyDim, Options.ConvKernel);
            conv_k = new CausalDepthwiseConv(heads * KeyDim, Options.ConvKernel);
            conv_v = new CausalDepthwiseConv(heads * ValueDim, Options.ConvKernel);
        }
        GateCount = NeedsDelta ? 3 : 2;
        gates = nn.Linear(dModel, GateCount * heads);                                 // rows: θ (H), α (H), δ (H, Yaad)
        gate_out = nn.Linear(dModel, heads * ValueDim);                               // the output gate W_G
        using (torch.no_grad())
        {
            gates.bias!.narrow(0, heads, heads).fill_(-4.0);                           // α ≈ 0.018 at the start: remember
            if (NeedsDelta) gates.bias!.narrow(0, 2 * heads, heads).fill_(1.0);        // δ = softplus(1) ≈ 1.3 at the start
        }
        var start = StartAccumulators(heads);
        a0 = nn.Parameter(start[0]);
        if (start.Length > 1) a0_2 = nn.Parameter(start[1]);
        RegisterComponents();
    }

    public MirasOptions Options { get; }
    /// <summary>The attentional bias ℓ (the inner loss).</summary>
    public abstract AttentionalBias Bias { get; }
    /// <summary>The retention R (how the memory forgets and what its accumulator means).</summary>
    public abstract Retention Retention { get; }
    /// <summary>True when the bias takes a data-dependent threshold δ_t (Yaad).</summary>
    public bool NeedsDelta => Bias.NeedsDelta;
    /// <summary>Gates per head from x: θ, α (and δ).</summary>
    int GateCount { get; }
    /// <summary>Dh of the MLP memory (0 for the linear memory).</summary>
    public int HiddenDim => Options.Architecture == MemoryArchitecture.Mlp ? Options.Expansion * KeyDim : 0;
    /// <summary>The learned start accumulators per head: [A₀] or [A₀₁, A₀₂], [H, out, in] each (W₀ = R(A₀)).</summary>
    public Tensor[] StartAccumulators() => a0_2 is null ? [a0] : [a0, a0_2];

    /// <summary>The core's options: architecture (MLP with residual and LN), bias, retention, chunk size.</summary>
    public AssociativeMemoryOptions Core => new()
    {
        Architecture = Options.Architecture,
        Residual = Options.Architecture == MemoryArchitecture.Mlp,
        LayerNorm = Options.Architecture == MemoryArchitecture.Mlp,
        Bias = Bias,
        Retention = Retention,
        ChunkSize = Options.ChunkSize,
    };

    /// <summary>The convolutions after q, k, v (null without conv).</summary>
    internal (CausalDepthwiseConv Q, CausalDepthwiseConv K, CausalDepthwiseConv V)? Convs => conv_q is null ? null : (conv_q, conv_k!, conv_v!);

    /// <summary>
    /// The start accumulators of one head set: the linear memory starts at A = 0, the MLP at N(0, 1/fan_in) weights. A
    /// subclass whose retention reads A otherwise (Memora: A = log W) overrides it.
    /// </summary>
    protected virtual Tensor[] StartAccumulators(int heads)
    {
        if (Options.Architecture == MemoryArchitecture.Linear) return [torch.zeros(heads, ValueDim, KeyDim)];
        return [torch.randn(heads, HiddenDim, KeyDim) / Math.Sqrt(KeyDim), torch.randn(heads, ValueDim, HiddenDim) / Math.Sqrt(HiddenDim)];
    }

    /// <summary>State bytes of one sequence (float32): the memory of every head plus the conv's last k − 1 inputs.</summary>
    public long StateBytes(long batch = 1) =>
        batch * (Heads * AssociativeMemory.StateBytesPerHead(Options.Architecture, KeyDim, ValueDim, HiddenDim, momentum: false)
                 + (conv_q is null ? 0 : conv_q.StateBytes() + conv_k!.StateBytes() + conv_v!.StateBytes()));

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        using var r = Memory(q, k, v, x, Options.Form == MirasForm.Chunked ? AssociativeMemory.Chunked : AssociativeMemory.Recurrent);
        return r.Output.alias();
    }

    protected override Tensor Output(Tensor z, Tensor x) => Finish(z, x);

    /// <summary>out = W_O concat_h(RMSNorm(z_h)) ⊙ SiLU(x W_G): z [B, T, H, Dv], x [B, T, d] → [B, T, d].</summary>
    internal Tensor Finish(Tensor z, Tensor x)
    {
        using var scope = NewDisposeScope();
        var normed = z * (z.square().mean(new long[] { -1 }, keepdim: true) + 1e-6).rsqrt();          // RMSNorm per head (no scale)
        var gated = normed.reshape(z.size(0), z.size(1), -1) * nn.functional.silu(gate_out.call(x));  // ⊙ SiLU(x W_G)
        return Proj.call(gated).MoveToOuterDisposeScope();
    }

    /// <summary>The core's runner: (q, k, v, gates, start, options) → outputs and final state.</summary>
    public delegate AssociativeMemoryResult MemoryRunner(Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0, AssociativeMemoryOptions? options);

    /// <summary>The memory over a whole sequence with <paramref name="run"/> (a fast form, or the naive twin in <see cref="MirasNaive"/>).</summary>
    internal AssociativeMemoryResult Memory(Tensor q, Tensor k, Tensor v, Tensor x, MemoryRunner run)
    {
        using var scope = NewDisposeScope();
        long b = q.size(0);
        var (qc, kc, vc) = conv_q is null ? (q, k, v) : (Conv(conv_q, q), Conv(conv_k!, k), Conv(conv_v!, v));   // causal depthwise conv
        qc = nn.functional.normalize(qc, 2, -1, 1e-6);                                 // q ← q/‖q‖
        kc = nn.functional.normalize(kc, 2, -1, 1e-6);                                 // k ← k/‖k‖
        using var start = MemoryState.FromHeads(b, momentum: false, StartAccumulators());
        var result = run(qc, kc, vc, Gates(x), start, Core);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>θ, α (and δ for Yaad) [B, T, H] from x [B, T, d].</summary>
    public MemoryGates Gates(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var a = gates.call(x).view(x.size(0), x.size(1), GateCount, Heads);           // [B, T, G, H]
        var theta = (torch.sigmoid(a.select(2, 0)) * Options.MaxLr).MoveToOuterDisposeScope();   // θ = MaxLr·σ(·)
        var alpha = torch.sigmoid(a.select(2, 1)).MoveToOuterDisposeScope();                      // α = σ(·)
        var delta = NeedsDelta ? nn.functional.softplus(a.select(2, 2)).MoveToOuterDisposeScope() : null;   // δ = softplus(·)
        return new MemoryGates(theta, null, alpha, delta);
    }

    static Tensor Conv(CausalDepthwiseConv conv, Tensor u) => conv.call(u.reshape(u.size(0), u.size(1), -1)).view(u.shape);

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new MirasState(batch, dtype, device, this);

    /// <summary>One token of the memory (for <see cref="MirasState"/>): q, k, v [B, 1, H, D] after the hooks, x [B, 1, d].</summary>
    internal Tensor StepMemory(MirasState s, Tensor q, Tensor k, Tensor v, Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = q.size(0);
        Tensor Flat(Tensor u) => u.reshape(b, -1);
        var (qc, kc, vc) = conv_q is null ? (q.squeeze(1), k.squeeze(1), v.squeeze(1))
            : (conv_q.Step(Flat(q), s.ConvQ!).view(b, Heads, KeyDim), conv_k!.Step(Flat(k), s.ConvK!).view(b, Heads, KeyDim),
               conv_v!.Step(Flat(v), s.ConvV!).view(b, Heads, ValueDim));
        qc = nn.functional.normalize(qc, 2, -1, 1e-6);
        kc = nn.functional.normalize(kc, 2, -1, 1e-6);
        var g = Gates(x);                                                               // [B, 1, H]
        if (s.Stream is null)
        {
            using var start = MemoryState.FromHeads(b, momentum: false, StartAccumulators().Select(w => w.to(q.dtype)).ToArray());
            s.Stream = new AssociativeMemoryStream(start, Core);
        }
        var y = s.Stream.Step(qc, kc, vc, g.Theta.squeeze(1), null, g.Alpha?.squeeze(1), g.Delta?.squeeze(1));   // read, then write
        return y.unsqueeze(1).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Moneta: ℓp attentional bias (smoothed, p = 3) and ℓq retention (q = 4): A_t = (1 − α_t) A_{t−1} − θ_t ∇ℓ_p(W_{t−1}),
/// W_t = A_t / ‖A_t‖_q^{q−2}, the norm over each whole weight matrix of a head (the spec's flagged choice).
/// </summary>
public sealed class Moneta(int dModel, int heads, MirasOptions? options = null) : MirasMixer(nameof(Moneta), dModel, heads, options)
{
    public override AttentionalBias Bias => AttentionalBias.Lp(Options.P);
    public override Retention Retention => Retention.LqNormalize(Options.Q);
}

/// <summary>
/// Yaad: Huber attentional bias with a data-dependent threshold δ_t = softplus(x_t w_δ) per head, and L2 retention:
/// W_t = (1 − α_t) W_{t−1} − θ_t (∇ℓ2 if ‖M(k_t) − v_t‖ ≤ δ_t, else δ_t ∇ℓ1).
/// </summary>
public sealed class Yaad(int dModel, int heads, MirasOptions? options = null) : MirasMixer(nameof(Yaad), dModel, heads, options)
{
    public override AttentionalBias Bias => AttentionalBias.Huber;
    public override Retention Retention => Retention.L2Decay;
}

/// <summary>
/// Memora: ℓ2 attentional bias and KL retention: W_t = softmax_row((1 − α_t) log W_{t−1} − θ_t ∇ℓ2(W_{t−1})), so every row of
/// every weight matrix stays on the simplex. The core keeps A = log W (log-softmax-normalised), so no log of W is ever
/// taken; W₀ = softmax(A₀) &gt; 0 with A₀ small and random (an exactly uniform start is a symmetric fixed point of the MLP).
/// </summary>
public sealed class Memora(int dModel, int heads, MirasOptions? options = null) : MirasMixer(nameof(Memora), dModel, heads, options)
{
    public override AttentionalBias Bias => AttentionalBias.L2;
    public override Retention Retention => Retention.KlSoftmax;

    /// <summary>A₀ = log W₀ ~ N(0, 1): W₀ = softmax_row(A₀) &gt; 0, near uniform, symmetry broken.</summary>
    protected override Tensor[] StartAccumulators(int heads) => Options.Architecture == MemoryArchitecture.Linear
        ? [torch.randn(heads, ValueDim, KeyDim)]
        : [torch.randn(heads, HiddenDim, KeyDim), torch.randn(heads, ValueDim, HiddenDim)];
}

/// <summary>
/// The ℓ2 baseline on the same block: ℓ2 attentional bias and L2 retention (the Titans/Gated-DeltaNet family without
/// momentum; the spec's TitansLmm preset): W_t = (1 − α_t) W_{t−1} − θ_t ∇‖M(k_t; W_{t−1}) − v_t‖².
/// </summary>
public sealed class L2Memory(int dModel, int heads, MirasOptions? options = null) : MirasMixer(nameof(L2Memory), dModel, heads, options)
{
    public override AttentionalBias Bias => AttentionalBias.L2;
    public override Retention Retention => Retention.L2Decay;
}

/// <summary>The decode state of a <see cref="MirasMixer"/>: the conv's last k − 1 inputs (q, k, v) and the memory stream A.</summary>
public sealed class MirasState : AttentionState
{
    internal MirasState(long batch, ScalarType dtype, Device device, MirasMixer mixer) : base(mixer)
    {
        if (mixer.Convs is { } c)
        {
            ConvQ = (ConvState)c.Q.NewState(batch, dtype, device);
            ConvK = (ConvState)c.K.NewState(batch, dtype, device);
            ConvV = (ConvState)c.V.NewState(batch, dtype, device);
        }
    }

    internal ConvState? ConvQ { get; }
    internal ConvState? ConvK { get; }
    internal ConvState? ConvV { get; }
    /// <summary>The memory, created at the first token from the mixer's start accumulators.</summary>
    public AssociativeMemoryStream? Stream { get; internal set; }

    public override long Bytes => (Stream?.Bytes ?? 0) + (ConvQ?.Bytes ?? 0) + (ConvK?.Bytes ?? 0) + (ConvV?.Bytes ?? 0);

    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var z = ((MirasMixer)Owner!).StepMemory(this, q, k, v, x);
        Advance();
        return z;
    }

    public override void Dispose()
    {
        Stream?.Dispose();
        ConvQ?.Dispose(); ConvK?.Dispose(); ConvV?.Dispose();
    }
}
