using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// The notebook's experiment: (0) exactness on toy tensors — the tiled, chunked, recurrent and cumsum forms against the
/// masked parallel form (outputs, states, gradients), the slopes, zero and strong decay; (1) the constant-speed sweep —
/// fixed tokens per batch, growing n, forward + backward of Lightning (chunked and tiled) vs softmax (reference, SDPA),
/// the naive masked linear form and the cumsum linear form, interleaved over several rounds; (2) the tiled loop's intra vs
/// inter time; (3) a small char LM on Moby-Dick, a TNL stack (Lightning mixers) vs a softmax TinyGpt with the same
/// backbone, same batches; (4) the trained TNL model decoding token by token at constant state size.
/// </summary>
public sealed class LightningExperiment : IPaperExperiment<LightningExperiment.Config, LightningResult>
{
    LightningExperiment() { }

    /// <summary>P39 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(39, "Lightning Attention / TNL: various lengths, constant speed", "lightning-attention");

    /// <summary>
    /// Sizes of one run. Smoke fits a one-thread CPU notebook; Full is for a GPU. <c>SweepRounds</c>: rounds of the
    /// interleaved speed sweep (each times every method at every length once; a cell's time is the median).
    /// </summary>
    /// <remarks>
    /// The cumsum form materialises every prefix state ([B, H, n, D, Dv]: 16 MiB per 256 tokens at H = 4, D = 64) and crawls
    /// on a CPU (≈ 14 s for one forward + backward at 4096 tokens here), so it runs in its own interleaved sweep beside the
    /// chunked form at <c>CumsumTokensPerBatch</c> (both at that budget) rather than in the main sweep.
    /// </remarks>
    public sealed record Config(int TokensPerBatch, int[] Lengths, int Heads, int HeadDim, int Block, int MaxQuadraticLength,
        int BenchWarmup, int SweepRounds, int CumsumTokensPerBatch, int[] CumsumLengths, int CumsumRounds,
        int LmLayers, int LmDModel, int LmHeads, int LmSeqLen, int LmBatch, int LmSteps,
        double LearningRate, int EvalBatch, int StreamLength, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(TokensPerBatch: 4096, Lengths: new[] { 256, 512, 1024, 2048 }, Heads: 4, HeadDim: 64, Block: 64,
            MaxQuadraticLength: 512, BenchWarmup: 1, SweepRounds: 5, CumsumTokensPerBatch: 512, CumsumLengths: new[] { 256, 512 }, CumsumRounds: 3,
            LmLayers: 2, LmDModel: 64, LmHeads: 4, LmSeqLen: 64, LmBatch: 16,
            LmSteps: 120, LearningRate: 3e-3, EvalBatch: 32, StreamLength: 128, Seed: 0) { Size = "smoke" };

        public static Config Full => new(TokensPerBatch: 65536, Lengths: new[] { 1024, 2048, 4096, 8192, 16384, 32768, 65536 }, Heads: 8,
            HeadDim: 128, Block: 64, MaxQuadraticLength: 8192, BenchWarmup: 2, SweepRounds: 7, CumsumTokensPerBatch: 8192,
            CumsumLengths: new[] { 1024, 2048, 4096, 8192 }, CumsumRounds: 5, LmLayers: 4, LmDModel: 128, LmHeads: 8,
            LmSeqLen: 256, LmBatch: 32, LmSteps: 3000, LearningRate: 1e-3, EvalBatch: 64, StreamLength: 4096, Seed: 0) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The LM backbone: token inputs, RoPE for the softmax model, no positions for TNL (the decay orders tokens).</summary>
        public TinyGptConfig Model(int vocab, bool softmax) => new(LmLayers, LmDModel, LmHeads, MlpRatio: 2,
            Positions: softmax ? PositionKind.Rope : PositionKind.None, VocabSize: vocab, MaxLength: LmSeqLen + 1);
    }

    public const string TnlName = "TNL (lightning)", SoftmaxName = "softmax Transformer";

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase and per measurement.</summary>
    public static LightningResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        Guard.Positive(config.LmSteps, nameof(config.LmSteps));                        // the config's name, not the trainer's (Steps)
        var clock = new PhaseClock();
        void Lap(string phase) => clock.Lap(phase);

        progress?.Report("exactness: tiled, chunked, recurrent and cumsum forms vs the masked parallel form (T = 77, blocks 16, 32, 64)");
        var exactness = Exactness(device, config.Seed);
        Lap("exactness");

