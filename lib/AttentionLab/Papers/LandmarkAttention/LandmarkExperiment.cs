using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>How a passkey sequence longer than the training length is read.</summary>
public enum LandmarkMethod
{
    /// <summary>Landmark memory: chunks, top-k block retrieval, position remapping (the paper's method).</summary>
    Landmark,
    /// <summary>The same retrieval without position remapping (the paper's ablation: extrapolation should fail).</summary>
    LandmarkNoRemap,
    /// <summary>The same model's training form over the whole sequence: every token attends to everything (positions beyond training).</summary>
    FullAttention,
    /// <summary>The same model on the last training-length window only (Transformer-XL-like window without memory).</summary>
    Window,
}

/// <summary>
/// P07's experiment: passkey retrieval with a landmark LM trained at one length (the shipped checkpoint, or a fallback
/// trained here), read at longer lengths with landmark memory (top-k), without remapping, with full attention and with
/// a training-length window; accuracy on the passkey digits and the keys each final query touches.
/// </summary>
public static class LandmarkExperiment
{
    /// <summary>The shipped checkpoint's model (lib/AttentionLab.Checkpoints LandmarkRecipe).</summary>
    public static readonly LandmarkLmConfig CheckpointModel = new(Layers: 2, DModel: 64, Heads: 4, TaskVocab: 32, BlockSize: 8);
    /// <summary>The checkpoint's training length (ordinary tokens) and passkey length.</summary>
    public const int CheckpointTrainLength = 64, CheckpointNeedleLength = 5;
    /// <summary>The checkpoint's name in data/models/manifest.json.</summary>
    public const string CheckpointName = "landmark-passkey";

    /// <summary>
    /// One run. Smoke: the shipped checkpoint evaluated at n ∈ {128, 512} (1× and 4× its training length) with k = 2, five
    /// depths × 16 sequences. Full: the same at up to 16× (2048) with k ∈ {1, 2, 4}.
    /// </summary>
    /// <param name="Model">model shape.</param>
    /// <param name="TrainLength">training length n_train (ordinary tokens).</param>
    /// <param name="NeedleLength">passkey digits.</param>
    /// <param name="EvalLengths">evaluation lengths n.</param>
    /// <param name="TopKs">k values of the landmark memory.</param>
    /// <param name="Depths">needle depths (each gets SamplesPerDepth sequences).</param>
    /// <param name="SamplesPerDepth">sequences per depth and length.</param>
    /// <param name="EvalBatch">sequences per forward pass.</param>
    /// <param name="Seed">evaluation data seed.</param>
    /// <param name="Checkpoint">checkpoint to load (null: train here).</param>
    /// <param name="TrainSteps">steps of the fallback training when no checkpoint is used.</param>
    /// <param name="MinGain">claim: landmark accuracy at the longest length minus the window's, at least this.</param>
    public sealed record Config(LandmarkLmConfig Model, int TrainLength, int NeedleLength, int[] EvalLengths, int[] TopKs, double[] Depths,
        int SamplesPerDepth, int EvalBatch, int Seed, string? Checkpoint, int TrainSteps, double MinGain)
    {
        public static Config Smoke => new(CheckpointModel, CheckpointTrainLength, CheckpointNeedleLength, new[] { 64, 256 }, new[] { 2 },
            new[] { 0.1, 0.3, 0.5, 0.7, 0.9 }, SamplesPerDepth: 16, EvalBatch: 40, Seed: 12345, Checkpoint: CheckpointName, TrainSteps: 0, MinGain: 0.3);
        public static Config Full => Smoke with { EvalLengths = new[] { 64, 128, 256, 512, 1024 }, TopKs = new[] { 1, 2, 4 }, SamplesPerDepth = 64, EvalBatch = 16 };
        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;
    }

