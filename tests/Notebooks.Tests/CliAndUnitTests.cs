using System.Text.Json.Nodes;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>Checks that need no kernel: CLI validation, cell selection, event mapping, CSV, errors.</summary>
public sealed class CliAndUnitTests : IDisposable
{
    readonly string root = TestEnvironment.TempFolder("unit");

    public void Dispose() => TestEnvironment.DeleteQuietly(root);

    async Task<(int Code, string Out, string Err)> Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = await Program.RunAsync([.. args, "--repo-root", TestEnvironment.RepoRoot], o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task Cli_rejects_an_unknown_size()
    {
        var (code, _, err) = await Cli("--size", "huge", "--notebooks", root);
        Assert.NotEqual(0, code);
        Assert.Contains("huge", err);
    }

    [Fact]
    public async Task Cli_fails_when_no_notebook_matches_the_filter()
    {
        TestEnvironment.WriteNotebook(root, "01-one", ("cs", "1"));
        var (code, output, err) = await Cli("--notebooks", root, "--filter", "zzz", "--out", Path.Combine(Path.GetTempPath(), "attnlab-unused-out"));
        Assert.Equal(2, code);
        Assert.Contains("match --filter 'zzz'", err);
        Assert.EndsWith("0 passed, 0 failed", output.TrimEnd());
    }

    [Fact]
    public async Task Cli_refuses_an_output_folder_inside_the_notebooks_folder()
    {
        TestEnvironment.WriteNotebook(root, "01-one", ("cs", "1"));
        var (code, _, err) = await Cli("--notebooks", root, "--out", Path.Combine(root, "out"));
        Assert.Equal(2, code);
        Assert.Contains("never writes there", err);
        Assert.False(Directory.Exists(Path.Combine(root, "out")));
    }

    [Fact]
    public void Filter_matches_file_names_and_finds_ipynb_and_dib()
    {
        TestEnvironment.WriteNotebook(root, "01-alpha", ("cs", "1"));
        TestEnvironment.WriteNotebook(root, "02-beta", ("cs", "1"));
        File.WriteAllText(Path.Combine(root, "03-gamma.dib"), "#!csharp\n\n1\n");
        File.WriteAllText(Path.Combine(root, "notes.txt"), "");
        Assert.Equal(["01-alpha.ipynb", "02-beta.ipynb", "03-gamma.dib"], BatchRunner.FindNotebooks(root).Select(Path.GetFileName));
        Assert.Equal(["02-beta.ipynb"], BatchRunner.FindNotebooks(root, "beta").Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_cell_in_another_kernel_fails_with_a_clear_message_without_starting_a_kernel()
    {
        string path = TestEnvironment.WriteNotebook(root, "fsharp", ("md", "# F#"), ("fs", "let x = 1"), ("cs", "1"));
        var options = new RunOptions { RepoRoot = TestEnvironment.RepoRoot, OutDir = Path.Combine(Path.GetTempPath(), $"attnlab-out-{Guid.NewGuid():N}") };
        try
        {
            var result = await new NotebookRunner(options).RunAsync(path);
            Assert.False(result.Passed);
            Assert.Equal(2, result.FailedCell);
            Assert.Equal("cell 2: kernel 'fsharp' is not supported; the runner runs C# cells only.", result.Error);
            Assert.Empty(result.CellsRun);
            Assert.True(result.Seconds < 10, $"{result.Seconds} s: no kernel should have started");
        }
        finally
        {
            TestEnvironment.DeleteQuietly(options.OutDir);
        }
    }

    [Fact]
    public void Dib_notebooks_parse_into_cells_and_an_ipynb_copy()
    {
        string path = Path.Combine(root, "x.dib");
        File.WriteAllText(path, "#!meta\n\n{\"kernelInfo\":{\"defaultKernelName\":\"csharp\",\"items\":[{\"aliases\":[],\"name\":\"csharp\"}]}}\n\n" +
                                "#!markdown\n\n# Title\n\n#!csharp\n\n1 + 1\n");
        var nb = NotebookFile.Load(path);
        Assert.Equal([CellKind.Markdown, CellKind.Code], nb.Cells.Select(c => c.Kind));
        Assert.True(nb.Cells[1].IsCSharp);
        Assert.Equal("1 + 1", nb.Cells[1].Source.Trim());
        Assert.Equal(2, ((JsonArray)nb.CreateExecutedCopy()["cells"]!).Count);
    }

    [Fact]
    public void Displayed_value_updates_replace_their_output()
    {
        var cell = new JsonObject();
        var c = new OutputCollector();
        c.BeginCell(cell);
        c.Add(Event("DisplayedValueProduced", "text/plain", "a", "id-1"));
        c.Add(Event("DisplayedValueProduced", "text/html", "<b>x</b>", "id-2"));
        c.Add(Event("DisplayedValueUpdated", "text/plain", "b", "id-1"));       // same id
        c.Add(Event("DisplayedValueUpdated", "text/html", "<b>y</b>", "id-9")); // the kernel's new-id quirk
        c.Add(Event("DisplayedValueUpdated", "text/html", "<b>z</b>", "id-9"));
        c.Add(Event("StandardOutputValueProduced", "text/plain", "line 1\n", null));
        c.Add(Event("StandardOutputValueProduced", "text/plain", "line 2\n", null));
        var outputs = (JsonArray)cell["outputs"]!;
        Assert.Equal(3, outputs.Count);
        Assert.Equal("b", (string?)outputs[0]!["data"]!["text/plain"]);
        Assert.Equal("<b>z</b>", (string?)outputs[1]!["data"]!["text/html"]);
        Assert.Equal("line 1\nline 2\n", (string?)outputs[2]!["text"]);
        Assert.Equal("line 1\nline 2\n", c.Stdout);
    }

    static KernelEvent Event(string type, string mime, string value, string? valueId) =>
        new(type, "cell-1", new JsonObject
        {
            ["formattedValues"] = new JsonArray(new JsonObject { ["mimeType"] = mime, ["value"] = value, ["suppressDisplay"] = false }),
            ["valueId"] = valueId,
        });

    [Fact]
    public void Kernel_lines_parse_into_events()
    {
        var e = KernelSession.Parse("""{"event":{"message":"boom"},"eventType":"CommandFailed","command":{"token":"cell-3","commandType":"SubmitCode"}}""");
        Assert.Equal(new KernelEvent("CommandFailed", "cell-3", e!.Body), e);
        Assert.Equal("boom", (string?)e.Body["message"]);
        Assert.Null(KernelSession.Parse("Welcome to .NET Interactive!"));
        Assert.Null(KernelSession.Parse("{not json"));
    }

    [Fact]
    public void Errors_keep_their_first_lines_and_csv_quotes_them()
    {
        string message = "System.Exception: bad \"thing\", really\n   at Submission#3.Run()\n--- End of stack trace from previous location ---\n   at X()";
        Assert.Equal("System.Exception: bad \"thing\", really", ErrorText.FirstLines(message));
        var r = new NotebookResult { Notebook = "n", Passed = false, Seconds = 1.25, Device = "cpu", Size = "smoke", Error = "cell 2: a\nb" };
        Assert.Equal("notebook,status,seconds,device,size,error\nn,failed,1.3,cpu,smoke,\"cell 2: a | b\"\n", SummaryCsv.Render([r]));
        var q = r with { Error = "cell 2: say \"hi\", twice" };
        Assert.EndsWith(",\"cell 2: say \"\"hi\"\", twice\"\n", SummaryCsv.Render([q]));
    }

    [Fact]
    public void Inline_plotly_script_is_stripped_and_nothing_else()
    {
        string html = "<script type=\"text/javascript\" id=\"attnlab-plotlyjs\">!function(){var a=\"<div>\";}();</script>\n<div id=\"c\"></div>" +
            "<script type=\"text/javascript\">Plotly.newPlot('c', []);</script>";
        Assert.Equal("\n<div id=\"c\"></div><script type=\"text/javascript\">Plotly.newPlot('c', []);</script>", HtmlPage.StripInlinePlotly(html));
    }
}
