using System.Globalization;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;

// dotnet run --project lib/AttentionLab.Bench -c Release -- reference-vs-sdpa [--lengths 256,512,1024,2048,4096]
//     [--batch 1] [--heads 4] [--dim 64] [--warmup 1] [--repeats 3] [--threads 1] [--device cpu|cuda] [--no-causal] [--no-memory]
// dotnet run --project lib/AttentionLab.Bench -c Release -- based [--lengths 256,…,16384] …   (P13 BASED prefill vs softmax; BasedCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- flowformer [--lengths 256,…,16384] …   (P19 Flow-Attention vs softmax; FlowformerCommand.cs)
// Prints the run's date, device and command, then a markdown table (progress goes to stderr).

const string usage = "usage: AttentionLab.Bench reference-vs-sdpa [--lengths 256,512,1024,2048,4096] [--batch 1] [--heads 4] [--dim 64] " +
                     "[--warmup 1] [--repeats 3] [--threads 1] [--device cpu|cuda] [--no-causal] [--no-memory]";
if (args.Length > 0 && args[0] == "based") return BasedCommand.Run(args[1..]);
if (args.Length > 0 && args[0] == "flowformer") return FlowformerCommand.Run(args[1..]);
if (args.Length == 0 || args[0] != "reference-vs-sdpa") { Console.Error.WriteLine(usage); return 2; }

var options = new Dictionary<string, string>();
bool causal = true, measureMemory = true;
for (int i = 1; i < args.Length; i++)
{
    if (args[i] == "--no-causal") { causal = false; continue; }
    if (args[i] == "--no-memory") { measureMemory = false; continue; }
    if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length) { Console.Error.WriteLine($"bad argument '{args[i]}'\n{usage}"); return 2; }
    options[args[i][2..]] = args[++i];
}
string Opt(string name, string fallback) => options.TryGetValue(name, out var v) ? v : fallback;
int Int(string name, int fallback) => int.Parse(Opt(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

var lengths = Opt("lengths", "256,512,1024,2048,4096").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
int threads = Int("threads", 1);
torch.set_num_threads(threads);
torch.manual_seed(0);
var device = Lab.ChooseDevice(Opt("device", "cpu"));

var df = AttentionBenchmarks.ReferenceVsSdpa(lengths, Int("batch", 1), Int("heads", 4), Int("dim", 64), causal,
    Int("warmup", 1), Int("repeats", 3), torch.ScalarType.Float32, device, measureMemory,
    new InlineProgress<AttentionBenchRow>(r => Console.Error.WriteLine($"T = {r.SeqLen,5} {r.Method,-9} {r.Time} · {r.Memory}")));

Console.WriteLine($"date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
Console.WriteLine($"device: {device} · {Machine.CpuModel()} · {Environment.ProcessorCount} cores visible · torch threads {torch.get_num_threads()} · load average {Machine.LoadAverage()}");
Console.WriteLine($"library: {BuildInfo.Current.Describe(DateTimeOffset.UtcNow)}");
Console.WriteLine($"command: dotnet run --project lib/AttentionLab.Bench -c Release -- {string.Join(' ', args)}");
Console.WriteLine($"memory: {df["memory"][0]}");
Console.WriteLine();
df.Columns.Remove("memory");
Console.WriteLine(MarkdownTable.From(df, new Dictionary<string, string> { ["max_abs_vs_reference"] = "0.0E+0", ["peak_mib"] = "F1", ["score_matrix_mib"] = "F1" }));
return 0;
