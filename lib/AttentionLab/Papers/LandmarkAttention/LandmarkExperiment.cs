using AttentionLab.Attention;
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
/// P07's experiment: an exactness phase on toy tensors (grouped softmax vs its loop twin; memory inference vs its loop
/// twin over k &lt; S, k = S, T not a multiple of the block, several heads; k ≥ S vs the training form), then passkey
/// retrieval with a landmark LM trained at one length (the shipped checkpoint, or a fallback trained here), read at longer
/// lengths with landmark memory (top-k), without remapping, with full attention over the whole context and with a
/// training-length window; accuracy on the passkey digits and the keys each final query touches.
/// </summary>
public sealed class LandmarkExperiment : IPaperExperiment<LandmarkExperiment.Config, LandmarkResult>
{
    LandmarkExperiment() { }

    /// <summary>P07 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(7, "Landmark Attention: random-access infinite context length", "landmark-attention");

    /// <summary>The shipped checkpoint's model (lib/AttentionLab.Checkpoints LandmarkRecipe).</summary>
    public static readonly LandmarkLmConfig CheckpointModel = new(Layers: 2, DModel: 64, Heads: 4, TaskVocab: 32, BlockSize: 8);
    /// <summary>The checkpoint's training length (ordinary tokens) and passkey length.</summary>
    public const int CheckpointTrainLength = 64, CheckpointNeedleLength = 5;
    /// <summary>The checkpoint's name in data/models/manifest.json.</summary>
    public const string CheckpointName = "landmark-passkey";

    /// <summary>
    /// One run. Smoke: the shipped checkpoint evaluated at n ∈ {64, 256, 512} (1×, 4× and 8× its training length; 8× is
    /// the spec's §6 length) with k = 2, five depths × 16 sequences. Full (GPU): also 16× and 64× (4096) with k ∈ {1, 2, 4},
    /// 64 sequences per depth (full attention over 4.6k positions is the expensive part).
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
    /// <param name="MinAccuracy">claim: landmark (k = 2) digit accuracy at every n &gt; n_train at least this (spec §6: 0.8).</param>
    public sealed record Config(LandmarkLmConfig Model, int TrainLength, int NeedleLength, int[] EvalLengths, int[] TopKs, double[] Depths,
        int SamplesPerDepth, int EvalBatch, int Seed, string? Checkpoint, int TrainSteps, double MinAccuracy) : IPaperConfig<Config>
    {
        public static Config Smoke => new(CheckpointModel, CheckpointTrainLength, CheckpointNeedleLength, new[] { 64, 256, 512 }, new[] { 2 },
            new[] { 0.1, 0.3, 0.5, 0.7, 0.9 }, SamplesPerDepth: 16, EvalBatch: 40, Seed: 12345, Checkpoint: CheckpointName, TrainSteps: 0,
            MinAccuracy: 0.8) { Size = "smoke" };
        public static Config Full => Smoke with
        {
            EvalLengths = new[] { 64, 256, 512, 1024, 4096 }, TopKs = new[] { 1, 2, 4 }, SamplesPerDepth = 64, EvalBatch = 4, Size = "full",
        };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>Where position remapping puts the retrieved blocks (official code by default).</summary>
        public LandmarkSlots Slots { get; init; } = LandmarkSlots.Official;

        /// <summary>The k the claim reads (2, the spec's, when present; else the first).</summary>
        public int ClaimK => TopKs.Contains(2) ? 2 : TopKs[0];
    }

