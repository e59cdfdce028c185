using AttentionLab.Bench;

// dotnet run --project lib/AttentionLab.Bench -c Release -- <command> [options]
// The commands and their options are declared in BenchCli.Commands (one *Command.cs each); `<command> --help` lists a
// command's options with their defaults, no arguments lists the commands, an unknown option is rejected by name (exit 2).
// Each command prints the run's date, device and command, then a markdown table (progress goes to stderr).
return BenchCli.Run(args, Console.Out, Console.Error);
