using System.CommandLine;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench;

/// <summary>
/// The parsed options of one bench command (each option, its type and default declared in <see cref="BenchCommand.Options"/>),
/// plus the set-up and the header every benchmark prints (date, device, library, the exact command).
/// </summary>
sealed class BenchArgs(BenchCommand command, ParseResult result)
{
    /// <summary>The subcommand, e.g. "based".</summary>
    public string Command => command.Name;
    /// <summary>The arguments as given, for the header's command line.</summary>
    public IReadOnlyList<string> Raw => result.Tokens.Select(t => t.Value).ToList();

    T Get<T>(string name) => command.Find(name) is Option<T> o ? result.GetValue(o)!
        : throw new ArgumentException($"--{name} of '{command.Name}' is not a {typeof(T).Name} option.", nameof(name));

    /// <summary>A switch: true when given.</summary>
    public bool Flag(string name) => Get<bool>(name);
    /// <summary>A text option (its default when absent).</summary>
    public string Text(string name) => Get<string>(name);
    /// <summary>A text option without a default: null when absent.</summary>
    public string? OptionalText(string name) => Get<string?>(name);
    /// <summary>An integer option (its default when absent).</summary>
    public int Int(string name) => Get<int>(name);
    /// <summary>An integer option without a default: null when absent.</summary>
    public int? OptionalInt(string name) => Get<int?>(name);
    /// <summary>A comma-separated integer list (validated at parse time); <paramref name="fallback"/> when absent and undeclared.</summary>
    public int[] Ints(string name, string? fallback = null) =>
        BenchCli.ParseList(Get<string>(name) ?? fallback ?? throw new ArgumentException($"--{name} has no default.", nameof(fallback)), BenchCli.PositiveInt)!;
    /// <summary>A comma-separated list of numbers (validated at parse time).</summary>
    public double[] Doubles(string name) => BenchCli.ParseList(Text(name), BenchCli.Number)!;
    /// <summary>--lengths.</summary>
    public int[] Lengths(string? fallback = null) => Ints("lengths", fallback);

    /// <summary>Sets torch threads (--threads) and seed 0; returns the --device.</summary>
    public Device SetUp()
    {
        torch.set_num_threads(Int("threads"));
        NativeHeap.Tune();                                                               // as in notebooks (Lab.Setup)
        torch.manual_seed(0);
        return Lab.ChooseDevice(Text("device"));
    }

    static string Quoted(string arg) => arg.Any(char.IsWhiteSpace) ? $"\"{arg}\"" : arg;

    /// <summary>Date, device and machine, library build, and the command that reproduces the run.</summary>
    public void PrintHeader(Device device)
    {
        Console.WriteLine($"date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
        Console.WriteLine($"device: {device} · {Machine.CpuModel()} · {Environment.ProcessorCount} cores visible · " +
                          $"torch threads {torch.get_num_threads()} · load average {Machine.LoadAverage()}");
        Console.WriteLine($"library: {BuildInfo.Current.Describe(DateTimeOffset.UtcNow)}");
        Console.WriteLine($"command: dotnet run --project lib/AttentionLab.Bench -c Release -- {string.Join(' ', Raw.Select(Quoted))}");
    }
}
