using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AttentionLab.Runner;

/// <summary>
/// One claim record as a notebook's check cell wrote it (AttentionLab.Core.ClaimSet.Check writes
/// <c>&lt;out&gt;/claims/&lt;notebook&gt;.json</c> when the runner sets ATTNLAB_CLAIMS_FILE). The runner does not load the library,
/// so this is the JSON contract: camelCase names, kebab-case enum values.
/// </summary>
public sealed record ClaimRow
{
    public string Notebook { get; init; } = "";
    public int Paper { get; init; }
    public string Id { get; init; } = "";
    /// <summary>exactness, claim, reported.</summary>
    public string Kind { get; init; } = "";
    public string Statement { get; init; } = "";
    public string PaperFigure { get; init; } = "";
    public string Ours { get; init; } = "";
    public string Criterion { get; init; } = "";
    /// <summary>holds, does not hold, not shown.</summary>
    public string Status { get; init; } = "";
    public bool Asserted { get; init; }
    public string? Deviation { get; init; }
    public string? Note { get; init; }
    public string Size { get; init; } = "";
    public string Device { get; init; } = "";
    public string RunAt { get; init; } = "";
}

/// <summary>Reads the claims files of a run and writes <c>claims.csv</c> and the scoreboard page.</summary>
public static class ClaimsBoard
{
    public const string Folder = "claims";
    public const string CsvName = "claims.csv";
    public const string PageName = "claims.html";
    public const string Header = "notebook,paper,claim,kind,statement,paper_figure,ours,criterion,status,asserted,deviation,note,size,device,run_at";

    sealed record FileDto(int Paper, string Size, string Device, string RunAt, List<RecordDto> Claims, List<string>? Observations);
    sealed record RecordDto(int Paper, string Id, string Kind, string Statement, string PaperFigure, string Ours, string Criterion,
        string Status, bool Asserted, string? Deviation, string? Note);

    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>The claims file a notebook's check cell writes.</summary>
    public static string PathFor(string outDir, string notebook) => System.IO.Path.Combine(outDir, Folder, notebook + ".json");

    /// <summary>The records of one claims file (the notebook's name is the file's name); throws InvalidDataException when malformed.</summary>
    public static IReadOnlyList<ClaimRow> ReadFile(string path)
    {
        string notebook = System.IO.Path.GetFileNameWithoutExtension(path);
        FileDto file;
        try
        {
            file = JsonSerializer.Deserialize<FileDto>(File.ReadAllText(path), Json) ?? throw new InvalidDataException("empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a claims file ({e.Message})", e);
        }
        return file.Claims.Select(c => new ClaimRow
        {
            Notebook = notebook, Paper = c.Paper, Id = c.Id, Kind = c.Kind, Statement = c.Statement, PaperFigure = c.PaperFigure,
            Ours = c.Ours, Criterion = c.Criterion, Status = Words(c.Status), Asserted = c.Asserted, Deviation = c.Deviation,
            Note = c.Note, Size = file.Size, Device = file.Device, RunAt = file.RunAt,
        }).ToList();
    }

    /// <summary>"does-not-hold" → "does not hold".</summary>
    static string Words(string kebab) => kebab.Replace('-', ' ');

    /// <summary>
    /// Every claims file under <c>&lt;out&gt;/claims/</c> whose notebook page still exists (a filtered run keeps the other
    /// notebooks' rows from earlier runs), in notebook order.
    /// </summary>
    public static IReadOnlyList<ClaimRow> Collect(string outDir)
    {
        string dir = System.IO.Path.Combine(outDir, Folder);
        if (!Directory.Exists(dir)) return [];
        var rows = new List<ClaimRow>();
        foreach (var file in Directory.EnumerateFiles(dir, "*.json").Order(StringComparer.Ordinal))
        {
            string name = System.IO.Path.GetFileNameWithoutExtension(file);
            if (!File.Exists(System.IO.Path.Combine(outDir, "notebooks", name + ".html"))) continue;
            try { rows.AddRange(ReadFile(file)); }
            catch (InvalidDataException) { }
        }
        return rows;
    }