        progress?.Report($"constant-speed sweep: {config.TokensPerBatch} tokens per batch, n = {string.Join(", ", config.Lengths)}, forward + backward, " +
                         $"{config.SweepRounds} interleaved rounds");
        var report = new InlineProgress<SpeedRow>(r =>
            progress?.Report($"  n = {r.SeqLen,5} × B = {r.Batch,3}  {r.Method,-22} median {r.Ms,9:F1} ms  {r.TokensPerSecond / 1000,8:F1} k tok/s"));
        var speed = LightningBenchmarks.Sweep(config.Lengths, config.TokensPerBatch, heads: config.Heads, headDim: config.HeadDim, block: config.Block,
            backward: true, maxQuadraticLength: config.MaxQuadraticLength, methods: MainSweepMethods, warmup: config.BenchWarmup, rounds: config.SweepRounds,
            measureMemory: device.type == DeviceType.CPU, seed: config.Seed, device: device, progress: report);
        Lap("speed sweep");
        progress?.Report($"cumsum vs lightning: {config.CumsumTokensPerBatch} tokens per batch, n = {string.Join(", ", config.CumsumLengths)}, " +
            $"{config.CumsumRounds} interleaved rounds");
        var cumsum = LightningBenchmarks.Sweep(config.CumsumLengths, config.CumsumTokensPerBatch, heads: config.Heads, headDim: config.HeadDim,
            block: config.Block, backward: true, methods: new[] { LightningBenchmarks.CumsumLinear, LightningBenchmarks.Chunked },
            warmup: config.BenchWarmup, rounds: config.CumsumRounds,
            measureMemory: device.type == DeviceType.CPU, seed: config.Seed, device: device, progress: report);
        Lap("cumsum sweep");
        int splitN = config.Lengths.Max() / config.Block * config.Block;
        var (intra, inter) = LightningBenchmarks.IntraInterSplit(splitN, Math.Max(1, config.TokensPerBatch / splitN), config.Heads, config.HeadDim,
            config.Block, config.BenchWarmup, config.SweepRounds, config.Seed, device);
        progress?.Report($"tiled loop at n = {splitN}: intra {intra.MedianMs:F1} ms, inter {inter.MedianMs:F1} ms");
        Lap("intra/inter split");

