namespace AttentionLab.Models;

/// <summary>
/// Size and shape of an <see cref="EncoderDecoder"/>. The source is token ids [B, Tenc] when <see cref="SourceVocab"/> &gt; 0,
/// or continuous frames [B, Tenc, SourceFeatures] (spectrogram frames, object feature vectors) through a linear projection
/// when <see cref="SourceFeatures"/> &gt; 0 — exactly one of the two. The target is token ids in [0, TargetVocab).
/// </summary>
public sealed record EncoderDecoderConfig(int TargetVocab, int SourceVocab = 0, int SourceFeatures = 0, int DModel = 32, int Heads = 4,
    int EncoderLayers = 2, int DecoderLayers = 2, double MlpRatio = 4)
{
    /// <summary>True when the source is token ids.</summary>
    public bool TokenSource => SourceVocab > 0;
    /// <summary>Hidden width of every MLP.</summary>
    public int MlpDim => (int)Math.Round(DModel * MlpRatio);
    /// <summary>DModel / Heads.</summary>
    public int HeadDim => DModel / Heads;

    /// <summary>Throws ArgumentException naming the bad field.</summary>
    public EncoderDecoderConfig Validate()
    {
        static void Fail(string name, string why) => throw new ArgumentException($"{name} {why}", name);
        void Positive(double v, string name) { if (!(v > 0)) Fail(name, $"must be positive, got {v}."); }
        Positive(TargetVocab, nameof(TargetVocab)); Positive(DModel, nameof(DModel)); Positive(Heads, nameof(Heads));
        Positive(EncoderLayers, nameof(EncoderLayers)); Positive(DecoderLayers, nameof(DecoderLayers)); Positive(MlpRatio, nameof(MlpRatio));
        if (SourceVocab < 0) Fail(nameof(SourceVocab), $"must be ≥ 0, got {SourceVocab}.");
        if (SourceFeatures < 0) Fail(nameof(SourceFeatures), $"must be ≥ 0, got {SourceFeatures}.");
        if ((SourceVocab > 0) == (SourceFeatures > 0))
            Fail(nameof(SourceVocab), $"or SourceFeatures must be positive, not both nor neither (got {SourceVocab} and {SourceFeatures}).");
        if (DModel % Heads != 0) Fail(nameof(Heads), $"must divide DModel {DModel}, got {Heads}.");
        if (MlpDim < 1) Fail(nameof(MlpRatio), $"gives an MLP width of {MlpDim}.");
        return this;
    }
}
