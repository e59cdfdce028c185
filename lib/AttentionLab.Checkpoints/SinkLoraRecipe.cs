using AttentionLab.Models;
using AttentionLab.Papers.SinkLora;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// The shipped base of P09 (SinkLoRA): the smoke config's RoPE TinyGpt (d 64, L 2, H 4) pretrained at T0 = 64 on the
/// repeated-segment LM with <see cref="SinkLoraExperiment.TrainBase"/>; the notebook extends it to 256 by position
/// interpolation and fine-tunes it per variant. Saved with its <see cref="SinkLoraBaseRecipe"/>, which the run checks.
/// </summary>
public static class SinkLoraRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = SinkLoraCheckpoint.Name;
    /// <summary>Steps of the shipped checkpoint (the smoke config's CheckpointSteps).</summary>
    public static int DefaultSteps => SinkLoraExperiment.Config.Smoke.CheckpointSteps;

    public static int Run(int steps, int seed, bool save, string command)
    {
        var c = SinkLoraExperiment.Config.Smoke with { Seed = seed, CheckpointSteps = steps };
        using var model = new TinyGpt(c.BaseModel);
        var losses = SinkLoraExperiment.TrainBase(model, c, c.Task, torch.CPU, steps, new Core.InlineProgress<string>(Console.WriteLine));
        using (var eval = c.Task.Generate(c.EvalBatch, c.PretrainLength, seed: 1_000_003 + c.Seed))
            Console.WriteLine($"trained {losses.Count} steps, final loss {losses[^1]:G4}, " +
                $"eval ppl@{c.PretrainLength} {SinkLoraExperiment.Perplexity(model, eval):F3}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, SinkLoraBaseRecipe.From(c), seed, steps, losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
