using System.Text.Json.Nodes;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>The runner on small plain-C# notebooks (no AttentionLab): outputs, failures, files, HTML.</summary>
public sealed class RunnerTests(BatchFixture fixture, ITestOutputHelper output) : IClassFixture<BatchFixture>
{
    JsonObject Executed(string name) =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(fixture.OutDir, "notebooks", name + ".ipynb")))!;

    static JsonArray Outputs(JsonObject notebook, int cellNumber) => (JsonArray)notebook["cells"]![cellNumber - 1]!["outputs"]!;

    string Page(string name) => File.ReadAllText(Path.Combine(fixture.OutDir, "notebooks", name + ".html"));

    void ShowLog()
    {
        foreach (var line in fixture.Log) output.WriteLine(line);
    }

    [Fact]
    public void Batch_of_good_bad_good_is_two_passed_one_failed_and_both_good_ones_ran()
    {
        ShowLog();
        Assert.Equal(2, fixture.Batch.Passed);
        Assert.Equal(1, fixture.Batch.Failed);
        Assert.True(fixture.Result("a-good").Passed, fixture.Result("a-good").Error);
        Assert.True(fixture.Result("c-good").Passed, fixture.Result("c-good").Error);
        Assert.Equal([2, 3, 4, 5, 6], fixture.Result("a-good").CellsRun);
        Assert.Contains("c-good ran", Outputs(Executed("c-good"), 1)[0]!["text"]!.GetValue<string>());
    }

    [Fact]
    public void Passing_notebook_writes_ipynb_with_outputs_and_keeps_metadata()
    {
        var nb = Executed("a-good");
        Assert.Equal(".net-csharp", (string?)nb["metadata"]!["kernelspec"]!["name"]);
        Assert.Equal("csharp", (string?)nb["metadata"]!["polyglot_notebook"]!["kernelInfo"]!["defaultKernelName"]);
        Assert.Equal("csharp", (string?)nb["cells"]![1]!["metadata"]!["polyglot_notebook"]!["kernelName"]);

        var setup = Outputs(nb, 2).Single()!;
        Assert.Equal("stream", (string?)setup["output_type"]);
        Assert.Contains("size smoke", (string?)setup["text"]); // ATTNLAB_SIZE reached the kernel
        Assert.Equal(1, (int?)nb["cells"]![1]!["execution_count"]);

        var progress = Outputs(nb, 4).Single()!; // display + 4 updates → one output, the last value
        Assert.Equal("display_data", (string?)progress["output_type"]);
        Assert.Equal("progress 100%", (string?)progress["data"]!["text/plain"]);

        Assert.Contains(BatchFixture.ChartHtml, (string?)Outputs(nb, 5).Single()!["data"]!["text/html"]); // kept as produced

        var last = Outputs(nb, 6);
        Assert.Contains(last, o => (string?)o!["output_type"] == "stream" && (string?)o["name"] == "stderr");
        Assert.Contains(last, o => (string?)o!["output_type"] == "execute_result" && o["data"]!.ToJsonString().Contains("42"));
    }

    [Fact]
    public void Relative_reference_resolves_against_the_notebook_folder()
    {
        var result = Outputs(Executed("a-good"), 3).Single()!;
        Assert.Equal("execute_result", (string?)result["output_type"]);
        Assert.Contains("relative-ref-ok", result["data"]!.ToJsonString());
    }

    [Fact]
    public void Failing_notebook_reports_the_cell_number_and_message_and_stops()
    {
        var bad = fixture.Result("b-bad");
        Assert.False(bad.Passed);
        Assert.Equal(4, bad.FailedCell); // the 3rd code cell is the notebook's 4th cell
        Assert.StartsWith("cell 4: ", bad.Error);
        Assert.Contains("InvalidOperationException: claim failed: 0.3 < 0.5", bad.Error);
        Assert.DoesNotContain("   at ", bad.Error);
        Assert.Equal([2, 3, 4], bad.CellsRun);

        var nb = Executed("b-bad");
        var error = Outputs(nb, 4).Single()!;
        Assert.Equal("error", (string?)error["output_type"]);
        Assert.Equal("System.InvalidOperationException", (string?)error["ename"]);
        Assert.Empty(Outputs(nb, 5));
        Assert.Null(nb["cells"]![4]!["execution_count"]);
        Assert.DoesNotContain("SHOULD-NOT-RUN", string.Concat(((JsonArray)nb["cells"]!).Select(c => c!["outputs"]?.ToJsonString())));

        string page = Page("b-bad");
        Assert.Contains("Error in cell 4", page);
        Assert.Contains("href=\"#cell-4\"", page);
        Assert.Contains("not run", page);
    }

    [Fact]
    public void Summary_csv_has_the_header_and_one_row_per_notebook()
    {
        var lines = File.ReadAllLines(Path.Combine(fixture.OutDir, "summary.csv"));
        Assert.Equal("notebook,status,seconds,device,size,error", lines[0]);
        Assert.Equal(4, lines.Length);
        Assert.Matches(@"^a-good,passed,\d+\.\d,cpu-test,smoke,""""$", lines[1]);
        Assert.Matches(@"^b-bad,failed,\d+\.\d,unknown,smoke,""cell 4: System\.InvalidOperationException: claim failed: 0\.3 < 0\.5""$", lines[2]);
        Assert.StartsWith("c-good,passed,", lines[3]);
    }

    [Fact]
    public void Gallery_links_every_page_with_status()
    {
        string index = File.ReadAllText(Path.Combine(fixture.OutDir, "gallery", "index.html"));
        foreach (var name in new[] { "a-good", "b-bad", "c-good" })
        {
            Assert.Contains($"href=\"../notebooks/{name}.html\"", index);
            Assert.True(File.Exists(Path.Combine(fixture.OutDir, "notebooks", name + ".html")));
        }
        Assert.Contains("2 passed, 1 failed", index);
        Assert.Contains("claim failed", index);
        Assert.Contains("cpu-test", index);
    }

    [Fact]
    public void Notebooks_folder_is_byte_identical_after_the_run()
    {
        Assert.Equal(fixture.HashBefore, fixture.HashAfter);
        Assert.Equal(["a-good.ipynb", "b-bad.ipynb", "c-good.ipynb"],
            Directory.GetFiles(fixture.NotebooksDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Html_strips_the_inline_plotly_script_and_loads_the_local_copy()
    {
        string page = Page("a-good");
        Assert.DoesNotContain("<script type=\"text/javascript\" id=\"attnlab-plotlyjs\">", page); // the code cell shows it escaped
        Assert.DoesNotContain(">var INLINE_PLOTLY_COPY", page);
        Assert.Contains("<div id=\"chart1\"></div><script>Plotly.newPlot(\"chart1\"", page);
        Assert.Contains($"<script src=\"{PlotlyAsset.FileName}\"></script>", page[..page.IndexOf("</head>", StringComparison.Ordinal)]);
        Assert.DoesNotContain("cdn.plot.ly", page);

        var js = File.ReadAllBytes(Path.Combine(fixture.OutDir, "notebooks", PlotlyAsset.FileName));
        Assert.Equal(PlotlyAsset.Read(), js);
        Assert.True(js.Length > 1_000_000);
    }

    [Fact]
    public void Markdown_cells_render_to_html_and_code_is_escaped()
    {
        string page = Page("a-good");
        Assert.Contains("<h1 id=\"a-good-notebook\">A good notebook</h1>", page);
        Assert.Contains("<strong>bold</strong>", page);
        Assert.Contains("<table>", page);
        Assert.Contains("x_i^2", page); // math is left as TeX
        Assert.Contains("#r &quot;../lib/AttentionLab.Runner.dll&quot;", page);
        Assert.Contains("progress 100%", page);
        Assert.DoesNotContain("progress 0%</pre>", page);
    }
}
