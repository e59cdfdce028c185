using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SynapticResonance;

/// <summary>
/// [ours] P40's mixer: sliding-window softmax attention on the <see cref="AttentionMixer"/> base (the backbone the spec names)
/// plus, when <c>resonance</c> is on, the relevance-gated Hebbian fast-weight read of <see cref="SynapticResonanceOps"/> — a
/// gated linear-attention / fast-weight-programmer layer (Schmidhuber 1992; Ba et al. 2016) with a resonance gate. The paper
/// gives no equations; this is the spec's operationalisation, not the paper's method. The memory shares the backbone's q, k, v.
/// </summary>
/// <remarks>
/// y_t = W_O concat_h [ Σ_{t−W &lt; s ≤ t} softmax_s(q_t·k_s/√D) v_s  +  S_{t−1} φ(q_t)/√D ]
/// with S_t = λ_h S_{t−1} + η_h r_t φ(v_t) φ(k_t)ᵀ, r_t = σ(a·cos(x_t, c_{t−1}) + b), c_t = γ c_{t−1} + (1−γ) x_t.
/// Squashing: γ = σ(γ̃), λ_h = σ(λ̃_h), η_h = σ(η̃_h); a, b free. η = 0 (η̃ = −∞, <see cref="Silence"/>) gives the backbone
/// exactly. Hooks: the window's scores and pattern as the base's; the memory read is added to z before hook_z.
/// </remarks>
public sealed class SynapticResonanceLayer : AttentionMixer
{
    readonly Parameter? a, b, gammaLogit, lambdaLogit, etaLogit;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="windowKeys">W: keys each query of the backbone attends, itself included.</param>
    /// <param name="resonance">add the resonance memory (false: the plain SWA backbone).</param>
    public SynapticResonanceLayer(int dModel, int heads, int windowKeys, bool resonance = true)
        : base(nameof(SynapticResonanceLayer), dModel, heads)
    {
        if (windowKeys < 1) throw new ArgumentException($"windowKeys must be ≥ 1, got {windowKeys}.", nameof(windowKeys));
        WindowKeys = windowKeys;
        if (resonance)
        {
            a = new Parameter(torch.tensor(4.0));
            b = new Parameter(torch.tensor(0.0));
            gammaLogit = new Parameter(torch.tensor(2.0));                  // γ ≈ 0.88
            lambdaLogit = new Parameter(torch.full(heads, 3.0));            // λ ≈ 0.95
            etaLogit = new Parameter(torch.zeros(heads));                   // η = 0.5
        }
        RegisterComponents();
    }

    /// <summary>W.</summary>
    public int WindowKeys { get; }

    /// <summary>Whether the resonance memory is on.</summary>
    public bool HasResonance => a is not null;

    /// <summary>The engine form of the memory read (all forms give the same numbers).</summary>
    public LinearForm Form { get; set; } = LinearForm.Chunked;

    /// <summary>Chunk size of the chunked form.</summary>
    public int ChunkSize { get; set; } = 64;

    /// <summary>(a, b, γ, log λ [H], η [H]) as used in the forward pass.</summary>
    public (Tensor A, Tensor B, Tensor Gamma, Tensor LogLambda, Tensor Eta) Knobs() => HasResonance
        ? (a!, b!, torch.sigmoid(gammaLogit!), torch.nn.functional.logsigmoid(lambdaLogit!), torch.sigmoid(etaLogit!))
        : throw new InvalidOperationException("this layer has no resonance memory.");

    /// <summary>Sets η = 0 exactly (η̃ = −∞): the layer is then its backbone.</summary>
    public void Silence()
    {
        using var noGrad = torch.no_grad();
        etaLogit?.fill_(double.NegativeInfinity);
    }

    /// <summary>r [B, T] for the mixer input x [B, T, d].</summary>
    public Tensor Resonance(Tensor x)
    {
        var (ka, kb, gamma, _, _) = Knobs();
        return SynapticResonanceOps.Resonance(x, ka, kb, gamma);
    }

    /// <summary>The window attention, plus the memory read when on.</summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var pos = torch.arange(q.size(1), device: q.device);
        var z = Attend(q, k, v, pos, pos).Z;
        if (!HasResonance) return z;
        var (ka, kb, gamma, logLambda, eta) = Knobs();
        var r = SynapticResonanceOps.Resonance(x, ka, kb, gamma);
        return z + SynapticResonanceOps.Read(q, k, v, r, logLambda, eta, Form, ChunkSize);
    }

    /// <summary>s_ts = q_t·k_s/√D inside the window t − W &lt; s ≤ t, −∞ elsewhere.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = base.Scores(q, k, qPos, kPos, cachedKeys: true);
        if (cachedKeys) return s;
        return s.masked_fill(SlidingWindowAttention.Visible(qPos, kPos, WindowKeys).logical_not(), double.NegativeInfinity);
    }

    /// <summary>No decode form here: the experiment reads whole sequences (state bytes are reported by formula).</summary>
    public override bool CanStream => false;

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        throw new InvalidOperationException("SynapticResonanceLayer has no decode state in this library: run it on whole sequences.");

    /// <summary>Bytes to decode one sequence, float32: the window's K and V (2·W·d) plus S (H·D·Dv) with resonance, and c (d).</summary>
    public static long StateBytes(int dModel, int heads, int windowKeys, bool resonance) =>
        (2L * windowKeys * dModel + (resonance ? (long)heads * (dModel / heads) * (dModel / heads) + dModel : 0)) * sizeof(float);
}
