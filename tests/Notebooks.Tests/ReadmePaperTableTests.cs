using System.Text.RegularExpressions;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>
/// The README's paper table stands alone (issue 16, item 6): every paper notebook has its row, and the row links the
/// notebook, the library folder that declares the paper and the paper link the notebook cites; every link into the
/// repository resolves. environment/tools/readme-papers.py rewrites those columns.
/// </summary>
public sealed partial class ReadmePaperTableTests
{
    static readonly string Root = TestEnvironment.RepoRoot;

    static Dictionary<int, string[]> Rows()
    {
        var rows = new Dictionary<int, string[]>();
        bool inTable = false;
        foreach (var raw in File.ReadAllLines(Path.Combine(Root, "README.md")))
        {
            if (!raw.StartsWith('|')) { inTable = false; continue; }
            var cells = raw.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray();
            if (cells is ["P", "Paper", "Family", "Grade", "Notebook", "Library", "Paper or code", "Status"]) { inTable = true; continue; }
            if (inTable && int.TryParse(cells[0], out int n)) rows[n] = cells;
        }
        return rows;
    }

    [GeneratedRegex(@"\]\(([^)\s]+)\)")]
    private static partial Regex Link();

    [Fact]
    public void Every_paper_notebook_has_a_row_linking_its_notebook_library_and_paper()
    {
        var rows = Rows();
        Assert.Equal(50, rows.Count);
        var libraries = PaperIndex.ScanLibrary(Root);
        var papers = PaperIndex.PaperLinks(Path.Combine(Root, "notebooks"));
        foreach (var path in Directory.GetFiles(Path.Combine(Root, "notebooks"), "*.ipynb"))
        {
            string name = Path.GetFileNameWithoutExtension(path);
            if (PaperIndex.NumberOf(name) is not (>= 1 and <= 50) || name.StartsWith("00", StringComparison.Ordinal)) continue;
            int n = PaperIndex.NumberOf(name)!.Value;
            Assert.True(rows.TryGetValue(n, out var row), $"README has no row for paper {n} ({name})");
            Assert.Contains($"(notebooks/{name}.ipynb)", row[4]);
            Assert.True(libraries.TryGetValue(n, out var lib), $"{name}: no experiment in lib/AttentionLab/Papers declares paper {n}");
            Assert.Contains($"({lib.Folder})", row[5]);
            if (papers.TryGetValue(name, out var link)) Assert.Contains($"({link})", row[6]);
        }
    }

    [Fact]
    public void Links_into_the_repository_resolve()
    {
        foreach (var (n, row) in Rows())
            foreach (Match m in Link().Matches(string.Join(" | ", row[4..6])))
                Assert.True(File.Exists(Path.Combine(Root, m.Groups[1].Value)) || Directory.Exists(Path.Combine(Root, m.Groups[1].Value)),
                    $"README row {n} links {m.Groups[1].Value}, which the repository does not hold");
    }
}
