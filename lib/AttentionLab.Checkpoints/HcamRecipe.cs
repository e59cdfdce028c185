using AttentionLab.Papers.Hcam;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P20 HCAM's three checkpoints, one per model of the comparison (local only, full attention with RoPE, local + HCAM): the
/// smoke config of <see cref="HcamExperiment.Config.Smoke"/> (C = 8, E = 4, D_train = 8, d = 48, batch 32) trained with
/// <see cref="HcamExperiment.Train"/> on the same seeded batches, one model per command so that each run stays short.
/// </summary>
public static class HcamRecipe
{
    /// <summary>The recipe's name on the command line.</summary>
    public const string Name = HcamCheckpoint.Recipe;

    /// <summary>Optimiser steps of the shipped checkpoints.</summary>
    public const int DefaultSteps = HcamCheckpoint.Steps;

    /// <summary>The config the checkpoints are trained with (the smoke preset with <paramref name="steps"/> and <paramref name="seed"/>).</summary>
    public static HcamExperiment.Config Config(int steps, int seed) => HcamExperiment.Config.Smoke with { Steps = steps, Seed = seed };

    /// <summary>
    /// Trains the model whose key is <paramref name="key"/> (local, full or hcam), printing the accuracy at D_train and 4× every
    /// steps/<paramref name="evals"/> steps, and saves it unless <paramref name="save"/> is false.
    /// </summary>
    public static int Run(string key, int steps, int seed, bool save, int evals = 6)
    {
        var model = HcamCheckpoint.Models.FirstOrDefault(m => m.Key == key).Model;
        if (model is null)
        {
            Console.Error.WriteLine($"hcam: expected a model key, one of {string.Join(", ", HcamCheckpoint.Models.Select(m => m.Key))}; got '{key}'.");
            return 2;
        }
        var config = Config(steps, seed);
        var device = torch.CPU;
        using var net = HcamExperiment.Build(model, config, seed);
        Console.WriteLine($"{model}: {net.ParameterCount:N0} parameters, {steps} steps of batch {config.BatchSize}, D_train = {config.TrainDistractors}");
        var history = HcamExperiment.Train(net, config, device, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), _ =>
        {
            var metrics = new Dictionary<string, double>();
            foreach (int d in new[] { config.TrainDistractors, 4 * config.TrainDistractors })
                metrics[$"accuracy@D={d}"] = HcamExperiment.Evaluate(net, model, config with { EvalEpisodes = 64 }, d, device).Accuracy;
            Console.WriteLine("  eval: " + string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:F3}")));
            net.train();
            return metrics;
        }, stepsPerEpoch: Math.Max(1, steps / Math.Max(1, evals)));
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(net, HcamCheckpoint.Name(model), config.ModelConfig(model), seed, steps, history.Losses[^1],
                HcamCheckpoint.Command(model, steps, seed));
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