        var corpus = TextCorpus.MobyDick();
        var runs = new List<LmRun>();
        foreach (bool softmax in new[] { false, true })
        {
            string name = softmax ? SoftmaxName : TnlName;
            torch.manual_seed(config.Seed);
            var model = softmax ? new TinyGpt(config.Model(corpus.VocabSize, true))
                : LightningStack.Create(config.Model(corpus.VocabSize, false), block: config.Block);
            model.to(device);
            runs.Add(Train(name, model, corpus, config, device, progress));
            Lap($"train {name}");
        }
        var (stream, stepError) = Stream(runs, corpus, config, device);
        foreach (var r in runs) r.Model.Dispose();
        Lap("decode");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new LightningResult(config, exactness, speed, cumsum, splitN, intra, inter, runs.Select(r => r.Summary).ToList(), corpus.UnigramLoss(),
            stream, stepError, clock.Seconds, clock.Phases);
    }

    /// <summary>The main sweep's methods: every one but the cumsum form (which has its own sweep at a smaller budget).</summary>
    public static IReadOnlyList<string> MainSweepMethods { get; } = LightningBenchmarks.Methods.Where(m => m != LightningBenchmarks.CumsumLinear).ToArray();

    /// <summary>Block sizes of the exactness phase (spec §6).</summary>
    public static IReadOnlyList<int> ExactnessBlocks { get; } = new[] { 16, 32, 64 };

    /// <summary>
    /// The exactness phase on toy tensors (B = 2, T = 77 — not a multiple of any block —, H = 4, D = 5, Dv = 3, bare ALiBi
    /// slopes, a random h0): every fast form (tiled and chunked at blocks 16, 32, 64; recurrent; cumsum) against the masked
    /// parallel form — outputs and hT in float64 and float32, gradients of q, k, v, h0 and log λ in float64; the H = 8
    /// slopes; a = 0 against plain causal linear attention [(QKᵀ) ⊙ tril] V; and a = 10 (plus λ = 0) for NaN.
    /// </summary>
    public static LightningExactness Exactness(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        const int B = 2, T = 77, H = 4, D = 5, Dv = 3;
        Tensor R(params long[] shape) => torch.randn(shape, generator: gen, dtype: float64).to(device);
        var q = R(B, T, H, D) / Math.Sqrt(D);
        var k = R(B, T, H, D);
        var v = R(B, T, H, Dv);
        var s0 = R(B, H, D, Dv) * 0.5;
        var ld = DecaySchedules.Alibi(H, ScalarType.Float64, device);
        var wo = R(B, T, H, Dv);                                                                // loss weights for the gradients
        var ws = R(B, H, D, Dv);

        var forms = new List<(string Name, int Block, Func<Tensor, Tensor, Tensor, Tensor, LinearState?, LinearAttentionResult> Run)>();
        foreach (int block in ExactnessBlocks)
        {
            forms.Add(("tiled", block, (q_, k_, v_, l_, h_) => LightningAttention.Tiled(q_, k_, v_, l_, block, h_)));
            forms.Add(("chunked", block, (q_, k_, v_, l_, h_) => LightningAttention.Forward(q_, k_, v_, l_, block, h_)));
        }
        forms.Add(("recurrent", 0, (q_, k_, v_, l_, h_) => LightningAttention.Recurrent(q_, k_, v_, l_, h_)));
        forms.Add(("cumsum", 0, (q_, k_, v_, l_, h_) => LightningAttention.Cumsum(q_, k_, v_, l_, h_)));

        var errors = new List<FormError>();
        var naive = LightningNaive.Attention(q, k, v, ld, new LinearState(s0));
        foreach (var (name, block, run) in forms)
        {
            var r64 = run(q, k, v, ld, new LinearState(s0));
            errors.Add(new FormError(name, block, "float64", "output", ErrorStats.Of(r64.Output, naive.Output)));
            errors.Add(new FormError(name, block, "float64", "hT", ErrorStats.Of(r64.FinalState.S, naive.FinalState.S)));
            var r32 = run(q.to(float32), k.to(float32), v.to(float32), ld.to(float32), new LinearState(s0.to(float32)));
            errors.Add(new FormError(name, block, "float32", "output", ErrorStats.Of(r32.Output.to(float64), naive.Output)));
            errors.Add(new FormError(name, block, "float32", "hT", ErrorStats.Of(r32.FinalState.S.to(float64), naive.FinalState.S)));
        }

        // gradients of Σ o ⊙ w_o + Σ hT ⊙ w_s with respect to q, k, v, h0 and log λ (float64)
        Tensor[] Grads(Func<Tensor, Tensor, Tensor, Tensor, LinearState?, LinearAttentionResult> run)
        {
            using var g = NewDisposeScope();
            var leaves = new[] { q, k, v, s0, ld }.Select(x => x.detach().clone().requires_grad_(true)).ToArray();
            var r = run(leaves[0], leaves[1], leaves[2], leaves[4], new LinearState(leaves[3]));
            var loss = (r.Output * wo).sum() + (r.FinalState.S * ws).sum();
            var grads = Gradients.Of(new[] { loss }, leaves);
            return grads.Select(x => x.detach().MoveToOuterDisposeScope()).ToArray();
        }
        var reference = Grads((q_, k_, v_, l_, h_) => LightningNaive.Attention(q_, k_, v_, l_, h_));
        string[] gradNames = { "dq", "dk", "dv", "dh0", "dlogλ" };
        var gradients = new List<FormError>();
        foreach (var (name, block, run) in forms)
        {
            var g = Grads(run);
            for (int i = 0; i < gradNames.Length; i++) gradients.Add(new FormError(name, block, "float64", gradNames[i], ErrorStats.Of(g[i], reference[i])));
        }

        // a = 0: plain causal linear attention [(QKᵀ) ⊙ tril] V
        var zero = torch.zeros(H, dtype: float64, device: device);
        var tril = torch.ones(T, T, dtype: float64, device: device).tril();
        var plain = ((q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * tril).matmul(v.permute(0, 2, 1, 3))).permute(0, 2, 1, 3);
        double zeroDecay = forms.Select(f => f.Run)
            .Append((q_, k_, v_, l_, h_) => LightningNaive.Attention(q_, k_, v_, l_, h_))
            .Max(run => (run(q, k, v, zero, null).Output - plain).abs().max().item<double>());

        // a = 10 (λ^{64} underflows to 0) in three heads and λ = 0 in one, float32 and float64: values, states and gradients finite
        bool finite = true;
        double strongError = 0;
        using (var strongScope = NewDisposeScope())
        {
            const int Ts = 150;
            var qs = R(1, Ts, H, D);
            var ks = R(1, Ts, H, D);
            var vs = R(1, Ts, H, Dv);
            var hs = R(1, H, D, Dv);
            var strong = torch.tensor(new[] { -10.0, -10.0, -10.0, double.NegativeInfinity }, dtype: float64, device: device);
            var exact = LightningNaive.Attention(qs, ks, vs, strong, new LinearState(hs));
            var all = forms.Select(f => f.Run).Append((q_, k_, v_, l_, h_) => LightningNaive.Attention(q_, k_, v_, l_, h_));
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64 })
                foreach (var run in all)
                {
                    var leaves = new[] { qs, ks, vs, hs }.Select(x => x.to(dtype).detach().requires_grad_(true)).ToArray();
                    var r = run(leaves[0], leaves[1], leaves[2], strong.to(dtype), new LinearState(leaves[3]));
                    (r.Output.sum() + r.FinalState.S.sum()).backward();
                    finite &= r.Output.isfinite().all().item<bool>() && r.FinalState.S.isfinite().all().item<bool>()
                              && leaves.All(x => x.grad is { } g && g.isfinite().all().item<bool>());
                    strongError = Math.Max(strongError, (r.Output.to(float64) - exact.Output).abs().max().item<double>());
                }
        }

        var slopes = DecaySchedules.AlibiSlopes(8);
        var slopeTensor = DecaySchedules.Alibi(8, ScalarType.Float32).neg().to(float64).cpu().data<double>().ToArray();
        return new LightningExactness(errors, gradients, slopes, slopeTensor, zeroDecay, finite, strongError);
    }

    sealed record LmRun(TinyGpt Model, LmSummary Summary);

    static LmRun Train(string name, TinyGpt model, TextCorpus corpus, Config c, Device device, IProgress<string>? progress)
    {
        progress?.Report($"training {name} ({model.ParameterCount:N0} parameters), {c.LmSteps} steps of {c.LmBatch} × {c.LmSeqLen} characters");
        using var eval = corpus.Sample(c.EvalBatch, c.LmSeqLen, seed: 1_000 + c.Seed, CorpusSplit.Validation, device: device);
        var options = new TrainOptions(c.LmSteps, c.LearningRate, WarmupSteps: c.LmSteps / 10, ReportEvery: Math.Max(1, c.LmSteps / 3));
        var clock = Stopwatch.StartNew();
        var history = Trainer.Fit(model, step =>
        {
            using var batch = corpus.Sample(c.LmBatch, c.LmSeqLen, seed: c.Seed * 1_000_003 + step, device: device);   // same batches for both
            return batch.Loss(model.call(batch.Tokens));
        }, options, new InlineProgress<TrainProgress>(p => progress?.Report($"  {name}: {p}")));
        double seconds = clock.Elapsed.TotalSeconds;
        double validation;
        using (var scope = NewDisposeScope())
        using (torch.no_grad())
        {
            model.eval();
            validation = eval.Loss(model.call(eval.Tokens)).item<float>();
        }
        progress?.Report($"  {name}: validation loss {validation:F3} nats/char");
        return new LmRun(model, new LmSummary(name, model.ParameterCount, history.Losses, validation, seconds));
    }

    /// <summary>Both trained models decode one validation window token by token; TNL's Step is checked against its forward pass.</summary>
    static (IReadOnlyList<StreamPoint> Points, double StepError) Stream(IReadOnlyList<LmRun> runs, TextCorpus corpus, Config c, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var window = corpus.Contiguous(c.StreamLength, CorpusSplit.Validation, device: device);
        var points = new List<StreamPoint>();
        double stepError = double.NaN;
        foreach (var run in runs)
        {
            var model = run.Model;
            using var state = model.NewState(1);
            var outputs = new List<Tensor>();
            int check = Math.Min(c.LmSeqLen, c.StreamLength);
            for (int t = 0; t < c.StreamLength; t++)
            {
                using var step = NewDisposeScope();
                var x = window.Tokens.narrow(1, t, 1).squeeze(1);                                            // [1]
                var clock = Stopwatch.StartNew();
                var y = model.Step(x, state);
                if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                points.Add(new StreamPoint(run.Summary.Name, t + 1, clock.Elapsed.TotalMilliseconds, state.Bytes));
                if (run.Summary.Name == TnlName && t < check) outputs.Add(y.MoveToOuterDisposeScope());
            }
            if (run.Summary.Name == TnlName)
            {
                var full = model.call(window.Tokens.narrow(1, 0, check));
                stepError = (torch.stack(outputs, 1) - full).abs().max().item<float>();
            }
        }
        return (points, stepError);
    }
}
