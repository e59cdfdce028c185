using System.Text.Json;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>
/// The nightly job's sharding (issue 16, item 5): the same notebooks run unsharded and as two shards merged with the
/// runner's merge command give the same summary rows, claims, gallery rows and pages (timings aside). Three tiny notebooks
/// (one writes a claims file, one fails) in a temp folder; the CLI is called in-process.
/// </summary>
public sealed class ShardMergeTests : IDisposable
{
    readonly string root = TestEnvironment.TempFolder("shards");
    public void Dispose() => TestEnvironment.DeleteQuietly(root);

    const string ClaimsJson = """
        { "paper": 41, "size": "smoke", "device": "cpu", "runAt": "2026-12-07T03:00:00.0000000+00:00",
          "claims": [ { "paper": 41, "id": "forms-equal", "kind": "exactness", "statement": "s", "paperFigure": "identity", "ours": "0",
                        "criterion": "≤ 1e-12", "status": "holds", "asserted": true, "deviation": null, "note": null } ],
          "observations": [] }
        """;

    string Notebooks()
    {
        string dir = Path.Combine(root, "notebooks");
        Directory.CreateDirectory(dir);
        string claims = Path.Combine(root, "claims-41.json");
        File.WriteAllText(claims, ClaimsJson);
        TestEnvironment.WriteNotebook(dir, "41-alpha",
            ("md", "# Alpha $x^2$"),
            ("cs", "var target = Environment.GetEnvironmentVariable(\"ATTNLAB_CLAIMS_FILE\")!;\n" +
                   "System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);\n" +
                   $"System.IO.File.Copy(@\"{claims}\", target, true);"));
        TestEnvironment.WriteNotebook(dir, "b-bad", ("cs", "throw new InvalidOperationException(\"bad on purpose\");"));
        TestEnvironment.WriteNotebook(dir, "c-good", ("cs", "Console.WriteLine(\"c-good ran\");"));
        return dir;
    }

    async Task<(int Code, string Output)> Cli(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await Program.RunAsync([.. args, "--repo-root", TestEnvironment.RepoRoot], output, error);
        return (code, output + "\n" + error);
    }

    static string[] RunArgs(string notebooks, string outDir) =>
        ["--notebooks", notebooks, "--out", outDir, "--cell-timeout", "120", "--notebook-timeout", "300"];

    /// <summary>summary.csv without the seconds column.</summary>
    static List<string> Summary(string outDir) =>
        Csv.Records(File.ReadAllText(Path.Combine(outDir, "summary.csv"))).Select(r => string.Join("|", r.Where((_, i) => i != 2))).ToList();

    static List<string> GalleryRows(string outDir) =>
        JsonSerializer.Deserialize<List<GalleryEntry>>(File.ReadAllText(Path.Combine(outDir, "gallery", Gallery.StateFile)))!
            .Select(e => $"{e.Notebook}|{e.Status}|{e.Device}|{e.Size}|{e.Error}").Order(StringComparer.Ordinal).ToList();

