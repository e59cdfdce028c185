using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>Sizes of the trained-model needle test: one attention layer (TinyGpt, no MLP, no positions) per variant, same budget.</summary>
public sealed record S2NeedleConfig(int Length, int VocabSize, int DModel, int Heads, int Block, int LocalBlocks, int VertStride,
    int Steps, int BatchSize, double LearningRate, int TestDepths, int TestPerDepth, int Seed)
{
    public S2NeedleTask Task => new(VocabSize, Length);

    /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
    public S2NeedleConfig Validate()
    {
        Guard.Positive(Length, nameof(Length)); Guard.Positive(VocabSize, nameof(VocabSize)); Guard.Positive(DModel, nameof(DModel));
        Guard.Positive(Heads, nameof(Heads)); Guard.Positive(Block, nameof(Block)); Guard.Positive(LocalBlocks, nameof(LocalBlocks));
        Guard.Positive(VertStride, nameof(VertStride)); Guard.Positive(Steps, nameof(Steps)); Guard.Positive(BatchSize, nameof(BatchSize));
        Guard.Positive(TestDepths, nameof(TestDepths)); Guard.Positive(TestPerDepth, nameof(TestPerDepth));
        if (DModel % Heads != 0) throw new ArgumentException($"Heads {Heads} must divide DModel {DModel}.", nameof(Heads));
        if (!(LearningRate > 0)) throw new ArgumentException($"LearningRate must be positive, got {LearningRate}.", nameof(LearningRate));
        return this;
    }

    /// <summary>Test depths 0, 1/(n−1), …, 1.</summary>
    public double[] Depths => Enumerable.Range(0, TestDepths).Select(i => TestDepths == 1 ? 0.5 : i / (double)(TestDepths - 1)).ToArray();
}

/// <summary>One trained variant: accuracy per test depth, overall, on the needles the homogeneous pattern cannot see, loss and time.</summary>
public sealed record TrainedNeedle(string Variant, double[] DepthAccuracy, double Accuracy, double OffStrideAccuracy, double FinalLoss,
    double TrainSeconds, long Params);

/// <summary>
/// The trained-model needle test (spec §4/§6): the same one-layer TinyGpt with dense attention, the homogeneous stride, the
/// heterogeneous S2 pattern and the hybrid (heterogeneous with one dense head), each trained from the same seed on the same
/// batches for the same steps, then scored on fresh rows at fixed depths.
/// </summary>
public static class S2NeedleTraining
{
    /// <summary>The mixer of <paramref name="variant"/> (dense: the library's causal softmax attention).</summary>
    public static nn.Module<Tensor, Tensor> Mixer(string variant, S2NeedleConfig c) => variant switch
    {
        "dense" => new CausalSelfAttention(c.DModel, c.Heads),
        "homogeneous" => new S2SelfAttention(c.DModel, c.Heads, c.Block, c.LocalBlocks, c.VertStride, homoHead: true),
        "heterogeneous" => new S2SelfAttention(c.DModel, c.Heads, c.Block, c.LocalBlocks, c.VertStride),
        "hybrid" => new S2SelfAttention(c.DModel, c.Heads, c.Block, c.LocalBlocks, c.VertStride, denseHeads: 1),
        _ => throw new ArgumentException($"unknown variant '{variant}'.", nameof(variant)),
    };

    /// <summary>True when the homogeneous pattern cannot see a needle at <paramref name="position"/> from the last position.</summary>
    public static bool OffStride(S2NeedleConfig c, int position)
    {
        int r0 = S2Pattern.Residues(c.Heads, c.VertStride, homoHead: true)[0]!.Value;
        int jb = position / c.Block, ib = (c.Length - 1) / c.Block;
        return ib - jb >= c.LocalBlocks && jb % c.VertStride != r0;
    }

    /// <summary>Trains and scores each variant in turn; one progress line per variant.</summary>
    public static IReadOnlyList<TrainedNeedle> Run(S2NeedleConfig config, IReadOnlyList<string> variants, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(variants);
        config.Validate();
        var task = config.Task;
        var (train, _) = task.Generate(config.Steps * config.BatchSize, config.Seed, device: device);
        var tests = config.Depths.Select((d, i) => task.Generate(config.TestPerDepth, config.Seed + 1 + i, d, device)).ToList();
        try
        {
            var results = new List<TrainedNeedle>();
            foreach (var variant in variants)
            {
                var r = One(variant, config, train, tests, device);
                progress?.Report($"  trained {variant}: needle accuracy {r.Accuracy:P1} (off-stride {r.OffStrideAccuracy:P1}), loss {r.FinalLoss:F3}, " +
                    $"{r.TrainSeconds:F1} s");
                results.Add(r);
            }
            return results;
        }
        finally
        {
            train.Dispose();
            foreach (var (b, _) in tests) b.Dispose();
        }
    }

    static TrainedNeedle One(string variant, S2NeedleConfig c, TokenBatch train, IReadOnlyList<(TokenBatch Batch, int[] Positions)> tests, Device device)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(c.Seed);
        var model = new TinyGptConfig(Layers: 1, DModel: c.DModel, Heads: c.Heads, VocabSize: c.VocabSize, Mlp: false, MaxLength: c.Length);
        using var net = new TinyGpt(model, _ => Mixer(variant, c)).to(device);
        var options = new TrainOptions(c.Steps, c.LearningRate, WarmupSteps: c.Steps / 10, ReportEvery: c.Steps);
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)c.BatchSize, (step + 1L) * c.BatchSize, device: device);
            var logits = net.call(train.Tokens.index_select(0, rows)).select(1, -1);           // only the last position is scored
            return nn.functional.cross_entropy(logits, train.Labels.index_select(0, rows).select(1, -1));
        }, options);
        net.eval();
        var perDepth = new double[tests.Count];
        double off = 0;
        int offCount = 0;
        using (torch.no_grad())
            for (int i = 0; i < tests.Count; i++)
            {
                var (batch, positions) = tests[i];
                var hit = net.call(batch.Tokens).select(1, -1).argmax(-1).eq(batch.Labels.select(1, -1)).cpu().data<bool>().ToArray();
                perDepth[i] = hit.Count(h => h) / (double)hit.Length;
                for (int n = 0; n < hit.Length; n++)
                    if (OffStride(c, positions[n])) { offCount++; off += hit[n] ? 1 : 0; }
            }
        return new TrainedNeedle(variant, perDepth, perDepth.Average(), offCount == 0 ? double.NaN : off / offCount, history.Losses[^1],
            history.Elapsed.TotalSeconds, net.ParameterCount);
    }
}
