using AttentionLab.Attention;

namespace AttentionLab.Models;

/// <summary>
/// Size and shape of a <see cref="TinyGpt"/>. Inputs are continuous features [B, T, InputFeatures] → [B, T, OutputFeatures]
/// when <see cref="VocabSize"/> = 0, or token ids [B, T] → logits [B, T, VocabSize] when VocabSize &gt; 0 (embedding and
/// unembedding, optionally tied). <see cref="Positions"/>: none, sinusoidal or learned (added to the embeddings; learned
/// needs <see cref="MaxLength"/>), RoPE (q, k rotated, base <see cref="RopeBase"/>) or ALiBi (per-head score bias).
/// <see cref="Mlp"/> = false gives attention-only blocks; <see cref="ParallelBlock"/> = true computes attention and MLP
/// from the same block input (GPT-J / NeoX). <see cref="Attention"/> picks the normaliser or gate of every attention
/// layer (P47's variants); <see cref="AttentionKind.Register"/> prepends a learned register vector at position 0.
/// <see cref="RopeScale"/> &lt; 1 interpolates RoPE positions (p ↦ p · RopeScale, <see cref="WithPositionInterpolation"/>).
/// </summary>
public sealed record TinyGptConfig(int Layers = 2, int DModel = 32, int Heads = 4, double MlpRatio = 4,
    int InputFeatures = 1, int OutputFeatures = 1, PositionKind Positions = PositionKind.None,
    int VocabSize = 0, int MaxLength = 256, bool TiedEmbeddings = false, bool Mlp = true, bool ParallelBlock = false,
    double RopeBase = 10000, AttentionKind Attention = AttentionKind.Softmax, double RopeScale = 1)
{
    /// <summary>
    /// The config with RoPE position interpolation (Chen et al. 2023, "Extending Context Window of Large Language Models via
    /// Positional Interpolation", arXiv 2306.15595): positions scaled by <paramref name="trainLength"/> / <paramref name="targetLength"/>,
    /// so a model trained on trainLength tokens sees targetLength positions inside its trained angle range.
    /// </summary>
    public TinyGptConfig WithPositionInterpolation(int trainLength, int targetLength)
    {
        if (trainLength < 1) throw new ArgumentException($"trainLength must be positive, got {trainLength}.", nameof(trainLength));
        if (targetLength < 1) throw new ArgumentException($"targetLength must be positive, got {targetLength}.", nameof(targetLength));
        return this with { RopeScale = (double)trainLength / targetLength };
    }

    /// <summary>DModel / Heads.</summary>
    public int HeadDim => DModel / Heads;
    /// <summary>Hidden width of the MLP.</summary>
    public int MlpDim => (int)Math.Round(DModel * MlpRatio);
    /// <summary>True when the model reads token ids (VocabSize &gt; 0).</summary>
    public bool TokenInputs => VocabSize > 0;
    /// <summary>Width of the output: VocabSize for tokens, else OutputFeatures.</summary>
    public int OutputSize => TokenInputs ? VocabSize : OutputFeatures;

    /// <summary>Throws ArgumentException naming the bad field.</summary>
    public TinyGptConfig Validate()
    {
        static void Fail(string name, string why) => throw new ArgumentException($"{name} {why}", name);
        void Pos(double v, string name) { if (!(v > 0)) Fail(name, $"must be positive, got {v}."); }
        Pos(Layers, nameof(Layers)); Pos(DModel, nameof(DModel)); Pos(Heads, nameof(Heads));
        if (Mlp) Pos(MlpRatio, nameof(MlpRatio));
        if (VocabSize < 0) Fail(nameof(VocabSize), $"must be ≥ 0 (0 = continuous inputs), got {VocabSize}.");
        if (!TokenInputs) { Pos(InputFeatures, nameof(InputFeatures)); Pos(OutputFeatures, nameof(OutputFeatures)); }
        if (TiedEmbeddings && !TokenInputs) Fail(nameof(TiedEmbeddings), "needs token inputs (VocabSize > 0).");
        if (DModel % Heads != 0) Fail(nameof(Heads), $"must divide DModel {DModel}, got {Heads}.");
        if (!Enum.IsDefined(Positions)) Fail(nameof(Positions), $"is not a known PositionKind: {(int)Positions}.");
        if (Positions == PositionKind.Learned) Pos(MaxLength, nameof(MaxLength));
        if (Positions == PositionKind.Rope && HeadDim % 2 != 0) Fail(nameof(Positions), $"Rope needs an even head dim, got DModel/Heads = {HeadDim}.");
        if (Positions == PositionKind.Rope && !(RopeBase > 1)) Fail(nameof(RopeBase), $"must be > 1, got {RopeBase}.");
        if (!(RopeScale > 0) || double.IsInfinity(RopeScale)) Fail(nameof(RopeScale), $"must be positive and finite, got {RopeScale}.");
        if (!Enum.IsDefined(Attention)) Fail(nameof(Attention), $"is not a known AttentionKind: {(int)Attention}.");
        if (ParallelBlock && !Mlp) Fail(nameof(ParallelBlock), "needs an MLP (Mlp = true).");
        return this;
    }
}
