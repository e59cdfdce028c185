using AttentionLab.Core;
using AttentionLab.Papers.FreeSwim;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>freeswim</c>: forward of one self-attention layer, full vs the inward sliding window by gather (P45).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- freeswim [--lengths 16,32,48,64] (grid sides) [--frames 1] [--half 4]
///     [--heads 4] [--dim 16] [--repeats 3] [--max-dense 2304] [--threads 1] [--device cpu|cuda]
/// </summary>
static class FreeSwimCommand
{
    public static BenchCommand Command { get; } = new("freeswim", "P45 inward sliding window by gather vs full attention, one forward",
    [
        BenchCli.IntList("lengths", "16,32,48,64", "grid sides"),
        BenchCli.Int("frames", 1, "frames"),
        BenchCli.Int("half", 4, "half window d_h = d_w"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("dim", 16, "head dimension"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        BenchCli.Int("max-dense", 2304, "most tokens the dense forms run at"),
        .. BenchCli.Machine(),
    ], Run);

    static int Run(BenchArgs o)
    {
        var sides = o.Lengths();
        var device = o.SetUp();
        int half = o.Int("half");
        var rows = FreeSwimBenchmark.Run(sides, o.Int("frames"), half, o.Int("heads"), o.Int("dim"), o.Int("repeats"), o.Int("max-dense"), device,
            new InlineProgress<FreeSwimBenchRow>(r => Console.Error.WriteLine($"{r.Side,3}×{r.Side,-3} {r.Method,-18} {r.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine($"forward of one self-attention layer, batch 1, float32; inward window {2 * half + 1}×{2 * half + 1} (d_h = d_w = {half}); " +
            "--lengths are grid sides");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(FreeSwimBenchmark.ToDataFrame(rows),
            new Dictionary<string, string> { ["median_ms"] = "F2", ["keys_per_query"] = "F0" }));
        return 0;
    }
}
