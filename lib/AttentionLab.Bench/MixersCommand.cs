using AttentionLab.Atlas;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>mixers</c>: every atlas mixer as a layer — forward over T tokens (no grad) and one decode step per token after a
/// warm-up — the numbers behind the mixer-base before/after table (issue 11) and a first look for performance work.
/// dotnet run --project lib/AttentionLab.Bench -c Release -- mixers [--set efficient|heads] [--dim 256] [--heads 4] [--length 1024]
///     [--batch 1] [--steps 256] [--rounds 5]
/// Rounds interleave the mixers; each cell is the median over rounds (forward: each round's median of 7 calls). The state
/// column is the decode state's bytes per token after all steps (64 + steps tokens; a fixed state shrinks with more steps).
/// </summary>
static class MixersCommand
{
    public static BenchCommand Command { get; } = new("mixers", "every atlas mixer as a layer: forward time and decode time per token",
    [
        BenchCli.Text("set", "efficient", "which mixers: the efficient ones (issue 11's table) or the head variants (issue 13) beside softmax",
            "efficient", "heads"),
        BenchCli.Int("dim", 256, "model width d"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("length", 1024, "tokens of the forward pass"),
        BenchCli.Int("batch", 1, "sequences"),
        BenchCli.Int("steps", 256, "decode steps timed per round (after 64 warm-up steps)"),
        BenchCli.Int("rounds", 5, "interleaved rounds"),
        .. BenchCli.Machine(),
    ], Run);

    sealed record Row(string Mixer, [property: Column("forward_ms", Digits = 2)] double ForwardMs,
        [property: Column("step_us", Digits = 1)] double? StepUs, [property: Column("state_bytes_per_token", Digits = 0)] double? StateBytesPerToken);

    /// <summary>The mixers of issue 11's before/after table.</summary>
    static AtlasMixer[] Efficient =>
    [
        AtlasMixers.Softmax, AtlasMixers.SlidingWindow(64), AtlasMixers.Based(16), AtlasMixers.Lightning, AtlasMixers.Flowformer,
        AtlasMixers.SigmoidLinear, AtlasMixers.Aaren, AtlasMixers.Routing(32, 32), AtlasMixers.S2(16, 4, 4), AtlasMixers.Landmark(32, 2),
    ];

    /// <summary>The issue-13 head variants that are mixers, beside softmax at the same width.</summary>
    static AtlasMixer[] HeadVariants =>
    [
        AtlasMixers.Softmax, AtlasMixers.Rcmha, AtlasMixers.AffineScaled, AtlasMixers.Bam(2), AtlasMixers.Moh, AtlasMixers.Gqa(1), AtlasMixers.Gqa(2),
        AtlasMixers.Deconstructed(AttentionLab.Papers.DeconstructingAttention.MixerKind.ReluNorm),
        AtlasMixers.Deconstructed(AttentionLab.Papers.DeconstructingAttention.MixerKind.DistanceKernel),
        AtlasMixers.Deconstructed(AttentionLab.Papers.DeconstructingAttention.MixerKind.FixedMix),
    ];

    static int Run(BenchArgs o)
    {
        int d = o.Int("dim"), heads = o.Int("heads"), length = o.Int("length"), batch = o.Int("batch"), steps = o.Int("steps"), rounds = o.Int("rounds");
        var device = o.SetUp();
        var mixers = o.Text("set") == "heads" ? HeadVariants : Efficient;
        var forward = mixers.ToDictionary(m => m.Name, _ => new List<double>());
        var step = mixers.ToDictionary(m => m.Name, _ => new List<double>());
        var stateBytes = new Dictionary<string, double>();
        for (int round = 0; round < rounds; round++)
            foreach (var mixer in mixers)
            {
                var (f, s, bytes) = Measure(mixer, d, heads, length, batch, steps, device);
                forward[mixer.Name].Add(f);
                if (s is { } us) step[mixer.Name].Add(us);
                if (bytes is { } b) stateBytes[mixer.Name] = b;
                Console.Error.WriteLine($"round {round + 1}/{rounds} {mixer.Name}: forward {f:F2} ms, step {(s is { } x ? $"{x:F1} µs" : "n/a")}");
            }
        o.PrintHeader(device);
        Console.WriteLine($"d = {d}, {heads} heads, forward over T = {length}, batch {batch}, no grad; decode: {steps} steps after 64 warm-up steps; " +
                          $"median over {rounds} interleaved rounds");
        Console.WriteLine();
        var rows = mixers.Select(m => new Row(m.Name, Median(forward[m.Name]), step[m.Name].Count > 0 ? Median(step[m.Name]) : null,
            stateBytes.TryGetValue(m.Name, out var b) ? b : null));
        Console.WriteLine(MarkdownTable.From(Tables.From(rows)));
        return 0;
    }

    static (double ForwardMs, double? StepUs, double? StateBytesPerToken) Measure(AtlasMixer mixer, int d, int heads, int length, int batch, int steps,
        Device device)
    {
        torch.manual_seed(0);
        using var module = mixer.Build(d, heads);
        module.to(device).eval();
        using var noGrad = torch.no_grad();
        using var x = torch.randn(new long[] { batch, length, d }, device: device);
        double forwardMs = Benchmark.Time(() => module.call(x), warmup: 2, repeats: 7, device: device).MedianMs;
        if (module is not IStreamingMixer { CanStream: true } streaming) return (forwardMs, null, null);
        MixerState state;
        try { state = streaming.NewState(batch, ScalarType.Float32, device); }
        catch (InvalidOperationException) { return (forwardMs, null, null); }                      // Landmark decodes through its memory
        using (state)
        {
            using var token = torch.randn(new long[] { batch, d }, device: device);
            for (int i = 0; i < 64; i++) { using var s = NewDisposeScope(); streaming.Step(token, state); }   // warm-up steps
            var decode = Benchmark.Time(() =>                                                 // one timed call = `steps` decode steps
            {
                for (int i = 0; i < steps; i++) { using var s = NewDisposeScope(); streaming.Step(token, state); }
            }, warmup: 0, repeats: 1, device: device);
            return (forwardMs, 1000 * decode.MedianMs / steps, state.Bytes / (double)(batch * (64L + steps)));
        }
    }

    static double Median(List<double> xs)
    {
        var sorted = xs.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
