using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.CircuitReuse;

/// <summary>
/// The shipped model of the circuit-reuse notebook: a 3-layer × 4-head TinyGpt (d 64, RoPE base 100, MLPs, T ≤ 16)
/// trained on an even mixture (each batch half and half) of the IOI and Colored-Objects analogues (<see cref="ReuseData"/>), the loss on the answer
/// token at END. It cannot train inside the smoke notebook's minute (spec §4: ≈ 1500 steps; it took more here), so it ships; regenerate with
/// <see cref="Command"/> (lib/AttentionLab.Checkpoints/CircuitReuseRecipe.cs).
/// </summary>
public static class CircuitReuseCheckpoint
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = "circuit-reuse-ioi-co";
    /// <summary>Optimiser steps of the shipped checkpoint (each batch half IOI, half CO).</summary>
    public const int Steps = 1500;
    /// <summary>Sequences per step.</summary>
    public const int BatchSize = 512;
    /// <summary>The committed command that regenerates it.</summary>
    public const string Command = "dotnet run --project lib/AttentionLab.Checkpoints -c Release -- circuit-reuse --steps 1500 --seed 0";

    /// <summary>3 layers, 4 heads of width 16, RoPE (base 100, as the induction checkpoint), MLP ratio 4.</summary>
    public static readonly TinyGptConfig Config = new(Layers: 3, DModel: 64, Heads: 4, VocabSize: ReuseVocabulary.Size,
        Positions: PositionKind.Rope, RopeBase: 100, MaxLength: 16, Mlp: true);

    /// <summary>The trained model (sha256 checked against the manifest) on <paramref name="device"/>; the caller disposes it.</summary>
    public static TinyGpt Load(Device? device = null)
    {
        var model = new TinyGpt(Config);
        CheckpointStore.Default().Load(model, Name);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }

    /// <summary>Cross-entropy of the END position's logits [B, T, V] against the answers [B].</summary>
    public static Tensor Loss(Tensor logits, Tensor answers) => nn.functional.cross_entropy(logits.select(1, -1), answers);

    /// <summary>Fraction of prompts whose END argmax is the answer.</summary>
    public static double Accuracy(Tensor logits, Tensor answers)
    {
        using var scope = NewDisposeScope();
        return logits.select(1, -1).argmax(-1).eq(answers).to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>
    /// Trains on the mixture (AdamW 3e-3, warm-up, cosine decay; each batch half IOI, half CO) and evaluates both tasks'
    /// accuracy six times. Returns the history.
    /// </summary>
    public static TrainHistory Train(TinyGpt model, int steps, int batchSize, int seed, IProgress<TrainProgress>? progress = null,
        Action<double, double>? onEval = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.Positive(steps, nameof(steps));
        Guard.Positive(batchSize, nameof(batchSize));
        var device = model.FinalNorm.Weight.device;
        var options = new TrainOptions(Steps: steps, LearningRate: 3e-3, WeightDecay: 0.01, WarmupSteps: Math.Min(100, steps / 10),
            StepsPerEpoch: Math.Max(1, steps / 6), ReportEvery: 100);
        return Trainer.Fit(model, step =>
        {
            var (x, y) = ReuseData.MixedBatch(batchSize, seed * 1_000_003 + step, device);
            using (x) using (y) return Loss(model.call(x), y);
        }, options, progress, _ =>
        {
            var acc = new double[2];
            foreach (var task in new[] { ReuseTask.Ioi, ReuseTask.ColoredObjects })
            {
                var (x, y) = ReuseData.Batch(task, 256, -1 - seed, device);
                using (x) using (y) using (var logits = model.call(x)) acc[(int)task] = Accuracy(logits, y);
            }
            onEval?.Invoke(acc[0], acc[1]);
            return new Dictionary<string, double> { ["ioi_accuracy"] = acc[0], ["co_accuracy"] = acc[1] };
        });
    }
}
