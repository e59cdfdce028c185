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
    public static int Run(string[] args)
    {
        const string usage = "usage: AttentionLab.Bench freeswim [--lengths 16,32,48,64] [--frames 1] [--half 4] [--heads 4] [--dim 16] [--repeats 3] [--max-dense 2304] [--threads 1] [--device cpu|cuda]";
        if (BenchArgs.Parse(args, usage) is not { } o) return 2;
        var sides = o.Lengths("16,32,48,64");
        var device = o.SetUp();
        int half = o.Int("half", 4);
        var rows = FreeSwimBenchmark.Run(sides, o.Int("frames", 1), half, o.Int("heads", 4), o.Int("dim", 16), o.Int("repeats", 3), o.Int("max-dense", 2304), device,
            new InlineProgress<FreeSwimBenchRow>(r => Console.Error.WriteLine($"{r.Side,3}×{r.Side,-3} {r.Method,-18} {r.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine($"forward of one self-attention layer, batch 1, float32; inward window {2 * half + 1}×{2 * half + 1} (d_h = d_w = {half}); --lengths are grid sides");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(FreeSwimBenchmark.ToDataFrame(rows), new Dictionary<string, string> { ["median_ms"] = "F2", ["keys_per_query"] = "F0" }));
        return 0;
    }
}
