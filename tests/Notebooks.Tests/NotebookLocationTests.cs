using System.Diagnostics;
using System.Text.Json.Nodes;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>
/// Every notebook's first code cell is the library cell (environment/tools/templates/library-cell.cs.txt, written by
/// environment/tools/nblib.py): outside a clone's notebooks/ folder it stops with a message that says how to point the
/// notebook at the library, and with ATTNLAB_LIB set it finds the library from any folder.
/// </summary>
public sealed class NotebookLocationTests(ITestOutputHelper output)
{
    static string Template => Path.Combine(TestEnvironment.RepoRoot, "environment", "tools", "templates", "library-cell.cs.txt");
    const string OldReference = "#r \"../artifacts/lib/AttentionLab.dll\"";
    const string Fix = "run `python3 environment/tools/nblib.py` (it updates only the first code cells)";

    static List<string> CodeCells(string notebookPath) =>
        JsonNode.Parse(File.ReadAllText(notebookPath))!["cells"]!.AsArray()
            .Where(c => (string?)c!["cell_type"] == "code")
            .Select(c => string.Concat(c!["source"]!.AsArray().Select(l => (string?)l)))
            .ToList();

    [Theory]
    [MemberData(nameof(NotebookTests.Notebooks), MemberType = typeof(NotebookTests))]
    public void Every_notebook_starts_with_the_current_library_cell(string notebook)
    {
        string path = Path.Combine(TestEnvironment.RepoRoot, "notebooks", notebook);
        if (!File.Exists(path)) return;   // "(no notebooks yet)": nothing to check
        var cells = CodeCells(path);
        Assert.True(cells.Count > 0, $"{notebook} has no code cell");
        Assert.True(cells[0] == File.ReadAllText(Template).Trim('\n'),
            $"{notebook}: the first code cell is not the current library cell from {Template}: {Fix}");
        Assert.False(cells.Any(c => c.Split('\n').Any(l => l.Trim() == OldReference)), $"{notebook} still has {OldReference}: {Fix}");
    }

    [Fact]
    public void The_new_paper_template_gets_the_library_cell()
    {
        string template = File.ReadAllText(Path.Combine(TestEnvironment.RepoRoot, "environment", "tools", "templates", "notebook.txt"));
        string newPaper = File.ReadAllText(Path.Combine(TestEnvironment.RepoRoot, "environment", "tools", "new-paper.sh"));
        Assert.DoesNotContain(OldReference, template);
        Assert.Contains("environment/tools/nblib.py\" \"$notebook\"", newPaper);
    }

    /// <summary>A copy of 00-getting-started in a folder with no ../artifacts/lib/ beside it.</summary>
    static string CopyOutside(string root)
    {
        string folder = Path.Combine(root, "elsewhere");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(TestEnvironment.RepoRoot, "notebooks", "00-getting-started.ipynb"), Path.Combine(folder, "00-getting-started.ipynb"));
        return folder;
    }

    [Fact]
    public async Task A_notebook_run_outside_notebooks_stops_at_its_first_cell_saying_how_to_find_the_library()
    {
        string root = TestEnvironment.TempFolder("nbwhere");
        string folder = CopyOutside(root), outDir = Path.Combine(root, "out");
        var info = new ProcessStartInfo("bash") { WorkingDirectory = TestEnvironment.RepoRoot, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(TestEnvironment.RepoRoot, "environment", "run.sh"), "--notebooks", folder, "--out",
            outDir }) info.ArgumentList.Add(a);
        info.Environment.Remove("ATTNLAB_LIB");
        info.Environment.Remove("ATTNLAB_SIZE");
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(600)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("run.sh --notebooks ran over 600 s");
        }
        string text = await stdout + await stderr;
        output.WriteLine(TestEnvironment.Tail(text, 3000));
        string summary = File.ReadAllText(Path.Combine(outDir, "summary.csv"));
        Assert.Equal(1, p.ExitCode);
        Assert.Contains("0 passed, 1 failed", text);
        foreach (var needed in new[] { "AttentionLab.dll is not at", "ATTNLAB_LIB", "notebooks/ folder" })
            Assert.Contains(needed, summary);
        Assert.Contains("cell 2", summary);   // cell 1 is the title; the library cell is the first code cell
        TestEnvironment.DeleteQuietly(root);
    }

    [Fact]
    public async Task With_ATTNLAB_LIB_a_notebook_finds_the_library_from_any_folder()
    {
        TestEnvironment.EnsureKernelTool();
        output.WriteLine($"library build: {TestEnvironment.Tail(NotebookTests.LibraryBuild.Value, 400)}");
        string root = TestEnvironment.TempFolder("nblib");
        string folder = CopyOutside(root);
        var options = new RunOptions
        {
            RepoRoot = TestEnvironment.RepoRoot,
            OutDir = Path.Combine(root, "out"),
            Size = RunOptions.Smoke,
            Environment = new Dictionary<string, string?> { ["ATTNLAB_LIB"] = Path.Combine(TestEnvironment.RepoRoot, "artifacts", "lib") },
        };
        var result = await new NotebookRunner(options, output.WriteLine).RunAsync(Path.Combine(folder, "00-getting-started.ipynb"));
        Assert.True(result.Passed, $"00-getting-started with ATTNLAB_LIB failed outside notebooks/: {result.Error}");
        TestEnvironment.DeleteQuietly(root);
    }
}
