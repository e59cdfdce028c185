using AttentionLab.Core;
using AttentionLab.Papers.S2Attention;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>s2</c>: fwd+bwd of the heterogeneous S2 pattern (gather, strided+local) vs full causal attention (P22); with
/// <c>--decode</c>, token-by-token decoding of one S2 layer with the full KV cache vs the pruned per-head cache (time per
/// token, bytes held, agreement).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- s2 [--lengths 256,…,16384] [--heads 8] [--dim 64] [--block 64]
///     [--local 4] [--stride 8] [--repeats 3] [--max-dense 4096] [--max-gather 16384] [--threads 1] [--device cpu|cuda] [--decode]
/// </summary>
static class S2Command
{
    public static BenchCommand Command { get; } = new("s2", "P22 S2-Attention fwd+bwd vs full causal attention; --decode: pruned vs full KV cache",
    [
        BenchCli.IntList("lengths", null, "sequence lengths n [default: 256,1024,4096,16384; with --decode 1024,4096]"),
        BenchCli.Int("heads", 8, "heads"),
        BenchCli.Int("dim", 64, "head dimension"),
        BenchCli.Int("block", 64, "block size b"),
        BenchCli.Int("local", 4, "local blocks ℓ"),
        BenchCli.Int("stride", 8, "stride s"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        BenchCli.Int("max-dense", 4096, "longest n the dense forms run at"),
        BenchCli.Int("max-gather", 16384, "longest n the gather form runs at"),
        .. BenchCli.Machine(),
        BenchCli.Flag("decode", "token-by-token decoding: full KV cache vs the pruned per-head cache"),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths(o.Flag("decode") ? "1024,4096" : "256,1024,4096,16384");
        var device = o.SetUp();
        if (o.Flag("decode"))
        {
            var decode = S2Benchmark.Decode(lengths, o.Int("heads"), o.Int("dim"), o.Int("block"), o.Int("local"), o.Int("stride"), device,
                new InlineProgress<S2DecodeBenchRow>(r => Console.Error.WriteLine(
                    $"n = {r.Length,6} {r.Cache,-34} {r.MsPerToken,8:F3} ms/token {r.KvBytes,12:N0} B")));
            o.PrintHeader(device);
            Console.WriteLine(
                "decode of one S2 layer token by token, batch 1, float32, heterogeneous pattern: full KV cache (masked per head) vs pruned per-head cache");
            Console.WriteLine();
            Console.WriteLine(MarkdownTable.From(S2Benchmark.ToDataFrame(decode),
                new Dictionary<string, string> { ["ms_per_token"] = "F3", ["held_per_head"] = "F1", ["max_abs_vs_full"] = "0.0E+0" }));
            return 0;
        }
        var rows = S2Benchmark.Run(lengths, o.Int("heads"), o.Int("dim"), o.Int("block"), o.Int("local"), o.Int("stride"),
            o.Int("repeats"), o.Int("max-dense"), o.Int("max-gather"), device,
            new InlineProgress<S2BenchRow>(r => Console.Error.WriteLine($"n = {r.Length,6} {r.Method,-18} {r.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine("fwd+bwd of one attention layer, batch 1, float32, heterogeneous pattern (H ≥ s: full coverage)");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(S2Benchmark.ToDataFrame(rows), new Dictionary<string, string> { ["median_ms"] = "F2", ["flop_fraction"] = "F3" }));
        return 0;
    }
}
