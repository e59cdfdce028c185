using System.Globalization;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench;

/// <summary>
/// The options of one bench command: "--name value" pairs and bare "--flag" switches (the flags a command accepts are
/// declared up front), plus the header every benchmark prints (date, device, library, the exact command).
/// </summary>
sealed class BenchArgs
{
    readonly Dictionary<string, string> values = new();
    readonly HashSet<string> flags = new();

    BenchArgs(string command) => Command = command;

    /// <summary>The subcommand, e.g. "based".</summary>
    public string Command { get; }
    /// <summary>The arguments as given, for the header's command line.</summary>
    public string[] Raw { get; private init; } = Array.Empty<string>();

    /// <summary>Parses args[1..] (args[0] is the subcommand); null after printing the bad argument and <paramref name="usage"/>.</summary>
    public static BenchArgs? Parse(string[] args, string usage, params string[] knownFlags)
    {
        var parsed = new BenchArgs(args.Length > 0 ? args[0] : "") { Raw = args };
        for (int i = 1; i < args.Length; i++)
        {
            string name = args[i].StartsWith("--", StringComparison.Ordinal) ? args[i][2..] : "";
            if (name is "help" or "h") { Console.Error.WriteLine(usage); return null; }
            if (knownFlags.Contains(name)) { parsed.flags.Add(name); continue; }
            if (name.Length == 0 || i + 1 >= args.Length) { Console.Error.WriteLine($"bad argument '{args[i]}'\n{usage}"); return null; }
            parsed.values[name] = args[++i];
        }
        return parsed;
    }

    public bool Flag(string name) => flags.Contains(name);
    public string Text(string name, string fallback) => values.TryGetValue(name, out var v) ? v : fallback;
    public int Int(string name, int fallback) => int.Parse(Text(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
    /// <summary>--lengths as comma-separated integers.</summary>
    public int[] Lengths(string fallback) => Text("lengths", fallback).Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Sets torch threads (--threads, default 1) and seed 0; returns the --device (default cpu).</summary>
    public Device SetUp()
    {
        torch.set_num_threads(Int("threads", 1));
        NativeHeap.Tune();                                                               // as in notebooks (Lab.Setup)
        torch.manual_seed(0);
        return Lab.ChooseDevice(Text("device", "cpu"));
    }

    /// <summary>Date, device and machine, library build, and the command that reproduces the run.</summary>
    public void PrintHeader(Device device)
    {
        Console.WriteLine($"date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
        Console.WriteLine($"device: {device} · {Machine.CpuModel()} · {Environment.ProcessorCount} cores visible · torch threads {torch.get_num_threads()} · load average {Machine.LoadAverage()}");
        Console.WriteLine($"library: {BuildInfo.Current.Describe(DateTimeOffset.UtcNow)}");
        Console.WriteLine($"command: dotnet run --project lib/AttentionLab.Bench -c Release -- {string.Join(' ', Raw)}");
    }
}
