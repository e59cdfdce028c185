using System.CommandLine;
using System.Globalization;
using AttentionLab.Bench.Commands;

namespace AttentionLab.Bench;

/// <summary>
/// One bench command: its name, what it measures, the options it accepts (each with its type, default and help) and the
/// body that runs it on the parsed options. <see cref="BenchCli.Commands"/> lists them all.
/// </summary>
sealed record BenchCommand(string Name, string Summary, IReadOnlyList<Option> Options, Func<BenchArgs, int> Run)
{
    /// <summary>The option named <paramref name="name"/> (without "--").</summary>
    public Option Find(string name) => Options.FirstOrDefault(o => o.Name == "--" + name)
        ?? throw new ArgumentException($"command '{Name}' declares no option --{name}.", nameof(name));
}

/// <summary>
/// The bench command line: a registry of commands, each declaring its options; parsed by System.CommandLine. An unknown
/// option (a typo such as <c>--lenghts</c>), a missing value or a value of the wrong type is rejected by name with exit
/// code 2; <c>&lt;command&gt; --help</c> lists that command's options with their defaults; no arguments lists the commands.
/// </summary>
static class BenchCli
{
    /// <summary>Exit code of a bad command line (unknown command or option, bad value).</summary>
    public const int UsageError = 2;

    /// <summary>Every command, in the order the listing shows them.</summary>
    public static IReadOnlyList<BenchCommand> Commands { get; } =
    [
        ReferenceVsSdpaCommand.Command,
        BasedCommand.Command,
        LightningCommand.Command,
        FlowformerCommand.Command,
        RoutingCommand.Command,
        RecycledCommand.Command,
        S2Command.Command,
        MixersCommand.Command,
        RectifiedCommand.Command,
        FreeSwimCommand.Command,
        LandmarkCommand.Command,
        MemoryCommand.Command,
        ParityCommand.Command,
    ];

    /// <summary>Parses <paramref name="args"/> and runs the command; help and errors go to <paramref name="output"/> / <paramref name="error"/>.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        var root = Root();
        if (args.Length == 0)
        {
            error.WriteLine("AttentionLab.Bench <command> [options]   (`<command> --help` lists its options and defaults)");
            error.WriteLine();
            error.WriteLine("commands:");
            foreach (var c in Commands) error.WriteLine($"  {c.Name,-18} {c.Summary}");
            return UsageError;
        }
        var result = root.Parse(args);
        var config = new InvocationConfiguration { Output = output, Error = error };
        if (result.Errors.Count > 0 && !HelpAsked(result))
        {
            foreach (var e in result.Errors) error.WriteLine(e.Message);
            string? name = result.CommandResult.Command is { } c && c != root ? c.Name : null;
            error.WriteLine(name is null
                ? $"commands: {string.Join(", ", Commands.Select(c => c.Name))} (`AttentionLab.Bench` alone lists them)"
                : $"see `AttentionLab.Bench {name} --help` for its options");
            return UsageError;
        }
        return result.Invoke(config);
    }

    static bool HelpAsked(ParseResult result) => result.Action is System.CommandLine.Help.HelpAction;

    /// <summary>The System.CommandLine tree: one subcommand per registered command, its options attached, its body as the action.</summary>
    public static RootCommand Root()
    {
        var root = new RootCommand("AttentionLab benchmarks: prints the run's date, device and command, then a markdown table (progress goes to stderr).");
        foreach (var c in Commands)
        {
            var command = new Command(c.Name, c.Summary);
            foreach (var o in c.Options) command.Options.Add(o);
            var bench = c;
            command.SetAction(result => bench.Run(new BenchArgs(bench, result)));
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>An integer option.</summary>
    public static Option<int> Int(string name, int fallback, string help) =>
        new("--" + name) { Description = help, DefaultValueFactory = _ => fallback };

    /// <summary>An integer option with no default (absent: null).</summary>
    public static Option<int?> OptionalInt(string name, string help) => new("--" + name) { Description = help };

    /// <summary>A text option, optionally restricted to <paramref name="allowed"/>.</summary>
    public static Option<string> Text(string name, string fallback, string help, params string[] allowed)
    {
        var o = new Option<string>("--" + name) { Description = help, DefaultValueFactory = _ => fallback };
        if (allowed.Length > 0) o.AcceptOnlyFromAmong(allowed);
        return o;
    }

    /// <summary>A text option with no default (absent: null).</summary>
    public static Option<string?> OptionalText(string name, string help) => new("--" + name) { Description = help };

    /// <summary>A bare switch (<c>--no-memory</c>).</summary>
    public static Option<bool> Flag(string name, string help) => new("--" + name) { Description = help };

    /// <summary>A comma-separated list of positive integers (<c>--lengths 256,512</c>); null <paramref name="fallback"/>: the command picks it.</summary>
    public static Option<string> IntList(string name, string? fallback, string help)
    {
        var o = new Option<string>("--" + name) { Description = help };
        if (fallback is not null) o.DefaultValueFactory = _ => fallback;
        o.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && ParseList(r.Tokens[0].Value, PositiveInt) is null)
                r.AddError($"{o.Name} must be comma-separated positive integers, got '{r.Tokens[0].Value}'.");
        });
        return o;
    }

    /// <summary>A comma-separated list of numbers (<c>--densities 0.125,0.25</c>).</summary>
    public static Option<string> DoubleList(string name, string fallback, string help)
    {
        var o = new Option<string>("--" + name) { Description = help, DefaultValueFactory = _ => fallback };
        o.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && ParseList(r.Tokens[0].Value, Number) is null)
                r.AddError($"{o.Name} must be comma-separated numbers, got '{r.Tokens[0].Value}'.");
        });
        return o;
    }

    /// <summary>--threads and --device, which every command's set-up reads.</summary>
    public static Option[] Machine() =>
    [
        Int("threads", 1, "torch threads"),
        Text("device", "cpu", "cpu or cuda (cuda:N)"),
    ];

    /// <summary>A positive integer, or null.</summary>
    public static int? PositiveInt(string s) => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v > 0 ? v : null;

    /// <summary>A number, or null.</summary>
    public static double? Number(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null;

    /// <summary>The items of a comma-separated list, or null when one does not parse.</summary>
    public static T[]? ParseList<T>(string text, Func<string, T?> parse) where T : struct
    {
        var items = text.Split(',').Select(s => parse(s.Trim())).ToArray();
        return items.Length == 0 || items.Any(v => v is null) ? null : items.Select(v => v!.Value).ToArray();
    }
}
