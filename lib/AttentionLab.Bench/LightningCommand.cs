using System.Globalization;
using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>lightning</c>: time vs T of Lightning Attention (chunked and tiled) against full softmax attention (reference, SDPA),
/// the naive masked linear form and the cumsum linear form, with fitted log-log slopes, the crossover and the speed-up at
/// each length. Every method and length is timed once per round, the rounds interleaved; ms = median over the rounds.
/// The cumsum form ("linear cumsum") runs only when --methods names it (it materialises every prefix state and crawls).
/// With --tokens the batch is tokens / T (the paper's constant-tokens sweep), else --batch.
/// dotnet run --project lib/AttentionLab.Bench -c Release -- lightning [--lengths 256,…,16384] [--batch 1] [--tokens N] [--heads 4]
///     [--dim 64] [--block 64] [--max-quadratic 8192] [--methods a,b] [--warmup 1] [--rounds 5] [--threads 1] [--backward] [--no-memory]
/// </summary>
static class LightningCommand
{
    public static int Run(string[] args)
    {
        const string usage = "usage: AttentionLab.Bench lightning [--lengths 256,…] [--batch 1] [--tokens N] [--heads 4] [--dim 64] [--block 64] " +
            "[--max-quadratic 8192] [--methods \"softmax SDPA,linear cumsum,lightning chunked\"] [--warmup 1] [--rounds 5] [--threads 1] [--backward] [--no-memory]";
        if (BenchArgs.Parse(args, usage, "backward", "no-memory") is not { } o) return 2;
        var lengths = o.Lengths("256,512,1024,2048,4096,8192,16384");
        bool backward = o.Flag("backward"), memory = !o.Flag("no-memory");
        int Int(string name, int fallback) => o.Int(name, fallback);
        int? tokens = o.Text("tokens", "") is { Length: > 0 } t ? int.Parse(t, CultureInfo.InvariantCulture) : null;
        var methods = o.Text("methods", "") is { Length: > 0 } m ? m.Split(',').Select(s => s.Trim()).ToArray() : LightningExperiment.MainSweepMethods.ToArray();
        var device = o.SetUp();
        var sweep = LightningBenchmarks.Sweep(lengths, tokens, Int("batch", 1), Int("heads", 4), Int("dim", 64), Int("block", 64), backward,
            Int("max-quadratic", 8192), methods, Int("warmup", 1), Int("rounds", 5), memory, 0, device,
            new InlineProgress<SpeedRow>(r => Console.Error.WriteLine($"T = {r.SeqLen,6} {r.Method,-22} {r.Time} · peak {(r.PeakBytes ?? 0) / 1048576.0:F1} MiB")));

        o.PrintHeader(device);
        Console.WriteLine($"timed: {(backward ? "forward + backward" : "forward, no grad")}; ms = median of {Int("rounds", 5)} interleaved rounds; " +
                          (tokens is { } tk ? $"{tk} tokens per batch" : $"batch {Int("batch", 1)}"));
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(sweep.ToDataFrame(), new Dictionary<string, string> { ["ms"] = "F2", ["best_ms"] = "F2", ["ms_per_seq"] = "F2" }));
        Console.WriteLine();
        Console.WriteLine("| method | slope (log-log, ms vs T) | tokens/s spread | crossover vs reference | crossover vs SDPA |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var method in sweep.Methods)
            Console.WriteLine($"| {method} | {sweep.Slope(method):F2} | {sweep.SpeedSpread(method):F2} | {sweep.Crossover(method, LightningBenchmarks.Reference)?.ToString(CultureInfo.InvariantCulture) ?? "none"} | {sweep.Crossover(method, LightningBenchmarks.Sdpa)?.ToString(CultureInfo.InvariantCulture) ?? "none"} |");
        Console.WriteLine();
        foreach (int n in lengths)
        {
            double? Ms(string name) => sweep.Of(name).FirstOrDefault(r => r.SeqLen == n)?.Ms;
            if (Ms(LightningBenchmarks.Chunked) is not { } l) continue;
            string Ratio(string name) => Ms(name) is { } b ? $"{b / l:F1}×" : "—";
            Console.WriteLine($"T = {n}: lightning chunked {l:F2} ms; reference / lightning {Ratio(LightningBenchmarks.Reference)}, " +
                              $"SDPA / lightning {Ratio(LightningBenchmarks.Sdpa)}, cumsum / lightning {Ratio(LightningBenchmarks.CumsumLinear)}");
        }
        return 0;
    }
}
