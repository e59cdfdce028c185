using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Titans;

/// <summary>Which fast form of the associative-memory core the mixer runs over a whole sequence.</summary>
public enum TitansMemoryForm
{
    /// <summary>Titans' parallel training: gradients of a chunk at its start memory (<see cref="AssociativeMemory.Chunked"/>).</summary>
    Chunked,
    /// <summary>The exact token recurrence (<see cref="AssociativeMemory.Recurrent"/>); equals Chunked at chunk 1.</summary>
    Recurrent,
}

/// <summary>Settings of a <see cref="TitansMemory"/> mixer (spec §3 NeuralMemoryOptions).</summary>
public sealed record TitansMemoryOptions
{
    /// <summary>Linear memory (one matrix per head) or the 2-layer MLP memory (the paper's default L_M = 2).</summary>
    public MemoryArchitecture Architecture { get; init; } = MemoryArchitecture.Mlp;
    /// <summary>MLP memory: hidden width Dh = Expansion × Dk (spec: 2–4).</summary>
    public int Expansion { get; init; } = 2;
    /// <summary>Momentum ("surprise" with η_t); false: S_t = −θ_t ∇ℓ.</summary>
    public bool Momentum { get; init; } = true;
    /// <summary>Forgetting (weight decay with α_t); false: α = 0.</summary>
    public bool Forget { get; init; } = true;
    /// <summary>θ_t = MaxLr·σ(·). 0.5 with ℓ2-normalised keys makes one step at most a full delta-rule overwrite (the core's loss has no ½).</summary>
    public double MaxLr { get; init; } = 0.5;
    /// <summary>Tokens per chunk of the chunked form.</summary>
    public int ChunkSize { get; init; } = 16;
    /// <summary>Kernel of the causal depthwise convolution after the q, k, v projections (0: none).</summary>
    public int ConvKernel { get; init; } = 4;
    /// <summary>Chunked (training) or Recurrent.</summary>
    public TitansMemoryForm Form { get; init; } = TitansMemoryForm.Chunked;

    /// <summary>The core's options (architecture, chunk size).</summary>
    public AssociativeMemoryOptions Core => new() { Architecture = Architecture, ChunkSize = ChunkSize };
}

/// <summary>
/// Titans' neural long-term memory as a mixer on the <see cref="AttentionMixer"/> base: q, k, v from the base's projection,
/// SiLU, a causal depthwise conv after each, ℓ2-normalised q and k; per-token, per-head gates θ, η, α from x; the memory of
/// the associative-memory core read before it is written. x [B, T, d] → [B, T, d].
/// </summary>
/// <remarks>
/// q, k, v = conv(SiLU(x W_Q,K,V)) per channel;  q ← q/‖q‖, k ← k/‖k‖                    (spec §2 Projections)
/// θ_t = MaxLr·σ(x_t w_θ,h), η_t = σ(x_t w_η,h), α_t = σ(x_t w_α,h)   [B, T, H]            (spec §2 Update: per token, per head)
/// y_t = M(q_t; W_{t−1})                                         read first (spec §2 subtle point 1)
/// S_t = η_t S_{t−1} − θ_t ∇_W ‖M(k_t; W_{t−1}) − v_t‖²,  W_t = (1 − α_t) W_{t−1} + S_t
/// z = y (per head), out = concat_h(z) W_O.  W_0: learned per head (zeros for the linear memory, N(0, 1/fan_in) for the MLP).
/// The hooks hook_q/hook_k/hook_v carry q, k, v after SiLU and before the conv; hook_z the retrieval. hook_attn_scores and
/// hook_pattern are not fired: the MLP memory has no T×T weights.
/// </remarks>
public sealed class TitansMemory : AttentionMixer
{
    readonly CausalDepthwiseConv? conv_q, conv_k, conv_v;
    readonly Linear gates;
    readonly Parameter w0;
    readonly Parameter? w0_2;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="options">memory settings; null: <c>new TitansMemoryOptions()</c>.</param>
    public TitansMemory(int dModel, int heads, TitansMemoryOptions? options = null) : base(nameof(TitansMemory), dModel, heads)
    {
        Options = options ?? new TitansMemoryOptions();
        if (!(Options.MaxLr > 0)) throw new ArgumentException($"MaxLr must be positive, got {Options.MaxLr}.", nameof(options));
        if (Options.ChunkSize < 1) throw new ArgumentException($"ChunkSize must be ≥ 1, got {Options.ChunkSize}.", nameof(options));
        if (Options.ConvKernel < 0) throw new ArgumentException($"ConvKernel must be ≥ 0, got {Options.ConvKernel}.", nameof(options));
        if (Options.Architecture == MemoryArchitecture.Mlp && Options.Expansion < 1)
            throw new ArgumentException($"Expansion must be ≥ 1, got {Options.Expansion}.", nameof(options));
        int width = heads * KeyDim;
        if (Options.ConvKernel > 0)
        {
            conv_q = new CausalDepthwiseConv(width, Options.ConvKernel);
            conv_k = new CausalDepthwiseConv(width, Options.ConvKernel);
            conv_v = new CausalDepthwiseConv(heads * ValueDim, Options.ConvKernel);
        }
        gates = nn.Linear(dModel, 3 * heads);                                          // rows: θ (H), η (H), α (H)
        using (torch.no_grad())
        {
            gates.bias!.narrow(0, 2 * heads, heads).fill_(-4.0);                      // α ≈ 0.018 at the start: remember
        }
        if (Options.Architecture == MemoryArchitecture.Linear)
            w0 = nn.Parameter(torch.zeros(heads, ValueDim, KeyDim));                    // W_0 [H, Dv, Dk]
        else
        {
            w0 = nn.Parameter(torch.randn(heads, HiddenDim, KeyDim) / Math.Sqrt(KeyDim));       // W₁ [H, Dh, Dk]
            w0_2 = nn.Parameter(torch.randn(heads, ValueDim, HiddenDim) / Math.Sqrt(HiddenDim)); // W₂ [H, Dv, Dh]
        }
        RegisterComponents();
    }

