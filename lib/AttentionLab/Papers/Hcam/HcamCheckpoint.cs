using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Hcam;

/// <summary>
/// What a shipped HCAM checkpoint was made for: the model of the comparison, the task it was trained on and the training budget.
/// <see cref="CheckpointStore.Load"/> compares it field by field with the manifest's, so a local-only file cannot be read into the
/// HCAM model (the two have the same tensors) and a file trained at another size is refused with the regeneration command.
/// </summary>
/// <param name="Model">local only, full attention or local + HCAM.</param>
/// <param name="Task">the episode generator.</param>
/// <param name="TrainDistractors">D_train.</param>
/// <param name="DModel">d.</param>
/// <param name="Heads">H.</param>
/// <param name="Layers">layers.</param>
/// <param name="TopK">k (HCAM's last layer).</param>
/// <param name="Steps">optimiser steps.</param>
/// <param name="BatchSize">episodes per step.</param>
/// <param name="LearningRate">AdamW peak rate.</param>
public sealed record HcamModelConfig(string Model, HcamRecallTask Task, int TrainDistractors, int DModel, int Heads, int Layers, int TopK, int Steps,
    int BatchSize, double LearningRate);

/// <summary>
/// The three shipped models of the P20 notebook at smoke size, one file each, trained by the committed recipe
/// (lib/AttentionLab.Checkpoints/HcamRecipe.cs) with <see cref="HcamExperiment.Train"/> — the same loop and batches the
/// experiment uses when it trains from scratch.
/// </summary>
public static class HcamCheckpoint
{
    /// <summary>Optimiser steps of the shipped checkpoints.</summary>
    public const int Steps = 1200;

    /// <summary>The recipe's name on the command line.</summary>
    public const string Recipe = "hcam";

    /// <summary>Short model keys on the command line and in the file names.</summary>
    public static readonly IReadOnlyList<(string Key, string Model)> Models =
        [("local", HcamExperiment.LocalName), ("full", HcamExperiment.FullName), ("hcam", HcamExperiment.HcamName)];

    /// <summary>The checkpoint name of <paramref name="model"/> in data/models/manifest.json.</summary>
    public static string Name(string model) => "hcam-recall-" + Key(model);

    /// <summary>The command-line key of <paramref name="model"/>.</summary>
    public static string Key(string model) => Models.FirstOrDefault(m => m.Model == model).Key
        ?? throw new ArgumentException($"unknown model '{model}' (expected {string.Join(", ", Models.Select(m => m.Model))}).", nameof(model));

    /// <summary>The committed command that regenerates <paramref name="model"/>'s checkpoint.</summary>
    public static string Command(string model, int steps = Steps, int seed = 0) =>
        $"dotnet run --project lib/AttentionLab.Checkpoints -c Release -- {Recipe} {Key(model)} --steps {steps} --seed {seed}";

    /// <summary>Loads <paramref name="model"/>'s checkpoint into a fresh model of <paramref name="config"/> (config checked against the manifest).</summary>
    public static (TinyGpt Model, CheckpointEntry Entry) Load(string model, HcamExperiment.Config config, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var built = HcamExperiment.Build(model, config, config.Seed);
        try
        {
            var entry = CheckpointStore.Default().Load(built, Name(model), config.ModelConfig(model));
            if (device is not null) built.to(device);
            built.eval();
            return (built, entry);
        }
        catch
        {
            built.Dispose();
            throw;
        }
    }
}
