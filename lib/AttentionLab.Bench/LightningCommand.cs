using System.Globalization;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>lightning</c>: time vs T of Lightning Attention (chunked and tiled) against full softmax attention (reference, SDPA)
/// and the naive masked linear form, with fitted log-log slopes, the crossover and the speed-up at each length.
/// dotnet run --project lib/AttentionLab.Bench -c Release -- lightning [--lengths 256,…,16384] [--batch 1] [--heads 4]
///     [--dim 64] [--block 64] [--max-quadratic 8192] [--warmup 1] [--repeats 3] [--threads 1] [--backward] [--no-memory]
/// </summary>
static class LightningCommand
{
    public static int Run(string[] args)
    {
        if (BenchArgs.Parse(args, "usage: AttentionLab.Bench lightning [--lengths 256,…] [--batch 1] [--heads 4] [--dim 64] [--block 64] [--max-quadratic 8192] [--warmup 1] [--repeats 3] [--threads 1] [--backward] [--no-memory]", "backward", "no-memory") is not { } o) return 2;
        var lengths = o.Lengths("256,512,1024,2048,4096,8192,16384");
        bool backward = o.Flag("backward"), memory = !o.Flag("no-memory");
        int Int(string name, int fallback) => o.Int(name, fallback);
        var device = o.SetUp();
        var rows = LightningBenchmarks.Sweep(lengths, null, Int("batch", 1), Int("heads", 4), Int("dim", 64), Int("block", 64), backward,
            Int("max-quadratic", 8192), null, Int("warmup", 1), Int("repeats", 3), memory, 0, device,
            new InlineProgress<SpeedRow>(r => Console.Error.WriteLine($"T = {r.SeqLen,6} {r.Method,-22} {r.Time} · peak {(r.PeakBytes ?? 0) / 1048576.0:F1} MiB")));
        var result = new LightningResult(LightningExperiment.Config.Smoke with { Lengths = lengths }, rows, 0, new TimingStats(0, 0, 0, 0),
            new TimingStats(0, 0, 0, 0), Array.Empty<LmSummary>(), double.NaN, Array.Empty<DecodePoint>(), double.NaN, 0, new Dictionary<string, double>());

        o.PrintHeader(device);
        Console.WriteLine($"timed: {(backward ? "forward + backward" : "forward, no grad")}; ms = best of the repeats");
        Console.WriteLine();
        var df = result.ToDataFrame();
        Console.WriteLine(MarkdownTable.From(df, new Dictionary<string, string> { ["ms"] = "F2", ["median_ms"] = "F2", ["ms_per_seq"] = "F2" }));
        Console.WriteLine();
        Console.WriteLine("| method | slope (log-log, ms vs T) | crossover vs reference | crossover vs SDPA |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var m in LightningBenchmarks.Methods.Where(m => result.Of(m).Count > 0))
            Console.WriteLine($"| {m} | {result.Slope(m):F2} | {result.Crossover(m, LightningBenchmarks.Reference)?.ToString(CultureInfo.InvariantCulture) ?? "none"} | {result.Crossover(m, LightningBenchmarks.Sdpa)?.ToString(CultureInfo.InvariantCulture) ?? "none"} |");
        Console.WriteLine();
        foreach (int t in lengths)
        {
            double? Ms(string m) => result.Of(m).FirstOrDefault(r => r.SeqLen == t)?.Ms;
            if (Ms(LightningBenchmarks.Chunked) is not { } l) continue;
            string Ratio(string m) => Ms(m) is { } b ? $"{b / l:F1}×" : "—";
            Console.WriteLine($"T = {t}: lightning chunked {l:F2} ms; reference / lightning {Ratio(LightningBenchmarks.Reference)}, SDPA / lightning {Ratio(LightningBenchmarks.Sdpa)}");
        }
        return 0;
    }
}