    public TitansMemoryOptions Options { get; }
    /// <summary>The convolutions after q, k, v (null without conv).</summary>
    internal (CausalDepthwiseConv Q, CausalDepthwiseConv K, CausalDepthwiseConv V)? Convs => conv_q is null ? null : (conv_q, conv_k!, conv_v!);
    /// <summary>Dh of the MLP memory (0 for the linear memory).</summary>
    public int HiddenDim => Options.Architecture == MemoryArchitecture.Mlp ? Options.Expansion * KeyDim : 0;
    /// <summary>The learned start memory per head: [W_0] or [W₁, W₂], [H, out, in] each.</summary>
    public Tensor[] StartWeights => w0_2 is null ? [w0] : [w0, w0_2];

    /// <summary>State bytes of one sequence (float32): the memory (and momentum) of every head, plus the conv's last k − 1 inputs.</summary>
    public long StateBytes(long batch = 1) =>
        batch * (Heads * AssociativeMemory.StateBytesPerHead(Options.Architecture, KeyDim, ValueDim, HiddenDim, Options.Momentum)
                 + (conv_q is null ? 0 : conv_q.StateBytes() + conv_k!.StateBytes() + conv_v!.StateBytes()));

    /// <summary>SiLU on the projected heads (spec: q, k, v = SiLU(x W)).</summary>
    protected override (Tensor Q, Tensor K, Tensor V) Activate(Tensor q, Tensor k, Tensor v) =>
        (nn.functional.silu(q), nn.functional.silu(k), nn.functional.silu(v));

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        using var r = Memory(q, k, v, x, Options.Form == TitansMemoryForm.Chunked ? AssociativeMemory.Chunked : AssociativeMemory.Recurrent);
        return r.Output.alias();
    }

    /// <summary>The core's runner: (q, k, v, gates, start, options) → outputs and final state.</summary>
    public delegate AssociativeMemoryResult MemoryRunner(Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0, AssociativeMemoryOptions? options);

    /// <summary>
    /// The memory over a whole sequence with <paramref name="run"/> (a fast form, or the naive twin in <see cref="TitansNaive"/>),
    /// from <paramref name="start"/> (null: the learned start weights W_0). q, k, v carry <paramref name="past"/> earlier tokens in
    /// front that only feed the causal conv (MAC's segments continue the conv of the previous segment); x holds the new tokens only.
    /// </summary>
    internal AssociativeMemoryResult Memory(Tensor q, Tensor k, Tensor v, Tensor x, MemoryRunner run, MemoryState? start = null, int past = 0)
    {
        using var scope = NewDisposeScope();
        long b = q.size(0), t = q.size(1) - past;
        var (qc, kc, vc) = conv_q is null ? (q, k, v)
            : (Conv(conv_q, q), Conv(conv_k!, k), Conv(conv_v!, v));                   // causal depthwise conv per channel
        if (past > 0) (qc, kc, vc) = (qc.narrow(1, past, t), kc.narrow(1, past, t), vc.narrow(1, past, t));
        qc = nn.functional.normalize(qc, 2, -1, 1e-6);                                 // q ← q/‖q‖
        kc = nn.functional.normalize(kc, 2, -1, 1e-6);                                 // k ← k/‖k‖
        var result = run(qc, kc, vc, Gates(x), start ?? StartState(b), Options.Core);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>The learned start memory W_0 expanded over <paramref name="batch"/> sequences (zero momentum with momentum).</summary>
    internal MemoryState StartState(long batch, ScalarType? dtype = null) =>
        MemoryState.FromHeads(batch, Options.Momentum, StartWeights.Select(w => dtype is { } d ? w.to(d) : w).ToArray());

    /// <summary>Read queries for a whole sequence: q [B, T, H, Dk] (after SiLU) → conv, ℓ2-normalised (as the write path's).</summary>
    internal Tensor ReadQueries(Tensor q)
    {
        using var scope = NewDisposeScope();
        var qc = conv_q is null ? q : Conv(conv_q, q);
        return nn.functional.normalize(qc, 2, -1, 1e-6).MoveToOuterDisposeScope();
    }

    /// <summary>One read query q [B, 1, H, Dk] (after SiLU) through the conv state <paramref name="conv"/> (null without conv), ℓ2-normalised.</summary>
    internal Tensor ReadQuery(Tensor q, ConvState? conv)
    {
        using var scope = NewDisposeScope();
        long b = q.size(0);
        var qc = conv_q is null ? q.squeeze(1) : conv_q.Step(q.reshape(b, -1), conv!).view(b, Heads, KeyDim);
        return nn.functional.normalize(qc, 2, -1, 1e-6).unsqueeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>θ, η, α [B, T, H] from x [B, T, d] (η null without momentum, α null without forgetting).</summary>
    public MemoryGates Gates(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var a = gates.call(x).view(x.size(0), x.size(1), 3, Heads);                   // [B, T, 3, H]
        var theta = (torch.sigmoid(a.select(2, 0)) * Options.MaxLr).MoveToOuterDisposeScope();      // θ = MaxLr·σ(·)
        var eta = Options.Momentum ? torch.sigmoid(a.select(2, 1)).MoveToOuterDisposeScope() : null; // η = σ(·)
        var alpha = Options.Forget ? torch.sigmoid(a.select(2, 2)).MoveToOuterDisposeScope() : null; // α = σ(·)
        return new MemoryGates(theta, eta, alpha);
    }

    static Tensor Conv(CausalDepthwiseConv conv, Tensor u)
    {
        var flat = u.reshape(u.size(0), u.size(1), -1);                                // [B, T, H·D]
        return conv.call(flat).view(u.shape);
    }

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new TitansMemoryState(batch, dtype, device, this);

    /// <summary>One token of the memory (for <see cref="TitansMemoryState"/>): q, k, v [B, 1, H, D] after the hooks, x [B, 1, d].</summary>
    internal Tensor StepMemory(TitansMemoryState s, Tensor q, Tensor k, Tensor v, Tensor x)
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
            using var start = StartState(b, q.dtype);
            s.Stream = new AssociativeMemoryStream(start, Options.Core);
        }
        var y = s.Stream.Step(qc, kc, vc, g.Theta.squeeze(1), g.Eta?.squeeze(1), g.Alpha?.squeeze(1));   // y_t = M(q_t; W_{t−1}), then write
        return y.unsqueeze(1).MoveToOuterDisposeScope();
    }
}

