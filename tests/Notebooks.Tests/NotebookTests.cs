using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>
/// One case per notebooks/*.ipynb (found when tests are discovered, so a new notebook needs no test edit), each run
/// through the runner at smoke size into a temp folder. Before the first notebook the library is built into
/// artifacts/lib/ (`dotnet build lib/AttentionLab -c Release`; set ATTNLAB_SKIP_LIB_BUILD=1 when already built).
/// Set ATTNLAB_NOTEBOOKS_DIR to run another folder.
/// </summary>
public sealed class NotebookTests(ITestOutputHelper output)
{
    const string NoneYet = "(no notebooks yet)";

    static string Folder => Environment.GetEnvironmentVariable("ATTNLAB_NOTEBOOKS_DIR") is { Length: > 0 } dir
        ? Path.GetFullPath(dir)
        : Path.Combine(TestEnvironment.RepoRoot, "notebooks");

    public static TheoryData<string> Notebooks()
    {
        var data = new TheoryData<string>();
        foreach (var path in (Directory.Exists(Folder) ? Directory.GetFiles(Folder, "*.ipynb") : []).Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(path));
        if (data.Count == 0) data.Add(NoneYet);
        return data;
    }

    static readonly Lazy<string> libraryBuild = new(() =>
        Environment.GetEnvironmentVariable("ATTNLAB_SKIP_LIB_BUILD") == "1"
            ? "skipped (ATTNLAB_SKIP_LIB_BUILD=1)"
            : TestEnvironment.Dotnet(TestEnvironment.RepoRoot, "build lib/AttentionLab/AttentionLab.csproj -c Release --nologo -v q", 1200));

    [Theory]
    [MemberData(nameof(Notebooks))]
    public async Task Runs_at_smoke_size(string notebook)
    {
        if (notebook == NoneYet)
        {
            Assert.True(Directory.Exists(Folder), $"the notebooks folder {Folder} is missing");
            output.WriteLine($"No *.ipynb in {Folder} yet.");
            return;
        }
        TestEnvironment.EnsureKernelTool();
        output.WriteLine($"library build: {TestEnvironment.Tail(libraryBuild.Value, 400)}");
        string outDir = TestEnvironment.TempFolder("nbtest");
        var options = new RunOptions
        {
            RepoRoot = TestEnvironment.RepoRoot,
            OutDir = outDir,
            Size = RunOptions.Smoke,
        };

        var result = await new NotebookRunner(options, output.WriteLine).RunAsync(Path.Combine(Folder, notebook));

        Assert.True(result.Passed, $"{notebook} failed: {result.Error}\nExecuted copy: {result.HtmlPath}");
        TestEnvironment.DeleteQuietly(outDir);
    }
}
