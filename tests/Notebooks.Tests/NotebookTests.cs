using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>
/// One case per notebooks/*.ipynb (found when tests are discovered, so a new notebook needs no test edit). The first case
/// runs the whole folder through the runner at smoke size into a temp folder, <see cref="Kernels"/> kernels at once
/// (ATTNLAB_TEST_KERNELS, default 2: the machine's two cores, one torch thread each); every case then checks its own
/// notebook's result and claims, and prints its log. Before the batch the library is built into artifacts/lib/
/// (`dotnet build lib/AttentionLab -c Release`; set ATTNLAB_SKIP_LIB_BUILD=1 when already built).
/// Set ATTNLAB_NOTEBOOKS_DIR to run another folder.
/// </summary>
public sealed class NotebookTests(ITestOutputHelper output)
{
    const string NoneYet = "(no notebooks yet)";

    static string Folder => Environment.GetEnvironmentVariable("ATTNLAB_NOTEBOOKS_DIR") is { Length: > 0 } dir
        ? Path.GetFullPath(dir)
        : Path.Combine(TestEnvironment.RepoRoot, "notebooks");

    /// <summary>Kernels at once for the notebook batch: ATTNLAB_TEST_KERNELS (1–4), default 2.</summary>
    public static int Kernels =>
        int.TryParse(Environment.GetEnvironmentVariable("ATTNLAB_TEST_KERNELS"), out int k) && k is >= 1 and <= 4 ? k : 2;

    public static TheoryData<string> Notebooks()
    {
        var data = new TheoryData<string>();
        foreach (var path in (Directory.Exists(Folder) ? Directory.GetFiles(Folder, "*.ipynb") : []).Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(path));
        if (data.Count == 0) data.Add(NoneYet);
        return data;
    }

    /// <summary>Builds the library into artifacts/lib/ once per test run (other notebook tests share it).</summary>
    internal static readonly Lazy<string> LibraryBuild = new(() =>
        Environment.GetEnvironmentVariable("ATTNLAB_SKIP_LIB_BUILD") == "1"
            ? "skipped (ATTNLAB_SKIP_LIB_BUILD=1)"
            : TestEnvironment.Dotnet(TestEnvironment.RepoRoot, "build lib/AttentionLab/AttentionLab.csproj -c Release --nologo -v q", 1200));

    /// <summary>Every notebook of the folder, run once for all cases; the log lines by notebook.</summary>
    static readonly Lazy<Task<(BatchResult Batch, ILookup<string, string> Log, string OutDir)>> Batch = new(async () =>
    {
        TestEnvironment.EnsureKernelTool();
        _ = LibraryBuild.Value;
        string outDir = TestEnvironment.TempFolder("nbtest");
        var options = new RunOptions { RepoRoot = TestEnvironment.RepoRoot, OutDir = outDir, Size = RunOptions.Smoke };
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var batch = await new BatchRunner(options, Kernels, log.Enqueue).RunAsync(BatchRunner.FindNotebooks(Folder));
        if (batch.Failed == 0) AppDomain.CurrentDomain.ProcessExit += (_, _) => TestEnvironment.DeleteQuietly(outDir);   // kept when one failed
        var byNotebook = log.Select(l => (Name: l.StartsWith('[') && l.IndexOf(']') is > 1 and var e ? l[1..e] : "", Line: l))
            .ToLookup(x => x.Name, x => x.Line);
        return (batch, byNotebook, outDir);
    });

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
        var (batch, log, outDir) = await Batch.Value;
        output.WriteLine($"library build: {TestEnvironment.Tail(LibraryBuild.Value, 400)}");
        output.WriteLine($"batch of {batch.Results.Count} notebook(s), {Kernels} kernel(s) at once, output in {outDir}");
        foreach (var line in log[Path.GetFileNameWithoutExtension(notebook)]) output.WriteLine(line);
        var result = batch.Results.Single(r => r.Notebook == Path.GetFileNameWithoutExtension(notebook));

        Assert.True(result.Passed, $"{notebook} failed: {result.Error}\nExecuted copy: {result.HtmlPath}");
        CompareClaims(notebook, result);
    }

    /// <summary>The repository's expected claim statuses at smoke size.</summary>
    public static string ExpectedFile => Path.Combine(TestEnvironment.RepoRoot, "tests", "expected-claims.csv");

    /// <summary>The paper number of "NN-slug.ipynb" (01–50, 90+ for cross-paper studies); null for 00-getting-started.</summary>
    public static int? PaperOf(string notebook) =>
        notebook.Length > 3 && char.IsDigit(notebook[0]) && char.IsDigit(notebook[1]) && notebook[2] == '-' && notebook[..2] != "00"
            ? int.Parse(notebook[..2], System.Globalization.CultureInfo.InvariantCulture) : null;

    /// <summary>
    /// A paper notebook's check cell must have written its claims, and every status must equal tests/expected-claims.csv
    /// (either way: a claim that stops holding and one that starts holding both fail until a reviewer edits the file).
    /// </summary>
    void CompareClaims(string notebook, NotebookResult result)
    {
        if (Environment.GetEnvironmentVariable("ATTNLAB_NOTEBOOKS_DIR") is { Length: > 0 }) return;   // another folder: no expectations
        var paper = PaperOf(notebook);
        var rows = result.ClaimsPath is null ? [] : ClaimsBoard.ReadFile(result.ClaimsPath);
        if (paper is null)
        {
            Assert.Empty(rows);
            return;
        }
        var expected = ExpectedClaims.TryLoad(ExpectedFile) ?? throw new FileNotFoundException("the expected claim statuses are missing", ExpectedFile);
        Assert.True(rows.Count > 0, $"{notebook} passed without writing claims: its check cell must end with claims.Check().");
        Assert.All(rows, r => Assert.Equal(paper.Value, r.Paper));
        foreach (var r in rows) output.WriteLine($"claim {r.Id} ({r.Kind}): {r.Status} — ours {r.Ours}");
        var diffs = expected.Compare(rows, [paper.Value]);
        Assert.True(diffs.Count == 0, $"{notebook}: {diffs.Count} claim(s) differ from tests/expected-claims.csv — review the change, then edit the file:\n  " +
            string.Join("\n  ", diffs));
    }
}
