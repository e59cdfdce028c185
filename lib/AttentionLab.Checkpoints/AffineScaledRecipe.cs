using AttentionLab.Data;
using AttentionLab.Papers.AffineScaled;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// The shipped checkpoints of P31 (Affine-Scaled Attention): three character LMs on Moby-Dick — softmax, sink logit, affine —
/// trained from the same seed on the same batches with <see cref="AffineScaledExperiment.Train"/> at the smoke config, for
/// <see cref="AffineScaledExperiment.Config.CheckpointSteps"/> steps. The notebook reads their attention statistics; its
/// gradient-norm comparison trains live (docs/decisions.md).
/// </summary>
public static class AffineScaledRecipe
{
    /// <summary>The dispatch name (one checkpoint per variant: affine-scaled-softmax, -sink, -affine).</summary>
    public const string Name = "affine-scaled";

    /// <summary>The config the smoke run loads with.</summary>
    public static AffineScaledExperiment.Config Config => AffineScaledExperiment.Config.Smoke;

    public static int DefaultSteps => Config.CheckpointSteps;

    public static int Run(int steps, int seed, bool save, string command)
    {
        var c = Config with { CheckpointSteps = steps, Seed = seed };
        var corpus = TextCorpus.MobyDick();
        using var eval = corpus.Sample(c.EvalBatch, c.SeqLen, seed: 1_000_003 + c.Seed, split: CorpusSplit.Validation);
        foreach (var variant in Enum.GetValues<AffineVariant>())
        {
            torch.manual_seed(c.Seed);
            using var model = AffineScaledExperiment.Build(c, variant, corpus.VocabSize);
            var history = AffineScaledExperiment.Train(model, corpus, c, steps, torch.CPU, new Core.InlineProgress<string>(Console.WriteLine),
                variant.ToString());
            var stats = AffineScaledExperiment.Statistics(model, variant, eval, "recipe");
            Console.WriteLine($"{variant}: {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}, " +
                $"val loss {stats.ValLoss:F4}, first-token mass {stats.FirstTokenMass.Average():F3}, entropy {stats.Entropy.Average():F3}");
            if (save)
            {
                var entry = CheckpointStore.Default().Save(model, AffineScaledExperiment.CheckpointName(variant), c.CheckpointConfig(variant, corpus.VocabSize),
                    seed, steps, history.Losses[^1], command);
                Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
            }
        }
        return 0;
    }
}
