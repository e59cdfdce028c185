using AttentionLab.Attention;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Checkpoints;

/// <summary>
/// A 2-layer attention-only TinyGpt (RoPE) trained on repeated random segments of varying length, so the copy task can
/// only be solved by an induction circuit (a previous-token head in layer 0 composing with an induction head in layer 1).
/// </summary>
public static class InductionRecipe
{
    public const string Name = "induction-2l-attn-only";
    public static readonly TinyGptConfig Config = new(Layers: 2, DModel: 64, Heads: 4, VocabSize: 64, OutputFeatures: 1,
        Positions: PositionKind.Rope, MaxLength: 64, Mlp: false);
    public static readonly InductionTask Task = new(VocabSize: 64, SegmentLength: 16, MinSegmentLength: 6);

    public static int Run(int steps, int seed, bool save, string command)
    {
        torch.manual_seed(seed);
        using var model = new TinyGpt(Config);
        var options = new TrainOptions(Steps: steps, LearningRate: 1e-3, WarmupSteps: 100, StepsPerEpoch: Math.Max(1, steps / 8), ReportEvery: 100);
        var history = Trainer.Fit(model, step =>
        {
            using var batch = Task.Generate(64, seed: seed * 1_000_003 + step);
            return batch.Loss(model.call(batch.Tokens));
        }, options, new Core.InlineProgress<TrainProgress>(p => Console.WriteLine(p)), epoch =>
        {
            using var batch = Task.Generate(256, seed: -1 - seed);
            using var logits = model.call(batch.Tokens);
            using var scores = HeadDetector.Detect(model, batch.Tokens, HeadPattern.Induction);
            using var previous = HeadDetector.Detect(model, batch.Tokens, HeadPattern.PreviousToken);
            var metrics = new Dictionary<string, double>
            {
                ["accuracy"] = batch.Accuracy(logits),
                ["max induction L1"] = scores[1].max().item<float>(),
                ["max previous-token L0"] = previous[0].max().item<float>(),
            };
            if (Environment.GetEnvironmentVariable("ATTNLAB_DEBUG") == "1")
            {
                var (_, cache) = model.RunWithCache(batch.Tokens, n => n.EndsWith("hook_pattern"));
                using (cache)
                    for (int l = 0; l < 2; l++)
                    {
                        var pat = cache["pattern", l];   // [B,H,T,T]
                        var prev = pat.diagonal(-1, -2, -1).mean(new long[] { 0, 2 });
                        var bos = pat.select(3, 0).mean(new long[] { 0, 2 });
                        var self = pat.diagonal(0, -2, -1).mean(new long[] { 0, 2 });
                        Console.WriteLine($"  L{l} prev {string.Join(" ", prev.data<float>().ToArray().Select(v => v.ToString("F2")))}  bos {string.Join(" ", bos.data<float>().ToArray().Select(v => v.ToString("F2")))}  self {string.Join(" ", self.data<float>().ToArray().Select(v => v.ToString("F2")))}");
                    }
            }
            Console.WriteLine("  eval: " + string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:F3}")));
            return metrics;
        });
        if (save)
        {
            var entry = CheckpointStore.Default().Save(model, Name, Config, seed, steps, history.Losses[^1], command);
            Console.WriteLine($"saved {entry.File} sha256 {entry.Sha256}");
        }
        return 0;
    }
}