    /// <summary>The CSV (header <see cref="Header"/>), one row per claim.</summary>
    public static string RenderCsv(IEnumerable<ClaimRow> rows)
    {
        var sb = new StringBuilder(Header).Append('\n');
        foreach (var r in rows)
            sb.AppendJoin(',', new[]
            {
                r.Notebook, r.Paper.ToString(CultureInfo.InvariantCulture), r.Id, r.Kind, r.Statement, r.PaperFigure, r.Ours, r.Criterion,
                r.Status, r.Asserted ? "true" : "false", r.Deviation ?? "", r.Note ?? "", r.Size, r.Device, r.RunAt,
            }.Select(Csv.Field)).Append('\n');
        return sb.ToString();
    }

    /// <summary>Writes <c>&lt;out&gt;/claims.csv</c> and <c>&lt;out&gt;/gallery/claims.html</c>; returns the page's path.</summary>
    public static string Write(string outDir, IReadOnlyList<ClaimRow> rows, ExpectedClaims? expected)
    {
        File.WriteAllText(System.IO.Path.Combine(outDir, CsvName), RenderCsv(rows));
        string dir = System.IO.Path.Combine(outDir, "gallery");
        Directory.CreateDirectory(dir);
        string page = System.IO.Path.Combine(dir, PageName);
        File.WriteAllText(page, RenderPage(rows, expected));
        return page;
    }

    /// <summary>Per notebook: holds / does not hold / not shown counts (for the gallery's cards).</summary>
    public static string Tally(IEnumerable<ClaimRow> rows)
    {
        var list = rows.ToList();
        if (list.Count == 0) return "";
        return $"{list.Count(r => r.Status == "holds")} hold · {list.Count(r => r.Status == "does not hold")} do not hold · " +
            $"{list.Count(r => r.Status == "not shown")} not shown";
    }

