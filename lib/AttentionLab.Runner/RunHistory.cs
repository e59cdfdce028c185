using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace AttentionLab.Runner;

/// <summary>Who made a run: its history folder name, the commit, when, on which machine, at which size.</summary>
public sealed record RunMeta(string Id, string Commit, DateTimeOffset RunAt, string Machine, string Size);

/// <summary>One line of "changed since the previous run". <see cref="Kind"/>: started failing, fixed, claim, slower, new.</summary>
public sealed record RunChange(string Kind, string Notebook, string Text)
{
    /// <summary>True for the changes a reader must act on (a failure, a claim that no longer holds, a slowdown).</summary>
    public bool IsRegression { get; init; }
    public override string ToString() => Text;
}

/// <summary>
/// <c>&lt;out&gt;/history/&lt;yyyyMMdd-HHmmss&gt;-&lt;commit&gt;/</c>: each run's summary.csv, claims.csv (its own notebooks' claims) and
/// run.json, and the comparison of a run with the runs before it. Each notebook of this run is compared with the newest
/// earlier run that ran it (after a full run that is the previous run; a filtered run such as <c>--filter 39</c> compares
/// 39 with the last run that had 39 in it).
/// </summary>
public static class RunHistory
{
    public const string Folder = "history";
    public const string MetaFile = "run.json";

    /// <summary>A notebook this many times slower than in the previous run (same size) is reported.</summary>
    public const double SlowerRatio = 1.5;

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>The commit checked out in <paramref name="repoRoot"/> (short hash, "+dirty" when tracked files changed; "unknown" without git).</summary>
    public static string Commit(string repoRoot)
    {
        string? hash = Git(repoRoot, "rev-parse --short=10 HEAD");
        if (hash is null) return "unknown";
        string? status = Git(repoRoot, "status --porcelain --untracked-files=no");
        return string.IsNullOrWhiteSpace(status) ? hash : hash + "+dirty";
    }

