using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Aaren;

/// <summary>
/// The notebook's experiment: Aaren vs a causal Transformer of the same width and depth (and a last-value
/// baseline) on synthetic sinusoid forecasting (next <c>Horizon</c> values) and frequency-bucket classification;
/// then streaming (per-step latency and state bytes vs t), time and memory of the three forms vs sequence length,
/// and the learned queries' attention weights on one test series.
/// </summary>
public sealed class AarenExperiment : IPaperExperiment<AarenExperiment.Config, AarenResult>
{
    AarenExperiment() { }

    /// <summary>P42 in the catalogue.</summary>
    public static PaperInfo Paper { get; } = new(42, "Aaren: attention as an RNN", "aaren");

    /// <summary>
    /// Sizes of one run. Smoke fits a CPU notebook (~25–30 s on one thread); Full is for a GPU. Inputs per position are
    /// the last <c>Lags</c> values x_t, x_{t−1}, … (a causal window, like the kernel-3 convolutional token embedding of
    /// time-series Transformers); <c>Positions</c> adds an encoding (none by default: it did not help at smoke size).
    /// </summary>
    public sealed record Config(int SeqLen, int DModel, int Heads, int Layers, double MlpRatio, int Horizon, int Buckets,
        double Noise, int TrainSeries, int TestSeries, int BatchSize, int Epochs, int StepsPerEpoch, double LearningRate,
        int WarmupSteps, int StreamLength, int[] ScalingLengths, int ScalingBatch, int BenchRepeats, int Seed,
        PositionKind Positions = PositionKind.None, int Lags = 3) : IPaperConfig<Config>
    {
        public static Config Smoke => new(SeqLen: 64, DModel: 32, Heads: 4, Layers: 2, MlpRatio: 2, Horizon: 8, Buckets: 4,
            Noise: 0.05, TrainSeries: 2048, TestSeries: 256, BatchSize: 32, Epochs: 6, StepsPerEpoch: 40, LearningRate: 1e-2,
            WarmupSteps: 20, StreamLength: 512, ScalingLengths: new[] { 64, 256, 1024 }, ScalingBatch: 1, BenchRepeats: 3, Seed: 0) { Size = "smoke" };

        public static Config Full => new(SeqLen: 1024, DModel: 128, Heads: 8, Layers: 4, MlpRatio: 4, Horizon: 8, Buckets: 4,
            Noise: 0.05, TrainSeries: 16384, TestSeries: 1024, BatchSize: 64, Epochs: 20, StepsPerEpoch: 250, LearningRate: 1e-3,
            WarmupSteps: 200, StreamLength: 65536, ScalingLengths: new[] { 256, 1024, 4096, 8192 }, ScalingBatch: 1, BenchRepeats: 5,
            Seed: 0) { Size = "full" };

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The backbone both models share: 1 input feature, Horizon forecasts + Buckets class logits out.</summary>
        public TinyGptConfig Model => new(Layers, DModel, Heads, MlpRatio, InputFeatures: Lags, OutputFeatures: Horizon + Buckets, Positions);
        public SinusoidTask Task => new(Length: SeqLen, Horizon: Horizon, Buckets: Buckets, Noise: Noise);
    }

    public const string AarenName = "Aaren", TransformerName = "Transformer", LastValueName = "last value", MajorityName = "majority class";

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase and per progress tick.</summary>
    public static AarenResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        Guard.Positive(config.Epochs, nameof(config.Epochs));                            // the config's names, not the trainer's (Steps)
        Guard.Positive(config.StepsPerEpoch, nameof(config.StepsPerEpoch));
        Guard.Positive(config.BatchSize, nameof(config.BatchSize));
        if (config.WarmupSteps < 0 || config.WarmupSteps > (long)config.Epochs * config.StepsPerEpoch)
            throw new ArgumentException(
                $"WarmupSteps must be in [0, Epochs · StepsPerEpoch = {(long)config.Epochs * config.StepsPerEpoch}], got {config.WarmupSteps}.",
                nameof(config.WarmupSteps));
        var clock = new PhaseClock();
        void Lap(string phase) => clock.Lap(phase);
        using var scope = NewDisposeScope();
        var exactness = Exactness(device, config.Seed);
        Lap("exactness");
        using var train = config.Task.Generate(config.TrainSeries, config.Seed, device).WithLags(config.Lags);
        using var test = config.Task.Generate(config.TestSeries, config.Seed + 1, device).WithLags(config.Lags);

