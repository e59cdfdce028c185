using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// Direct logit attribution of each residual component at one position: its share of a logit difference (or of one
/// centred logit), with the final LayerNorm folded (TransformerLens <c>apply_ln_to_stack</c> + <c>logit_attrs</c>).
/// <see cref="PerComponent"/> [C, B] plus <see cref="Constant"/> [B] equals the model's logit difference exactly when the
/// stack is a full decomposition (<see cref="ResidualStream.Decomposed"/>).
/// </summary>
/// <param name="PerComponent">Each component's direct effect [C, B].</param>
/// <param name="Constant">The LayerNorm bias and unembedding bias terms, which no component owns [B].</param>
/// <param name="Labels">The components' labels.</param>
public sealed record LogitAttributionResult(Tensor PerComponent, Tensor Constant, IReadOnlyList<string> Labels) : IDisposable
{
    /// <summary>Σ components + constant [B]: the logit difference the attribution explains (a new tensor the caller owns).</summary>
    public Tensor Total
    {
        get
        {
            using var scope = torch.NewDisposeScope();
            return (PerComponent.sum(dim: 0) + Constant).MoveToOuterDisposeScope();
        }
    }

    public void Dispose() { PerComponent.Dispose(); Constant.Dispose(); }
}

/// <summary>Direct logit attribution on a <see cref="TinyGpt"/> with token outputs.</summary>
/// <remarks>
/// Final LayerNorm at position p: LN(x) = (x − mean(x)) / σ ⊙ w + b, σ = √(var(x) + ε) of the <b>whole</b> final stream
/// (the frozen scale, as TransformerLens caches it), so each component c maps linearly: ĉ = (c − mean(c)) / σ.
/// Direction u = W_U[:, a] − W_U[:, b] (a difference), or W_U[:, a] − mean_v W_U[:, v] (the centred unembedding, when no
/// b is given). Attribution of c: ĉ · (w ⊙ u); constant: b · u + (b_U[a] − b_U[b]) (or b_U[a] − mean b_U).
/// Σ_c attribution + constant = LN(x) · u + Δb_U = logit_a − logit_b (or logit_a − mean_v logit_v).
/// </remarks>
public static class LogitAttribution
{
    /// <summary>
    /// The stack [C, B, T, d] with the final LayerNorm's centring and frozen scale applied (no w, no b): [C, B, T, d].
    /// </summary>
    public static Tensor ApplyFinalLayerNorm(TinyGpt model, ActivationCache cache, Tensor stack)
    {
        ResidualStream.Check(model, cache);
        ArgumentNullException.ThrowIfNull(stack);
        var final = cache["resid_post", model.LayerCount - 1];                                    // [B, T, d]
        if (stack.dim() != 4 || !stack.shape.Skip(1).SequenceEqual(final.shape))
            throw new ArgumentException($"stack must be [C, {string.Join(", ", final.shape)}], got [{string.Join(", ", stack.shape)}].", nameof(stack));
        using var scope = NewDisposeScope();
        var sigma = (final.var(-1, unbiased: false, keepdim: true) + model.FinalNorm.Eps).sqrt();   // σ [B, T, 1]
        return ((stack - stack.mean(new long[] { -1 }, keepdim: true)) / sigma).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Each component's direct effect on logit(<paramref name="answer"/>) − logit(<paramref name="against"/>) at
    /// <paramref name="position"/> (negative counts from the end), or on the centred logit of the answer when
    /// <paramref name="against"/> is null. answer, against: token ids [B].
    /// </summary>
    public static LogitAttributionResult Direct(TinyGpt model, ActivationCache cache, ResidualStack components, int position, Tensor answer,
        Tensor? against = null)
    {
        ResidualStream.Check(model, cache);
        ArgumentNullException.ThrowIfNull(components);
        ArgumentNullException.ThrowIfNull(answer);
        var (wU, bU) = model.Unembedding ?? throw new ArgumentException("the model has continuous outputs, not token logits.", nameof(model));
        long b = components.Stack.shape[1], t = components.Stack.shape[2];
        int p = position < 0 ? (int)(t + position) : position;
        if (p < 0 || p >= t) throw new ArgumentOutOfRangeException(nameof(position), position, $"position must be in −{t} … {t - 1}.");
        long vocab = wU.shape[1];
        CheckIds(answer, b, vocab, nameof(answer));
        if (against is not null) CheckIds(against, b, vocab, nameof(against));
        using var scope = NewDisposeScope();
        var w = model.FinalNorm.Weight.detach().to(components.Stack.dtype);
        var lnBias = model.FinalNorm.Bias.detach().to(components.Stack.dtype);
        var wu = wU.detach().to(components.Stack.dtype);                                           // [d, V]
        var bu = bU?.detach().to(components.Stack.dtype) ?? torch.zeros(vocab, dtype: components.Stack.dtype, device: wu.device);
        var u = wu.index_select(1, answer).t();                                                    // [B, d]
        var du = bu.index_select(0, answer);                                                       // [B]
        if (against is null) { u = u - wu.mean(new long[] { 1 }).unsqueeze(0); du = du - bu.mean(); }
        else { u = u - wu.index_select(1, against).t(); du = du - bu.index_select(0, against); }
        var normed = ApplyFinalLayerNorm(model, cache, components.Stack).select(2, p);              // [C, B, d]
        var per = (normed * (w * u).unsqueeze(0)).sum(-1);                                        // ĉ · (w ⊙ u)  [C, B]
        var constant = (lnBias.unsqueeze(0) * u).sum(-1) + du;                                     // b · u + Δb_U  [B]
        return new LogitAttributionResult(per.MoveToOuterDisposeScope(), constant.MoveToOuterDisposeScope(), components.Labels);
    }

    static void CheckIds(Tensor ids, long batch, long vocab, string name)
    {
        if (ids.dim() != 1 || ids.shape[0] != batch) throw new ArgumentException($"{name} must be token ids [{batch}], got [{string.Join(", ", ids.shape)}].",
            name);
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must hold int64 token ids, got {ids.dtype}.", name);
        Guard.TokenIds(ids, vocab, name);
    }
}