    static string? Git(string dir, string args)
    {
        try
        {
            var psi = new ProcessStartInfo("git", args)
            {
                WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            using var p = Process.Start(psi);
            if (p is null) return null;
            string output = p.StandardOutput.ReadToEnd();
            p.StandardError.ReadToEnd();
            if (!p.WaitForExit(10_000)) { p.Kill(); return null; }
            return p.ExitCode == 0 ? output.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    /// <summary>This machine in words: host name, cores, OS.</summary>
    public static string Machine() =>
        $"{Environment.MachineName} ({Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription})";

    /// <summary>The metadata of a run made now.</summary>
    public static RunMeta Describe(string repoRoot, DateTimeOffset runAt, string size)
    {
        string commit = Commit(repoRoot);
        return new RunMeta(IdFor(runAt, commit), commit, runAt, Machine(), size);
    }

    /// <summary>A history folder name: UTC time then commit, so names sort by time.</summary>
    public static string IdFor(DateTimeOffset runAt, string commit) =>
        $"{runAt.UtcDateTime:yyyyMMdd-HHmmss}-{commit.Replace("+dirty", "-dirty", StringComparison.Ordinal)}";

    /// <summary>Writes this run's folder; returns its path.</summary>
    public static string Save(string outDir, RunMeta meta, IReadOnlyList<NotebookResult> results, IReadOnlyList<ClaimRow> claims)
    {
        string dir = Path.Combine(outDir, Folder, meta.Id);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "summary.csv"), SummaryCsv.Render(results));
        var mine = claims.Where(c => results.Any(r => r.Notebook == c.Notebook)).ToList();
        File.WriteAllText(Path.Combine(dir, ClaimsBoard.CsvName), ClaimsBoard.RenderCsv(mine));
        File.WriteAllText(Path.Combine(dir, MetaFile), JsonSerializer.Serialize(meta, Json));
        return dir;
    }

    /// <summary>
    /// The changes of the run in <paramref name="current"/> against, per notebook, the newest earlier run folder holding that
    /// notebook; <paramref name="comparedWith"/> names those folders (empty when nothing was compared: the first run).
    /// </summary>
    public static IReadOnlyList<RunChange> SincePrevious(string outDir, string current, out IReadOnlyList<string> comparedWith)
    {
        var now = ReadSummary(current);
        var nowClaims = ReadClaims(current);
        var beforeRuns = new List<SummaryRow>();
        var beforeClaims = new List<ClaimStatus>();
        var used = new List<string>();
        var wanted = now.Select(r => r.Notebook).ToHashSet();
        foreach (var folder in Earlier(outDir, Path.GetFileName(current)))
        {
            if (wanted.Count == 0) break;
            var found = ReadSummary(folder).Where(r => wanted.Contains(r.Notebook)).ToList();
            if (found.Count == 0) continue;
            var names = found.Select(r => r.Notebook).ToHashSet();
            beforeRuns.AddRange(found);
            beforeClaims.AddRange(ReadClaims(folder).Where(c => names.Contains(c.Notebook)));
            wanted.ExceptWith(names);
            used.Add(Path.GetFileName(folder));
        }
        comparedWith = used;
        return Diff(beforeRuns, beforeClaims, now, nowClaims);
    }

    /// <summary>The run folders before <paramref name="id"/>, newest first.</summary>
    public static IEnumerable<string> Earlier(string outDir, string id)
    {
        string root = Path.Combine(outDir, Folder);
        if (!Directory.Exists(root)) return [];
        return Directory.EnumerateDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(n => string.CompareOrdinal(n, id) < 0 && File.Exists(Path.Combine(root, n, "summary.csv")))
            .OrderDescending(StringComparer.Ordinal).Select(n => Path.Combine(root, n)).ToList();
    }

    /// <summary>The run folder just before <paramref name="id"/> (names sort by time), or null when it is the first.</summary>
    public static string? Previous(string outDir, string id)
    {
        string root = Path.Combine(outDir, Folder);
        if (!Directory.Exists(root)) return null;
        return Directory.EnumerateDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(n => string.CompareOrdinal(n, id) < 0 && File.Exists(Path.Combine(root, n, "summary.csv")))
            .Order(StringComparer.Ordinal).LastOrDefault() is { } name ? Path.Combine(root, name) : null;
    }

    /// <summary>The metadata in a run folder (null when missing or unreadable).</summary>
    public static RunMeta? ReadMeta(string runFolder)
    {
        try { return JsonSerializer.Deserialize<RunMeta>(File.ReadAllText(Path.Combine(runFolder, MetaFile))); }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>One summary.csv row as the comparison needs it.</summary>
    public sealed record SummaryRow(string Notebook, string Status, double Seconds, string Size);

    /// <summary>One claim as the comparison needs it.</summary>
    /// <summary>One claim as the comparison needs it; <paramref name="Kind"/> "reported" marks a measured figure (timings) with no criterion.</summary>
    public sealed record ClaimStatus(string Notebook, string Claim, string Status, string Kind = "");

    /// <summary>What changed from the run in <paramref name="before"/> to the run in <paramref name="after"/> (two history folders).</summary>
    public static IReadOnlyList<RunChange> Compare(string before, string after) =>
        Diff(ReadSummary(before), ReadClaims(before), ReadSummary(after), ReadClaims(after));

    /// <summary>
    /// The changes, regressions first: a notebook that passed and now fails, a claim whose status changed (one that held
    /// and no longer does is a regression, unless it is a "reported" measurement such as a timing on a shared machine), a
    /// notebook more than <see cref="SlowerRatio"/>× slower at the same size; then notebooks fixed. Notebooks missing from either run are not compared.
    /// </summary>
    public static IReadOnlyList<RunChange> Diff(IReadOnlyList<SummaryRow> beforeRuns, IReadOnlyList<ClaimStatus> beforeClaims,
        IReadOnlyList<SummaryRow> afterRuns, IReadOnlyList<ClaimStatus> afterClaims)
    {
        var changes = new List<RunChange>();
        var previous = beforeRuns.GroupBy(r => r.Notebook).ToDictionary(g => g.Key, g => g.Last());
        foreach (var now in afterRuns.OrderBy(r => r.Notebook, StringComparer.Ordinal))
        {
            if (!previous.TryGetValue(now.Notebook, out var was)) continue;
            if (was.Status == "passed" && now.Status != "passed")
                changes.Add(new RunChange("started failing", now.Notebook,
                    $"{now.Notebook}: started failing (passed in the previous run)") { IsRegression = true });
            else if (was.Status != "passed" && now.Status == "passed")
                changes.Add(new RunChange("fixed", now.Notebook, $"{now.Notebook}: passes again (failed in the previous run)"));
            if (was.Size == now.Size && was.Seconds > 0 && now.Seconds > SlowerRatio * was.Seconds)
                changes.Add(new RunChange("slower", now.Notebook,
                    string.Create(CultureInfo.InvariantCulture,
                        $"{now.Notebook}: {now.Seconds / was.Seconds:0.0}× slower ({was.Seconds:0.0} s → {now.Seconds:0.0} s)"))
                { IsRegression = true });
        }
        var compared = afterRuns.Select(r => r.Notebook).Intersect(previous.Keys).ToHashSet();
        var oldClaims = beforeClaims.Where(c => compared.Contains(c.Notebook)).GroupBy(c => (c.Notebook, c.Claim))
            .ToDictionary(g => g.Key, g => g.Last().Status);
        foreach (var c in afterClaims.Where(c => compared.Contains(c.Notebook))
                     .OrderBy(c => c.Notebook, StringComparer.Ordinal).ThenBy(c => c.Claim, StringComparer.Ordinal))
        {
            if (!oldClaims.TryGetValue((c.Notebook, c.Claim), out var was))
                changes.Add(new RunChange("new", c.Notebook, $"{c.Notebook} claim {c.Claim}: new, {c.Status}"));
            else if (was != c.Status)
                changes.Add(new RunChange("claim", c.Notebook,
                    $"{c.Notebook} claim {c.Claim}: {was} → {c.Status}{(c.Kind == "reported" ? " (a reported measurement: machine-dependent)" : "")}")
                { IsRegression = was == "holds" && c.Kind != "reported" });
        }
        foreach (var (key, was) in oldClaims.Where(o => !afterClaims.Any(c => (c.Notebook, c.Claim) == o.Key))
                     .OrderBy(o => o.Key.Notebook, StringComparer.Ordinal))
            changes.Add(new RunChange("claim", key.Notebook, $"{key.Notebook} claim {key.Claim}: {was} → not reported") { IsRegression = true });
        return changes.OrderBy(c => c.IsRegression ? 0 : 1).ThenBy(c => c.Notebook, StringComparer.Ordinal).ToList();
    }

    /// <summary>Reads a run folder's summary.csv (header <see cref="SummaryCsv.Header"/>).</summary>
    public static IReadOnlyList<SummaryRow> ReadSummary(string runFolder)
    {
        string path = Path.Combine(runFolder, "summary.csv");
        if (!File.Exists(path)) return [];
        var records = Csv.Records(File.ReadAllText(path));
        if (records.Count == 0) return [];
        var h = Columns(records[0]);
        return records.Skip(1).Where(r => r.Count >= h.Count).Select(r => new SummaryRow(r[h["notebook"]], r[h["status"]],
            double.TryParse(r[h["seconds"]], NumberStyles.Float, CultureInfo.InvariantCulture, out double s) ? s : 0, r[h["size"]])).ToList();
    }

    /// <summary>Reads a run folder's claims.csv (header <see cref="ClaimsBoard.Header"/>).</summary>
    public static IReadOnlyList<ClaimStatus> ReadClaims(string runFolder)
    {
        string path = Path.Combine(runFolder, ClaimsBoard.CsvName);
        if (!File.Exists(path)) return [];
        var records = Csv.Records(File.ReadAllText(path));
        if (records.Count == 0) return [];
        var h = Columns(records[0]);
        return records.Skip(1).Where(r => r.Count >= h.Count).Select(r => new ClaimStatus(r[h["notebook"]], r[h["claim"]], r[h["status"]], r[h["kind"]]))
            .ToList();
    }

    static Dictionary<string, int> Columns(List<string> header) =>
        header.Select((name, i) => (name, i)).ToDictionary(x => x.name, x => x.i);
}
