using AttentionLab.Papers.LandmarkAttention;
using AttentionLab.Train;
using TorchSharp;

namespace AttentionLab.Checkpoints;

/// <summary>
/// The shipped landmark checkpoint (P07): a TinyGpt with landmark-attention mixers (RoPE, grouped softmax) trained on
/// passkey retrieval at <see cref="TrainLength"/> ordinary tokens with a landmark after every ℓ_b tokens, needle depth
/// uniform per step. The notebook evaluates it at longer contexts with <see cref="LandmarkMemory"/>.
/// </summary>
public static class LandmarkRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = "landmark-passkey";
    public const int DefaultSteps = 2500;
    public const int BatchSize = 32;

    /// <summary>The model and data shape the experiment reads (<see cref="LandmarkExperiment.Config"/> uses the same).</summary>
    public static LandmarkLmConfig Model => LandmarkExperiment.CheckpointModel;
    public static int TrainLength => LandmarkExperiment.CheckpointTrainLength;
    public static int NeedleLength => LandmarkExperiment.CheckpointNeedleLength;

    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = Model.Build();
        var options = new TrainOptions(Steps: steps, LearningRate: 2e-3, WeightDecay: 0.01, WarmupSteps: Math.Min(100, steps / 10),
            StepsPerEpoch: Math.Max(1, steps / 6), ReportEvery: 50);
        var history = Trainer.Fit(model, step => LandmarkPasskey.TrainLoss(model, Model, TrainLength, NeedleLength, BatchSize, seed, step),
            options, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), _ =>
            {
                var metrics = new Dictionary<string, double>();
                foreach (var depth in new[] { 0.1, 0.5, 0.9 })
                {
                    using var batch = LandmarkPasskey.Batch(Model, TrainLength, NeedleLength, depth, 64, seed: -1 - seed);
                    using var logits = model.call(batch.Tokens);
                    metrics[$"accuracy@{depth}"] = batch.Accuracy(logits);
                }
                Console.WriteLine("  eval: " + string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:F3}")));
                return metrics;
            });
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, Model, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