        torch.manual_seed(config.Seed);
        using var aaren = AarenStack.Create(config.Model).to(device);
        torch.manual_seed(config.Seed);
        using var transformer = new TinyGpt(config.Model).to(device);
        Lap("data + models");

        var aarenRun = Fit(AarenName, aaren, config, train, test, progress);
        Lap("train Aaren");
        var transformerRun = Fit(TransformerName, transformer, config, train, test, progress);
        Lap("train Transformer");

        double lastValueMse = LastValueMse(test);
        double majority = MajorityAccuracy(train, test, config.Buckets);
        long n = config.SeqLen;
        var metrics = new List<MetricRow>();
        foreach (var (name, model, run) in new[] { (AarenName, aaren, aarenRun), (TransformerName, transformer, transformerRun) })
        {
            long bytes = StateBytesAt(model, n, device);
            metrics.Add(new MetricRow(name, "forecast", $"test MSE (next {config.Horizon}, t=N)", run.Mse[^1], model.ParameterCount, bytes));
            metrics.Add(new MetricRow(name, "classify", "test accuracy (t=N)", run.Accuracy, model.ParameterCount, bytes));
        }
        metrics.Add(new MetricRow(LastValueName, "forecast", $"test MSE (next {config.Horizon}, t=N)", lastValueMse, 0, sizeof(float)));
        metrics.Add(new MetricRow(MajorityName, "classify", "test accuracy (t=N)", majority, 0, 0));
        Lap("metrics");

