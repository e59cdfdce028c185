using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AttentionLab.Runner;

/// <summary>One gallery row as kept in <c>gallery/results.json</c> between runs.</summary>
public sealed record GalleryEntry(string Notebook, string Status, double Seconds, string Device, string Size, string Error, DateTimeOffset RunAt);

/// <summary>What the index shows beyond the rows: the run's metadata, the papers' catalogue data, links, changes since the previous run.</summary>
public sealed record GalleryContext
{
    public RunMeta? Run { get; init; }
    /// <summary>Paper number → README/library metadata (<see cref="PaperIndex.Load"/>).</summary>
    public IReadOnlyDictionary<int, PaperMeta> Papers { get; init; } = new Dictionary<int, PaperMeta>();
    /// <summary>The repository root as seen from the gallery folder ('/'-separated, e.g. "../.."); null: no source links.</summary>
    public string? RepoLink { get; init; }
    /// <summary>Notebooks whose source is in the repository's notebooks/ folder (they get a "source" link).</summary>
    public IReadOnlySet<string> SourcesInRepo { get; init; } = new HashSet<string>();
    /// <summary>Notebook name → the paper's own page (<see cref="PaperIndex.PaperLinks"/>).</summary>
    public IReadOnlyDictionary<string, string> PaperLinks { get; init; } = new Dictionary<string, string>();
    /// <summary>Null when there is no history (the section is left out); empty when nothing changed.</summary>
    public IReadOnlyList<RunChange>? Changes { get; init; }
    /// <summary>The history folders this run was compared with (empty: the first run).</summary>
    public IReadOnlyList<string> ComparedWith { get; init; } = [];
}

/// <summary>
/// <c>&lt;out&gt;/gallery/index.html</c>: a paper-first index. The run's metadata and what changed since the previous run on
/// top; then one row per paper, grouped by family (F1–F4, with a filter), with its title, grade, status, claims held,
/// seconds, device, size and links to the executed page, the notebook source, the library folder and the paper itself;
/// papers whose notebook is not in this gallery are "not run", those without a notebook yet "planned". Rows of earlier
/// runs whose page still exists are kept (a filtered run updates only its own rows).
/// </summary>
public static class Gallery
{
    public const string StateFile = "results.json";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Merges this run into the gallery and rewrites index.html; returns its path.</summary>
    public static string Update(string outDir, IReadOnlyList<NotebookResult> results, DateTimeOffset runAt, IReadOnlyList<ClaimRow>? claims = null,
        GalleryContext? context = null)
    {
        string dir = Path.Combine(outDir, "gallery");
        Directory.CreateDirectory(dir);
        string statePath = Path.Combine(dir, StateFile);
        var entries = Load(statePath)
            .Where(e => results.All(r => r.Notebook != e.Notebook))
            .Where(e => File.Exists(Path.Combine(outDir, "notebooks", e.Notebook + ".html")))
            .ToList();
        entries.AddRange(results.Select(r => new GalleryEntry(r.Notebook, r.Status, r.Seconds, r.Device, r.Size, r.OneLineError(), runAt)));
        entries = entries.OrderByDescending(e => e.RunAt).ThenBy(e => e.Notebook, StringComparer.Ordinal).ToList();
        File.WriteAllText(statePath, JsonSerializer.Serialize(entries, Json));
        string index = Path.Combine(dir, "index.html");
        File.WriteAllText(index, Render(entries, claims ?? [], context));
        return index;
    }

    /// <summary>The context for a gallery under <paramref name="outDir"/> of the repository at <paramref name="repoRoot"/>.</summary>
    public static GalleryContext ContextFor(string outDir, string repoRoot, RunMeta? run, IReadOnlyList<RunChange>? changes, IReadOnlyList<string> comparedWith)
    {
        string notebooks = Path.Combine(repoRoot, "notebooks");
        var sources = Directory.Exists(notebooks)
            ? Directory.EnumerateFiles(notebooks, "*.ipynb").Select(Path.GetFileNameWithoutExtension).OfType<string>().ToHashSet()
            : [];
        return new GalleryContext
        {
            Run = run, Papers = PaperIndex.Load(repoRoot), PaperLinks = PaperIndex.PaperLinks(notebooks), Changes = changes,
            ComparedWith = comparedWith, SourcesInRepo = sources,
            RepoLink = Path.GetRelativePath(Path.Combine(outDir, "gallery"), repoRoot).Replace('\\', '/'),
        };
    }

