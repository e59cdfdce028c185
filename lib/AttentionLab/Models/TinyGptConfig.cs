using AttentionLab.Attention;

namespace AttentionLab.Models;

/// <summary>
/// Size of a <see cref="TinyGpt"/>: blocks, width, heads, MLP width ratio, and the continuous input/output
/// features per position (a token vocabulary will join these as another input kind), and the position encoding.
/// </summary>
public sealed record TinyGptConfig(int Layers = 2, int DModel = 32, int Heads = 4, double MlpRatio = 4,
    int InputFeatures = 1, int OutputFeatures = 1, PositionKind Positions = PositionKind.None)
{
    /// <summary>DModel / Heads.</summary>
    public int HeadDim => DModel / Heads;
    /// <summary>Hidden width of the MLP.</summary>
    public int MlpDim => (int)Math.Round(DModel * MlpRatio);

    /// <summary>Throws ArgumentException naming the bad field.</summary>
    public TinyGptConfig Validate()
    {
        void Pos(double v, string name) { if (!(v > 0)) throw new ArgumentException($"{name} must be positive, got {v}.", name); }
        Pos(Layers, nameof(Layers)); Pos(DModel, nameof(DModel)); Pos(Heads, nameof(Heads)); Pos(MlpRatio, nameof(MlpRatio));
        Pos(InputFeatures, nameof(InputFeatures)); Pos(OutputFeatures, nameof(OutputFeatures));
        if (DModel % Heads != 0) throw new ArgumentException($"DModel {DModel} must be a multiple of Heads {Heads}.", nameof(Heads));
        return this;
    }
}
