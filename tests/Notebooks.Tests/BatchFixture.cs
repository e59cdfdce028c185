using System.Collections.Concurrent;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>
/// One batch run shared by the RunnerTests facts (each kernel start costs ~5 s): [a-good, b-bad, c-good] from a
/// temp notebooks folder, two kernels at once. a-good loads a DLL through a relative #r ("../lib/...").
/// </summary>
public sealed class BatchFixture : IAsyncLifetime
{
    public const string ChartHtml =
        "<script type=\"text/javascript\" id=\"attnlab-plotlyjs\">var INLINE_PLOTLY_COPY = 1;</script>" +
        "<div id=\"chart1\"></div><script>Plotly.newPlot(\"chart1\", [{ y: [1, 3, 2] }]);</script>";

    public string Root { get; } = TestEnvironment.TempFolder("batch");
    public string NotebooksDir => Path.Combine(Root, "notebooks");
    public string OutDir => Path.Combine(Root, "out");
    public string HashBefore { get; private set; } = "";
    public string HashAfter { get; private set; } = "";
    public BatchResult Batch { get; private set; } = null!;
    public ConcurrentQueue<string> Log { get; } = new();

    public NotebookResult Result(string name) => Batch.Results.Single(r => r.Notebook == name);

    public async Task InitializeAsync()
    {
        TestEnvironment.EnsureKernelTool();
        Directory.CreateDirectory(NotebooksDir);
        string lib = Path.Combine(Root, "lib");
        Directory.CreateDirectory(lib);
        File.Copy(typeof(NotebookRunner).Assembly.Location, Path.Combine(lib, "AttentionLab.Runner.dll"));

        TestEnvironment.WriteNotebook(NotebooksDir, "a-good",
            ("md", "# A good notebook\n\nSome **bold** text, a table and math $x_i^2$.\n\n| a | b |\n|---|---|\n| 1 | 2 |"),
            ("cs", "#r \"../lib/AttentionLab.Runner.dll\"\n" +
                   "Console.WriteLine($\"device cpu-test · threads 1 · seed 0 · size {Environment.GetEnvironmentVariable(\"ATTNLAB_SIZE\")}\");"),
            ("cs", "AttentionLab.Runner.ErrorText.FirstLines(\"relative-ref-ok\\n   at Somewhere()\")"),
            ("cs", "var d = display(\"progress 0%\");\nfor (int i = 1; i <= 4; i++) d.Update($\"progress {i * 25}%\");"),
            ("cs", $"\"{ChartHtml.Replace("\"", "\\\"")}\".DisplayAs(\"text/html\");"),
            ("cs", "Console.Error.WriteLine(\"a warning on stderr\");\n6 * 7"));
        TestEnvironment.WriteNotebook(NotebooksDir, "b-bad",
            ("md", "# Fails in its third code cell"),
            ("cs", "Console.WriteLine(\"first code cell\");"),
            ("cs", "var x = 2;"),
            ("cs", "throw new InvalidOperationException(\"claim failed: 0.3 < 0.5\");"),
            ("cs", "Console.WriteLine(\"SHOULD-NOT-RUN\");"),
            ("md", "## After the failure"));
        TestEnvironment.WriteNotebook(NotebooksDir, "c-good",
            ("cs", "Console.WriteLine(\"c-good ran\");"));

        HashBefore = TestEnvironment.HashFolder(NotebooksDir);
        var options = new RunOptions
        {
            RepoRoot = TestEnvironment.RepoRoot,
            OutDir = OutDir,
            CellTimeout = TimeSpan.FromSeconds(120),
            NotebookTimeout = TimeSpan.FromSeconds(300),
            Environment = new Dictionary<string, string?> { ["ATTNLAB_DEVICE"] = null },
        };
        Batch = await new BatchRunner(options, jobs: 2, Log.Enqueue).RunAsync(BatchRunner.FindNotebooks(NotebooksDir));
        HashAfter = TestEnvironment.HashFolder(NotebooksDir);
    }

    public Task DisposeAsync()
    {
        TestEnvironment.DeleteQuietly(Root);
        return Task.CompletedTask;
    }
}
