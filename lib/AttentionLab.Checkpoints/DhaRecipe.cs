using AttentionLab.Data;
using AttentionLab.Papers.Dha;
using AttentionLab.Train;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P14 DHA's checkpoint: the smoke run's MHA TinyGpt (L 2, d 64, H 8, RoPE) pretrained on Moby-Dick characters (T 64,
/// batch 16) by <see cref="DhaExperiment.Pretrain"/> — the same function the experiment's fallback calls, so the shipped
/// model is the one the run would train. The experiment converts it to GQA and DHA.
/// </summary>
public static class DhaRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = DhaExperiment.CheckpointName;

    /// <summary>The smoke config's pretraining recipe (its steps are the default).</summary>
    public static DhaExperiment.PretrainRecipe Recipe => DhaExperiment.Config.Smoke.Recipe;

    /// <summary>Trains and saves through <see cref="CheckpointStore"/> unless <paramref name="save"/> is false.</summary>
    public static int Run(int steps, int seed, bool save, string command)
    {
        var recipe = Recipe with { Steps = steps, Seed = seed };
        var corpus = TextCorpus.MobyDick();
        var (model, losses) = DhaExperiment.Pretrain(recipe, corpus, TorchSharp.torch.CPU, new Core.InlineProgress<string>(Console.WriteLine));
        using (model)
        {
            Console.WriteLine($"trained {losses.Count} steps, final loss {losses[^1]:G4}");
            if (save)
            {
                var entry = CheckpointStore.Default().Save(model, Name, recipe, seed, steps, losses[^1], command);
                Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
            }
        }
        return 0;
    }
}
