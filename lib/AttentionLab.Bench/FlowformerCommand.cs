using AttentionLab.Core;
using AttentionLab.Papers.Flowformer;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>AttentionLab.Bench flowformer [--lengths 256,…,16384] [--heads 4] [--dim 64] [--chunk 64] [--repeats 3]
/// [--max-reference 4096] [--pass forward|backward|both] [--threads 1] [--device cpu|cuda] [--no-memory]</c>: Flow-Attention
/// vs full softmax attention, one forward and/or one forward + backward (spec §8); prints date, device, command, the
/// table, fitted log-log slopes, crossovers and the speed-up at T = 8192 per pass.
/// </summary>
static class FlowformerCommand
{
    public static BenchCommand Command { get; } = new("flowformer", "P19 Flow-Attention vs full softmax attention, forward and/or forward + backward",
    [
        BenchCli.IntList("lengths", "256,512,1024,2048,4096,8192,16384", "sequence lengths T"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("dim", 64, "head dimension"),
        BenchCli.Int("chunk", 64, "chunk size of the chunked forms"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        BenchCli.Int("max-reference", 4096, "longest T the explicit reference runs at"),
        BenchCli.Text("pass", "both", "forward, backward (forward + backward) or both", "forward", "backward", "both"),
        .. BenchCli.Machine(),
        BenchCli.Flag("no-memory", "skip the peak-memory measurement"),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        bool measureMemory = !o.Flag("no-memory");
        string pass = o.Text("pass");
        int Int(string name) => o.Int(name);
        var device = o.SetUp();
        var points = new List<SweepPoint>();
        foreach (bool backward in new[] { false, true })
        {
            if (backward ? pass == "forward" : pass == "backward") continue;
            points.AddRange(FlowBenchmark.Speed(lengths, 1, Int("heads"), Int("dim"), Int("chunk"), warmup: 1, repeats: Int("repeats"),
                maxReferenceLength: Int("max-reference"), measureMemory: measureMemory, device: device, backward: backward,
                progress: new InlineProgress<SweepPoint>(p =>
                    Console.Error.WriteLine($"{p.Pass,-16} T = {p.SeqLen,6} {p.Method,-18} {p.MedianMs,10:F2} ms  {p.PeakMiB:F1} MiB"))));
        }
        o.PrintHeader(device);
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(FlowBenchmark.ToDataFrame(points), new Dictionary<string, string> { ["peak_mib"] = "F1", ["median_ms"] = "F2" }));
        foreach (var p in points.Select(p => p.Pass).Distinct())
        {
            Console.WriteLine();
            Console.WriteLine($"{p}:");
            foreach (var (method, slope) in Sweep.Slopes(points, p)) Console.WriteLine($"slope {method}: {slope:F2}");
            foreach (var baseline in new[] { FlowBenchmark.Sdpa, FlowBenchmark.Reference })
                Console.WriteLine(
                    $"crossover {FlowBenchmark.FlowCausal} vs {baseline}: " +
                    $"{(Sweep.Crossover(points, FlowBenchmark.FlowCausal, baseline, p) is { } t ? $"T = {t}" : "none in range")}");
            foreach (var baseline in new[] { FlowBenchmark.Sdpa, FlowBenchmark.Reference })
                Console.WriteLine(
                    $"speed-up {FlowBenchmark.FlowCausal} vs {baseline} at T = 8192: " +
                    $"{(Sweep.Speedup(points, FlowBenchmark.FlowCausal, baseline, 8192, p) is { } s ? $"{s:F2}×" : "not measured")}");
        }
        return 0;
    }
}
