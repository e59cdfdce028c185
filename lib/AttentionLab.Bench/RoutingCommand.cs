using AttentionLab.Core;
using AttentionLab.Papers.RoutingTransformer;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>AttentionLab.Bench routing [--lengths 256,…,16384] [--heads 4] [--dim 64] [--repeats 3] [--max-reference 4096]
/// [--threads 1] [--device cpu|cuda]</c>: one forward of the sparse Routing Transformer layer (half block-local, half balanced
/// routing heads, L = w = C = ⌈√T⌉) vs a dense causal attention layer of the same width (up to --max-reference) and SDPA;
/// prints date, device, command, the table and the fitted log-log slopes.
/// </summary>
static class RoutingCommand
{
    public static BenchCommand Command { get; } = new("routing", "P28 Routing Transformer layer vs dense causal attention and SDPA, one forward",
    [
        BenchCli.IntList("lengths", "256,512,1024,2048,4096,8192,16384", "sequence lengths T"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("dim", 64, "model width"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        BenchCli.Int("max-reference", 4096, "longest T the dense layer runs at"),
        .. BenchCli.Machine(),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        var device = o.SetUp();
        var points = RoutingBenchmark.Speed(lengths, o.Int("heads"), o.Int("dim"), warmup: 1, repeats: o.Int("repeats"),
            maxReferenceLength: o.Int("max-reference"), device: device,
            progress: new InlineProgress<RoutingSpeedPoint>(p => Console.Error.WriteLine($"T = {p.SeqLen,6} {p.Method,-18} {p.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(RoutingBenchmark.ToDataFrame(points), new Dictionary<string, string> { ["median_ms"] = "F2" }));
        Console.WriteLine();
        foreach (var (method, slope) in Sweep.Slopes(points)) Console.WriteLine($"slope {method}: {slope:F2}");
        return 0;
    }
}
