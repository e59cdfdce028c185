using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>Components of the residual stream stacked on a new first axis: <see cref="Stack"/> [C, B, T, d] and one label per component.</summary>
/// <param name="Stack">The components [C, B, T, d] (owned by this record: dispose it, or let the caller's dispose scope).</param>
/// <param name="Labels">One TransformerLens-style label per component ("embed", "0_attn_out", "L1H2", "final_post", …).</param>
public sealed record ResidualStack(Tensor Stack, IReadOnlyList<string> Labels) : IDisposable
{
    /// <summary>The component labelled <paramref name="label"/> [B, T, d].</summary>
    public Tensor this[string label]
    {
        get
        {
            int i = Labels.ToList().IndexOf(label);
            if (i < 0) throw new ArgumentException($"no component '{label}'; the stack holds {string.Join(", ", Labels)}.", nameof(label));
            return Stack[i];
        }
    }

    public void Dispose() => Stack.Dispose();
}

/// <summary>
/// The residual stream of a <see cref="TinyGpt"/> read from a cache (TransformerLens <c>ActivationCache</c>'s
/// <c>accumulated_resid</c>, <c>decompose_resid</c>, <c>stack_head_results</c>). Decoder blocks add to the stream:
/// resid_post_ℓ = resid_pre_ℓ + attn_out_ℓ (+ mlp_out_ℓ), resid_pre_0 = embed (+ pos_embed), so the decomposed components
/// sum to the final resid_post exactly; per-head results z_h W_O^h sum with the bias b_O to attn_out.
/// </summary>
/// <remarks>Needs a cache with every activation (<see cref="HookedModel.RunWithCache(IHookedModel, Tensor, Func{string, bool}?)"/>
/// without a filter). A Register model's stream holds one more position than its embeddings: not supported here.</remarks>
public static class ResidualStream
{
    /// <summary>
    /// The stream before each block and after the last: labels "0_pre", ("0_mid",) "1_pre", …, "final_post" → [L + 1 (+ L), B, T, d].
    /// </summary>
    public static ResidualStack Accumulated(TinyGpt model, ActivationCache cache, bool includeMid = false)
    {
        Check(model, cache);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        var labels = new List<string>();
        for (int l = 0; l < model.LayerCount; l++)
        {
            parts.Add(cache["resid_pre", l]); labels.Add($"{l}_pre");
            if (includeMid && cache.Contains(ActName.Get("resid_mid", l))) { parts.Add(cache["resid_mid", l]); labels.Add($"{l}_mid"); }
        }
        parts.Add(cache["resid_post", model.LayerCount - 1]); labels.Add("final_post");
        return new ResidualStack(torch.stack(parts).MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// The additive pieces of the final stream: "embed", "pos_embed" (learned or sinusoidal positions), then per block
    /// "ℓ_attn_out" — or, with <paramref name="splitHeads"/>, each head's result "LℓHh" plus "ℓ_attn_bias" (b_O) — and
    /// "ℓ_mlp_out". Σ components = final resid_post.
    /// </summary>
    public static ResidualStack Decomposed(TinyGpt model, ActivationCache cache, bool splitHeads = false)
    {
        Check(model, cache);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor> { cache["hook_embed"] };
        var labels = new List<string> { "embed" };
        if (cache.Contains("hook_pos_embed")) { parts.Add(cache["hook_pos_embed"]); labels.Add("pos_embed"); }
        for (int l = 0; l < model.LayerCount; l++)
        {
            if (splitHeads)
            {
                var results = HeadResults(model, cache, l);                                   // [B, T, H, d]
                for (int h = 0; h < model.HeadCount; h++) { parts.Add(results.select(2, h)); labels.Add($"L{l}H{h}"); }
                parts.Add(AttentionBias(model, l).expand_as(parts[^1])); labels.Add($"{l}_attn_bias");
            }
            else { parts.Add(cache["attn_out", l]); labels.Add($"{l}_attn_out"); }
            if (cache.Contains(ActName.Get("mlp_out", l))) { parts.Add(cache["mlp_out", l]); labels.Add($"{l}_mlp_out"); }
        }
        return new ResidualStack(torch.stack(parts).MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// What each head of block <paramref name="layer"/> writes to the stream (TransformerLens's <c>hook_result</c>):
    /// result_h = z′_h W_O^h [B, T, H, d], with z′ the gated z where the layer has an output gate (G1). Needs a mixer whose
    /// output is Σ_h z′_h W_O^h + b_O (softmax attention and the base's other plain forms); a mixer that reweights its heads
    /// in the output (MoH, BAM's mixture, TNL's norm and gate) is refused, naming the layer.
    /// </summary>
    public static Tensor HeadResults(TinyGpt model, ActivationCache cache, int layer)
    {
        Check(model, cache);
        var mixer = PlainOutput(model, layer);
        using var scope = NewDisposeScope();
        var z = cache["z", layer];                                                          // [B, T, H, Dv]
        if (cache.Contains(ActName.Get("gate", layer))) z = z * cache["gate", layer];        // G1: z′ = z ⊙ σ(·)
        return torch.einsum("bthv,hvd->bthd", z, mixer.W_O.to(z.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>b_O of block <paramref name="layer"/> [d] (zeros without a bias).</summary>
    public static Tensor AttentionBias(TinyGpt model, int layer)
    {
        var mixer = PlainOutput(model, layer);
        return mixer.Proj.bias is { } b ? b.detach().clone() : torch.zeros(mixer.DModel, dtype: mixer.Proj.weight!.dtype, device: mixer.Proj.weight.device);
    }

    /// <summary>Every head's result over all blocks: labels "LℓHh" → [L·H, B, T, d].</summary>
    public static ResidualStack HeadResultStack(TinyGpt model, ActivationCache cache)
    {
        Check(model, cache);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        var labels = new List<string>();
        for (int l = 0; l < model.LayerCount; l++)
        {
            var results = HeadResults(model, cache, l);
            for (int h = 0; h < model.HeadCount; h++) { parts.Add(results.select(2, h)); labels.Add($"L{l}H{h}"); }
        }
        return new ResidualStack(torch.stack(parts).MoveToOuterDisposeScope(), labels);
    }

    static AttentionMixer PlainOutput(TinyGpt model, int layer)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (layer < 0 || layer >= model.LayerCount)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in 0 … {model.LayerCount - 1}.");
        var mixer = model.Blocks[layer].Mixer as AttentionMixer
            ?? throw new ArgumentException($"block {layer}'s mixer {model.Blocks[layer].Mixer.GetType().Name} has no per-head output (not an AttentionMixer).",
                nameof(layer));
        var output = mixer.GetType().GetMethod("Output", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic,
            [typeof(Tensor), typeof(Tensor)])!;
        if (output.DeclaringType != typeof(AttentionMixer) && output.DeclaringType != typeof(CausalSelfAttention))
            throw new ArgumentException(
                $"block {layer}'s mixer {mixer.GetType().Name} reweights its heads in the output, so its output is not Σ_h z_h W_O^h + b_O.", nameof(layer));
        return mixer;
    }

    internal static void Check(TinyGpt model, ActivationCache cache)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cache);
        if (model.Prefix != 0)
            throw new ArgumentException("a Register model's stream has one more position than its embeddings; not supported.", nameof(model));
        if (cache.LayerCount != model.LayerCount)
            throw new ArgumentException($"the cache has {cache.LayerCount} layers, the model {model.LayerCount}.", nameof(cache));
    }
}
