using AttentionLab.Core;
using AttentionLab.Papers.RectifiedSpaAttn;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>rectified</c>: forward of the gathered block-sparse kernel, of the estimation stage alone and of the whole
/// rectified forward at fixed densities vs full attention (reference, SDPA), on synthetic video-like Q/K/V (P33).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- rectified [--lengths 512,…,8192] [--heads 2] [--dim 64] [--block 64]
///     [--densities 0.125,0.25,0.5] [--repeats 3] [--max-dense 8192] [--threads 1] [--device cpu|cuda]
/// </summary>
static class RectifiedCommand
{
    public static BenchCommand Command { get; } = new("rectified", "P33 Rectified SpaAttn forward at fixed densities vs full attention",
    [
        BenchCli.IntList("lengths", "512,1024,2048,4096,8192", "sequence lengths n"),
        BenchCli.Int("heads", 2, "heads"),
        BenchCli.Int("dim", 64, "head dimension"),
        BenchCli.Int("block", 64, "block size B"),
        BenchCli.DoubleList("densities", "0.125,0.25,0.5", "target block densities ρ"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        BenchCli.Int("max-dense", 8192, "longest n the dense forms run at"),
        .. BenchCli.Machine(),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        var densities = o.Doubles("densities");
        var device = o.SetUp();
        var rows = RectifiedBenchmark.Run(lengths, o.Int("heads"), o.Int("dim"), o.Int("block"), densities, o.Int("repeats"), o.Int("max-dense"), device,
            new InlineProgress<RectifiedBenchRow>(r => Console.Error.WriteLine(
                $"n = {r.Length,6} {r.Method,-16} ρ {r.TargetDensity,5:F3} {r.MedianMs,10:F2} ms")));
        o.PrintHeader(device);
        Console.WriteLine("forward of one attention layer, batch 1, float32, synthetic video Q/K/V (γ = 2) in Hilbert order, top-k critical sets; " +
                          "'estimate only' = pooled scores + IPAR + critical sets + GAPR; 'rectified (all)' = estimate + gather kernel + R and compensation");
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(RectifiedBenchmark.ToDataFrame(rows),
            new Dictionary<string, string> { ["median_ms"] = "F2", ["target_density"] = "F3", ["density"] = "F3" }));
        return 0;
    }
}
