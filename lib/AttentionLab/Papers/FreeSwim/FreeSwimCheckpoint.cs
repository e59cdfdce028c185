using AttentionLab.Models;
using AttentionLab.Train;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>
/// The shipped denoiser of the FreeSwim notebook: a 4-layer <see cref="TinyDiT"/> (d = 64, 4 heads of 16, patch 2)
/// trained by flow matching on 16×16-pixel <see cref="Data.ShapeImages"/> only — 8×8 tokens is its native grid.
/// Regenerate with <see cref="Command"/> (lib/AttentionLab.Checkpoints/FreeSwimRecipe.cs).
/// </summary>
public static class FreeSwimCheckpoint
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = "freeswim-tinydit-shapes16";
    /// <summary>Steps of the shipped checkpoint.</summary>
    public const int Steps = 3000;
    /// <summary>The committed command that regenerates it.</summary>
    public const string Command = "dotnet run --project lib/AttentionLab.Checkpoints -c Release -- freeswim --steps 3000 --seed 0";
    /// <summary>Training image side in pixels (native resolution): 16 px, patch 2 ⇒ 8×8 tokens.</summary>
    public const int NativePixels = 16;

    /// <summary>4 layers, d = 64, 4 heads, MLP ×2, 3 classes, 4 class tokens, patch 2.</summary>
    public static readonly TinyDiTConfig Config = new(Channels: 3, Patch: 2, DModel: 64, Heads: 4, Layers: 4, MlpRatio: 2, Classes: 3, ClassTokens: 4);

    /// <summary>True when the checkpoint file is listed in the manifest and present.</summary>
    public static bool Available()
    {
        var store = CheckpointStore.Default();
        return store.Find(Name) is { } e && File.Exists(Path.Combine(store.Folder, e.File));
    }

    /// <summary>The trained model (sha256 checked against the manifest), in eval mode; the caller disposes it.</summary>
    public static TinyDiT Load()
    {
        var model = new TinyDiT(Config);
        CheckpointStore.Default().Load(model, Name);
        model.eval();
        return model;
    }
}
