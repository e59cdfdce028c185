using AttentionLab.Core;
using AttentionLab.Papers.Based;
using AttentionLab.Papers.Flowformer;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;

namespace AttentionLab.Bench.Commands;

/// <summary>
/// <c>parity</c>: each library form against the bare TorchSharp ops it is made of (library / bare, target ≤ 1.1).
/// dotnet run --project lib/AttentionLab.Bench -c Release -- parity [--lengths 1024,4096] [--heads 4] [--dim 64]
///     [--warmup 1] [--repeats 5] [--threads 1] [--device cpu|cuda] [--no-backward] [--methods lightning,based] [--worker-thread]
/// </summary>
static class ParityCommand
{
    public static BenchCommand Command { get; } = new("parity", "library forms vs the bare ops they are made of (ratio, target ≤ 1.1)",
    [
        BenchCli.IntList("lengths", "1024,4096", "sequence lengths T"),
        BenchCli.Int("heads", 4, "heads"),
        BenchCli.Int("dim", 64, "head dimension"),
        BenchCli.Int("warmup", 1, "untimed library/bare pairs before timing"),
        BenchCli.Int("repeats", 5, "timed library/bare pairs (medians reported)"),
        .. BenchCli.Machine(),
        BenchCli.Flag("no-backward", "time the forward pass only"),
        BenchCli.Flag("worker-thread", "run on a new thread, as a notebook kernel or test host does (glibc gives it its own arena)"),
        BenchCli.OptionalText("methods", "only the cases whose name contains one of these comma-separated words (e.g. lightning,based)"),
    ], Run);

    static int Run(BenchArgs o)
    {
        var device = o.SetUp();
        var words = (o.OptionalText("methods") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var (heads, dim) = (o.Int("heads"), o.Int("dim"));
        var all = Parity.Cases(heads, dim, device).Take(1).Concat(LightningParity.Cases(heads, dim, device))
            .Concat(Parity.Cases(heads, dim, device).Skip(1)).Concat(BasedParity.Cases(heads, dim, device))
            .Concat(FlowParity.Cases(heads, dim, device));
        var cases = all
            .Where(c => words.Length == 0 || words.Any(w => c.Method.Contains(w, StringComparison.OrdinalIgnoreCase))).ToList();
        if (cases.Count == 0) throw new ArgumentException($"--methods '{string.Join(",", words)}' matches no parity case.", "methods");
        IReadOnlyList<ParityRow> rows = null!;
        void Measure() => rows = Parity.Run(cases, o.Lengths(), !o.Flag("no-backward"), o.Int("warmup"),
            o.Int("repeats"), new InlineProgress<ParityRow>(r =>
                Console.Error.WriteLine($"{r.Method} T = {r.SeqLen} {r.Pass}: {r.LibraryMs:F2} / {r.BareMs:F2} ms = {r.Ratio:F2}")));
        if (o.Flag("worker-thread"))
        {
            var worker = new Thread(() => { torch.set_num_threads(o.Int("threads")); Measure(); });
            worker.Start();
            worker.Join();
        }
        else Measure();
        o.PrintHeader(device);
        Console.WriteLine();
        Console.WriteLine(MarkdownTable.From(Parity.ToDataFrame(rows),
            new Dictionary<string, string>
            {
                ["library_ms"] = "F2", ["bare_ms"] = "F2", ["library_over_bare"] = "F2", ["max_abs_diff"] = "0.0E+0",
                ["faults_library"] = "F0", ["faults_bare"] = "F0",
            }));
        return 0;
    }
}
