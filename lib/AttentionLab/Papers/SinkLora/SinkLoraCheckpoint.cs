using AttentionLab.Models;
using AttentionLab.Train;

namespace AttentionLab.Papers.SinkLora;

/// <summary>What the base checkpoint was trained with: checked against the run's config before loading.</summary>
/// <param name="Model">The base TinyGpt config (RoPE, T0).</param>
/// <param name="Task">The repeated-segment LM.</param>
/// <param name="Steps">Pretraining steps.</param>
/// <param name="Batch">Sequences per step.</param>
/// <param name="LearningRate">Peak learning rate.</param>
/// <param name="Seed">Seed of the weights and batches.</param>
public sealed record SinkLoraBaseRecipe(TinyGptConfig Model, SegmentRecallLm Task, int Steps, int Batch, double LearningRate, int Seed)
{
    /// <summary>The recipe a config's pretraining follows.</summary>
    public static SinkLoraBaseRecipe From(SinkLoraExperiment.Config c) =>
        new(c.BaseModel, c.Task, c.CheckpointSteps, c.PretrainBatch, c.PretrainLr, c.Seed);
}

/// <summary>
/// The shipped pretrained base of the smoke run (data/models/sinklora-base.bin, made by lib/AttentionLab.Checkpoints'
/// SinkLoraRecipe with <see cref="SinkLoraExperiment.TrainBase"/>), loaded when its recorded recipe equals the run's.
/// </summary>
public static class SinkLoraCheckpoint
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = "sinklora-base";
    /// <summary>Its file.</summary>
    public const string FileName = Name + ".bin";

    /// <summary>Loads the checkpoint into <paramref name="model"/> when it exists and matches; <paramref name="why"/> says what happened.</summary>
    public static bool TryLoad(TinyGpt model, SinkLoraExperiment.Config config, out string why)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        CheckpointStore store;
        try { store = CheckpointStore.Default(); }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
        {
            why = $"no data folder: {e.Message}";
            return false;
        }
        var entry = store.Find(Name);
        if (entry is null) { why = $"no {Name} entry in the manifest"; return false; }
        try
        {
            store.Load(model, Name, SinkLoraBaseRecipe.From(config));
            why = $"sha256 {entry.Sha256[..12]}…, recipe matches";
            return true;
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or InvalidDataException)
        {
            why = $"checkpoint not used: {e.Message.Split('.')[0]}";
            return false;
        }
    }
}
