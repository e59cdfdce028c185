using AttentionLab.Models;
using AttentionLab.Papers.RetrievalHeads;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P12 Retrieval heads' checkpoint: a 2-layer × 4-head attention-only TinyGpt (d 64, RoPE) trained on synthetic
/// needle-in-a-haystack (<see cref="RetrievalHeadsCheckpoint.Task"/>), the model whose heads the notebook scores and masks.
/// </summary>
public static class RetrievalHeadsRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = RetrievalHeadsCheckpoint.Name;
    /// <summary>Optimiser steps of the shipped checkpoint.</summary>
    public const int DefaultSteps = RetrievalHeadsCheckpoint.Steps;

    /// <summary>Trains with <paramref name="seed"/> and saves through <see cref="CheckpointStore"/> unless <paramref name="save"/> is false.</summary>
    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(RetrievalHeadsCheckpoint.Config);
        var history = RetrievalHeadsCheckpoint.Train(model, RetrievalHeadsCheckpoint.Task, steps, RetrievalHeadsCheckpoint.BatchSize, seed,
            new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), acc => Console.WriteLine($"  eval: answer accuracy {acc:F3}"));
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, RetrievalHeadsCheckpoint.Config, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
