using AttentionLab.Papers.LandmarkAttention;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>landmark</c>: what one decode step reads at context n, full attention vs landmark memory (P07), per layer, float32.
/// dotnet run --project lib/AttentionLab.Bench -c Release -- landmark [--lengths 512,…,32768] [--block 50] [--topk 2] [--heads 8] [--dim 128]
/// Counts only (the accounting <see cref="LandmarkRun"/> reports on real runs); no timing.
/// </summary>
static class LandmarkCommand
{
    public static int Run(string[] args)
    {
        if (BenchArgs.Parse(args, "usage: AttentionLab.Bench landmark [--lengths 512,…,32768] [--block 50] [--topk 2] [--heads 8] [--dim 128]") is not { } o) return 2;
        var lengths = o.Lengths("512,2048,8192,32768");
        int block = o.Int("block", 50), topK = o.Int("topk", 2), heads = o.Int("heads", 8), dim = o.Int("dim", 128);
        var device = o.SetUp();
        o.PrintHeader(device);
        Console.WriteLine($"one decode step, one layer, float32, ℓ_b = {block}, k = {topK}, {heads} heads × {dim}: keys touched per head and K/V bytes read");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(LandmarkCost.ToDataFrame(LandmarkCost.Sweep(lengths, block, topK, heads, dim)), new Dictionary<string, string> { ["token_ratio"] = "F2" }));
        return 0;
    }
}