    static List<string> Files(string outDir, string folder) =>
        Directory.EnumerateFiles(Path.Combine(outDir, folder), "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(outDir, f)).Order(StringComparer.Ordinal).ToList();

    [Fact]
    public async Task Two_shards_merged_equal_one_unsharded_run_minus_timings()
    {
        TestEnvironment.EnsureKernelTool();
        string notebooks = Notebooks();
        string whole = Path.Combine(root, "whole"), one = Path.Combine(root, "shard1"), two = Path.Combine(root, "shard2"),
            merged = Path.Combine(root, "merged");

        var (code, text) = await Cli([.. RunArgs(notebooks, whole)]);
        Assert.True(code == 1, $"unsharded: one notebook fails on purpose, so exit 1; got {code}\n{text}");
        var (c1, t1) = await Cli([.. RunArgs(notebooks, one), "--shard", "1/2"]);
        var (c2, t2) = await Cli([.. RunArgs(notebooks, two), "--shard", "2/2"]);
        Assert.Contains("shard 1/2", t1);
        Assert.Equal(["41-alpha", "c-good"], RunManifest.Read(one).Results.Select(r => r.Notebook));   // positions 0 and 2
        Assert.Equal(["b-bad"], RunManifest.Read(two).Results.Select(r => r.Notebook));
        Assert.True(c1 == 0 && c2 == 1, $"shard exits {c1}, {c2}\n{t1}\n{t2}");

        var (cm, tm) = await Cli("merge", one, two, "--out", merged);
        Assert.True(cm == 1, $"merge exits 1 because b-bad failed; got {cm}\n{tm}");
        Assert.EndsWith("2 passed, 1 failed", tm.Trim().Split('\n').Last(l => l.Contains("passed")).Trim());

        Assert.Equal(Summary(whole), Summary(merged));
        Assert.Equal(File.ReadAllText(Path.Combine(whole, ClaimsBoard.CsvName)), File.ReadAllText(Path.Combine(merged, ClaimsBoard.CsvName)));
        Assert.Equal(GalleryRows(whole), GalleryRows(merged));
        Assert.Equal(Files(whole, "notebooks"), Files(merged, "notebooks"));
        Assert.Equal(Files(whole, "claims"), Files(merged, "claims"));
        var manifest = RunManifest.Read(merged);
        Assert.Null(manifest.Shard);
        Assert.Equal(["41-alpha", "b-bad", "c-good"], manifest.Results.Select(r => r.Notebook));
        Assert.Equal(RunManifest.Read(one).Run.RunAt, manifest.Run.RunAt);                      // the earliest shard's start
    }

    [Fact]
    public async Task Merge_refuses_a_folder_without_run_json_and_a_notebook_in_two_shards()
    {
        string empty = Path.Combine(root, "empty");
        Directory.CreateDirectory(empty);
        var (code, text) = await Cli("merge", empty, "--out", Path.Combine(root, "m1"));
        Assert.Equal(2, code);
        Assert.Contains("no run.json", text);

        var meta = new RunMeta("20261207-030000-abc", "abc", DateTimeOffset.Parse("2026-12-07T03:00:00Z"), "here", "smoke");
        var result = new NotebookResult { Notebook = "x", Passed = true, Seconds = 1, Device = "cpu", Size = "smoke" };
        foreach (var d in new[] { "s1", "s2" })
        {
            Directory.CreateDirectory(Path.Combine(root, d));
            RunManifest.Write(Path.Combine(root, d), new RunManifest(meta, "1/2", [result]));
        }
        (code, text) = await Cli("merge", Path.Combine(root, "s1"), Path.Combine(root, "s2"), "--out", Path.Combine(root, "m2"));
        Assert.Equal(2, code);
        Assert.Contains("x is in more than one shard", text);

        RunManifest.Write(Path.Combine(root, "s2"), new RunManifest(meta with { Commit = "def" }, "2/2", [result with { Notebook = "y" }]));
        (code, text) = await Cli("merge", Path.Combine(root, "s1"), Path.Combine(root, "s2"), "--out", Path.Combine(root, "m3"));
        Assert.Equal(2, code);
        Assert.Contains("different commits", text);
    }

    [Theory]
    [InlineData("0/2")]
    [InlineData("3/2")]
    [InlineData("2")]
    [InlineData("a/b")]
    public void Shard_text_is_checked(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => ShardSpec.Parse(text));
        Assert.Contains("--shard", e.Message);
    }

    [Fact]
    public void Shards_cover_every_notebook_once()
    {
        var names = Enumerable.Range(0, 11).Select(i => $"{i:00}-n").ToList();
        var parts = Enumerable.Range(1, 4).Select(i => new ShardSpec(i, 4).Select(names)).ToList();
        Assert.Equal(names, parts.SelectMany(p => p).Order(StringComparer.Ordinal));
        Assert.All(parts, p => Assert.InRange(p.Count, 2, 3));
    }
}