        progress?.Report($"streaming {config.StreamLength} tokens, one at a time");
        var (streaming, stepError) = Stream(config, aaren, transformer, device);
        Lap("streaming");
        progress?.Report($"timing the three forms at T = {string.Join(", ", config.ScalingLengths)}");
        var scaling = Scaling(config, device);
        Lap("forms vs length");
        var weights = QueryWeights(aaren, test);
        Lap("query weights");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new AarenResult(config, exactness, metrics, aarenRun.Mse, transformerRun.Mse, lastValueMse, aarenRun.Losses, transformerRun.Losses,
            streaming, scaling, weights, stepError, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// The forms against the naive masked softmax on toy tensors (T = 13, odd; 2 heads of width 5) in float64 and float32,
    /// and scores of ±1e3 in float32 against float64 (the running max must keep them finite).
    /// </summary>
    public static AarenExactness Exactness(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        const int T = 13, H = 2, D = 5;
        var forms = new List<FormError>();
        foreach (var dtype in new[] { ScalarType.Float64, ScalarType.Float32 })
        {
            var q = torch.randn(H, D, generator: gen, dtype: float64).to(dtype).to(device);
            var k = torch.randn(1, T, H, D, generator: gen, dtype: float64).to(dtype).to(device);
            var v = torch.randn(1, T, H, D, generator: gen, dtype: float64).to(dtype).to(device);
            using var naive = AarenNaive.Attention(q, k, v);
            string type = dtype == ScalarType.Float64 ? "float64" : "float32";
            forms.Add(new FormError("recurrent RNN", type, ErrorStats.Of(AarenAttention.Recurrent(q, k, v).Output, naive.Output)));
            forms.Add(new FormError("scan, Hillis–Steele", type, ErrorStats.Of(AarenAttention.Scan(q, k, v, algo: ScanAlgo.HillisSteele), naive.Output)));
            forms.Add(new FormError("scan, Blelloch", type, ErrorStats.Of(AarenAttention.Scan(q, k, v, algo: ScanAlgo.Blelloch), naive.Output)));
        }
        var big = torch.tensor(new[] { 1000.0, -1000.0, 999.0, -999.0, 1000.5 }, dtype: float64).reshape(1, 5, 1, 1).to(device);
        var values = torch.randn(1, 5, 1, 3, generator: gen, dtype: float64).to(device);
        var unit = torch.ones(1, 1, dtype: float64, device: device);
        var scan32 = AarenAttention.Scan(unit.to(float32), big.to(float32), values.to(float32), scale: 1.0);
        var scan64 = AarenAttention.Scan(unit, big, values, scale: 1.0);
        return new AarenExactness(forms, ErrorStats.Of(scan32, scan64), scan32.isnan().any().item<bool>());
    }

    sealed record FitResult(IReadOnlyList<double> Mse, double Accuracy, IReadOnlyList<double> Losses);

    /// <summary>Loss = MSE of the next-H forecast at every position + cross-entropy of the bucket at the last position.</summary>
    static Tensor Loss(TinyGpt model, Tensor x, Tensor y, Tensor label, int horizon)
    {
        var out_ = model.call(x);                                                       // [b, N, H + K]
        var forecast = out_.narrow(2, 0, horizon);
        var logits = out_.select(1, -1).narrow(1, horizon, out_.shape[2] - horizon);
        return nn.functional.mse_loss(forecast, y) + nn.functional.cross_entropy(logits, label);
    }

    static FitResult Fit(string name, TinyGpt model, Config c, TimeSeriesBatch train, TimeSeriesBatch test, IProgress<string>? progress)
    {
        progress?.Report($"training {name} ({model.ParameterCount:N0} parameters)");
        var rng = new Random(c.Seed);                                                   // same batches for both models
        var mse = new List<double>();
        double accuracy = double.NaN;
        var options = new TrainOptions(c.Epochs * c.StepsPerEpoch, c.LearningRate, WarmupSteps: c.WarmupSteps,
            StepsPerEpoch: c.StepsPerEpoch, ReportEvery: c.StepsPerEpoch);
        // Every step's batch rows, drawn up front and copied to the device once (not one host-to-device copy per step).
        var rows = new long[options.Steps * (long)c.BatchSize];
        for (long i = 0; i < rows.Length; i++) rows[i] = rng.Next((int)train.Count);
        using var batches = torch.tensor(rows, new long[] { options.Steps, c.BatchSize }, device: train.Inputs.device);
        var history = Trainer.Fit(model, step =>
        {
            var index = batches[step];
            var (x, y, label) = train.Rows(index);
            return Loss(model, x, y, label, c.Horizon);
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {name}: {p}")),
        epoch =>
        {
            var (m, a) = Evaluate(model, test, c.Horizon);
            mse.Add(m);
            accuracy = a;
            progress?.Report($"  {name}: epoch {epoch}  test MSE {m:G4}  accuracy {a:P0}");
            return new Dictionary<string, double> { ["test_mse"] = m, ["accuracy"] = a };
        });
        return new FitResult(mse, accuracy, history.Losses);
    }

    /// <summary>Forecast MSE and bucket accuracy at the last position of every test series.</summary>
    static (double Mse, double Accuracy) Evaluate(TinyGpt model, TimeSeriesBatch test, int horizon)
    {
        using var scope = NewDisposeScope();
        var last = model.call(test.Inputs).select(1, -1);                                // [n, H + K]
        double mse = (last.narrow(1, 0, horizon) - test.Targets.select(1, -1)).square().mean().item<float>();
        var predicted = last.narrow(1, horizon, last.shape[1] - horizon).argmax(1);
        double accuracy = predicted.eq(test.Labels).to(ScalarType.Float32).mean().item<float>();
        return (mse, accuracy);
    }

    static double LastValueMse(TimeSeriesBatch test)
    {
        using var scope = NewDisposeScope();
        var lastValue = test.Inputs.select(1, -1).narrow(1, 0, 1);                       // [n, 1]: x_{N−1} for every horizon
        return (test.Targets.select(1, -1) - lastValue).square().mean().item<float>();
    }

    static double MajorityAccuracy(TimeSeriesBatch train, TimeSeriesBatch test, int buckets)
    {
        using var scope = NewDisposeScope();
        long majority = train.Labels.bincount(null, buckets).argmax().item<long>();
        return test.Labels.eq(majority).to(ScalarType.Float32).mean().item<float>();
    }

    /// <summary>Streaming state bytes of one sequence after <paramref name="t"/> tokens (zeros as inputs).</summary>
    static long StateBytesAt(TinyGpt model, long t, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = model.NewState(1);
        var zero = torch.zeros(1, model.Config.InputFeatures, device: device);
        for (long i = 0; i < t; i++) { using var s = NewDisposeScope(); model.Step(zero, state); }
        return state.Bytes;
    }

    /// <summary>Both models consume one long series token by token; also checks Aaren's Step against its forward pass.</summary>
    static (IReadOnlyList<StreamPoint> Points, double StepError) Stream(Config c, TinyGpt aaren, TinyGpt transformer, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var series = (c.Task with { Length = c.StreamLength }).Generate(1, c.Seed + 2, device).WithLags(c.Lags);
        var points = new List<StreamPoint>();
        double stepError = 0;
        int check = Math.Min(c.SeqLen, c.StreamLength);
        foreach (var (name, model) in new[] { (AarenName, aaren), (TransformerName, transformer) })
        {
            model.eval();
            using var state = model.NewState(1);
            var outputs = new List<Tensor>();
            for (int t = 0; t < c.StreamLength; t++)
            {
                using var step = NewDisposeScope();
                var x = series.Inputs.select(1, t);                                      // [1, 1]
                var clock = Stopwatch.StartNew();
                var y = model.Step(x, state);
                if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                points.Add(new StreamPoint(name, t + 1, clock.Elapsed.TotalMilliseconds, state.Bytes));
                if (name == AarenName && t < check) outputs.Add(y.MoveToOuterDisposeScope());
            }
            if (name == AarenName)
            {
                var full = model.call(series.Inputs.narrow(1, 0, check));
                stepError = (torch.stack(outputs, 1) - full).abs().max().item<float>();
            }
        }
        return (points, stepError);
    }

    /// <summary>Forward time and peak memory of naive / recurrent / scan forms on random q, k, v (no gradients).</summary>
    static IReadOnlyList<ScalingPoint> Scaling(Config c, Device device)
    {
        var forms = new (string Name, Func<Tensor, Tensor, Tensor, Tensor> Run)[]
        {
            ("naive (masked softmax)", (q, k, v) => { using var r = AarenNaive.Attention(q, k, v); return r.Output.alias(); }),
            ("recurrent (RNN loop)", (q, k, v) => AarenAttention.Recurrent(q, k, v).Output),
            ("scan (Hillis–Steele)", (q, k, v) => AarenAttention.Scan(q, k, v, algo: ScanAlgo.HillisSteele)),
            ("scan (Blelloch)", (q, k, v) => AarenAttention.Scan(q, k, v, algo: ScanAlgo.Blelloch)),
        };
        var points = new List<ScalingPoint>();
        using var noGrad = torch.no_grad();
        int dh = c.DModel / c.Heads;
        foreach (int n in c.ScalingLengths)
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(c.Seed);
            var q = torch.randn(c.Heads, dh, device: device);
            var k = torch.randn(c.ScalingBatch, n, c.Heads, dh, device: device);
            var v = torch.randn(c.ScalingBatch, n, c.Heads, dh, device: device);
            foreach (var (name, run) in forms)
            {
                var time = Benchmark.Time(() => run(q, k, v), warmup: 1, repeats: c.BenchRepeats, device: device);
                var memory = device.type == DeviceType.CPU ? Benchmark.PeakMemory(() => run(q, k, v))
                    : new MemoryStats(null, null, "not available: CUDA memory is not in the process RSS");
                points.Add(new ScalingPoint(name, n, time.MedianMs, memory.DeltaBytes is { } d ? d / 1048576.0 : null, memory.Method));
            }
        }
        return points;
    }

    /// <summary>Every Aaren layer's weights at the last position over t = 1..N, for the first test series.</summary>
    static QueryWeightMap QueryWeights(TinyGpt aaren, TimeSeriesBatch test)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = test.Inputs.narrow(0, 0, 1);
        var h = aaren.Embedded(x, start: 0);
        var rows = new List<double[]>();
        var labels = new List<string>();
        for (int layer = 0; layer < aaren.Blocks.Count; layer++)
        {
            var block = aaren.Blocks[layer];
            var w = ((AarenLayer)block.Mixer).Weights(block.Norm1.call(h));             // [1, H, N, N]
            for (int head = 0; head < w.shape[1]; head++)
            {
                rows.Add(w[0, head, -1].to(ScalarType.Float64).cpu().data<double>().ToArray());
                labels.Add($"L{layer} H{head}");
            }
            h = block.call(h);
        }
        return new QueryWeightMap(labels, rows, x[0, .., 0].cpu().data<float>().Select(f => (double)f).ToArray());
    }
}
