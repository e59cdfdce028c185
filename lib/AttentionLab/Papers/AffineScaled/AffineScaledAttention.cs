using AttentionLab.Attention;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AffineScaled;

/// <summary>
/// Affine-Scaled Attention (Bae et al. 2026, arXiv 2602.23057) as a mixer on <see cref="AttentionMixer"/>: after the softmax,
/// an input-dependent scale α per head and query and a bias β = (α_ma − α) / N, so a row's weights need not sum to 1.
/// Overrides <see cref="Normalise"/> (the pattern is the affine weights a, so hook_pattern and z = a V see them) and
/// <see cref="Mix"/> (computes α from the layer input and keeps the EMA). α_ma is a buffer, not a parameter.
/// </summary>
/// <remarks>
/// α = hook_alpha(φ(x W_αᵀ + b_α)) ∈ [0, 1]^{B×T×H},  W_α: d → H,  φ = linear clipping clip(0.1x + 0.5, 0, 1)   (eqs. 8–9)
/// P = softmax_j(s_ij), s_ij = q_i·k_j / √Dk, causal                                                          (eq. 6)
/// a_ij = α_i P_ij + (α_ma − α_i) / N_i  on the keys i sees (N_i = i + 1; FullLength: N = T on every key)      (eqs. 10–11)
/// z = a V;  Σ_j a_ij = α_ma per query (VisibleKeys)
/// α_ma [H] ← ρ α_ma + (1 − ρ) mean_{B,T}(α) after each forward in training mode; α_ma,0 = 0; ρ = 0.9; eval leaves it.
/// The forward uses α_ma as it stood before its own update (so at init the mass is 0 and outputs start centred).
/// </remarks>
public sealed class AffineScaledAttention : AttentionMixer
{
    readonly Linear alpha_proj;                        // W_α [H, d], b_α [H]
    readonly HookPoint hook_alpha = new();
    readonly Tensor alpha_ma;                          // buffer [H]
    readonly Func<Tensor, Tensor> activation;
    readonly InFlight inFlight = new();

    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="rho">ρ of the EMA of α (paper: 0.9), in [0, 1).</param>
    /// <param name="norm">How β is spread (<see cref="BiasNorm.VisibleKeys"/> keeps the row mass at α_ma and never leaks).</param>
    /// <param name="activation">φ (default <see cref="AffineScaledOps.LinearClipping"/>; the paper's alternative is sigmoid).</param>
    /// <param name="keyDim">Dk per head (default d / H).</param>
    /// <param name="valueDim">Dv per head (default d / H).</param>
    public AffineScaledAttention(int dModel, int heads, double rho = 0.9, BiasNorm norm = BiasNorm.VisibleKeys,
        Func<Tensor, Tensor>? activation = null, int? keyDim = null, int? valueDim = null)
        : base(nameof(AffineScaledAttention), dModel, heads, keyDim, valueDim)
    {
        if (!(rho >= 0 && rho < 1)) throw new ArgumentException($"rho must be in [0, 1), got {rho}.", nameof(rho));
        if (!Enum.IsDefined(norm)) throw new ArgumentException($"norm {(int)norm} is not a known BiasNorm.", nameof(norm));
        (Rho, Norm, this.activation) = (rho, norm, activation ?? AffineScaledOps.LinearClipping);
        alpha_proj = nn.Linear(dModel, heads);
        alpha_ma = torch.zeros(heads);
        RegisterComponents();
    }

    /// <summary>ρ of the EMA.</summary>
    public double Rho { get; }
    /// <summary>How β is spread over the keys.</summary>
    public BiasNorm Norm { get; }
    /// <summary>W_α: d → H.</summary>
    public Linear AlphaProj => alpha_proj;
    /// <summary>α_ma [H], the EMA buffer (read it; it changes only in training-mode forwards).</summary>
    public Tensor AlphaMa => get_buffer(nameof(alpha_ma))!;

    /// <summary>α = φ(x W_αᵀ + b_α) after hook_alpha: [B, T, H] from x [B, T, d].</summary>
    public Tensor Alpha(Tensor x) => hook_alpha.call(activation(alpha_proj.call(x)));

    /// <summary>
    /// α from x, then the base's attention by position (Scores → <see cref="Normalise"/> → Combine); in training mode the EMA
    /// of α is updated afterwards (no gradient flows into α_ma).
    /// </summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var alpha = Alpha(x);                                                           // [B, T, H]
        var z = WithAlpha(alpha, () => base.Mix(q, k, v, x));
        if (training)
            using (torch.no_grad())
            {
                var batchMean = alpha.detach().mean(new long[] { 0, 1 }).to(AlphaMa.dtype);   // mean_{B,T} α  [H]
                AlphaMa.mul_(Rho).add_(batchMean * (1 - Rho));                          // α_ma ← ρ α_ma + (1 − ρ) mean(α)
            }
        return z;
    }

    /// <summary>a = α P + β from the masked scores [B, H, Tq, Tk] with the α of the call in flight (<see cref="AffineScaledOps.Weights"/>).</summary>
    protected override Tensor Normalise(Tensor scores)
    {
        var alpha = inFlight.Alpha ?? throw new InvalidOperationException(
            $"{nameof(AffineScaledAttention)} normalises only inside its own forward or decode step (α comes from the layer input).");
        var m = inFlight.AlphaMa!.to(scores.dtype).view(1, -1, 1);                     // α_ma [1, H, 1]
        return AffineScaledOps.Weights(scores, alpha.permute(0, 2, 1).to(scores.dtype), m, Norm);
    }

    Tensor WithAlpha(Tensor alpha, Func<Tensor> attend)
    {
        inFlight.Alpha = alpha;
        inFlight.AlphaMa = AlphaMa.clone();                                             // the value before this forward's update
        try { return attend(); }
        finally { inFlight.Alpha = inFlight.AlphaMa = null; }
    }

    /// <summary>Decoding needs the visible-key count only (VisibleKeys); FullLength's N = T is not known while decoding.</summary>
    public override bool CanStream => Norm == BiasNorm.VisibleKeys;

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device)
    {
        if (!CanStream) throw new InvalidOperationException("FullLength spreads β over all T keys, which a decoder does not know: use VisibleKeys to stream.");
        return new AffineKvState(this, new KvCache(batch, Heads, KeyDim, ValueDim, dtype, device));
    }

    /// <summary>The KV cache of an affine-scaled layer: α of the new token from its input, then attend over every cached key.</summary>
    sealed class AffineKvState(AffineScaledAttention mixer, KvCache cache) : AttentionState(mixer)
    {
        public override long Bytes => cache.Bytes;

        public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
        {
            cache.Append(k, v);
            long tk = cache.Length;
            var keyPos = torch.arange(tk, device: q.device);
            var z = mixer.WithAlpha(mixer.Alpha(x), () => mixer.Attend(q, cache.Keys, cache.Values, keyPos.narrow(0, tk - 1, 1), keyPos, cachedKeys: true).Z);
            Advance();
            return z;
        }

        public override void Dispose() => cache.Dispose();
    }

    /// <summary>The α (and α_ma) of the forward or step in flight; not a module field TorchSharp would register.</summary>
    sealed class InFlight
    {
        public Tensor? Alpha, AlphaMa;
    }
}
