using System.Text.RegularExpressions;

namespace AttentionLab.Runner;

/// <summary>What the index shows about one paper: the README table's row, and the library folder holding its experiment.</summary>
public sealed record PaperMeta(int Number, string Title, string Family, string Grade, string? LibraryFolder);

/// <summary>
/// Paper metadata for the gallery index. The runner does not load the library, so it reads the repository's text: the
/// README's paper table (number, title, family, feasibility grade — the library's PaperInfo has no family or grade) and
/// the experiment declarations in <c>lib/AttentionLab/Papers/*/</c> (<c>PaperInfo Paper { get; } = new(NN, "title", …)</c>),
/// whose folder and title win over the table's short title.
/// </summary>
public static partial class PaperIndex
{
    /// <summary>Family codes as the README's table uses them.</summary>
    public static readonly IReadOnlyDictionary<string, string> Families = new Dictionary<string, string>
    {
        ["F1"] = "efficient attention",
        ["F2"] = "memory & architecture",
        ["F3"] = "sinks & interpretability",
        ["F4"] = "vision, multimodal & other",
    };

    /// <summary>Every paper in the README table, with its library folder (repository-relative, '/'-separated) when one declares it.</summary>
    public static IReadOnlyDictionary<int, PaperMeta> Load(string repoRoot)
    {
        string readme = Path.Combine(repoRoot, "README.md");
        var table = File.Exists(readme) ? ParseReadme(File.ReadAllText(readme)) : new Dictionary<int, PaperMeta>();
        var library = ScanLibrary(repoRoot);
        var all = new Dictionary<int, PaperMeta>(table);
        foreach (var (number, (title, folder)) in library)
            all[number] = all.TryGetValue(number, out var row) ? row with { Title = title, LibraryFolder = folder }
                : new PaperMeta(number, title, "", "", folder);
        return all;
    }

    /// <summary>The rows of the README table whose header is "| P | Paper | Family | Grade | …".</summary>
    public static Dictionary<int, PaperMeta> ParseReadme(string markdown)
    {
        var rows = new Dictionary<int, PaperMeta>();
        bool inTable = false;
        foreach (var raw in markdown.Replace("\r\n", "\n").Split('\n'))
        {
            string line = raw.Trim();
            if (!line.StartsWith('|')) { inTable = false; continue; }
            var cells = line.Trim('|').Split('|').Select(c => c.Trim()).ToArray();
            if (cells.Length >= 4 && cells[0] == "P" && cells[1] == "Paper" && cells[2] == "Family" && cells[3] == "Grade") { inTable = true; continue; }
            if (!inTable || !int.TryParse(cells[0], out int number)) continue;
            rows[number] = new PaperMeta(number, cells[1], cells[2], cells[3], null);
        }
        return rows;
    }

    /// <summary>Paper number → (title, folder) from the experiments' <c>PaperInfo Paper</c> declarations.</summary>
    public static Dictionary<int, (string Title, string Folder)> ScanLibrary(string repoRoot)
    {
        var found = new Dictionary<int, (string, string)>();
        string papers = Path.Combine(repoRoot, "lib", "AttentionLab", "Papers");
        if (!Directory.Exists(papers)) return found;
        foreach (var file in Directory.EnumerateFiles(papers, "*.cs", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var m = Declaration().Match(File.ReadAllText(file));
            if (!m.Success) continue;
            string folder = Path.GetRelativePath(repoRoot, Path.GetDirectoryName(file)!).Replace('\\', '/');
            found.TryAdd(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), (Regex.Unescape(m.Groups[2].Value), folder));
        }
        return found;
    }

    /// <summary>
    /// Notebook name → the paper's own page: the first arXiv, OpenReview, ACL Anthology or DOI link in the notebook's first
    /// markdown cell (where every paper notebook cites its paper). Notebooks without one are left out.
    /// </summary>
    public static Dictionary<string, string> PaperLinks(string notebooksFolder)
    {
        var links = new Dictionary<string, string>();
        if (!Directory.Exists(notebooksFolder)) return links;
        foreach (var path in Directory.EnumerateFiles(notebooksFolder, "*.ipynb"))
        {
            try
            {
                var cells = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["cells"]?.AsArray();
                var first = cells?.FirstOrDefault(c => (string?)c?["cell_type"] == "markdown");
                if (first is null) continue;
                var m = PaperLink().Match(NotebookFile.JoinSource(first["source"]));
                if (m.Success) links[Path.GetFileNameWithoutExtension(path)] = m.Groups[1].Value;
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or IOException or InvalidOperationException) { }
        }
        return links;
    }

    [GeneratedRegex("""\]\((https?://(?:arxiv\.org|openreview\.net|aclanthology\.org|doi\.org)/[^)\s]+)\)""")]
    private static partial Regex PaperLink();

    /// <summary>The paper number of a notebook named "NN-slug" (null for other names).</summary>
    public static int? NumberOf(string notebook) =>
        notebook.Length > 3 && char.IsAsciiDigit(notebook[0]) && char.IsAsciiDigit(notebook[1]) && notebook[2] == '-'
            ? (notebook[0] - '0') * 10 + notebook[1] - '0' : null;

    [GeneratedRegex("""PaperInfo\s+Paper\s*\{\s*get;\s*\}\s*=\s*new\s*\(\s*(\d+)\s*,\s*"((?:[^"\\]|\\.)*)"\s*,""")]
    private static partial Regex Declaration();
}
