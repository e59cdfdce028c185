using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Papers.FreeSwim;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Checkpoints;

/// <summary>
/// P45 FreeSwim's checkpoint: a 4-layer class-conditional <see cref="TinyDiT"/> trained by flow matching on 16×16-pixel
/// synthetic shapes (one coloured square, circle or triangle per image; 8×8 tokens), batch 32, AdamW 2e-3 with warm-up
/// and cosine decay. Batches are drawn from <see cref="ShapeImages.Batch"/> with a per-step seed; noise and label drop
/// from one generator seeded with <c>seed</c>.
/// </summary>
public static class FreeSwimRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = FreeSwimCheckpoint.Name;
    /// <summary>Images per step.</summary>
    public const int BatchSize = 32;

    /// <summary>Trains with <paramref name="seed"/> and saves through <see cref="CheckpointStore"/> unless <paramref name="save"/> is false.</summary>
    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = new TinyDiT(FreeSwimCheckpoint.Config);
        var generator = new Generator((ulong)(seed + 1));
        var options = new TrainOptions(Steps: steps, LearningRate: 2e-3, WeightDecay: 0.0, WarmupSteps: Math.Min(100, steps / 10),
            StepsPerEpoch: Math.Max(1, steps / 2), ReportEvery: Math.Min(100, steps));
        var history = Trainer.Fit(model, step =>
        {
            var (images, labels, _) = ShapeImages.Batch(BatchSize, FreeSwimCheckpoint.NativePixels, seed: 1_000_003 * seed + step);
            using (images) using (labels) return model.FlowMatchingLoss(images, labels, generator);
        }, options, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), _ =>
        {
            var (images, labels, _) = ShapeImages.Batch(256, FreeSwimCheckpoint.NativePixels, seed: -1 - seed);
            using (images) using (labels)
            using (var loss = model.FlowMatchingLoss(images, labels, new Generator(7)))
            {
                double l = loss.item<float>();
                Console.WriteLine($"  eval: flow-matching loss {l:G4}");
                return new Dictionary<string, double> { ["loss"] = l };
            }
        });
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, FreeSwimCheckpoint.Config, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
