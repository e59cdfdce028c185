using AttentionLab.Core;
using AttentionLab.Papers.S2Attention;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>s2</c>: fwd+bwd of the heterogeneous S2 pattern (gather, strided+local) vs full causal attention (P22).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- s2 [--lengths 256,…,16384] [--heads 8] [--dim 64] [--block 64]
///     [--local 4] [--stride 8] [--repeats 3] [--max-dense 4096] [--max-gather 16384] [--threads 1] [--device cpu|cuda]
/// </summary>
static class S2Command
{
    public static int Run(string[] args)
    {
        if (BenchArgs.Parse(args, "usage: AttentionLab.Bench s2 [--lengths 256,…] [--heads 8] [--dim 64] [--block 64] [--local 4] [--stride 8] [--repeats 3] [--max-dense 4096] [--max-gather 16384] [--threads 1] [--device cpu|cuda]") is not { } o) return 2;
        var lengths = o.Lengths("256,1024,4096,16384");
        var device = o.SetUp();
        var rows = S2Benchmark.Run(lengths, o.Int("heads", 8), o.Int("dim", 64), o.Int("block", 64), o.Int("local", 4), o.Int("stride", 8),
            o.Int("repeats", 3), o.Int("max-dense", 4096), o.Int("max-gather", 16384), device,
            new InlineProgress<S2BenchRow>(r => Console.Error.WriteLine($"n = {r.Length,6} {r.Method,-18} {r.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine("fwd+bwd of one attention layer, batch 1, float32, heterogeneous pattern (H ≥ s: full coverage)");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(S2Benchmark.ToDataFrame(rows), new Dictionary<string, string> { ["median_ms"] = "F2", ["flop_fraction"] = "F3" }));
        return 0;
    }
}
