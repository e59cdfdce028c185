using AttentionLab.Papers.LandmarkAttention;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>landmark</c>: what one decode step reads at context n, full attention vs landmark memory (P07), per layer, float32.
/// dotnet run --project lib/AttentionLab.Bench -c Release -- landmark [--lengths 512,…,32768] [--block 50] [--topk 2] [--heads 8] [--dim 128]
/// Counts only (the accounting <see cref="LandmarkRun"/> reports on real runs); no timing.
/// </summary>
static class LandmarkCommand
{
    public static BenchCommand Command { get; } = new("landmark", "P07 what one decode step reads: full attention vs landmark memory (counts, no timing)",
    [
        BenchCli.IntList("lengths", "512,2048,8192,32768", "context lengths n"),
        BenchCli.Int("block", 50, "block length ℓ_b"),
        BenchCli.Int("topk", 2, "blocks retrieved k"),
        BenchCli.Int("heads", 8, "heads"),
        BenchCli.Int("dim", 128, "head dimension"),
        .. BenchCli.Machine(),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        int block = o.Int("block"), topK = o.Int("topk"), heads = o.Int("heads"), dim = o.Int("dim");
        var device = o.SetUp();
        o.PrintHeader(device);
        Console.WriteLine($"one decode step, one layer, float32, ℓ_b = {block}, k = {topK}, {heads} heads × {dim}: keys touched per head and K/V bytes read");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(LandmarkCost.ToDataFrame(LandmarkCost.Sweep(lengths, block, topK, heads, dim)),
            new Dictionary<string, string> { ["token_ratio"] = "F2" }));
        return 0;
    }
}
