using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>How the mixture is built from the branched dense models.</summary>
public enum MixKind
{
    /// <summary>BTX (Sukhbaatar et al. 2024): FFN experts from the branches (top-k), attention and everything else averaged.</summary>
    Btx,
    /// <summary>
    /// BAM-all: FFN experts (top-k) and soft-routed attention experts (<see cref="MixtureOfAttention"/>) from the branches; the rest averaged.
    /// </summary>
    Bam,
}

/// <summary>
/// Branch-Attend-Mix on <see cref="TinyGpt"/> (spec §2): N dense <b>parallel-block</b> models branched from one seed become one
/// MoE model. FFN experts E_i = FFN(θ_i) behind a top-k router (<see cref="Upcycling.FromExperts"/>); BAM also makes attention
/// experts A_i = Attn(θ_i) behind a soft router (<see cref="MixtureOfAttention.FromExperts"/>); every other parameter
/// (embeddings, positions, norms, LM head, and BTX's attention) is the mean of the θ_i (<see cref="ParameterAveraging"/>).
/// </summary>
public static class BamUpcycling
{
    /// <summary>
    /// The mixture of <paramref name="branches"/> (≥ 1 models of one config, parallel blocks, softmax attention, positions in the
    /// embeddings), with <paramref name="topK"/> FFN experts per token; routers random (FFN) and zero (attention). Same dtype and
    /// device as the branches.
    /// </summary>
    public static TinyGpt Mix(IReadOnlyList<TinyGpt> branches, MixKind kind, int topK)
    {
        ArgumentNullException.ThrowIfNull(branches);
        if (branches.Count == 0) throw new ArgumentException("give at least one branched model.", nameof(branches));
        if (!Enum.IsDefined(kind)) throw new ArgumentException($"kind {(int)kind} is not a MixKind.", nameof(kind));
        var config = branches[0].Config;
        if (branches.Any(b => b.Config != config))
            throw new ArgumentException("every branch must share one config (branched from one seed).", nameof(branches));
        if (!config.ParallelBlock)
            throw new ArgumentException("the seed must be a parallel-block model (y = x + Attn(LN x) + FFN(LN x)); upcycling a sequential block " +
                "changes the function (spec §2).", nameof(branches));
        var ffns = Enumerable.Range(0, config.Layers).Select(l => branches.Select(b => b.Blocks[l].Mlp
            ?? throw new ArgumentException($"branch FFNs must be TinyMlp (layer {l}).", nameof(branches))).ToList()).ToList();
        var attns = Enumerable.Range(0, config.Layers).Select(l => branches.Select(b => b.Blocks[l].Mixer as CausalSelfAttention
            ?? throw new ArgumentException($"branch mixers must be CausalSelfAttention (layer {l}).", nameof(branches))).ToList()).ToList();
        var w = branches[0].FinalNorm.Weight;
        var model = new TinyGpt(config,
            mixers: kind == MixKind.Bam ? l => MixtureOfAttention.FromExperts(attns[l], zeroRouter: true) : null,
            ffns: l => new BamFfn(Upcycling.FromExperts(ffns[l], topK)));
        model.to(w.device).to(w.dtype);
        // every parameter that is not an expert: the mean of the branches (names shared with the dense models)
        ParameterAveraging.AverageInto(model, branches.Cast<nn.Module>().ToList(),
            include: name => !name.Contains(".mlp.", StringComparison.Ordinal) && (kind == MixKind.Btx || !name.Contains(".attn.", StringComparison.Ordinal)));
        return model;
    }

    /// <summary>The FFN mixtures of a mixed model, by layer (empty for a dense model).</summary>
    public static IReadOnlyList<BamFfn> FfnMixtures(TinyGpt model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Blocks.Select(b => b.Ffn as BamFfn).Where(m => m is not null).Select(m => m!).ToList();
    }

    /// <summary>The attention mixtures of a BAM model, by layer (empty for BTX).</summary>
    public static IReadOnlyList<MixtureOfAttention> AttentionMixtures(TinyGpt model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Blocks.Select(b => b.Mixer as MixtureOfAttention).Where(m => m is not null).Select(m => m!).ToList();
    }

    /// <summary>Σ_layers L_aux of the last forward pass (0 for a dense model), in the caller's scope.</summary>
    public static Tensor AuxLoss(TinyGpt model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Tensor total = torch.zeros(Array.Empty<long>(), device: model.FinalNorm.Weight.device);
        foreach (var m in FfnMixtures(model))
            if (m.LastAuxLoss is { } aux) total = total + aux;
        return total;
    }
}
