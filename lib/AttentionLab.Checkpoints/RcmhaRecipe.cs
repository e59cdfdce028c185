using AttentionLab.Papers.Rcmha;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P24 RCMHA's four checkpoints, one per variant (MHA, MDHA, RMHA, RCMHA): the char LM of <see cref="RcmhaExperiment.Config.Smoke"/>
/// (d = 64, L = 2, H = 4, T = 128, batch 16, Moby-Dick) trained with <see cref="RcmhaExperiment.Train"/> on the same seeded windows,
/// one variant per command so that each run stays short.
/// </summary>
public static class RcmhaRecipe
{
    /// <summary>The recipe's name on the command line.</summary>
    public const string Name = RcmhaCheckpoint.Recipe;

    /// <summary>Optimiser steps of the shipped checkpoints.</summary>
    public const int DefaultSteps = RcmhaExperiment.Config.CheckpointSteps;

    /// <summary>The config the checkpoints are trained with (the smoke preset with <paramref name="steps"/> and <paramref name="seed"/>).</summary>
    public static RcmhaExperiment.Config Config(int steps, int seed) => RcmhaExperiment.Config.Smoke with { Steps = steps, Seed = seed };

    /// <summary>
    /// Trains the variant whose key is <paramref name="key"/>, printing validation accuracy at T and 2T, and saves it unless
    /// <paramref name="save"/> is false.
    /// </summary>
    public static int Run(string key, int steps, int seed, bool save, int evals = 4)
    {
        var variant = RcmhaCheckpoint.FromKey(key);
        if (variant is null)
        {
            Console.Error.WriteLine($"rcmha: expected a variant key, one of {string.Join(", ", RcmhaVariant.All.Select(RcmhaCheckpoint.Key))}; got '{key}'.");
            return 2;
        }
        var config = Config(steps, seed);
        var device = torch.CPU;
        using var net = RcmhaExperiment.Build(variant, config, seed);
        Console.WriteLine($"{variant.Name}: {net.ParameterCount:N0} parameters, {steps} steps of batch {config.BatchSize} × T {config.SeqLen}");
        var history = RcmhaExperiment.Train(net, config, steps, device, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), _ =>
        {
            var metrics = new Dictionary<string, double>();
            foreach (int t in new[] { config.SeqLen, 2 * config.SeqLen })
                metrics[$"accuracy@T={t}"] = RcmhaExperiment.Evaluate(net, t, 8, 8, device).Accuracy;
            Console.WriteLine("  eval: " + string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:F3}")));
            net.train();
            return metrics;
        }, stepsPerEpoch: Math.Max(1, steps / Math.Max(1, evals)));
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(net, RcmhaCheckpoint.Name(variant), config.ModelConfig(variant), seed, steps, history.Losses[^1],
                RcmhaCheckpoint.Command(variant, steps, seed));
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
