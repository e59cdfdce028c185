using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Miras;

/// <summary>
/// The notebook's experiment: an exactness phase on toy tensors (each Miras mixer's fast forms against the naive twin,
/// streaming against the forward, Memora's simplex, the design-space identities of spec §6), then spec §4 Exp 1 — online
/// recall with identity projections and no outer training, of clean pairs and of pairs whose values carry heavy-tailed
/// outliers — for the ℓ2 memory, Moneta, Yaad and Memora at equal memory size and an equal number of writes, each with its
/// own best step size from one shared grid; then each mixer's forward time per token and state bytes.
/// </summary>
public sealed class MirasExperiment : IPaperExperiment<MirasExperiment.Config, MirasResult>
{
    MirasExperiment() { }

    /// <summary>P29 in the catalogue (notebook notebooks/29-miras.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(29, "Miras: Moneta / Yaad / Memora", "miras");

    /// <summary>
    /// Sizes of one run. Recall task: <c>Pairs</c> random unit keys of width <c>KeyDim</c> with values ~ N(0, I/KeyDim), each
    /// written <c>Repeats</c> times (one random order per round) in <c>Streams</c> independent streams; on the corrupted task a
    /// fraction <c>OutlierFraction</c> of the writes carries v + <c>OutlierScale</c>·min(|c|, <c>OutlierClamp</c>)·u (c standard
    /// Cauchy, u a random unit direction; the clamp keeps the mean error finite). <c>HuberDelta</c>: Yaad's threshold δ (fixed
    /// here: no outer training). <c>StepSizes</c>: the θ grid each
    /// memory picks from on a tuning seed. <c>DModel</c>, <c>Heads</c>, <c>SeqLen</c>: the mixers' timing.
    /// </summary>
    public sealed record Config(int KeyDim, int Pairs, int Repeats, int Streams, double OutlierFraction, double OutlierScale, double OutlierClamp,
        double HuberDelta, double[] StepSizes, int DModel, int Heads, int SeqLen, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(KeyDim: 16, Pairs: 8, Repeats: 16, Streams: 128, OutlierFraction: 0.05, OutlierScale: 10, OutlierClamp: 10,
            HuberDelta: 2, StepSizes: [0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2], DModel: 32, Heads: 2, SeqLen: 64, Seed: 0) { Size = "smoke" };

        public static Config Full => new(KeyDim: 64, Pairs: 32, Repeats: 32, Streams: 1024, OutlierFraction: 0.05, OutlierScale: 10, OutlierClamp: 10,
            HuberDelta: 2, StepSizes: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2], DModel: 256, Heads: 4, SeqLen: 1024, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
    }

    public const string L2Name = "l2", MonetaName = "Moneta", YaadName = "Yaad", MemoraName = "Memora";
    public const string Clean = "clean", Corrupted = "corrupted";

    /// <summary>The memories of Exp 1 (linear memory per head, as spec §4 compares the losses): name → core options.</summary>
    public static IReadOnlyList<(string Name, AssociativeMemoryOptions Options)> RecallMemories { get; } =
    [
        (L2Name, new AssociativeMemoryOptions { Bias = AttentionalBias.L2, Retention = Retention.L2Decay }),
        (MonetaName, new AssociativeMemoryOptions { Bias = AttentionalBias.Lp(3), Retention = Retention.LqNormalize(4) }),
        (YaadName, new AssociativeMemoryOptions { Bias = AttentionalBias.Huber, Retention = Retention.L2Decay }),
        (MemoraName, new AssociativeMemoryOptions { Bias = AttentionalBias.L2, Retention = Retention.KlSoftmax }),
    ];

    /// <summary>A Miras mixer by name ("l2", "Moneta", "Yaad", "Memora").</summary>
    public static MirasMixer Mixer(string name, int dModel, int heads, MirasOptions? options = null) => name switch
    {
        L2Name => new L2Memory(dModel, heads, options),
        MonetaName => new Moneta(dModel, heads, options),
        YaadName => new Yaad(dModel, heads, options),
        MemoraName => new Memora(dModel, heads, options),
        _ => throw new ArgumentException($"unknown model '{name}' (l2, Moneta, Yaad, Memora).", nameof(name)),
    };