    /// <summary>The scoreboard: one section per notebook, one row per claim (paper's figure beside ours, criterion, status).</summary>
    public static string RenderPage(IReadOnlyList<ClaimRow> rows, ExpectedClaims? expected)
    {
        static string E(string? s) => HtmlPage.E(s ?? "");
        var sb = new StringBuilder(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>AttentionLab reproduction scoreboard</title>\n<style>\n")
            .Append(Css).Append("</style>\n</head>\n<body>\n<h1>Reproduction scoreboard</h1>\n")
            .Append("<p class=\"meta\">Does each paper's claim reproduce, at what size, by how much? One row per claim: the paper's own figure beside ")
            .Append("ours, the criterion (from the paper's spec; deviations named), the kind (<i>exactness</i>: identities and naive-twin agreement; ")
            .Append("<i>claim</i>: the paper's phenomenon at this size; <i>reported</i>: measured, never asserted) and the status. ")
            .Append("<a href=\"index.html\">Back to the gallery</a> · <a href=\"../claims.csv\">claims.csv</a></p>\n");
        sb.Append($"<p class=\"meta\">{rows.Count} claims from {rows.Select(r => r.Notebook).Distinct().Count()} notebooks: {E(Tally(rows))}.");
        if (expected is not null)
        {
            var diffs = expected.Compare(rows, rows.Select(r => r.Paper).Distinct().ToList());
            sb.Append(diffs.Count == 0
                ? $" Every status equals the committed expectation ({E(expected.Source)}).</p>\n"
                : $" <b>{diffs.Count} difference(s) from the committed expectation ({E(expected.Source)}):</b></p>\n" +
                $"<ul class=\"diff\">{string.Concat(diffs.Select(d => $"<li>{E(d)}</li>"))}</ul>\n");
        }
        else sb.Append("</p>\n");
        foreach (var group in rows.GroupBy(r => r.Notebook))
        {
            var first = group.First();
            sb.Append($"<h2 id=\"{E(group.Key)}\"><a href=\"../notebooks/{Uri.EscapeDataString(group.Key)}.html\">{E(group.Key)}</a></h2>\n")
              .Append($"<p class=\"meta\">size {E(first.Size)} · device {E(first.Device)} · run " +
                  $"{E(first.RunAt.Length >= 16 ? first.RunAt[..16].Replace('T', ' ') : first.RunAt)} · {E(Tally(group))}</p>\n")
              .Append("<table>\n<thead><tr><th>claim</th><th>kind</th><th>statement</th><th>paper's figure</th><th>ours</th><th>criterion</th><th>status</th>")
              .Append(expected is null ? "" : "<th>expected</th>").Append("</tr></thead>\n<tbody>\n");
            foreach (var r in group)
            {
                string status = r.Status.Replace(' ', '-');
                string? want = expected?.StatusOf(r.Paper, r.Id);
                string note = string.Join(" ", new[] { r.Deviation is null ? null : "Deviation: " + r.Deviation, r.Note }.Where(s => !string.IsNullOrEmpty(s)));
                sb.Append($"<tr><td><code>{E(r.Id)}</code>" +
                    $"{(r.Asserted ? " <span class=\"asserted\" title=\"asserted: the notebook fails when it does not hold\">●</span>" : "")}</td>")
                  .Append($"<td>{E(r.Kind)}</td><td>{E(r.Statement)}{(note.Length > 0 ? $"<div class=\"note\">{E(note)}</div>" : "")}</td>")
                  .Append($"<td>{E(r.PaperFigure)}</td><td>{E(r.Ours)}</td><td>{E(r.Criterion)}</td>")
                  .Append($"<td><span class=\"badge {E(status)}\">{E(r.Status)}</span></td>");
                if (expected is not null)
                    sb.Append($"<td class=\"{(want is null || ExpectedClaims.Matches(want, r.Status) ? "" : "changed")}\">{E(want ?? "not listed")}</td>");
                sb.Append("</tr>\n");
            }
            sb.Append("</tbody>\n</table>\n");
        }
        return sb.Append("</body>\n</html>\n").ToString();
    }

    const string Css = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; max-width: 1400px; margin: 1rem auto; padding: 0 1.5rem; }
        a { color: #0969da; } .meta { color: #57606a; }
        table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; font-size: .9rem; }
        th, td { padding: .3rem .5rem; border-bottom: 1px solid #d0d7de; text-align: left; vertical-align: top; }
        .note { color: #57606a; font-size: .8rem; margin-top: .2rem; }
        .badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; color: #fff; font-weight: 600; white-space: nowrap; }
        .badge.holds { background: #1a7f37; } .badge.does-not-hold { background: #cf222e; } .badge.not-shown { background: #6e7781; }
        .asserted { color: #0969da; } td.changed { background: #fff8c5; font-weight: 600; } ul.diff { color: #82071e; }

        """;
}

/// <summary>CSV fields (RFC 4180 quoting).</summary>
public static class Csv
{
    public static string Field(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    /// <summary>Splits one CSV line (quoted fields may hold commas and doubled quotes).</summary>
    public static List<string> Split(string line) => Records(line) is [var first, ..] ? first : [""];

    /// <summary>RFC 4180 records: quoted fields may hold commas, doubled quotes and newlines.</summary>
    public static List<List<string>> Records(string text)
    {
        var records = new List<List<string>>();
        var fields = new List<string>();
        var sb = new StringBuilder();
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { sb.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else sb.Append(c);
                continue;
            }
            switch (c)
            {
                case '"': quoted = true; any = true; break;
                case ',': fields.Add(sb.ToString()); sb.Clear(); any = true; break;
                case '\r': break;
                case '\n':
                    if (any || sb.Length > 0) { fields.Add(sb.ToString()); records.Add(fields); }
                    fields = []; sb.Clear(); any = false;
                    break;
                default: sb.Append(c); any = true; break;
            }
        }
        if (any || sb.Length > 0) { fields.Add(sb.ToString()); records.Add(fields); }
        return records;
    }
}

/// <summary>
/// The committed expected status of every claim at smoke size (<c>tests/expected-claims.csv</c>: paper, claim, kind, status).
/// A status that differs either way — a claim that stops holding or one that starts — is a change a reviewer must see.
/// <c>any</c> accepts every status (timings, whose status follows the machine's load); the claim must still be there.
/// </summary>
public sealed class ExpectedClaims
{
    public const string Any = "any";
    public const string FileHeader = "paper,claim,kind,status";
    static readonly string[] Statuses = ["holds", "does not hold", "not shown", Any];

    public sealed record Entry(int Paper, string Claim, string Kind, string Status, int Line);

    public ExpectedClaims(IReadOnlyList<Entry> entries, string source)
    {
        Entries = entries;
        Source = source;
        var twice = entries.GroupBy(e => (e.Paper, e.Claim)).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new InvalidDataException(
                $"{source}: paper {twice.Key.Paper} claim '{twice.Key.Claim}' is listed twice (lines {string.Join(", ", twice.Select(e => e.Line))}).");
    }

    public IReadOnlyList<Entry> Entries { get; }
    /// <summary>Where the entries came from (a path, for messages).</summary>
    public string Source { get; }

    /// <summary>The papers the file lists.</summary>
    public IReadOnlyList<int> Papers => Entries.Select(e => e.Paper).Distinct().Order().ToList();

    /// <summary>The file at <paramref name="path"/>; null when there is none.</summary>
    public static ExpectedClaims? TryLoad(string path) => File.Exists(path) ? Parse(File.ReadAllText(path), path) : null;

    /// <summary>Parses the file's text: '#' comments, the header <see cref="FileHeader"/>, then one row per claim.</summary>
    public static ExpectedClaims Parse(string text, string source = "expected-claims.csv")
    {
        var entries = new List<Entry>();
        bool header = false;
        var lines = text.Replace("\r\n", "\n").Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            if (!header)
            {
                if (line != FileHeader) throw new InvalidDataException($"{source}:{i + 1}: expected the header '{FileHeader}', found '{line}'.");
                header = true;
                continue;
            }
            var f = Csv.Split(line);
            if (f.Count != 4 || !int.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out int paper))
                throw new InvalidDataException($"{source}:{i + 1}: expected 'paper,claim,kind,status', found '{line}'.");
            if (!Statuses.Contains(f[3]))
                throw new InvalidDataException($"{source}:{i + 1}: status '{f[3]}' is not one of {string.Join(", ", Statuses)}.");
            if (f[2] is not ("exactness" or "claim" or "reported"))
                throw new InvalidDataException($"{source}:{i + 1}: kind '{f[2]}' is not exactness, claim or reported.");
            entries.Add(new Entry(paper, f[1], f[2], f[3], i + 1));
        }
        if (!header) throw new InvalidDataException($"{source}: no header '{FileHeader}'.");
        return new ExpectedClaims(entries, source);
    }

    /// <summary>The expected status of a claim, or null when it is not listed.</summary>
    public string? StatusOf(int paper, string claim) => Entries.FirstOrDefault(e => e.Paper == paper && e.Claim == claim)?.Status;

    /// <summary>True when <paramref name="actual"/> satisfies <paramref name="expected"/> (equal, or expected is <see cref="Any"/>).</summary>
    public static bool Matches(string expected, string actual) => expected == Any || expected == actual;

    /// <summary>
    /// Every difference between the run's claims of <paramref name="papers"/> and this file: a status that changed (either
    /// way), a kind that changed, a claim the run has and the file does not, and one the file lists and the run lacks.
    /// </summary>
    public IReadOnlyList<string> Compare(IEnumerable<(int Paper, string Claim, string Kind, string Status)> actual, IReadOnlyCollection<int> papers)
    {
        var diffs = new List<string>();
        var seen = new HashSet<(int, string)>();
        foreach (var a in actual)
        {
            seen.Add((a.Paper, a.Claim));
            var e = Entries.FirstOrDefault(x => x.Paper == a.Paper && x.Claim == a.Claim);
            if (e is null) diffs.Add(
                $"P{a.Paper:00} {a.Claim}: {a.Status} in this run, not listed in {Source} (add '{a.Paper},{a.Claim},{a.Kind},{a.Status}')");
            else if (!Matches(e.Status, a.Status)) diffs.Add($"P{a.Paper:00} {a.Claim}: expected '{e.Status}' ({Source}:{e.Line}), this run '{a.Status}'");
            else if (e.Kind != a.Kind) diffs.Add($"P{a.Paper:00} {a.Claim}: expected kind '{e.Kind}' ({Source}:{e.Line}), this run '{a.Kind}'");
        }
        foreach (var e in Entries.Where(e => papers.Contains(e.Paper) && !seen.Contains((e.Paper, e.Claim))))
            diffs.Add($"P{e.Paper:00} {e.Claim}: listed in {Source}:{e.Line} ('{e.Status}') but this run has no such claim");
        return diffs;
    }

    /// <summary><see cref="Compare(IEnumerable{ValueTuple{int, string, string, string}}, IReadOnlyCollection{int})"/> for collected rows.</summary>
    public IReadOnlyList<string> Compare(IEnumerable<ClaimRow> rows, IReadOnlyCollection<int> papers) =>
        Compare(rows.Select(r => (r.Paper, r.Id, r.Kind, r.Status)), papers);
}
