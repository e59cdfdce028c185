namespace AttentionLab.Interp;

/// <summary>
/// Short activation names → full hook names, as TransformerLens's <c>utils.get_act_name</c>:
/// ("pattern", 3) → "blocks.3.attn.hook_pattern"; ("resid_pre", 0) → "blocks.0.hook_resid_pre";
/// ("post", 1) → "blocks.1.mlp.hook_post"; ("normalized", 1, "ln2") → "blocks.1.ln2.hook_normalized";
/// ("embed") → "hook_embed"; ("normalized") → "ln_final.hook_normalized". A name holding a dot or starting with
/// "hook_" is already full. Aliases: attn → pattern, attn_logits → attn_scores, key/query/value → k/q/v.
/// An encoder–decoder's cross-attention: ("pattern", 1, "cross_attn") (or layer type "cross") → "blocks.1.cross_attn.hook_pattern".
/// </summary>
public static class ActName
{
    static readonly HashSet<string> AttnNames = new() { "k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores", "gate" };
    static readonly HashSet<string> MlpNames = new() { "pre", "post", "mid", "pre_linear" };
    static readonly Dictionary<string, string> Alias = new()
    {
        ["attn"] = "pattern", ["attn_logits"] = "attn_scores", ["key"] = "k", ["query"] = "q", ["value"] = "v",
        ["mlp_pre"] = "pre", ["mlp_mid"] = "mid", ["mlp_post"] = "post",
    };
    static readonly Dictionary<string, string> LayerTypeAlias = new()
    {
        ["a"] = "attn", ["m"] = "mlp", ["b"] = "", ["block"] = "", ["blocks"] = "", ["attention"] = "attn", ["cross"] = "cross_attn",
    };

    /// <summary>The full hook name; <paramref name="layer"/> must already be non-negative (see <see cref="ActivationCache"/> for negative layers).</summary>
    public static string Get(string name, int? layer = null, string? layerType = null)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("name must not be empty.", nameof(name));
        if (layer is < 0)
            throw new ArgumentOutOfRangeException(
                nameof(layer), layer, "layer must be ≥ 0 here; resolve negative layers against the model's layer count first.");
        if ((name.Contains('.') || name.StartsWith("hook_", StringComparison.Ordinal)) && layer is null && layerType is null) return name;
        if (Alias.TryGetValue(name, out var alias)) name = alias;
        var full = layer is null ? "" : $"blocks.{layer}.";
        if (layerType is not null && LayerTypeAlias.TryGetValue(layerType, out var lt)) layerType = lt;
        if (AttnNames.Contains(name)) layerType = layerType == "cross_attn" ? "cross_attn" : "attn";   // an encoder–decoder's cross-attention
        else if (MlpNames.Contains(name)) layerType = "mlp";
        if (!string.IsNullOrEmpty(layerType)) full += layerType + ".";
        full += "hook_" + name;
        if ((name == "scale" || name == "normalized") && layer is null) full = "ln_final." + full;
        return full;
    }
}
