using System.Text.Json.Nodes;
using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

/// <summary>
/// The one paper contract, checked over the whole library: every paper folder has exactly one experiment in the
/// catalogue, whose notebook exists and ends with the claims table and the run's findings; presets carry their size.
/// </summary>
public class PaperContractTests
{
    static readonly string Repo = FindRepo();

    static string FindRepo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notebooks.sln"))) return dir.FullName;
        throw new InvalidOperationException("tests must run inside the repository");
    }

    static string FolderOf(PaperEntry e) => e.Experiment.Namespace!.Split('.')[^1] is var last && last == "Atlas" ? "Atlas" : last;

    [Fact]
    public void EveryPaperFolderHasOneExperimentOnTheContract()
    {
        var folders = Directory.GetDirectories(Path.Combine(Repo, "lib/AttentionLab/Papers")).Select(Path.GetFileName).Append("Atlas").ToList();
        var byFolder = PaperCatalog.All.GroupBy(FolderOf).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var folder in folders)
        {
            bool on = byFolder.TryGetValue(folder!, out var entries);
            // Atlas/ holds the cross-paper studies (90 efficient-attention atlas, 91 memory atlas): one experiment each, several in the folder
            Assert.True(on && (entries!.Count == 1 || folder == "Atlas" && entries.Count > 1),
                $"{folder}: expected one IPaperExperiment, found {(on ? entries!.Count : 0)}");
        }
        Assert.All(PaperCatalog.All, e => Assert.Contains(FolderOf(e), folders));
    }

    public static TheoryData<int> Papers()
    {
        var data = new TheoryData<int>();
        foreach (var e in PaperCatalog.All) data.Add(e.Info.Number);
        return data;
    }

    [Theory]
    [MemberData(nameof(Papers))]
    public void ItsNotebookEndsWithTheClaimsAndTheFindings(int paper)
    {
        var entry = PaperCatalog.Get(paper);
        string path = Path.Combine(Repo, "notebooks", entry.Info.NotebookName + ".ipynb");
        Assert.True(File.Exists(path), $"{entry}: no notebook {path}");
        var cells = JsonNode.Parse(File.ReadAllText(path))!["cells"]!.AsArray()
            .Select(c => (Kind: c!["cell_type"]!.GetValue<string>(), Source: string.Concat(c["source"]!.AsArray().Select(l => l!.GetValue<string>()))))
            .ToList();
        int check = cells.FindIndex(c => c.Kind == "code" && c.Source.Contains("claims.Check();", StringComparison.Ordinal));
        Assert.True(check >= 0, $"{entry.Info.NotebookName}: no check cell ending with claims.Check()");
        Assert.Contains("display(claims);", cells[check].Source);
        Assert.Contains(cells.Skip(check), c => c.Kind == "code" && c.Source.Trim() == "claims.Findings()");
        var outputs = JsonNode.Parse(File.ReadAllText(path))!["cells"]!.AsArray().Sum(c => c!["outputs"]?.AsArray().Count ?? 0);
        Assert.True(outputs == 0, $"{entry.Info.NotebookName} is committed with {outputs} outputs (commit notebooks without outputs)");
    }

    [Theory]
    [MemberData(nameof(Papers))]
    public void PresetsCarryTheirSize(int paper)
    {
        var entry = PaperCatalog.Get(paper);
        var config = entry.Experiment.GetNestedType("Config")!;
        foreach (var (size, label) in new[] { (RunSize.Smoke, "smoke"), (RunSize.Full, "full") })
        {
            var preset = config.GetMethod("For")!.Invoke(null, [size])!;
            Assert.Equal(label, ((dynamic)preset).Size);
        }
        Assert.InRange(entry.Info.Number, 1, 99);
        Assert.Matches("^[a-z0-9]+(-[a-z0-9]+)*$", entry.Info.Slug);
    }

    [Fact]
    public void TheExpectedStatusFileListsEveryPaperOnTheContract()
    {
        var listed = File.ReadAllLines(Path.Combine(Repo, "tests/expected-claims.csv"))
            .Where(l => l.Length > 0 && char.IsDigit(l[0])).Select(l => int.Parse(l.Split(',')[0])).ToHashSet();
        Assert.All(PaperCatalog.All, e => Assert.True(listed.Contains(e.Info.Number), $"{e}: no rows in tests/expected-claims.csv"));
        Assert.All(listed, p => Assert.Contains(PaperCatalog.All, e => e.Info.Number == p));
    }
}
