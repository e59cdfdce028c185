using AttentionLab.Core;
using AttentionLab.Attention;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>
/// The shipped model of the retrieval-heads notebook: a 2-layer × 4-head attention-only TinyGpt (d 64, RoPE) trained on the
/// synthetic NIAH task (<see cref="Task"/>: haystack 8–48 filler tokens from the same 48 symbols as the needle, needle anywhere,
/// 3 value tokens to copy). It cannot
/// train inside the smoke notebook's minute (the spec: ≈ 2000 steps for its MQAR prototype), so it ships; regenerate with
/// <see cref="Command"/> (lib/AttentionLab.Checkpoints/RetrievalHeadsRecipe.cs). The Full preset trains its own model with
/// <see cref="Train"/>.
/// </summary>
public static class RetrievalHeadsCheckpoint
{
    /// <summary>Checkpoint name in data/models/manifest.json.</summary>
    public const string Name = "retrieval-heads-niah";
    /// <summary>Optimiser steps of the shipped checkpoint.</summary>
    public const int Steps = 2000;
    /// <summary>Sequences per step.</summary>
    public const int BatchSize = 64;
    /// <summary>The committed command that regenerates it.</summary>
    public const string Command = "dotnet run --project lib/AttentionLab.Checkpoints -c Release -- retrieval-heads --steps 2000 --seed 0";

    /// <summary>The task the checkpoint learned.</summary>
    public static readonly NiahTask Task = new();

    /// <summary>2 attention-only layers, 4 heads of width 16, RoPE.</summary>
    public static readonly TinyGptConfig Config = new(Layers: 2, DModel: 64, Heads: 4, VocabSize: Task.VocabSize,
        Positions: PositionKind.Rope, MaxLength: 64, Mlp: false);

    /// <summary>The trained model (sha256 checked against the manifest) on <paramref name="device"/>; the caller disposes it.</summary>
    public static TinyGpt Load(Device? device = null)
    {
        var model = new TinyGpt(Config);
        CheckpointStore.Default().Load(model, Name);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }

    /// <summary>Batch seed of a step (the recipe and the Full preset draw the same batches for the same seed).</summary>
    public static int BatchSeed(int seed, int step) => seed * 1_000_003 + step;

    /// <summary>
    /// Trains <paramref name="model"/> on <paramref name="task"/> (AdamW 3e-3, 100 warm-up steps, cosine decay) with the loss on
    /// the answer tokens; evaluates teacher-forced answer accuracy six times. Returns the history.
    /// </summary>
    public static TrainHistory Train(TinyGpt model, NiahTask task, int steps, int batchSize, int seed, IProgress<TrainProgress>? progress = null,
        Action<double>? onEval = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        Guard.Positive(steps, nameof(steps));
        Guard.Positive(batchSize, nameof(batchSize));
        var device = model.FinalNorm.Weight.device;
        var options = new TrainOptions(Steps: steps, LearningRate: 3e-3, WeightDecay: 0.01, WarmupSteps: Math.Min(100, steps / 10),
            StepsPerEpoch: Math.Max(1, steps / 6), ReportEvery: 100);
        return Trainer.Fit(model, step =>
        {
            var (x, y) = task.Batch(batchSize, BatchSeed(seed, step), device);
            using (x) using (y) return NiahTask.Loss(model.call(x), y);
        }, options, progress, _ =>
        {
            double acc = 0;
            for (int i = 0; i < 4; i++)
            {
                var (x, y) = task.Batch(64, -1 - seed - 7919 * i, device);
                using (x) using (y) using (var logits = model.call(x)) acc += NiahTask.Accuracy(logits, y) / 4;
            }
            onEval?.Invoke(acc);
            return new Dictionary<string, double> { ["accuracy"] = acc };
        });
    }
}
