using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AttentionLab.Runner;

/// <summary>One gallery row as kept in <c>gallery/results.json</c> between runs.</summary>
public sealed record GalleryEntry(string Notebook, string Status, double Seconds, string Device, string Size, string Error, DateTimeOffset RunAt);

/// <summary>
/// <c>&lt;out&gt;/gallery/index.html</c>: every executed notebook page with status, seconds, device and a short error.
/// Rows of earlier runs whose page still exists are kept (a filtered run updates only its own rows); the newest run is on top.
/// </summary>
public static class Gallery
{
    public const string StateFile = "results.json";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Merges this run into the gallery and rewrites index.html; returns its path.</summary>
    public static string Update(string outDir, IReadOnlyList<NotebookResult> results, DateTimeOffset runAt, IReadOnlyList<ClaimRow>? claims = null)
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
        File.WriteAllText(index, Render(entries, claims ?? []));
        return index;
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

    /// <summary>The index page for <paramref name="entries"/> (already in display order).</summary>
    public static string Render(IReadOnlyList<GalleryEntry> entries, IReadOnlyList<ClaimRow>? claims = null)
    {
        claims ??= [];
        static string E(string s) => HtmlPage.E(s);
        int passed = entries.Count(e => e.Status == "passed");
        var newest = entries.Count > 0 ? entries.Max(e => e.RunAt) : (DateTimeOffset?)null;
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>AttentionLab notebook gallery</title>\n<style>\n")
          .Append(Css).Append("</style>\n</head>\n<body>\n<h1>AttentionLab notebook gallery</h1>\n")
          .Append($"<p class=\"meta\">Latest run: {(newest is { } n ? n.ToString("yyyy-MM-dd HH:mm zzz", CultureInfo.InvariantCulture) : "none")} · ")
          .Append($"{passed} passed, {entries.Count - passed} failed · ")
          .Append($"<a href=\"{ClaimsBoard.PageName}\">reproduction scoreboard</a> " +
              $"({E(claims.Count == 0 ? "no claims yet" : ClaimsBoard.Tally(claims))})</p>\n")
          .Append("<table>\n<thead><tr><th>notebook</th><th>status</th><th>claims</th><th>seconds</th><th>device</th><th>size</th><th>run</th>" +
              "<th>error</th></tr></thead>\n<tbody>\n");
        foreach (var e in entries)
        {
            string shortError = e.Error.Length <= 140 ? e.Error : e.Error[..139] + "…";
            sb.Append($"<tr class=\"{E(e.Status)}\"><td><a href=\"../notebooks/{Uri.EscapeDataString(e.Notebook)}.html\">{E(e.Notebook)}</a></td>")
              .Append($"<td><span class=\"badge {E(e.Status)}\">{E(e.Status)}</span></td>")
              .Append($"<td>{ClaimsCell(e.Notebook, claims)}</td>")
              .Append($"<td class=\"num\">{e.Seconds.ToString("0.0", CultureInfo.InvariantCulture)}</td><td>{E(e.Device)}</td><td>{E(e.Size)}</td>")
              .Append($"<td>{e.RunAt.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)}</td>")
              .Append($"<td class=\"error\" title=\"{E(e.Error)}\">{E(shortError)}</td></tr>\n");
        }
        return sb.Append("</tbody>\n</table>\n</body>\n</html>\n").ToString();
    }

    static string ClaimsCell(string notebook, IReadOnlyList<ClaimRow> claims)
    {
        var mine = claims.Where(c => c.Notebook == notebook).ToList();
        return mine.Count == 0 ? "" : $"<a href=\"{ClaimsBoard.PageName}#{HtmlPage.E(notebook)}\">{HtmlPage.E(ClaimsBoard.Tally(mine))}</a>";
    }

    const string Css = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; max-width: 1200px; margin: 1rem auto; padding: 0 1.5rem; }
        a { color: #0969da; } .meta { color: #57606a; }
        table { border-collapse: collapse; width: 100%; }
        th, td { padding: .3rem .6rem; border-bottom: 1px solid #d0d7de; text-align: left; vertical-align: top; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.error { color: #82071e; font-size: .85rem; }
        .badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; color: #fff; font-weight: 600; }
        .badge.passed { background: #1a7f37; } .badge.failed { background: #cf222e; }

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
