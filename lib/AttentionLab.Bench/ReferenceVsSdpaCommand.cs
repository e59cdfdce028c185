using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>reference-vs-sdpa</c>: the explicit reference softmax attention against the fused SDPA kernel over a length sweep
/// (time, peak memory, score-matrix size, agreement).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- reference-vs-sdpa [--lengths 256,512,1024,2048,4096]
///     [--batch 1] [--heads 4] [--dim 64] [--warmup 1] [--repeats 3] [--threads 1] [--device cpu|cuda] [--no-causal] [--no-memory]
/// </summary>
static class ReferenceVsSdpaCommand
{
    public static BenchCommand Command { get; } = new("reference-vs-sdpa", "reference softmax attention vs the fused SDPA kernel",
    [
        BenchCli.IntList("lengths", "256,512,1024,2048,4096", "sequence lengths T"),
        BenchCli.Int("batch", 1, "batch size"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("dim", 64, "head dimension"),
        BenchCli.Int("warmup", 1, "untimed calls before timing"),
        BenchCli.Int("repeats", 3, "timed calls (median reported)"),
        .. BenchCli.Machine(),
        BenchCli.Flag("no-causal", "time non-causal attention"),
        BenchCli.Flag("no-memory", "skip the peak-memory measurement"),
    ], Run);

    static int Run(BenchArgs o)
    {
        bool causal = !o.Flag("no-causal"), measureMemory = !o.Flag("no-memory");
        var lengths = o.Lengths();
        var device = o.SetUp();
        var df = AttentionBenchmarks.ReferenceVsSdpa(lengths, o.Int("batch"), o.Int("heads"), o.Int("dim"), causal,
            o.Int("warmup"), o.Int("repeats"), torch.ScalarType.Float32, device, measureMemory,
            new InlineProgress<AttentionBenchRow>(r => Console.Error.WriteLine($"T = {r.SeqLen,5} {r.Method,-9} {r.Time} · {r.Memory}")));
        o.PrintHeader(device);
        Console.WriteLine($"memory: {df["memory"][0]}");
        Console.WriteLine();
        df.Columns.Remove("memory");
        Console.WriteLine(MarkdownTable.From(df,
            new Dictionary<string, string> { ["max_abs_vs_reference"] = "0.0E+0", ["peak_mib"] = "F1", ["score_matrix_mib"] = "F1" }));
        return 0;
    }
}
