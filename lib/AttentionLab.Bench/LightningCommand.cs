using System.CommandLine;
using System.Globalization;
using AttentionLab.Core;
using AttentionLab.Papers.LightningAttention;

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
    /// <summary>--rounds; also spelled --repeats, as the command line quoted in docs/benchmarks.md (P39) has it.</summary>
    static Option<int> Rounds()
    {
        var o = BenchCli.Int("rounds", 5, "interleaved rounds (median reported; --repeats is the same option)");
        o.Aliases.Add("--repeats");
        return o;
    }

    public static BenchCommand Command { get; } = new("lightning", "P39 Lightning Attention vs softmax and linear forms over T (slopes, crossovers, speed-ups)",
    [
        BenchCli.IntList("lengths", "256,512,1024,2048,4096,8192,16384", "sequence lengths n"),
        BenchCli.Int("batch", 1, "batch size (without --tokens)"),
        BenchCli.OptionalInt("tokens", "tokens per batch: batch = tokens / n (the constant-tokens sweep) [default: none, --batch]"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("dim", 64, "head dimension"),
        BenchCli.Int("block", 64, "block size of the chunked and tiled forms"),
        BenchCli.Int("max-quadratic", 8192, "longest n the quadratic methods run at"),
        BenchCli.OptionalText("methods", $"comma-separated method names [default: {string.Join(",", LightningExperiment.MainSweepMethods)}]"),
        BenchCli.Int("warmup", 1, "untimed calls before the rounds"),
        Rounds(),
        .. BenchCli.Machine(),
        BenchCli.Flag("backward", "time forward + backward"),
        BenchCli.Flag("no-memory", "skip the peak-memory measurement"),
    ], Run);

    static int Run(BenchArgs o)
    {
        var lengths = o.Lengths();
        bool backward = o.Flag("backward"), memory = !o.Flag("no-memory");
        int Int(string name) => o.Int(name);
        int? tokens = o.OptionalInt("tokens");
        var methods = o.OptionalText("methods") is { Length: > 0 } m ? m.Split(',').Select(s => s.Trim()).ToArray()
            : LightningExperiment.MainSweepMethods.ToArray();
        var device = o.SetUp();
        var sweep = LightningBenchmarks.Sweep(lengths, tokens, Int("batch"), Int("heads"), Int("dim"), Int("block"), backward,
            Int("max-quadratic"), methods, Int("warmup"), Int("rounds"), memory, 0, device,
            new InlineProgress<SpeedRow>(r => Console.Error.WriteLine(
                $"T = {r.SeqLen,6} {r.Method,-22} {r.Time} · peak {(r.PeakBytes ?? 0) / 1048576.0:F1} MiB")));

        o.PrintHeader(device);
        Console.WriteLine($"timed: {(backward ? "forward + backward" : "forward, no grad")}; ms = median of {Int("rounds")} interleaved rounds; " +
                          (tokens is { } tk ? $"{tk} tokens per batch" : $"batch {Int("batch")}"));
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(sweep.ToDataFrame(), new Dictionary<string, string> { ["ms"] = "F2", ["best_ms"] = "F2", ["ms_per_seq"] = "F2" }));
        Console.WriteLine();
        Console.WriteLine("| method | slope (log-log, ms vs T) | tokens/s spread | crossover vs reference | crossover vs SDPA |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var method in sweep.Methods)
            Console.WriteLine(
                $"| {method} | {sweep.Slope(method):F2} | {sweep.SpeedSpread(method):F2} | " +
                $"{sweep.Crossover(method, LightningBenchmarks.Reference)?.ToString(CultureInfo.InvariantCulture) ?? "none"} | " +
                $"{sweep.Crossover(method, LightningBenchmarks.Sdpa)?.ToString(CultureInfo.InvariantCulture) ?? "none"} |");
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
