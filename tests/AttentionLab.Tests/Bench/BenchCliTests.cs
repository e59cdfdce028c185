using System.CommandLine;
using System.Text.RegularExpressions;
using AttentionLab.Bench;

namespace AttentionLab.Tests.Bench;

/// <summary>The bench CLI's registry, parsed in-process (nothing is timed: every case stops at parsing or help).</summary>
public class BenchCliTests
{
    static (int Code, string Output, string Error) Run(params string[] args)
    {
        var (output, error) = (new StringWriter(), new StringWriter());
        int code = BenchCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("based", "--lenghts", "256")]
    [InlineData("lightning", "--lenghts", "256,512")]
    [InlineData("flowformer", "--max-refrence", "4096")]
    [InlineData("s2", "--decoded")]
    public void AnUnknownOptionIsRejectedByName(params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(BenchCli.UsageError, code);
        Assert.Contains($"'{args[1]}'", error);
        Assert.Contains($"{args[0]} --help", error);
        Assert.Equal("", output);                                         // nothing ran, no header printed
    }

    [Fact]
    public void BadValuesAndUnknownCommandsAreRejected()
    {
        Assert.Equal(BenchCli.UsageError, Run("based", "--heads", "four").Code);
        Assert.Contains("--lengths", Run("based", "--lengths", "256,x").Error);
        Assert.Contains("'sideways'", Run("flowformer", "--pass", "sideways").Error);
        Assert.Contains("'--heads'", Run("routing", "--heads").Error);     // a value is missing
        var unknown = Run("basd");
        Assert.Equal(BenchCli.UsageError, unknown.Code);
        Assert.Contains("'basd'", unknown.Error);
    }

    [Fact]
    public void NoArgumentsListsEveryCommand()
    {
        var (code, _, error) = Run();
        Assert.Equal(BenchCli.UsageError, code);
        Assert.All(BenchCli.Commands, c => Assert.Contains($"  {c.Name} ", error));
    }

    [Fact]
    public void HelpListsEachCommandsOptionsWithTheirDefaults()
    {
        // every command class of the bench project is registered (a new *Command.cs cannot be forgotten)
        var declared = typeof(BenchCli).Assembly.GetTypes()
            .Select(t => t.GetProperty("Command", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static))
            .Where(p => p?.PropertyType == typeof(BenchCommand)).Select(p => (BenchCommand)p!.GetValue(null)!).ToList();
        Assert.True(declared.Count >= 11, $"found {declared.Count} command declarations");
        Assert.Equal(declared.Select(c => c.Name).Order(), BenchCli.Commands.Select(c => c.Name).Order());
        Assert.Equal(BenchCli.Commands.Count, BenchCli.Commands.Select(c => c.Name).Distinct().Count());
        foreach (var command in BenchCli.Commands)
        {
            var (code, output, _) = Run(command.Name, "--help");
            Assert.Equal(0, code);
            Assert.NotEmpty(command.Options);
            foreach (var option in command.Options)
            {
                var line = output.Split('\n').SingleOrDefault(l => Regex.IsMatch(l, $@"^\s+(?:[-\w?]+, )*{Regex.Escape(option.Name)}(?:[ ,]|$)"));
                Assert.True(line is not null, $"{command.Name} --help does not list {option.Name}:\n{output}");
                Assert.Contains(option.Description!, line);
                if (option.HasDefaultValue && option.ValueType != typeof(bool)) Assert.Contains($"[default: {option.GetDefaultValue()}]", line);
            }
        }
    }

    [Theory]
    [InlineData("based", "--heads", "4", "--repeats", "3", "--max-reference", "4096", "--threads", "1")]
    [InlineData("lightning", "--repeats", "3")]                           // the P39 command line in docs/benchmarks.md
    public void EveryDeclaredOptionParses(params string[] args)
    {
        var result = BenchCli.Root().Parse(args);
        Assert.Empty(result.Errors);
    }

    [Fact]
    public void TheCommandLinesInTheDocsParse()
    {
        var root = AttentionLab.Tests.Build.LibrarySources.Repo;
        var lines = new[] { "docs/benchmarks.md", "README.md" }.Concat(
            Directory.GetFiles(Path.Combine(root, "notebooks"), "*.ipynb").Select(p => Path.GetRelativePath(root, p)))
            .SelectMany(f => File.ReadLines(Path.Combine(root, f)))
            .Where(l => !l.StartsWith("command: ", StringComparison.Ordinal))              // a header a run printed, not a typed line
            .SelectMany(l => Regex.Matches(l.Replace("\\\"", "\""), @"AttentionLab\.Bench -c Release(?: --no-build)? -- ([^`]+)").Select(
                m => m.Groups[1].Value.Trim()))
            .Distinct().ToList();
        Assert.True(lines.Count >= 8, $"found only {lines.Count} bench command lines");
        foreach (var line in lines)
        {
            var result = BenchCli.Root().Parse(line);
            Assert.True(result.Errors.Count == 0, $"'{line}': {string.Join("; ", result.Errors.Select(e => e.Message))}");
        }
    }
}
