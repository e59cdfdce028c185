using AttentionLab.Models;
using AttentionLab.Papers.CircuitReuse;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P46 Circuit reuse's checkpoint: a 3-layer × 4-head TinyGpt (d 64) trained on the IOI / Colored-Objects mixture
/// (<see cref="CircuitReuseCheckpoint"/>), the model whose circuits the notebook path-patches.
/// </summary>
public static class CircuitReuseRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = CircuitReuseCheckpoint.Name;
    /// <summary>Optimiser steps of the shipped checkpoint.</summary>
    public const int DefaultSteps = CircuitReuseCheckpoint.Steps;

    /// <summary>Trains with <paramref name="seed"/> and saves through <see cref="CheckpointStore"/> unless <paramref name="save"/> is false.</summary>
    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(CircuitReuseCheckpoint.Config);
        var history = CircuitReuseCheckpoint.Train(model, steps, CircuitReuseCheckpoint.BatchSize, seed,
            new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)),
            (ioi, co) => Console.WriteLine($"  eval: IOI accuracy {ioi:F3}, CO accuracy {co:F3}"));
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, CircuitReuseCheckpoint.Config, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
