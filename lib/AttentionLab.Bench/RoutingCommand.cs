using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// <c>AttentionLab.Bench routing [--lengths 256,…,16384] [--heads 4] [--dim 64] [--repeats 3] [--max-reference 4096]
/// [--threads 1] [--device cpu|cuda]</c>: one forward of the sparse Routing Transformer layer (half block-local, half balanced
/// routing heads, L = w = C = ⌈√T⌉) vs a dense causal attention layer of the same width (up to --max-reference) and SDPA;
/// prints date, device, command, the table and the fitted log-log slopes.
/// </summary>
static class RoutingCommand
{
    public static int Run(string[] args)
    {
        if (BenchArgs.Parse(args, "usage: AttentionLab.Bench routing [--lengths 256,…] [--heads 4] [--dim 64] [--repeats 3] [--max-reference 4096] [--threads 1] [--device cpu|cuda]") is not { } o) return 2;
        var lengths = o.Lengths("256,512,1024,2048,4096,8192,16384");
        var device = o.SetUp();
        var points = RoutingBenchmark.Speed(lengths, o.Int("heads", 4), o.Int("dim", 64), warmup: 1, repeats: o.Int("repeats", 3),
            maxReferenceLength: o.Int("max-reference", 4096), device: device,
            progress: new InlineProgress<RoutingSpeedPoint>(p => Console.Error.WriteLine($"T = {p.SeqLen,6} {p.Method,-18} {p.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(RoutingBenchmark.ToDataFrame(points), new Dictionary<string, string> { ["median_ms"] = "F2" }));
        Console.WriteLine();
        foreach (var (method, slope) in RoutingBenchmark.Slopes(points)) Console.WriteLine($"slope {method}: {slope:F2}");
        return 0;
    }
}
