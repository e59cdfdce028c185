using System.Globalization;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using TorchSharp;

// dotnet run --project lib/AttentionLab.Bench -c Release -- reference-vs-sdpa [--lengths 256,512,1024,2048,4096]
//     [--batch 1] [--heads 4] [--dim 64] [--warmup 1] [--repeats 3] [--threads 1] [--device cpu|cuda] [--no-causal] [--no-memory]
// dotnet run --project lib/AttentionLab.Bench -c Release -- based [--lengths 256,…,16384] …   (P13 BASED prefill vs softmax; BasedCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- flowformer [--lengths 256,…,16384] …   (P19 Flow-Attention vs softmax; FlowformerCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- routing [--lengths 256,…,16384] …   (P28 routing attention vs softmax; RoutingCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- recycled [--lengths 1024,…] [--topk 256] [--stride 8] …   (P05; RecycledCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- s2 [--lengths 256,…,16384] [--stride 8] …   (P22 S2-Attention fwd+bwd; S2Command.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- rectified [--lengths 512,…,8192] [--densities 0.125,0.25,0.5] …   (P33 Rectified SpaAttn forward; RectifiedCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- freeswim [--lengths 16,32,48,64] [--half 4] …   (P45 inward window by gather vs full; FreeSwimCommand.cs)
// dotnet run --project lib/AttentionLab.Bench -c Release -- landmark [--lengths 512,…,32768] [--block 50] [--topk 2] …   (P07 decode reads; LandmarkCommand.cs)
// Prints the run's date, device and command, then a markdown table (progress goes to stderr).

const string usage = "usage: AttentionLab.Bench reference-vs-sdpa [--lengths 256,512,1024,2048,4096] [--batch 1] [--heads 4] [--dim 64] " +
                     "[--warmup 1] [--repeats 3] [--threads 1] [--device cpu|cuda] [--no-causal] [--no-memory]\n" +
                     "       AttentionLab.Bench based|lightning|flowformer|routing|recycled|s2|rectified|freeswim|landmark [options]   " +
                     "(one paper's benchmark; `--help` after the name lists its options)";
if (args.Length > 0 && args[0] == "based") return BasedCommand.Run(args);
if (args.Length > 0 && args[0] == "recycled") return AttentionLab.Bench.Commands.RecycledCommand.Run(args);     // P05, see RecycledCommand.cs
if (args.Length > 0 && args[0] == "lightning") return AttentionLab.Bench.Commands.LightningCommand.Run(args);   // P39, see LightningCommand.cs
if (args.Length > 0 && args[0] == "s2") return AttentionLab.Bench.Commands.S2Command.Run(args);                   // P22, see S2Command.cs
if (args.Length > 0 && args[0] == "rectified") return AttentionLab.Bench.Commands.RectifiedCommand.Run(args);     // P33, see RectifiedCommand.cs
if (args.Length > 0 && args[0] == "flowformer") return FlowformerCommand.Run(args);
if (args.Length > 0 && args[0] == "freeswim") return AttentionLab.Bench.Commands.FreeSwimCommand.Run(args);       // P45, see FreeSwimCommand.cs
if (args.Length > 0 && args[0] == "landmark") return AttentionLab.Bench.Commands.LandmarkCommand.Run(args);     // P07, see LandmarkCommand.cs
if (args.Length > 0 && args[0] == "routing") return RoutingCommand.Run(args);                                   // P28, see RoutingCommand.cs
if (args.Length == 0 || args[0] != "reference-vs-sdpa") { Console.Error.WriteLine(usage); return 2; }

if (BenchArgs.Parse(args, usage, "no-causal", "no-memory") is not { } o) return 2;
bool causal = !o.Flag("no-causal"), measureMemory = !o.Flag("no-memory");
int Int(string name, int fallback) => o.Int(name, fallback);
var lengths = o.Lengths("256,512,1024,2048,4096");
var device = o.SetUp();

var df = AttentionBenchmarks.ReferenceVsSdpa(lengths, Int("batch", 1), Int("heads", 4), Int("dim", 64), causal,
    Int("warmup", 1), Int("repeats", 3), torch.ScalarType.Float32, device, measureMemory,
    new InlineProgress<AttentionBenchRow>(r => Console.Error.WriteLine($"T = {r.SeqLen,5} {r.Method,-9} {r.Time} · {r.Memory}")));

o.PrintHeader(device);
Console.WriteLine($"memory: {df["memory"][0]}");
Console.WriteLine();
df.Columns.Remove("memory");
Console.WriteLine(MarkdownTable.From(df, new Dictionary<string, string> { ["max_abs_vs_reference"] = "0.0E+0", ["peak_mib"] = "F1", ["score_matrix_mib"] = "F1" }));
return 0;
