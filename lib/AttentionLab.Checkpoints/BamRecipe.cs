using AttentionLab.Papers.Bam;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P04 BAM's shipped checkpoint: the dense parallel-block seed (trained on the three-domain mixture) and its three branches
/// (each continued on one domain) of <see cref="BamExperiment.Config.Smoke"/>, in one file, trained by
/// <see cref="BamExperiment.TrainSeedAndBranches"/> with the preset's <see cref="BamExperiment.Config.Key"/> (seed 600 steps,
/// branches 3 × 300, batch 32). The notebook loads it and runs only the Mix step.
/// </summary>
public static class BamRecipe
{
    /// <summary>The recipe's name on the command line and in the manifest.</summary>
    public const string Name = BamCheckpoint.Name;

    /// <summary>Seed steps of the shipped checkpoint (the branches take <see cref="BamExperiment.Config.BranchSteps"/> each).</summary>
    public static int DefaultSteps => BamExperiment.Config.Smoke.SeedSteps;

    public static int Run(int steps, int seed, bool save, string command)
    {
        var config = BamExperiment.Config.Smoke with { SeedSteps = steps, Seed = seed };
        var device = torch.CPU;
        using var models = new BamCheckpoint(config.Model, BamDomains.Count);
        Console.WriteLine($"seed {config.SeedSteps} steps, branches {BamDomains.Count} × {config.BranchSteps} steps, " +
            $"batch {config.BatchSize} × {config.SeqLen}");
        BamExperiment.TrainSeedAndBranches(models, config, device, new Core.InlineProgress<string>(Console.WriteLine));
        var evals = Enumerable.Range(0, BamDomains.Count)
            .Select(d => BamDomains.Batch(config.EvalPerDomain, config.SeqLen, seed: 1_000_003 + 17 * d + config.Seed, (BamDomain)d, device)).ToList();
        var losses = new[] { models.Seed }.Concat(models.Branches).Select(m => BamExperiment.DomainLosses(m, evals)).ToList();
        foreach (var (l, i) in losses.Select((l, i) => (l, i)))
            Console.WriteLine($"  {(i == 0 ? "seed" : $"branch {(BamDomain)(i - 1)}")}: validation loss per domain " +
                string.Join(", ", l.Select(v => v.ToString("F3"))));
        foreach (var e in evals) e.Dispose();
        if (save)
        {
            var entry = CheckpointStore.Default().Save(models, Name, config.Key, seed, steps, losses[0].Average(), command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