    /// <summary>Loads (or trains) the model, then evaluates every method at every length.</summary>
    public static LandmarkResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        using var model = config.Model.Build();
        model.to(device);
        if (config.Checkpoint is not null)
        {
            CheckpointStore.Default().Load(model, config.Checkpoint);
            progress?.Report($"loaded checkpoint {config.Checkpoint}");
        }
        else
        {
            torch.manual_seed(config.Seed);
            var options = new TrainOptions(Steps: config.TrainSteps, LearningRate: 2e-3, WarmupSteps: Math.Min(100, config.TrainSteps / 10), ReportEvery: 50);
            Trainer.Fit(model, step => LandmarkPasskey.TrainLoss(model, config.Model, config.TrainLength, config.NeedleLength, 32, config.Seed, step),
                options, new InlineProgress<TrainProgress>(p => progress?.Report(p.ToString())));
        }
        model.eval();
        var rows = new List<LandmarkRow>();
        foreach (int n in config.EvalLengths)
        {
            var methods = new List<(LandmarkMethod Method, int K)> { (LandmarkMethod.FullAttention, 0), (LandmarkMethod.Window, 0) };
            methods.AddRange(config.TopKs.Select(k => (LandmarkMethod.Landmark, k)));
            methods.Add((LandmarkMethod.LandmarkNoRemap, config.TopKs.Contains(2) ? 2 : config.TopKs[0]));
            foreach (var (method, k) in methods)
            {
                var row = Evaluate(model, config, n, method, k);
                rows.Add(row);
                progress?.Report($"n = {n,5}  {method,-16} k = {k}  accuracy {row.Accuracy:P1}  attended {row.AttendedTokens}");
            }
        }
        var retrieval = RetrievalDemo(model, config);
        var weights = WeightsDemo(config.Seed);
        return new LandmarkResult(config, rows, retrieval, weights.Weights, weights.MaxError);
    }

    /// <summary>Accuracy on the passkey digits and the last query's cost for one method at length n.</summary>
    public static LandmarkRow Evaluate(TinyGpt model, Config config, int n, LandmarkMethod method, int k)
    {
        int lb = config.Model.BlockSize, l = lb + 1;
        long inserted = LandmarkTokens.InsertedLength(n, lb), window = LandmarkTokens.InsertedLength(config.TrainLength, lb);
        long correct = 0, scored = 0, attended = 0, bytes = 0;
        long perLayerKv = 4L * 2 * config.Model.DModel;                          // K and V of one position, all heads, float32
        var device = model.parameters().First().device;
        for (int d = 0; d < config.Depths.Length; d++)
            for (int done = 0; done < config.SamplesPerDepth; done += config.EvalBatch)
            {
                int count = Math.Min(config.EvalBatch, config.SamplesPerDepth - done);
                using var batch = LandmarkPasskey.Batch(config.Model, n, config.NeedleLength, config.Depths[d], count, config.Seed + 1000 * d + done + 17 * n, device);
                using var scope = NewDisposeScope();
                using var noGrad = torch.no_grad();
                Tensor logits, labels = batch.Labels;
                switch (method)
                {
                    case LandmarkMethod.FullAttention:
                        logits = model.call(batch.Tokens);
                        (attended, bytes) = (inserted, config.Model.Layers * perLayerKv * inserted);
                        break;
                    case LandmarkMethod.Window:
                        long start = Math.Max(0, (inserted - window + l - 1) / l * l);     // block-aligned, ≤ window positions
                        logits = model.call(batch.Tokens.narrow(1, start, inserted - start));
                        labels = batch.Labels.narrow(1, start, inserted - start);
                        (attended, bytes) = (inserted - start, config.Model.Layers * perLayerKv * (inserted - start));
                        break;
                    default:
                        using (var run = new LandmarkMemory(k, RemapPositions: method == LandmarkMethod.Landmark).Run(model, batch.Tokens))
                        {
                            logits = run.Logits.clone();
                            (attended, bytes) = (run.AttendedTokens, run.KvBytesPerStep);
                        }
                        break;
                }
                var mask = labels.ne(TokenBatch.Ignore);
                correct += logits.argmax(-1).eq(labels).logical_and(mask).sum().item<long>();
                scored += mask.sum().item<long>();
            }
        return new LandmarkRow(n, k, method, correct / (double)Math.Max(1, scored), attended, bytes, inserted);
    }

    /// <summary>
    /// One sequence at the longest length, cut right after its QUERY token and read with landmark memory (k = the first
    /// TopK): the retrieval softmax of that last query over the stored blocks, per layer averaged over heads, with the
    /// blocks that hold the needle.
    /// </summary>
    public static LandmarkRetrievalDemo RetrievalDemo(TinyGpt model, Config config, double depth = 0.3)
    {
        int n = config.EvalLengths.Max(), lb = config.Model.BlockSize;
        var device = model.parameters().First().device;
        var task = new PasskeyTask(VocabSize: config.Model.TaskVocab, Length: n, NeedleLength: config.NeedleLength, Depth: depth);
        using var raw = task.Generate(1, config.Seed + 99, device);
        using var scope = NewDisposeScope();
        long cut = raw.QueryPosition + 1;                                        // up to and including QUERY
        var (ids, _) = LandmarkTokens.Insert(raw.Tokens.narrow(1, 0, cut), lb, config.Model.LandmarkId);
        using var run = new LandmarkMemory(config.TopKs[0]).Run(model, ids);
        var perLayer = run.LastRetrieval.Select(r => r is null ? Array.Empty<double>()
            : r[0].select(1, r.shape[2] - 1).mean(new long[] { 0 }).to(ScalarType.Float64).cpu().data<double>().ToArray()).ToList();   // [S]
        long first = raw.MarkerPosition / lb, lastBlock = (raw.NeedleStart + raw.NeedleLength - 1) / lb;
        var needle = Enumerable.Range((int)first, (int)(lastBlock - first + 1)).ToArray();
        return new LandmarkRetrievalDemo(n, depth, config.TopKs[0], perLayer, needle);
    }

    /// <summary>Grouped weights of random scores (B = 1, H = 1, three blocks of ℓ_b = 4 and a partial one) next to the naive form.</summary>
    public static (Tensor Weights, double MaxError) WeightsDemo(int seed, int blockSize = 4, int length = 17)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var scores = torch.randn(new long[] { 1, 1, length, length }, dtype: ScalarType.Float64, generator: gen) * 2;
        var marks = LandmarkTokens.Mask(length, blockSize).unsqueeze(0);
        var fast = LandmarkAttention.GroupedWeights(scores, marks, blockSize);
        var naive = LandmarkNaive.GroupedWeights(scores, marks);
        double err = (fast - naive).abs().max().item<double>();
        return (fast[0, 0].MoveToOuterDisposeScope(), err);
    }
}
