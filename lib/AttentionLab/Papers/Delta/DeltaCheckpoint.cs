using AttentionLab.Attention;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;

namespace AttentionLab.Papers.Delta;

/// <summary>
/// The shipped model of the DELTA notebook: a 4-layer attention-only TinyGpt (RoPE base 100) trained on delayed
/// references — a random segment repeated after a gap of up to 48 random tokens, placed anywhere — so predicting the
/// second copy needs the first, further back than a 25 % window reaches. Regenerate with <see cref="Command"/>
/// (lib/AttentionLab.Checkpoints/DeltaRecipe.cs).
/// </summary>
public static class DeltaCheckpoint
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = "delta-4l-attn-only";
    /// <summary>The committed command that regenerates it.</summary>
    public const string Command = "dotnet run --project lib/AttentionLab.Checkpoints -c Release -- delta --steps 3000 --seed 0";

    /// <summary>4 attention-only layers, 4 heads of width 16, RoPE base 100.</summary>
    public static readonly TinyGptConfig Config = new(Layers: 4, DModel: 64, Heads: 4, VocabSize: 16,
        Positions: PositionKind.Rope, RopeBase: 100, MaxLength: 128, Mlp: false);

    /// <summary>Segment L_n ∈ [4, 12], gap g_n ∈ [0, 48], random placement; length 1 + 24 + 48 = 73.</summary>
    public static readonly InductionTask Task = new(VocabSize: 16, SegmentLength: 12, MinSegmentLength: 4, MaxGap: 48, RandomOffset: true);

    /// <summary>The trained model (sha256 checked against the manifest); the caller disposes it.</summary>
    public static TinyGpt Load()
    {
        var model = new TinyGpt(Config);
        CheckpointStore.Default().Load(model, Name);
        model.eval();
        return model;
    }
}
