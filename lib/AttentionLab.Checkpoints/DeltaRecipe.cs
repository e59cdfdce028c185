using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Papers.Delta;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P35 DELTA's checkpoint: a 4-layer attention-only TinyGpt (RoPE base 100) trained on delayed references — a random
/// segment repeated after a gap of up to 48 random tokens, so predicting the second copy needs the first one, which
/// sits further back than a 25 % sliding window reaches. Layer roles in the notebook: full [0], Δ [1], sparse [2, 3].
/// </summary>
public static class DeltaRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = DeltaCheckpoint.Name;
    /// <summary>Optimiser steps of the shipped checkpoint.</summary>
    public const int DefaultSteps = 3000;
    /// <summary>Sequences per step.</summary>
    public const int BatchSize = 32;

    /// <summary>The model (<see cref="DeltaCheckpoint.Config"/>).</summary>
    public static TinyGptConfig Config => DeltaCheckpoint.Config;
    /// <summary>The data (<see cref="DeltaCheckpoint.Task"/>).</summary>
    public static InductionTask Task => DeltaCheckpoint.Task;

    /// <summary>Trains with <paramref name="seed"/> and saves through <see cref="CheckpointStore"/> unless <paramref name="save"/> is false.</summary>
    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(Config);
        var options = new TrainOptions(Steps: steps, LearningRate: 3e-3, WeightDecay: 0.01, WarmupSteps: 100,
            StepsPerEpoch: Math.Max(1, steps / 6), ReportEvery: 100);
        var history = Trainer.Fit(model, step =>
        {
            using var batch = Task.Generate(BatchSize, InductionRecipe.BatchSeed(seed, step));
            return batch.Loss(model.call(batch.Tokens));
        }, options, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), _ =>
        {
            using var batch = Task.Generate(256, seed: -1 - seed);
            using var logits = model.call(batch.Tokens);
            double acc = batch.Accuracy(logits);
            Console.WriteLine($"  eval: accuracy {acc:F3}");
            return new Dictionary<string, double> { ["accuracy"] = acc };
        });
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, Config, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