    static List<GalleryEntry> Load(string path)
    {
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<List<GalleryEntry>>(File.ReadAllText(path)) ?? [] : [];
        }
        catch (JsonException)
        {
            return [];
        }
    }

    /// <summary>One row of the index: a paper (or guide/study notebook) and its latest run, if any.</summary>
    sealed record Row(int? Number, string Notebook, PaperMeta? Paper, GalleryEntry? Entry);

    /// <summary>The group a row belongs to: its family code, "guides" for 00 and 90+, "unlisted" without a README row.</summary>
    static string GroupOf(Row r) => r.Paper is { Family.Length: > 0 } p ? p.Family
        : r.Number is null or 0 or >= 90 ? "guides" : "unlisted";

    static string GroupTitle(string group) => group switch
    {
        "guides" => "Guides and cross-paper studies",
        "unlisted" => "Other notebooks",
        _ => PaperIndex.Families.TryGetValue(group, out var name) ? $"{group} · {name}" : group,
    };

    /// <summary>The index page for <paramref name="entries"/> (newest first).</summary>
    public static string Render(IReadOnlyList<GalleryEntry> entries, IReadOnlyList<ClaimRow>? claims = null, GalleryContext? context = null)
    {
        claims ??= [];
        context ??= new GalleryContext();
        static string E(string s) => HtmlPage.E(s);
        int passed = entries.Count(e => e.Status == "passed");
        var newest = entries.Count > 0 ? entries.Max(e => e.RunAt) : (DateTimeOffset?)null;

        var rows = entries.Select(e => PaperIndex.NumberOf(e.Notebook) is { } n
                ? new Row(n, e.Notebook, n is > 0 and < 90 ? context.Papers.GetValueOrDefault(n) : null, e)
                : new Row(null, e.Notebook, null, e))
            .ToList();
        foreach (var p in context.Papers.Values.Where(p => rows.All(r => r.Number != p.Number)))
            rows.Add(new Row(p.Number,
                context.SourcesInRepo.Where(n => PaperIndex.NumberOf(n) == p.Number).Order(StringComparer.Ordinal).FirstOrDefault() ?? "", p, null));
        var groups = rows.GroupBy(GroupOf)
            .OrderBy(g => g.Key switch { "guides" => 0, "unlisted" => 9, _ => 1 }).ThenBy(g => g.Key, StringComparer.Ordinal)
            .ToList();

        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>AttentionLab notebook gallery</title>\n<style>\n")
          .Append(Css).Append("</style>\n</head>\n<body>\n<h1>AttentionLab notebook gallery</h1>\n");
        if (context.Run is { } run)
            sb.Append($"<p class=\"meta run\">Run: commit <code>{E(run.Commit)}</code> · " +
                $"{run.RunAt.ToUniversalTime().ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)} UTC · " +
                $"machine {E(run.Machine)} · size {E(run.Size)}</p>\n");
        sb.Append($"<p class=\"meta\">Latest run: {(newest is { } n ? n.ToString("yyyy-MM-dd HH:mm zzz", CultureInfo.InvariantCulture) : "none")} · ")
          .Append($"{passed} passed, {entries.Count - passed} failed · ")
          .Append($"<a href=\"{ClaimsBoard.PageName}\">reproduction scoreboard</a> " +
              $"({E(claims.Count == 0 ? "no claims yet" : ClaimsBoard.Tally(claims))})</p>\n");
        Changes(sb, context);

        var present = groups.Select(g => g.Key).ToList();
        sb.Append("<p class=\"filter\"><label>Family: <select id=\"family\" onchange=\"attnlabFilter(this.value)\"><option value=\"\">all</option>");
        foreach (var g in present) sb.Append($"<option value=\"{E(g)}\">{E(GroupTitle(g))}</option>");
        sb.Append("</select></label></p>\n");
        foreach (var group in groups)
        {
            var list = group.OrderBy(r => r.Number ?? 999).ThenBy(r => r.Notebook, StringComparer.Ordinal).ToList();
            int ran = list.Count(r => r.Entry is not null), notRun = list.Count(r => r.Entry is null && r.Notebook.Length > 0);
            sb.Append($"<section class=\"family\" data-family=\"{E(group.Key)}\">\n<h2 id=\"family-{E(group.Key)}\">{E(GroupTitle(group.Key))} " +
                $"<span class=\"count\">{ran} notebook{(ran == 1 ? "" : "s")}{(notRun > 0 ? $", {notRun} not run" : "")}" +
                $"{(list.Count > ran + notRun ? $", {list.Count - ran - notRun} planned" : "")}</span></h2>\n")
              .Append("<table>\n<thead><tr><th>P</th><th>paper</th><th>grade</th><th>status</th><th>claims</th><th>seconds</th><th>device</th><th>size</th>" +
                  "<th>links</th><th>error</th></tr></thead>\n<tbody>\n");
            foreach (var r in list) RowHtml(sb, r, claims, context);
            sb.Append("</tbody>\n</table>\n</section>\n");
        }
        sb.Append("""
            <script>
            function attnlabFilter(family) {
              document.querySelectorAll("section.family").forEach(function (s) { s.hidden = family !== "" && s.dataset.family !== family; });
            }
            </script>

            """);
        return sb.Append("</body>\n</html>\n").ToString();
    }

    static void Changes(StringBuilder sb, GalleryContext context)
    {
        if (context.Changes is not { } changes) return;
        if (context.ComparedWith.Count == 0)
        {
            sb.Append("<section id=\"changes\"><h2>Changed since the previous run</h2>" +
                "<p class=\"meta\">No earlier run of these notebooks in <code>history/</code>: nothing to compare.</p></section>\n");
            return;
        }
        sb.Append($"<section id=\"changes\"><h2>Changed since the previous run</h2><p class=\"meta\">Compared with " +
            $"{string.Join(", ", context.ComparedWith.Select(c => $"<code>{HtmlPage.E(c)}</code>"))} (<code>history/</code>).</p>\n");
        if (changes.Count == 0) sb.Append("<p>No notebook started failing, no claim changed status, nothing ran more than 1.5× slower.</p>\n");
        else
        {
            sb.Append("<ul>\n");
            foreach (var c in changes)
                sb.Append($"<li class=\"{(c.IsRegression ? "regression" : "improvement")}\">{HtmlPage.E(c.Text)}</li>\n");
            sb.Append("</ul>\n");
        }
        sb.Append("</section>\n");
    }

    static void RowHtml(StringBuilder sb, Row r, IReadOnlyList<ClaimRow> claims, GalleryContext context)
    {
        static string E(string s) => HtmlPage.E(s);
        var e = r.Entry;
        // Without a run in this gallery: "not run" when the repository has the notebook, "planned" when it has none yet.
        string status = e?.Status ?? (r.Notebook.Length > 0 ? "not run" : "planned");
        string title = r.Paper?.Title ?? "";
        string number = r.Number is { } n ? n.ToString("00", CultureInfo.InvariantCulture) : "";
        var links = new List<string>();
        if (e is not null) links.Add($"<a href=\"../notebooks/{Uri.EscapeDataString(e.Notebook)}.html\">page</a>");
        if (context.RepoLink is { } repo && context.SourcesInRepo.Contains(r.Notebook))
            links.Add($"<a href=\"{E(repo)}/notebooks/{Uri.EscapeDataString(r.Notebook)}.ipynb\">source</a>");
        if (context.RepoLink is { } repo2 && r.Paper?.LibraryFolder is { } folder)
            links.Add($"<a href=\"{E(repo2)}/{E(folder)}/\">library</a>");
        if (context.PaperLinks.GetValueOrDefault(r.Notebook) is { } paper) links.Add($"<a href=\"{E(paper)}\">paper</a>");
        string shortError = e is null ? "" : e.Error.Length <= 140 ? e.Error : e.Error[..139] + "…";
        sb.Append($"<tr class=\"{E(status.Replace(' ', '-'))}\"><td class=\"num\">{number}</td><td>")
          .Append(e is null ? $"{E(title)}"
              : $"<a href=\"../notebooks/{Uri.EscapeDataString(e.Notebook)}.html\">{E(title.Length > 0 ? title : e.Notebook)}</a>" +
              $"<div class=\"file\">{(title.Length > 0 ? E(e.Notebook) + " · " : "")}run " +
              $"{e.RunAt.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)}</div>")
          .Append($"</td><td>{E(r.Paper?.Grade ?? "")}</td><td><span class=\"badge {E(status.Replace(' ', '-'))}\">{E(status)}</span></td>")
          .Append($"<td>{(e is null ? "" : ClaimsCell(e.Notebook, claims))}</td>")
          .Append($"<td class=\"num\">{(e is null ? "" : e.Seconds.ToString("0.0", CultureInfo.InvariantCulture))}</td>" +
              $"<td>{E(e?.Device ?? "")}</td><td>{E(e?.Size ?? "")}</td>")
          .Append($"<td class=\"links\">{string.Join(" · ", links)}</td>")
          .Append($"<td class=\"error\" title=\"{E(e?.Error ?? "")}\">{E(shortError)}</td></tr>\n");
    }

    static string ClaimsCell(string notebook, IReadOnlyList<ClaimRow> claims)
    {
        var mine = claims.Where(c => c.Notebook == notebook).ToList();
        if (mine.Count == 0) return "";
        int held = mine.Count(c => c.Status == "holds");
        return $"<a href=\"{ClaimsBoard.PageName}#{HtmlPage.E(notebook)}\" title=\"{HtmlPage.E(ClaimsBoard.Tally(mine))}\">{held}/{mine.Count} hold</a>" +
            $"<div class=\"file\">{HtmlPage.E(ClaimsBoard.Tally(mine))}</div>";
    }

    const string Css = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; max-width: 1280px; margin: 1rem auto; padding: 0 1.5rem; }
        a { color: #0969da; } .meta { color: #57606a; } code { font-size: .85rem; }
        table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
        th, td { padding: .3rem .6rem; border-bottom: 1px solid #d0d7de; text-align: left; vertical-align: top; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.error { color: #82071e; font-size: .85rem; overflow-wrap: anywhere; } .file, .count { color: #57606a; font-size: .8rem; font-weight: normal; }
        tr.planned, tr.not-run { color: #8c959f; }
        table { table-layout: fixed; } th:nth-child(1) { width: 2.5rem; } th:nth-child(2) { width: 26%; } th:nth-child(3) { width: 5rem; }
        th:nth-child(4) { width: 5.5rem; } th:nth-child(5) { width: 7.5rem; } th:nth-child(6) { width: 4.5rem; } th:nth-child(7) { width: 4rem; }
        th:nth-child(8) { width: 3.5rem; } th:nth-child(9) { width: 9.5rem; }
        .badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; color: #fff; font-weight: 600; }
        .badge.passed { background: #1a7f37; } .badge.failed { background: #cf222e; }
        .badge.planned { background: #afb8c1; } .badge.not-run { background: #8c959f; }
        #changes { border: 1px solid #d0d7de; border-radius: 6px; padding: .2rem 1rem; margin: 1rem 0; }
        #changes h2 { font-size: 1.1rem; } li.regression { color: #cf222e; } li.improvement { color: #1a7f37; }
        h2 { font-size: 1.2rem; margin-top: 1.5rem; }

        """;
}

/// <summary><c>&lt;out&gt;/summary.csv</c> for one run: <c>notebook,status,seconds,device,size,error</c>.</summary>
public static class SummaryCsv
{
    public const string Header = "notebook,status,seconds,device,size,error";

    public static string Render(IEnumerable<NotebookResult> results)
    {
        var sb = new StringBuilder(Header).Append('\n');
        foreach (var r in results.OrderBy(r => r.Notebook, StringComparer.Ordinal))
            sb.Append(Field(r.Notebook)).Append(',').Append(r.Status).Append(',')
              .Append(r.Seconds.ToString("0.0", CultureInfo.InvariantCulture)).Append(',')
              .Append(Field(r.Device)).Append(',').Append(Field(r.Size)).Append(',')
              .Append(Quote(r.OneLineError())).Append('\n');
        return sb.ToString();
    }

    public static string Write(string outDir, IEnumerable<NotebookResult> results)
    {
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, "summary.csv");
        File.WriteAllText(path, Render(results));
        return path;
    }

    static string Field(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? Quote(s) : s;
    static string Quote(string s) => "\"" + s.Replace("\"", "\"\"") + "\"";
}