    static readonly string[] Models = [L2Name, MonetaName, YaadName, MemoraName];

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase.</summary>
    public static MirasResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        if (config.StepSizes is null || config.StepSizes.Length == 0 || config.StepSizes.Any(s => !(s > 0)))
            throw new ArgumentException("StepSizes must hold positive step sizes.", nameof(config));
        if (!(config.OutlierFraction is >= 0 and <= 1))
            throw new ArgumentException($"OutlierFraction must lie in [0, 1], got {config.OutlierFraction}.", nameof(config));
        Guard.Positive(config.Pairs, nameof(config.Pairs));
        Guard.Positive(config.Repeats, nameof(config.Repeats));
        if (!(config.OutlierClamp > 0)) throw new ArgumentException($"OutlierClamp must be positive, got {config.OutlierClamp}.", nameof(config));
        var clock = new PhaseClock();
        using var scope = NewDisposeScope();
        progress?.Report("exactness: each mixer's fast forms vs the naive twin, streaming vs forward, Memora's simplex, identities (float64)");
        var exactness = Exactness(device, config.Seed);
        clock.Lap("exactness");
        progress?.Report($"Exp 1 (identity projections, no outer training): {config.Pairs} pairs × {config.Repeats} writes, {config.Streams} streams, " +
                         $"{config.OutlierFraction:P0} outliers on the corrupted task");
        var recall = Recall(config, device);
        foreach (var r in recall) progress?.Report($"  {r.Task,-9} {r.Model,-7} θ = {r.Theta:0.###}: recall error {r.TestError:0.0000}");
        clock.Lap("recall");
        progress?.Report($"mixers: forward time per token at T = {config.SeqLen}, d = {config.DModel}");
        var timings = Timings(config, device);
        clock.Lap("timings");
        progress?.Report($"done in {clock.Seconds:F1} s");
        return new MirasResult(config, exactness, recall, timings, clock.Seconds, clock.Phases);
    }

    /// <summary>
    /// The exactness phase, float64, T = 13 (odd), d = 12, 2 heads of width 6, MLP memory, chunk 4 (not dividing T): each
    /// mixer's chunked and recurrent forms against the naive twin (outputs and every parameter gradient); streaming Step against
    /// the recurrent forward; every Memora memory on the simplex; ℓp(p = 2) and Huber(δ → ∞) equal ℓ2; ℓq(q = 2) reads W = A;
    /// chunked at b = 1 equals the recurrence.
    /// </summary>
    public static IReadOnlyList<ExactnessCheck> Exactness(Device device, int seed = 0)
    {
        const int T = 13, D = 12, H = 2, C = 4;
        var checks = new List<ExactnessCheck>();
        var options = new MirasOptions { ChunkSize = C };
        Tensor Input(ulong s) => torch.randn(2, T, D, generator: new Generator(s), dtype: float64).to(device);

        foreach (var name in Models)
            foreach (var form in new[] { MirasForm.Chunked, MirasForm.Recurrent })
            {
                using var scope = NewDisposeScope();
                torch.manual_seed(seed);
                using var mixer = Mixer(name, D, H, options with { Form = form });
                mixer.to(float64).to(device);
                var x = Input((ulong)seed);
                int chunk = form == MirasForm.Chunked ? C : 1;
                // the scaled bound, max |Δ| / (1 + max |naive|): Moneta's ℓq map makes some gradients large
                var (_, _, output, grads) = FormAgreement.Of(mixer, () => mixer.call(x), () => MirasNaive.Forward(mixer, x, chunk));
                string what = form == MirasForm.Chunked ? $"chunked (C = {C})" : "recurrent";
                checks.Add(new ExactnessCheck($"{name}, {what} vs naive twin: outputs", output, 1e-10));
                checks.Add(new ExactnessCheck($"{name}, {what} vs naive twin: parameter gradients", grads, 1e-10));
            }

        foreach (var name in Models)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(seed);
            using var mixer = Mixer(name, D, H, options with { Form = MirasForm.Recurrent });
            mixer.to(float64).to(device);
            var x = Input((ulong)seed + 2);
            using var state = mixer.NewState(x.size(0), ScalarType.Float64, device);
            var steps = torch.stack(Enumerable.Range(0, T).Select(t => mixer.Step(x.select(1, t), state)).ToArray(), 1);
            double error = (steps - mixer.call(x)).abs().max().item<double>();
            checks.Add(new ExactnessCheck($"{name}: streaming Step over {T} tokens vs the recurrent forward", error, 1e-10));
        }

        checks.Add(new ExactnessCheck("Memora: every W_t ≥ 0 with rows summing to 1: max row-sum error or negative mass", MemoraSimplex(device, seed), 1e-6));
        checks.AddRange(Identities(device, seed));
        return checks;
    }

    /// <summary>Memora's memory (MLP, the mixer's start) streamed over T tokens: max over t of |Σ_row W_t − 1| and of −min W_t.</summary>
    static double MemoraSimplex(Device device, int seed)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var g = new Generator((ulong)seed + 5);
        const int B = 2, T = 13, H = 2, D = 6;
        var o = new AssociativeMemoryOptions { Architecture = MemoryArchitecture.Mlp, Residual = true, LayerNorm = true, Retention = Retention.KlSoftmax };
        var start = new MemoryState([torch.randn(B, H, 4 * D, D, generator: g, dtype: float64), torch.randn(B, H, D, 4 * D, generator: g, dtype: float64)]);
        using var stream = new AssociativeMemoryStream(start, o);
        double worst = 0;
        for (int t = 0; t < T; t++)
        {
            var q = torch.randn(B, H, D, generator: g, dtype: float64);
            var k = nn.functional.normalize(torch.randn(B, H, D, generator: g, dtype: float64), 2, -1);
            var v = 3 * torch.randn(B, H, D, generator: g, dtype: float64);
            stream.Step(q, k, v, torch.full(B, H, 0.5, dtype: float64), alpha: torch.full(B, H, 0.1, dtype: float64));
            foreach (var a in stream.State.Weights)
            {
                var w = o.Retention.Read(a).to(device);
                worst = Math.Max(worst, Math.Max((w.sum(-1) - 1).abs().max().item<double>(), -w.min().item<double>()));
            }
        }
        return worst;
    }

    /// <summary>Spec §6 identities on a linear memory (float64, T = 13, chunk 4 where chunked).</summary>
    static IEnumerable<ExactnessCheck> Identities(Device device, int seed)
    {
        using var scope = NewDisposeScope();
        var g = new Generator((ulong)seed + 6);
        const int B = 2, T = 13, H = 2, D = 5;
        var q = torch.randn(B, T, H, D, generator: g, dtype: float64).to(device);
        var k = nn.functional.normalize(torch.randn(B, T, H, D, generator: g, dtype: float64), 2, -1).to(device);
        var v = torch.randn(B, T, H, D, generator: g, dtype: float64).to(device);
        var theta = (0.4 * torch.rand(B, T, H, generator: g, dtype: float64)).to(device);
        var alpha = (0.1 * torch.rand(B, T, H, generator: g, dtype: float64)).to(device);
        var gates = new MemoryGates(theta, null, alpha);
        double Diff(AssociativeMemoryResult a, AssociativeMemoryResult b) =>
            Math.Max((a.Output - b.Output).abs().max().item<double>(), (a.FinalState.Weights[0] - b.FinalState.Weights[0]).abs().max().item<double>());
        var l2 = new AssociativeMemoryOptions();
        using var reference = AssociativeMemory.Recurrent(q, k, v, gates, null, l2);
        using var lp2 = AssociativeMemory.Recurrent(q, k, v, gates, null, l2 with { Bias = AttentionalBias.Lp(2) });
        yield return new ExactnessCheck("identity: ℓp bias with p = 2 equals the ℓ2 bias (outputs, final memory)", Diff(reference, lp2), 1e-12);
        using var huber = AssociativeMemory.Recurrent(q, k, v, gates with { Delta = torch.full_like(theta, 1e9) }, null,
            l2 with { Bias = AttentionalBias.Huber });
        yield return new ExactnessCheck("identity: Huber bias with δ → ∞ (1e9) equals the ℓ2 bias", Diff(reference, huber), 1e-12);
        using var lq2 = AssociativeMemory.Recurrent(q, k, v, gates, null, l2 with { Retention = Retention.LqNormalize(2) });
        yield return new ExactnessCheck("identity: Moneta's ℓq retention with q = 2 gives W = A (equals L2 retention)", Diff(reference, lq2), 1e-12);
        var moneta = RecallMemories.Single(m => m.Name == MonetaName).Options;
        using var chunk1 = AssociativeMemory.Chunked(q, k, v, gates, null, moneta with { ChunkSize = 1 });
        using var rec = AssociativeMemory.Recurrent(q, k, v, gates, null, moneta);
        yield return new ExactnessCheck("identity: Moneta's chunked form at b = 1 equals the sequential recurrence", Diff(rec, chunk1), 1e-12);
    }

    /// <summary>One recall stream set: keys, clean values [S, P, D], and the write sequence (pair index, written value) [S, N, ·].</summary>
    internal sealed record RecallData(Tensor Keys, Tensor Values, Tensor WriteKeys, Tensor WriteValues, double Corrupted);

    /// <summary>Builds the streams of one seed; <paramref name="outliers"/> false: the clean task (the same keys, values and order).</summary>
    internal static RecallData Streams(Config c, int seed, bool outliers, Device device)
    {
        var g = new Generator((ulong)seed);
        int s = c.Streams, p = c.Pairs, d = c.KeyDim, n = p * c.Repeats;
        var keys = nn.functional.normalize(torch.randn(s, p, d, generator: g, dtype: float64), 2, -1);
        var values = torch.randn(s, p, d, generator: g, dtype: float64) / Math.Sqrt(d);
        var order = torch.cat(Enumerable.Range(0, c.Repeats).Select(_ => torch.rand(s, p, generator: g).argsort(-1)).ToArray(), 1);   // [S, N]
        var index = order.unsqueeze(-1).expand(s, n, d);
        var wk = keys.gather(1, index);
        var wv = values.gather(1, index);
        var hit = torch.rand(s, n, generator: g, dtype: float64).lt(c.OutlierFraction).to(float64).unsqueeze(-1);
        var cauchy = (Math.PI * (torch.rand(s, n, 1, generator: g, dtype: float64) - 0.5)).tan()   // c ~ Cauchy(0, 1)
            .abs().clamp_max(c.OutlierClamp);                                                       // min(|c|, clamp)
        var direction = nn.functional.normalize(torch.randn(s, n, d, generator: g, dtype: float64), 2, -1);
        double fraction = hit.mean().item<double>();
        if (outliers) wv = wv + hit * c.OutlierScale * cauchy * direction;                  // v + scale·min(|c|, clamp)·u on the hit writes
        return new RecallData(keys.to(device), values.to(device), wk.to(device), wv.to(device), outliers ? fraction : 0);
    }

    /// <summary>
    /// Relative recall error after each round of writes: E‖M(k_i) − v_i‖² / E‖v_i‖² over all pairs and streams, one memory
    /// per stream (a linear memory, zero start), constant θ, no forgetting.
    /// </summary>
    internal static double[] RecallCurve(Config c, RecallData data, AssociativeMemoryOptions options, double theta)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        int s = c.Streams, p = c.Pairs, d = c.KeyDim;
        var errors = new double[c.Repeats];
        MemoryState? state = null;
        double energy = data.Values.square().sum(-1).mean().item<double>();
        for (int r = 0; r < c.Repeats; r++)
        {
            var k = data.WriteKeys.narrow(1, r * p, p).unsqueeze(2);                        // [S, P, 1, D]
            var v = data.WriteValues.narrow(1, r * p, p).unsqueeze(2);
            var th = torch.full(new long[] { s, p, 1 }, theta, dtype: float64, device: k.device);
            var gates = new MemoryGates(th, null, null, options.Bias.NeedsDelta ? torch.full_like(th, c.HuberDelta) : null);
            var result = AssociativeMemory.Recurrent(k, k, v, gates, state, options);       // the read-outs during writes are unused
            state = result.FinalState;
            var y = AssociativeMemory.Read(state, data.Keys.unsqueeze(2), options).squeeze(2);   // M(k_i) [S, P, D]
            errors[r] = (y - data.Values).square().sum(-1).mean().item<double>() / energy;
        }
        return errors;
    }

    /// <summary>
    /// Exp 1: for each task (clean, corrupted) and memory, θ picked from the grid on a tuning seed (the lowest final error),
    /// then the error curve on a test seed (other keys, values, order and outliers).
    /// </summary>
    public static IReadOnlyList<RecallRun> Recall(Config c, Device device)
    {
        using var scope = NewDisposeScope();
        var runs = new List<RecallRun>();
        foreach (var (task, outliers) in new[] { (Clean, false), (Corrupted, true) })
        {
            var tune = Streams(c, c.Seed + 100, outliers, device);
            var test = Streams(c, c.Seed + 200, outliers, device);
            foreach (var (name, options) in RecallMemories)
            {
                var tuned = c.StepSizes.Select(th => (Theta: th, Error: RecallCurve(c, tune, options, th)[^1])).ToList();
                var best = tuned.Where(t => !double.IsNaN(t.Error)).DefaultIfEmpty(tuned[0]).MinBy(t => t.Error);
                var curve = RecallCurve(c, test, options, best.Theta);
                runs.Add(new RecallRun(name, task, best.Theta, best.Error, curve[^1], curve, test.Corrupted,
                    tuned.Select(t => t.Error).ToArray()));
            }
        }
        return runs;
    }

    /// <summary>Each mixer's forward time per token (float32, no grad, chunked form, median of 3) and decode-state bytes.</summary>
    public static IReadOnlyList<MixerTiming> Timings(Config c, Device device)
    {
        var rows = new List<MixerTiming>();
        foreach (var name in Models)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(c.Seed);
            using var mixer = Mixer(name, c.DModel, c.Heads);
            mixer.to(device);
            var x = torch.randn(1, c.SeqLen, c.DModel, generator: new Generator((ulong)c.Seed)).to(device);
            mixer.call(x);                                                                   // warm-up
            var times = new List<double>();
            for (int i = 0; i < 3; i++)
            {
                var sw = Stopwatch.StartNew();
                mixer.call(x);
                if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
                times.Add(sw.Elapsed.TotalMilliseconds / c.SeqLen);
            }
            long parameters = mixer.parameters().Sum(p => p.numel());
            rows.Add(new MixerTiming(name, parameters, mixer.StateBytes(), times.Order().ElementAt(1)));
        }
        return rows;
    }
}