/// <summary>The decode state of a <see cref="TitansMemory"/>: the conv's last k − 1 inputs (q, k, v) and the memory stream (A, S).</summary>
public sealed class TitansMemoryState : AttentionState
{
    internal TitansMemoryState(long batch, ScalarType dtype, Device device, TitansMemory mixer) : base(mixer)
    {
        if (mixer.Options.ConvKernel > 0)
        {
            var (cq, ck, cv) = mixer.Convs!.Value;
            ConvQ = (ConvState)cq.NewState(batch, dtype, device);
            ConvK = (ConvState)ck.NewState(batch, dtype, device);
            ConvV = (ConvState)cv.NewState(batch, dtype, device);
        }
    }

    internal ConvState? ConvQ { get; }
    internal ConvState? ConvK { get; }
    internal ConvState? ConvV { get; }
    /// <summary>The memory (A, S), created at the first token from the mixer's start weights.</summary>
    public AssociativeMemoryStream? Stream { get; internal set; }

    public override long Bytes => (Stream?.Bytes ?? 0) + (ConvQ?.Bytes ?? 0) + (ConvK?.Bytes ?? 0) + (ConvV?.Bytes ?? 0);

    public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var z = ((TitansMemory)Owner!).StepMemory(this, q, k, v, x);
        Advance();
        return z;
    }

    public override void Dispose()
    {
        Stream?.Dispose();
        ConvQ?.Dispose(); ConvK?.Dispose(); ConvV?.Dispose();
    }
}
