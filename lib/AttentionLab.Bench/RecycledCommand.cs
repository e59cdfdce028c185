using AttentionLab.Core;
using AttentionLab.Papers.RecycledAttention;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>recycled</c>: decode attention of one layer at long context, full vs Recycled Attention (P05).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- recycled [--lengths 1024,…,32768] [--heads 8] [--dim 128]
///     [--topk 256] [--stride 8] [--steps 32] [--threads 1] [--device cpu|cuda]
/// </summary>
static class RecycledCommand
{
    public static BenchCommand Command { get; } = new("recycled", "P05 decode attention of one layer at long context, full vs Recycled Attention",
    [
        BenchCli.IntList("lengths", "1024,4096,16384,32768", "context lengths n"),
        BenchCli.Int("heads", 8, "heads"),
        BenchCli.Int("dim", 128, "head dimension"),
        BenchCli.Int("topk", 256, "recycled top-k K"),
        BenchCli.Int("stride", 8, "full-attention stride S"),
        BenchCli.Int("steps", 32, "decode steps timed"),
        .. BenchCli.Machine(),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        var device = o.SetUp();
        var rows = RecycledBenchmarks.DecodeSweep(lengths, o.Int("heads"), o.Int("dim"), o.Int("topk"), o.Int("stride"), o.Int("steps"), device,
            new InlineProgress<RecycledBenchRow>(r => Console.Error.WriteLine($"n = {r.Context,6} {r.Method,-22} {r.MsPerStep:F3} ms/step")));
        o.PrintHeader(device);
        Console.WriteLine("decode attention of one layer (no model), batch 1, float32; ms = mean over the steps (full steps included)");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(RecycledBenchmarks.ToDataFrame(rows),
            new Dictionary<string, string> { ["ms_per_step"] = "F3", ["attended_mean"] = "F1", ["expected_speedup"] = "F2", ["measured_speedup"] = "F2" }));
        return 0;
    }
}