    /// <summary>Exactness phase, then loads (or trains) the model and evaluates every method at every length.</summary>
    public static LandmarkResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.EvalLengths.Length == 0 || config.TopKs.Length == 0 || config.Depths.Length == 0)
            throw new ArgumentException("EvalLengths, TopKs and Depths must not be empty.", nameof(config));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var exactness = Exactness(device, config.Seed);
        progress?.Report($"exactness: grouped softmax vs naive {Num.Sci(exactness.GroupedMaxAbs)}, memory vs loop twin {Num.Sci(exactness.TwinWorst)} " +
                         $"({exactness.TwinCases.Count} cases), " +
                         $"k ≥ S vs training form {Num.Sci(exactness.AllBlocksWorst)}  [{clock.Elapsed.TotalSeconds:F1} s]");
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
            methods.Add((LandmarkMethod.LandmarkNoRemap, config.ClaimK));
            foreach (var (method, k) in methods)
            {
                var row = Evaluate(model, config, n, method, k);
                rows.Add(row);
                progress?.Report($"n = {n,5}  {method,-16} k = {k}  accuracy {row.Accuracy:P1}  attended {row.AttendedTokens}  " +
                    $"[{clock.Elapsed.TotalSeconds:F1} s]");
            }
        }
        var retrieval = RetrievalDemo(model, config);
        var weights = WeightsDemo(config.Seed);
        progress?.Report($"done in {clock.Elapsed.TotalSeconds:F1} s");
        return new LandmarkResult(config, exactness, rows, retrieval, weights.Weights, weights.MaxError, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// The exactness phase on float64 toy tensors (seeded): the grouped softmax (weights and outputs) against
    /// <see cref="LandmarkNaive"/>, its row sums and landmark columns; the memory inference against
    /// <see cref="LandmarkMemoryNaive"/> for B = 2, T = 43 (ℓ_b = 4: eight blocks and three tokens), H = 3, D = 6 over
    /// k ∈ {0, 1, 2, 3, S}, chunks of 1–3 blocks, both selection rules, both slot placements and no remapping; and the memory
    /// with k = S (every block retrieved) against the training form with RoPE at the true positions.
    /// </summary>
    public static LandmarkExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64, generator: gen).to(device);

        // Grouped softmax: B = 2, H = 3, T = 23 (four blocks of ℓ_b = 4 and a partial one).
        const int gt = 23, glb = 4;
        var scores = R(2, 3, gt, gt) * 2;
        var marks = LandmarkTokens.Mask(gt, glb, device).unsqueeze(0).expand(2, gt).contiguous();
        var fast = LandmarkAttention.GroupedWeights(scores, marks, glb);
        double weightsErr = (fast - LandmarkNaive.GroupedWeights(scores, marks)).abs().max().item<double>();
        var (q5, k5, v5) = (R(2, gt, 3, 5), R(2, gt, 3, 5), R(2, gt, 3, 5));
        double attendErr = (LandmarkAttention.Attend(q5, k5, v5, glb) - LandmarkNaive.Attend(q5, k5, v5, marks)).abs().max().item<double>();
        double rowDev = (fast.sum(-1) - 1).abs().max().item<double>();
        double landmarkCols = fast.index_select(3, marks[0].nonzero().squeeze(1)).abs().max().item<double>();

        // Memory inference vs the loop twin.
        const int t = 43, lb = 4, blocks = t / (lb + 1);
        var (q, k, v) = (R(2, t, 3, 6) * 1.5, R(2, t, 3, 6) * 1.5, R(2, t, 3, 6));
        var cases = new (string Name, LandmarkMemory Memory)[]
        {
            ("k = 0 (chunk only), chunk 2", new LandmarkMemory(0, ChunkBlocks: 2)),
            ("k = 1, chunk 1", new LandmarkMemory(1)),
            ("k = 2, chunk 1", new LandmarkMemory(2)),
            ("k = 2, chunk 2, max over heads", new LandmarkMemory(2, LandmarkSelect.MaxOverHeads, ChunkBlocks: 2)),
            ("k = 3, chunk 1, contiguous slots", new LandmarkMemory(3, Slots: LandmarkSlots.Contiguous)),
            ("k = 2, chunk 3, no remap", new LandmarkMemory(2, RemapPositions: false, ChunkBlocks: 3)),
            ($"k = S = {blocks}, chunk 1", new LandmarkMemory(blocks)),
        };
        var twin = cases.Select(c => new MemoryCase(c.Name, c.Memory,
            (c.Memory.Attend(q, k, v, lb) - LandmarkMemoryNaive.Attend(q, k, v, lb, c.Memory)).abs().max().item<double>())).ToList();

        // k = S: every block retrieved ⇒ the training form (RoPE at the true positions), remapping on or off.
        var pos = torch.arange(t, device: device);
        var training = LandmarkAttention.Attend(Positions.Rope(q, pos), Positions.Rope(k, pos), v, lb);
        var all = new (string Name, LandmarkMemory Memory)[]
        {
            ($"k = S = {blocks}, chunk 1", new LandmarkMemory(blocks)),
            ($"k = S = {blocks}, chunk 3", new LandmarkMemory(blocks, ChunkBlocks: 3)),
            ($"k = S = {blocks}, chunk 2, no remap", new LandmarkMemory(blocks, RemapPositions: false, ChunkBlocks: 2)),
        }.Select(c => new MemoryCase(c.Name, c.Memory, (c.Memory.Attend(q, k, v, lb) - training).abs().max().item<double>())).ToList();
        return new LandmarkExactness(weightsErr, attendErr, rowDev, landmarkCols, twin, all,
            $"B = 2, T = {t}, H = 3, D = 6, ℓ_b = {lb} ({blocks} blocks + {t - blocks * (lb + 1)} tokens)");
    }

    /// <summary>Accuracy on the passkey digits and the last query's cost for one method at length n.</summary>
    public static LandmarkRow Evaluate(TinyGpt model, Config config, int n, LandmarkMethod method, int k)
    {
        int lb = config.Model.BlockSize, l = lb + 1;
        long inserted = LandmarkTokens.InsertedLength(n, lb), window = LandmarkTokens.InsertedLength(config.TrainLength, lb);
        long correct = 0, scored = 0, attended = 0, bytes = 0;
        var depthCorrect = new long[config.Depths.Length];
        var depthScored = new long[config.Depths.Length];
        long perLayerKv = 4L * 2 * config.Model.DModel;                          // K and V of one position, all heads, float32
        var device = model.parameters().First().device;
        for (int d = 0; d < config.Depths.Length; d++)
            for (int done = 0; done < config.SamplesPerDepth; done += config.EvalBatch)
            {
                int count = Math.Min(config.EvalBatch, config.SamplesPerDepth - done);
                using var batch = LandmarkPasskey.Batch(config.Model, n, config.NeedleLength, config.Depths[d], count, config.Seed + 1000 * d + done + 17 * n,
                    device);
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
                        using (var run = new LandmarkMemory(k, RemapPositions: method == LandmarkMethod.Landmark, Slots: config.Slots).Run(model, batch.Tokens))
                        {
                            logits = run.Logits.clone();
                            (attended, bytes) = (run.AttendedTokens, run.KvBytesPerStep);
                        }
                        break;
                }
                var mask = labels.ne(TokenBatch.Ignore);
                depthCorrect[d] += logits.argmax(-1).eq(labels).logical_and(mask).sum().item<long>();
                depthScored[d] += mask.sum().item<long>();
            }
        correct = depthCorrect.Sum();
        scored = depthScored.Sum();
        return new LandmarkRow(n, k, method, correct / (double)Math.Max(1, scored), attended, bytes, inserted,
            depthCorrect.Zip(depthScored, (a, b) => a / (double)Math.Max(1, b)).ToArray());
    }

    /// <summary>
    /// Whether the passkey (marker and digits) at <paramref name="depth"/> lies inside the training-length window that the
    /// <see cref="LandmarkMethod.Window"/> baseline reads at length <paramref name="n"/> (the last block-aligned
    /// InsertedLength(n_train) positions).
    /// </summary>
    public static bool NeedleInWindow(Config config, int n, double depth)
    {
        ArgumentNullException.ThrowIfNull(config);
        int lb = config.Model.BlockSize, l = lb + 1;
        long inserted = LandmarkTokens.InsertedLength(n, lb), window = LandmarkTokens.InsertedLength(config.TrainLength, lb);
        long start = Math.Max(0, (inserted - window + l - 1) / l * l);
        using var one = new PasskeyTask(VocabSize: config.Model.TaskVocab, Length: n, NeedleLength: config.NeedleLength, Depth: depth).Generate(1, 0);
        return one.MarkerPosition + one.MarkerPosition / lb >= start;
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
        using var run = new LandmarkMemory(config.TopKs[0], Slots: config.Slots).Run(model, ids);
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
