using System.Globalization;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.Based;
using TorchSharp;

/// <summary>
/// <c>AttentionLab.Bench based [--lengths 256,…,16384] [--heads 4] [--feature-dim 16] [--dim 64] [--chunk 64] [--repeats 3]
/// [--max-reference 4096] [--threads 1] [--device cpu|cuda] [--no-memory]</c>: BASED prefill vs full softmax attention;
/// prints date, device, command, the table, fitted log-log slopes and crossovers.
/// </summary>
static class BasedCommand
{
    public static int Run(string[] args)
    {
        if (BenchArgs.Parse(args, "usage: AttentionLab.Bench based [--lengths 256,…] [--heads 4] [--feature-dim 16] [--dim 64] [--chunk 64] [--repeats 3] [--max-reference 4096] [--threads 1] [--device cpu|cuda] [--no-memory]", "no-memory") is not { } o) return 2;
        var lengths = o.Lengths("256,512,1024,2048,4096,8192,16384");
        bool measureMemory = !o.Flag("no-memory");
        int Int(string name, int fallback) => o.Int(name, fallback);
        var device = o.SetUp();
        var points = BasedBenchmark.Prefill(lengths, 1, Int("heads", 4), Int("feature-dim", 16), Int("dim", 64), Int("chunk", 64), warmup: 1,
            repeats: Int("repeats", 3), maxReferenceLength: Int("max-reference", 4096), includeFla: true, measureMemory: measureMemory, device: device,
            progress: new InlineProgress<PrefillPoint>(p => Console.Error.WriteLine($"T = {p.SeqLen,6} {p.Method,-18} {p.MedianMs,10:F2} ms  {p.PeakMiB:F1} MiB")));
        o.PrintHeader(device);
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(BasedBenchmark.ToDataFrame(points), new Dictionary<string, string> { ["peak_mib"] = "F1", ["median_ms"] = "F2" }));
        Console.WriteLine();
        foreach (var (method, slope) in BasedBenchmark.Slopes(points)) Console.WriteLine($"slope {method}: {slope:F2}");
        foreach (var baseline in new[] { BasedBenchmark.Sdpa, BasedBenchmark.Reference })
            Console.WriteLine($"crossover {BasedBenchmark.BasedChunked} vs {baseline}: {(BasedBenchmark.Crossover(points, BasedBenchmark.BasedChunked, baseline) is { } t ? $"T = {t}" : "none in range")}");
        return 0;
    }
}
