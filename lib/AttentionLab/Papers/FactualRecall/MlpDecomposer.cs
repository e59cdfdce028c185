using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FactualRecall;

/// <summary>
/// The linearised MLP of one block at one position: each input component's share m_c of the MLP's output, the bias term
/// no component owns, the frozen gates, the inputs r_c and the MLP output the shares add up to.
/// </summary>
/// <param name="Components">m_c [C, B, d].</param>
/// <param name="Inputs">r_c [C, B, d] (the components of the MLP's input stream resid_mid).</param>
/// <param name="Bias">W_out diag(g)(W_in β + b_in) + b_out [B, d].</param>
/// <param name="Gates">g = φ(u)/u [B, hidden].</param>
/// <param name="Output">MLP(x) as the model computed it [B, d].</param>
/// <param name="Labels">The components' labels ("embed", "pos_embed", "L0H1", "0_attn_bias", "0_mlp_out", …).</param>
/// <param name="Layer">The block.</param>
public sealed record MlpDecomposition(Tensor Components, Tensor Inputs, Tensor Bias, Tensor Gates, Tensor Output, IReadOnlyList<string> Labels,
    int Layer) : IDisposable
{
    /// <summary>Σ_c m_c + bias [B, d]: equals <see cref="Output"/> (the linearisation is exact at the operating point).</summary>
    public Tensor Sum()
    {
        using var scope = NewDisposeScope();
        return (Components.sum(dim: 0) + Bias).MoveToOuterDisposeScope();
    }

    /// <summary>ρ_c = ⟨m_c, r_c⟩ / ‖r_c‖² [C, B]: &gt; 0 the MLP amplifies component c's direction, &lt; 0 it erases it.</summary>
    public Tensor ActivationRatio()
    {
        using var scope = NewDisposeScope();
        return ((Components * Inputs).sum(-1) / (Inputs * Inputs).sum(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>The index of <paramref name="label"/> among the components.</summary>
    public int IndexOf(string label)
    {
        int i = Labels.ToList().IndexOf(label);
        return i >= 0 ? i : throw new ArgumentException($"no component '{label}'; have {string.Join(", ", Labels)}.", nameof(label));
    }

    public void Dispose()
    {
        Components.Dispose(); Inputs.Dispose(); Bias.Dispose(); Gates.Dispose(); Output.Dispose();
    }
}

/// <summary>
/// Linearised MLP decomposition (P08 spec §2, [reconstructed]; exact by construction) on a <see cref="TinyGpt"/> block.
/// </summary>
/// <remarks>
/// MLP(x) = W_out φ(u) + b_out with u = W_in LN₂(x) + b_in and LN₂(x) = γ ⊙ P x / σ + β (P: mean-centring, σ = √(var x + ε)).
/// Freeze at the operating point x (this run): the gate g = φ(u)/u per neuron (g = φ′(0) = ½ for erf-GELU where |u| &lt; 1e-6)
/// and the scale σ. With x = Σ_c r_c (the decomposed stream, <see cref="ResidualStream.Decomposed"/>):
///   MLP(x) = Σ_c W_out diag(g) W_in (γ ⊙ P r_c / σ) + [W_out diag(g)(W_in β + b_in) + b_out],
///   m_c = W_out diag(g) W_in (γ ⊙ P r_c / σ);   activation ratio ρ_c = ⟨m_c, r_c⟩ / ‖r_c‖².
/// g is read from the cache as hook_post / hook_pre, so it is the model's own φ (TinyMlp: erf-GELU) and g·u = φ(u).
/// </remarks>
public static class MlpDecomposer
{
    /// <summary>|u| below which the gate is φ′(0).</summary>
    public const double SmallPre = 1e-6;
    /// <summary>φ′(0) of erf-GELU.</summary>
    public const double GateAtZero = 0.5;

    /// <summary>
    /// The decomposition of block <paramref name="layer"/>'s MLP at <paramref name="position"/> (negative counts from the end),
    /// from a cache of every activation (<see cref="HookedModel.RunWithCache(IHookedModel, Tensor, Func{string, bool}?)"/> without a filter).
    /// </summary>
    public static MlpDecomposition Linearize(TinyGpt model, ActivationCache cache, int layer, int position)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cache);
        if (layer < 0 || layer >= model.LayerCount)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in 0 … {model.LayerCount - 1}.");
        var block = model.Blocks[layer];
        var mlp = block.Mlp ?? throw new ArgumentException($"block {layer} has no TinyMlp to decompose.", nameof(layer));
        if (model.Config.ParallelBlock) throw new ArgumentException("a parallel block's MLP reads resid_pre, not resid_mid: not supported.", nameof(model));
        var ln = block.Norm2!;
        using var scope = NewDisposeScope();
        using var stack = ResidualStream.Decomposed(model, cache, splitHeads: true);
        int upTo = stack.Labels.ToList().IndexOf($"{layer}_attn_bias");                           // components of resid_mid_ℓ
        var labels = stack.Labels.Take(upTo + 1).ToList();
        long t = stack.Stack.shape[2];
        long p = position < 0 ? t + position : position;
        if (p < 0 || p >= t) throw new ArgumentOutOfRangeException(nameof(position), position, $"position must be in −{t} … {t - 1}.");
        var r = stack.Stack.narrow(0, 0, upTo + 1).select(2, p);                                    // r_c [C, B, d]
        var x = cache["resid_mid", layer].select(1, p);                                            // x = Σ r_c [B, d]
        var dtype = r.dtype;
        var sigma = (x.var(-1, unbiased: false, keepdim: true) + ln.Eps).sqrt();                    // σ [B, 1] (frozen)
        var gamma = ln.Weight.detach().to(dtype);
        var beta = ln.Bias.detach().to(dtype);
        var u = cache["pre", layer].select(1, p);                                                  // u = W_in LN(x) + b_in [B, n]
        var post = cache["post", layer].select(1, p);                                              // φ(u)
        var g = torch.where(u.abs() < SmallPre, torch.full_like(u, GateAtZero), post / u);          // g = φ(u)/u
        var wIn = mlp.In.weight!.detach().to(dtype);                                               // [n, d]
        var bIn = mlp.In.bias!.detach().to(dtype);
        var wOut = mlp.Out.weight!.detach().to(dtype);                                             // [d, n]
        var bOut = mlp.Out.bias!.detach().to(dtype);
        var normed = gamma * (r - r.mean(new long[] { -1 }, keepdim: true)) / sigma.unsqueeze(0);   // γ ⊙ P r_c / σ
        var m = torch.matmul(torch.matmul(normed, wIn.t()) * g.unsqueeze(0), wOut.t());           // W_out diag(g) W_in (·)
        var bias = torch.matmul((torch.matmul(beta, wIn.t()) + bIn).unsqueeze(0) * g, wOut.t()) + bOut;   // W_out diag(g)(W_in β + b_in) + b_out
        var output = cache["mlp_out", layer].select(1, p);
        return new MlpDecomposition(m.MoveToOuterDisposeScope(), r.contiguous().MoveToOuterDisposeScope(), bias.MoveToOuterDisposeScope(),
            g.MoveToOuterDisposeScope(), output.clone().MoveToOuterDisposeScope(), labels, layer);
    }

    /// <summary>
    /// Function application: the direct logit attribution (final LN folded with the clean run's scale, centred W_U) of each
    /// MLP share m_c, written at <paramref name="position"/>, on the <paramref name="answer"/> token [B] → [C, B].
    /// </summary>
    public static Tensor ShareLogitAttribution(TinyGpt model, ActivationCache cache, MlpDecomposition d, int position, Tensor answer)
    {
        ArgumentNullException.ThrowIfNull(d);
        using var scope = NewDisposeScope();
        var final = cache["resid_post", model.LayerCount - 1];                                     // [B, T, d]
        long t = final.shape[1];
        long p = position < 0 ? t + position : position;
        var stack = torch.zeros(d.Components.shape[0], final.shape[0], t, final.shape[2], dtype: d.Components.dtype, device: final.device);
        stack.select(2, p).copy_(d.Components);
        using var attribution = LogitAttribution.Direct(model, cache, new ResidualStack(stack, d.Labels), (int)p, answer);
        return attribution.PerComponent.clone().MoveToOuterDisposeScope();
    }
}
