using AttentionLab.Atlas;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>memory</c>: each memory of the memory atlas (Titans, Miras, HCAM, …) as one layer against softmax attention and the
/// linear-attention engine (plain and gated), at each sequence length T: forward time per token (no grad, batch 1, the training
/// form), decode time per token (T Step calls from an empty state) and the decode state's bytes after T tokens — measured from the
/// streamed state, or counted by the paper's formula for a mixer that cannot stream (HCAM).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- memory [--lengths 128,256,512] [--dim 64] [--heads 2] [--window 32]
///     [--memory linear|mlp] [--chunk 16] [--rounds 3]
/// </summary>
static class MemoryCommand
{
    public static BenchCommand Command { get; } = new("memory", "issue 12 memories vs softmax and linear attention: time per token and state bytes vs T",
    [
        BenchCli.IntList("lengths", "128,256,512", "sequence lengths T"),
        BenchCli.Int("dim", 64, "model width d"),
        BenchCli.Int("heads", 2, "heads"),
        BenchCli.Int("window", 32, "local window n of SWA, Titans and HCAM (HCAM's chunk too)"),
        BenchCli.Text("memory", "linear", "memory per head", "linear", "mlp"),
        BenchCli.Int("chunk", 16, "chunk of the memories' chunked training form"),
        BenchCli.Int("rounds", 3, "interleaved rounds (each cell: the median over rounds)"),
        .. BenchCli.Machine(),
    ], Run);

    /// <summary>The mixers timed: the baselines and every memory of the full atlas.</summary>
    static IReadOnlyList<MemoryMixer> Mixers => MemoryAtlasMixers.Full;

    sealed record Row(string Mixer, [property: Column("T")] int Length, [property: Column("forward_us_per_token", Digits = 2)] double ForwardUs,
        [property: Column("step_us_per_token", Digits = 1)] double? StepUs, [property: Column("state_bytes")] long StateBytes,
        [property: Column("state")] string StateKind);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        int d = o.Int("dim"), heads = o.Int("heads"), window = o.Int("window"), chunk = o.Int("chunk"), rounds = o.Int("rounds");
        var memory = o.Text("memory") == "mlp" ? MemoryArchitecture.Mlp : MemoryArchitecture.Linear;
        var device = o.SetUp();
        var cells = new Dictionary<(string, int), List<(double Forward, double? Step, long Bytes, bool Counted)>>();
        for (int round = 0; round < rounds; round++)
            foreach (int t in lengths)
                foreach (var mixer in Mixers)
                {
                    var shape = new MemoryShape(d, heads, window, t, memory, chunk);
                    var cell = Measure(mixer, shape, device);
                    if (!cells.TryGetValue((mixer.Name, t), out var list)) cells[(mixer.Name, t)] = list = [];
                    list.Add(cell);
                    Console.Error.WriteLine($"round {round + 1}/{rounds} T = {t} {mixer.Name}: forward {cell.Forward:F2} µs/token, " +
                        $"step {(cell.Step is { } s ? $"{s:F1} µs" : "n/a")}, {cell.Bytes:N0} B");
                }
        o.PrintHeader(device);
        Console.WriteLine($"one layer, d = {d}, {heads} heads, window n = {window}, {o.Text("memory")} memories (chunk {chunk}), batch 1, float32, no grad; " +
                          $"forward: the training form over T tokens; step: T decode steps from an empty state; median over {rounds} interleaved rounds");
        Console.WriteLine();
        var rows = Mixers.SelectMany(m => lengths.Select(t =>
        {
            var list = cells[(m.Name, t)];
            var steps = list.Where(c => c.Step is not null).Select(c => c.Step!.Value).ToList();
            return new Row(m.Name, t, Median(list.Select(c => c.Forward).ToList()), steps.Count > 0 ? Median(steps) : null, list[0].Bytes,
                list[0].Counted ? "counted" : "streamed");
        }));
        Console.WriteLine(MarkdownTable.From(Tables.From(rows)));
        return 0;
    }

    /// <summary>Forward µs per token, decode µs per token and state bytes after T tokens of one mixer at one length.</summary>
    static (double Forward, double? Step, long Bytes, bool Counted) Measure(MemoryMixer mixer, MemoryShape shape, Device device)
    {
        torch.manual_seed(0);
        using var module = mixer.Build(shape);
        module.to(device).eval();
        using var noGrad = torch.no_grad();
        using var x = torch.randn(new long[] { 1, shape.SeqLen, shape.DModel }, device: device);
        double forwardUs = 1000 * Benchmark.Time(() => module.call(x).Dispose(), warmup: 1, repeats: 3, device: device).MedianMs / shape.SeqLen;
        if (mixer.CountedStateBytes is { } counted || module is not IStreamingMixer { CanStream: true } streaming)
            return (forwardUs, null, mixer.CountedStateBytes?.Invoke(shape) ?? 0, true);
        using var state = streaming.NewState(1, ScalarType.Float32, device);
        var decode = Benchmark.Time(() =>
        {
            for (int i = 0; i < shape.SeqLen; i++) { using var s = NewDisposeScope(); streaming.Step(x.select(1, i), state); }
        }, warmup: 0, repeats: 1, device: device);
        return (forwardUs, 1000 * decode.MedianMs / shape.SeqLen, state.Bytes, false);
    }

    static double Median(List<double> xs)
    {
        var sorted = xs.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
