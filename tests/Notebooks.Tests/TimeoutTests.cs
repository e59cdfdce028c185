using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>Timeouts kill the kernel's whole process tree and fail the notebook with "timed out in cell N".</summary>
public sealed class TimeoutTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = TestEnvironment.TempFolder("timeout");

    public void Dispose() => TestEnvironment.DeleteQuietly(root);

    [Fact]
    public async Task Cell_timeout_through_the_cli_kills_the_kernel_and_reports_the_cell()
    {
        TestEnvironment.EnsureKernelTool();
        string notebooks = Path.Combine(root, "notebooks");
        Directory.CreateDirectory(notebooks);
        TestEnvironment.WriteNotebook(notebooks, "sleepy", // the sleeper is the first code cell: no cell before it can be slow
            ("md", "# Sleeps"),
            ("cs", "System.Threading.Thread.Sleep(120_000);"),
            ("cs", "Console.WriteLine(\"after\");"));
        var stdout = new StringWriter();
        var stderr = new StringWriter();

        int code = await Program.RunAsync(
            ["--notebooks", notebooks, "--out", Path.Combine(root, "out"), "--cell-timeout", "4", "--repo-root", TestEnvironment.RepoRoot],
            stdout, stderr);

        output.WriteLine(stdout.ToString());
        output.WriteLine(stderr.ToString());
        Assert.Equal(1, code);
        var lines = stdout.ToString().TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal("0 passed, 1 failed", lines[^1]);
        Assert.Contains("timed out in cell 2 after", stdout.ToString());
        string csv = File.ReadAllText(Path.Combine(root, "out", "summary.csv"));
        Assert.Contains("sleepy,failed,", csv);
        Assert.Contains("\"timed out in cell 2 after 4 s (cell timeout)\"", csv);
        Assert.Empty(TestEnvironment.ProcessesMentioning(notebooks)); // neither `dotnet tool run` nor the kernel is left
    }

    [Fact]
    public async Task Notebook_timeout_kills_the_kernel()
    {
        TestEnvironment.EnsureKernelTool();
        string notebooks = Path.Combine(root, "nb2");
        Directory.CreateDirectory(notebooks);
        string path = TestEnvironment.WriteNotebook(notebooks, "endless",
            ("md", "# Never ends"),
            ("cs", "while (true) System.Threading.Thread.Sleep(100);"));
        var options = new RunOptions
        {
            RepoRoot = TestEnvironment.RepoRoot,
            OutDir = Path.Combine(root, "out2"),
            CellTimeout = TimeSpan.FromSeconds(600),
            NotebookTimeout = TimeSpan.FromSeconds(20),
        };

        var result = await new NotebookRunner(options, output.WriteLine).RunAsync(path);

        Assert.False(result.Passed);
        Assert.Equal(2, result.FailedCell);
        Assert.Matches(@"^timed out in cell 2 after \d+ s \(notebook timeout 20 s\)$", result.Error);
        Assert.InRange(result.Seconds, 19, 60);
        Assert.Empty(TestEnvironment.ProcessesMentioning(notebooks));
        if (result.CellsRun.Contains(2)) // on a very loaded machine the kernel start alone can use up the 20 s
            Assert.Contains("TimeoutError", File.ReadAllText(result.IpynbPath!));
    }
}
