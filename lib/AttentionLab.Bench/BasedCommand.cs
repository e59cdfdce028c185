using AttentionLab.Core;
using AttentionLab.Papers.Based;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>AttentionLab.Bench based [--lengths 256,…,16384] [--heads 4] [--feature-dim 16] [--dim 64] [--chunk 64] [--repeats 3]
/// [--max-reference 4096] [--threads 1] [--device cpu|cuda] [--no-memory]</c>: BASED prefill vs full softmax attention;
/// prints date, device, command, the table, fitted log-log slopes and crossovers.
/// </summary>
static class BasedCommand
{
    public static BenchCommand Command { get; } = new("based", "P13 BASED prefill vs full softmax attention (slopes, crossovers)",
    [
        BenchCli.IntList("lengths", "256,512,1024,2048,4096,8192,16384", "sequence lengths T"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("feature-dim", 16, "feature dimension d′ of q, k"),
        BenchCli.Int("dim", 64, "head dimension of v (and of softmax's q, k)"),
        BenchCli.Int("chunk", 64, "chunk size of the chunked form"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        BenchCli.Int("max-reference", 4096, "longest T the explicit reference runs at"),
        .. BenchCli.Machine(),
        BenchCli.Flag("no-memory", "skip the peak-memory measurement"),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        bool measureMemory = !o.Flag("no-memory");
        var device = o.SetUp();
        var points = BasedBenchmark.Prefill(lengths, 1, o.Int("heads"), o.Int("feature-dim"), o.Int("dim"), o.Int("chunk"), warmup: 1,
            repeats: o.Int("repeats"), maxReferenceLength: o.Int("max-reference"), includeFla: true, measureMemory: measureMemory, device: device,
            progress: new InlineProgress<SweepPoint>(p => Console.Error.WriteLine(
                $"T = {p.SeqLen,6} {p.Method,-18} {p.MedianMs,10:F2} ms  {p.PeakMiB:F1} MiB")));
        o.PrintHeader(device);
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(BasedBenchmark.ToDataFrame(points), new Dictionary<string, string> { ["peak_mib"] = "F1", ["median_ms"] = "F2" }));
        Console.WriteLine();
        foreach (var (method, slope) in Sweep.Slopes(points)) Console.WriteLine($"slope {method}: {slope:F2}");
        foreach (var baseline in new[] { BasedBenchmark.Sdpa, BasedBenchmark.Reference })
            Console.WriteLine(
                $"crossover {BasedBenchmark.BasedChunked} vs {baseline}: " +
                $"{(Sweep.Crossover(points, BasedBenchmark.BasedChunked, baseline) is { } t ? $"T = {t}" : "none in range")}");
        return 0;
    }
}
