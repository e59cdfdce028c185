using AttentionLab.Attention;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Checkpoints;

/// <summary>
/// The shipped induction checkpoint: a 2-layer attention-only TinyGpt (RoPE, base 100) trained on a repeated random
/// segment that sits anywhere among random tokens, so only an induction circuit predicts the second copy — a
/// previous-token head in layer 0 whose output the layer-1 heads match against the current token (K-composition).
/// </summary>
/// <remarks>
/// Why this task and not the packed one ([BOS] filler S S, the second copy ending the sequence): on that layout the model
/// reached 99.5 % copy accuracy with <i>inverted</i> heads — layer 0 avoided the previous token, layer 1 avoided the
/// induction target (0.01 of its attention) — so the answer arrived as "everything but the target" and the detector,
/// which measures attention on the pattern, found nothing (docs/decisions.md, "Induction checkpoint").
/// Here: L_n ∈ [4, 12], a gap g_n ∈ [0, 16] of random tokens between the copies, the rest of the slack split at random
/// before and after; vocabulary 16 (15 segment tokens). RoPE base 100 (θ_i = 100^{−2i/16}) gives the 16-dim heads mid
/// frequencies, so a sharp previous-token kernel forms within a few hundred steps; every base-100 trial grew a positive
/// (detectable) circuit, while base 10⁴ grew inverted ones in 2 of 3.
/// </remarks>
public static class InductionRecipe
{
    /// <summary>Checkpoint name in data/models/manifest.json (file &lt;Name&gt;.bin).</summary>
    public const string Name = "induction-2l-attn-only";
    /// <summary>Optimiser steps of the shipped checkpoint.</summary>
    public const int DefaultSteps = 1000;
    /// <summary>Sequences per training step.</summary>
    public const int BatchSize = 32;

    /// <summary>The model: 2 attention-only layers, 4 heads of width 16, RoPE with base 100.</summary>
    public static readonly TinyGptConfig Config = new(Layers: 2, DModel: 64, Heads: 4, VocabSize: 16,
        Positions: PositionKind.Rope, RopeBase: 100, MaxLength: 64, Mlp: false);

    /// <summary>The data: a repeated segment anywhere among random tokens (sequence length 1 + 2·12 + 16 = 41).</summary>
    public static readonly InductionTask Task = new(VocabSize: 16, SegmentLength: 12, MinSegmentLength: 4, MaxGap: 16, RandomOffset: true);

    /// <summary>Seed of the batch of training step <paramref name="step"/>: every step draws fresh sequences.</summary>
    public static int BatchSeed(int seed, int step) => seed * 1_000_003 + step;

    /// <summary>
    /// Trains with <paramref name="seed"/>; saves to data/models/ through <see cref="CheckpointStore"/> unless <paramref name="save"/> is false.
    /// </summary>
    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(Config);
        var options = new TrainOptions(Steps: steps, LearningRate: 3e-3, WeightDecay: 0.01, WarmupSteps: 100,
            StepsPerEpoch: Math.Max(1, steps / 8), ReportEvery: 100);
        var history = Trainer.Fit(model, step =>
        {
            using var batch = Task.Generate(BatchSize, BatchSeed(seed, step));
            return batch.Loss(model.call(batch.Tokens));                         // cross-entropy on the second copy only
        }, options, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), _ =>
        {
            using var batch = Task.Generate(256, seed: -1 - seed);
            using var logits = model.call(batch.Tokens);
            using var induction = HeadDetector.Detect(model, batch.Tokens, HeadPattern.Induction);
            using var previous = HeadDetector.Detect(model, batch.Tokens, HeadPattern.PreviousToken);
            var metrics = new Dictionary<string, double>
            {
                ["accuracy"] = batch.Accuracy(logits),
                ["max induction L1"] = induction[1].max().item<float>(),
                ["max previous-token L0"] = previous[0].max().item<float>(),
            };
            Console.WriteLine("  eval: " + string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:F3}")));
            Console.WriteLine($"  induction [L, H]: {Rows(induction)}   previous-token [L, H]: {Rows(previous)}");
            return metrics;
        });
        Console.WriteLine($"trained {history.Losses.Count} steps in {history.Elapsed.TotalSeconds:F1} s, final loss {history.Losses[^1]:G4}");
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, Config, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }

    static string Rows(Tensor scores) => string.Join(" | ", Enumerable.Range(0, (int)scores.shape[0])
        .Select(l => string.Join(" ", scores[l].data<float>().ToArray().Select(v => v.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))));
}
