using System.Collections;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Data.Analysis;

namespace AttentionLab.Core;

/// <summary>What a claim record tests.</summary>
public enum ClaimKind
{
    /// <summary>An identity or a fast form agreeing with its naive twin: always asserted.</summary>
    Exactness,
    /// <summary>The paper's phenomenon (or the spec's scaled analogue) at this size.</summary>
    Claim,
    /// <summary>Measured and reported with a computed status, never asserted (timings on a shared CPU, numbers too few to assert).</summary>
    Reported,
}

/// <summary>Whether a claim held in this run.</summary>
public enum ClaimStatus
{
    Holds,
    DoesNotHold,
    /// <summary>The run cannot speak to the claim at this size (the reason is in <see cref="ClaimRecord.Note"/>).</summary>
    NotShown,
}

/// <summary>
/// One claim of a paper as this run measured it: the paper's statement and figure beside ours, the criterion (from the
/// spec; a deviation is named and explained in docs/decisions.md), the kind and the status.
/// </summary>
public sealed record ClaimRecord
{
    /// <summary>The paper's number in the catalogue (1–50; cross-paper studies 90+).</summary>
    public required int Paper { get; init; }
    /// <summary>A stable kebab-case key, unique within the paper (the expected-status file refers to it).</summary>
    public required string Id { get; init; }
    public required ClaimKind Kind { get; init; }
    /// <summary>One line: what the paper claims (or the identity an exactness check tests).</summary>
    public required string Statement { get; init; }
    /// <summary>The paper's own figure, with units and source ("17.7 ms vs 162.9 ms at n = 32k, repo README"); "—" when it has none.</summary>
    public required string PaperFigure { get; init; }
    /// <summary>What this run measured, with units.</summary>
    public required string Ours { get; init; }
    /// <summary>The test applied to <see cref="Ours"/>: the spec's criterion, or its scaled analogue.</summary>
    public required string Criterion { get; init; }
    public required ClaimStatus Status { get; init; }
    /// <summary>The check cell throws when an asserted claim does not hold. Exactness is always asserted; reported never.</summary>
    public required bool Asserted { get; init; }
    /// <summary>Where the criterion differs from the spec's: what differs and why (the decision is in docs/decisions.md).</summary>
    public string? Deviation { get; init; }
    /// <summary>Why a claim is not shown at this size, or what limits the reading.</summary>
    public string? Note { get; init; }

    /// <summary>True when this record makes the check fail: an asserted claim (or any exactness check) that does not hold.</summary>
    [JsonIgnore]
    public bool Fails => Asserted && Status != ClaimStatus.Holds;

    /// <summary>"holds", "does not hold", "not shown" — the words of the scoreboard and the expected-status file.</summary>
    public static string StatusText(ClaimStatus status) => status switch
    {
        ClaimStatus.Holds => "holds",
        ClaimStatus.DoesNotHold => "does not hold",
        _ => "not shown",
    };

    /// <summary>"exactness", "claim", "reported".</summary>
    public static string KindText(ClaimKind kind) => kind.ToString().ToLowerInvariant();
}

/// <summary>
/// The claims of one paper's run, built in the result's <c>Claims()</c> and shown by the notebook's check cell:
/// <c>display(claims); claims.Check();</c>. Also carries observations — sentences with numbers computed from the run —
/// that make the notebook's closing "what we saw" (<see cref="Findings"/>), so no result number is typed into markdown.
/// </summary>
public sealed class ClaimSet : IReadOnlyList<ClaimRecord>
{
    /// <summary>The kernel environment variable naming the JSON file <see cref="Check"/> writes (set by the notebook runner).</summary>
    public const string FileVariable = "ATTNLAB_CLAIMS_FILE";

    readonly List<ClaimRecord> records = [];
    readonly List<string> observations = [];

    public ClaimSet(int paper, string size)
    {
        if (paper < 1) throw new ArgumentOutOfRangeException(nameof(paper), paper, "paper numbers start at 1.");
        ArgumentException.ThrowIfNullOrWhiteSpace(size);
        Paper = paper;
        Size = size;
    }

    /// <summary>A set for <paramref name="paper"/> at <paramref name="size"/> ("smoke", "full").</summary>
    public ClaimSet(int paper, RunSize size) : this(paper, size.ToString().ToLowerInvariant()) { }

    public int Paper { get; }
    /// <summary>The size the run was made at ("smoke", "full", or a custom label).</summary>
    public string Size { get; }
    public IReadOnlyList<string> Observations => observations;

    public int Count => records.Count;
    public ClaimRecord this[int index] => records[index];
    public IEnumerator<ClaimRecord> GetEnumerator() => records.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The record called <paramref name="id"/>.</summary>
    public ClaimRecord this[string id] => records.FirstOrDefault(r => r.Id == id)
        ?? throw new ArgumentException($"paper {Paper} has no claim '{id}' (it has: {string.Join(", ", records.Select(r => r.Id))}).", nameof(id));

    /// <summary>Adds a record (its paper must be this set's; ids are unique).</summary>
    public ClaimSet Add(ClaimRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.Paper != Paper) throw new ArgumentException($"record '{record.Id}' is for paper {record.Paper}, not {Paper}.", nameof(record));
        if (!IsId(record.Id)) throw new ArgumentException($"claim id '{record.Id}' must be kebab-case (a-z, 0-9, '-').", nameof(record));
        if (records.Any(r => r.Id == record.Id)) throw new ArgumentException($"paper {Paper} already has a claim '{record.Id}'.", nameof(record));
        if (record.Kind == ClaimKind.Exactness && !record.Asserted)
            throw new ArgumentException($"exactness claim '{record.Id}' must be asserted.", nameof(record));
        if (record.Kind == ClaimKind.Reported && record.Asserted)
            throw new ArgumentException($"reported claim '{record.Id}' cannot be asserted.", nameof(record));
        if (record.Asserted && record.Status == ClaimStatus.NotShown)
            throw new ArgumentException($"claim '{record.Id}' is asserted but not shown: assert only what this size decides.", nameof(record));
        if (record.Status == ClaimStatus.NotShown && string.IsNullOrWhiteSpace(record.Note))
            throw new ArgumentException($"claim '{record.Id}' is not shown: say why in its note.", nameof(record));
        records.Add(record);
        return this;
    }

    /// <summary>An identity or naive-twin agreement (always asserted). <paramref name="holds"/> false or NaN measurements fail the check.</summary>
    public ClaimSet Exactness(string id, string statement, string ours, string criterion, bool holds, string paperFigure = "identity (paper's equations)") =>
        Add(new ClaimRecord
        {
            Paper = Paper, Id = id, Kind = ClaimKind.Exactness, Statement = statement, PaperFigure = paperFigure, Ours = ours,
            Criterion = criterion, Status = holds ? ClaimStatus.Holds : ClaimStatus.DoesNotHold, Asserted = true,
        });

    /// <summary>
    /// The paper's claim at this size. <paramref name="asserted"/>: the check cell throws when it does not hold — assert
    /// what this size decides with margin; record the rest with its honest status.
    /// </summary>
    public ClaimSet Claim(string id, string statement, string paperFigure, string ours, string criterion, bool holds, bool asserted,
        string? deviation = null, string? note = null) =>
        Add(new ClaimRecord
        {
            Paper = Paper, Id = id, Kind = ClaimKind.Claim, Statement = statement, PaperFigure = paperFigure, Ours = ours,
            Criterion = criterion, Status = holds ? ClaimStatus.Holds : ClaimStatus.DoesNotHold, Asserted = asserted,
            Deviation = deviation, Note = note,
        });

    /// <summary>A claim this run cannot speak to (e.g. every model at chance, or it needs a GPU): <paramref name="why"/> says so.</summary>
    public ClaimSet NotShown(string id, string statement, string paperFigure, string ours, string criterion, string why,
        ClaimKind kind = ClaimKind.Claim, string? deviation = null) =>
        Add(new ClaimRecord
        {
            Paper = Paper, Id = id, Kind = kind, Statement = statement, PaperFigure = paperFigure, Ours = ours,
            Criterion = criterion, Status = ClaimStatus.NotShown, Asserted = false, Deviation = deviation, Note = why,
        });

    /// <summary>A measured number (a timing, a figure too noisy to assert) with its computed status; never asserted.</summary>
    public ClaimSet Reported(string id, string statement, string paperFigure, string ours, string criterion, bool holds,
        string? deviation = null, string? note = null) =>
        Add(new ClaimRecord
        {
            Paper = Paper, Id = id, Kind = ClaimKind.Reported, Statement = statement, PaperFigure = paperFigure, Ours = ours,
            Criterion = criterion, Status = holds ? ClaimStatus.Holds : ClaimStatus.DoesNotHold, Asserted = false,
            Deviation = deviation, Note = note,
        });

    /// <summary>Adds a sentence for the closing "what we saw", with its numbers formatted from the run.</summary>
    public ClaimSet Saw(string sentence)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(sentence);
        observations.Add(sentence);
        return this;
    }

    /// <summary>The records that make <see cref="Check"/> throw.</summary>
    public IReadOnlyList<ClaimRecord> Failures => records.Where(r => r.Fails).ToList();

    /// <summary>Columns: claim, kind, statement, paper's figure, ours, criterion, status, asserted, deviation/note.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("claim", records.Select(r => r.Id)),
        new StringDataFrameColumn("kind", records.Select(r => ClaimRecord.KindText(r.Kind))),
        new StringDataFrameColumn("statement", records.Select(r => r.Statement)),
        new StringDataFrameColumn("paper", records.Select(r => r.PaperFigure)),
        new StringDataFrameColumn("ours", records.Select(r => r.Ours)),
        new StringDataFrameColumn("criterion", records.Select(r => r.Criterion)),
        new StringDataFrameColumn("status", records.Select(r => ClaimRecord.StatusText(r.Status))),
        new BooleanDataFrameColumn("asserted", records.Select(r => r.Asserted)),
        new StringDataFrameColumn("deviation / note",
            records.Select(r => string.Join(" ", new[] { r.Deviation is null ? null : "Deviation: " + r.Deviation, r.Note }.Where(s => s is not null)))));

    /// <summary>
    /// Writes the claims for the notebook runner (when <see cref="FileVariable"/> is set), then throws
    /// <see cref="ClaimCheckException"/> naming every exactness check or asserted claim that does not hold.
    /// Returns this set so a cell can end with it (and display it).
    /// </summary>
    public ClaimSet Check()
    {
        if (records.Count == 0) throw new InvalidOperationException($"paper {Paper}: no claims to check.");
        if (Environment.GetEnvironmentVariable(FileVariable) is { Length: > 0 } path) WriteJson(path);
        var failures = Failures;
        if (failures.Count > 0) throw new ClaimCheckException(Paper, failures);
        return this;
    }

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The claims file the runner collects: paper, size, device, time, records, observations.</summary>
    public string ToJson(string? device = null) => JsonSerializer.Serialize(new ClaimsFile(
        Paper, Size, device ?? Lab.Current.Device.ToString(), DateTimeOffset.Now.ToString("O", CultureInfo.InvariantCulture),
        records, observations), JsonOptions);

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> (folders created).</summary>
    public void WriteJson(string path)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        File.WriteAllText(path, ToJson());
    }

    /// <summary>Reads a claims file written by <see cref="WriteJson"/>.</summary>
    public static ClaimsFile ReadJson(string json) =>
        JsonSerializer.Deserialize<ClaimsFile>(json, JsonOptions) ?? throw new InvalidDataException("empty claims file");

    /// <summary>The closing "what we saw": the run's observations, then one line per claim with its status, from this run.</summary>
    public Findings Findings() => new(Paper, Size, observations.ToList(), records.ToList());

    public override string ToString() =>
        $"paper {Paper} ({Size}): " + string.Join("; ", records.Select(r => $"{r.Id} {ClaimRecord.StatusText(r.Status)}"));

    static bool IsId(string id) =>
        !string.IsNullOrEmpty(id) && id.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-') && id[0] != '-' && id[^1] != '-';
}

/// <summary>The JSON a notebook's check cell writes and the runner collects into artifacts/claims.csv.</summary>
public sealed record ClaimsFile(int Paper, string Size, string Device, string RunAt, IReadOnlyList<ClaimRecord> Claims, IReadOnlyList<string> Observations);

/// <summary>The closing "what we saw" of a notebook, produced by the run (rendered as an HTML list in a notebook).</summary>
public sealed record Findings(int Paper, string Size, IReadOnlyList<string> Observations, IReadOnlyList<ClaimRecord> Claims)
{
    /// <summary>One line per observation, then per claim: "holds — statement: ours (paper: figure)".</summary>
    public IReadOnlyList<string> Lines() => Observations
        .Concat(Claims.Select(c => $"{ClaimRecord.StatusText(c.Status)} ({ClaimRecord.KindText(c.Kind)}) — {c.Statement}: {c.Ours}" +
                                   (c.PaperFigure is "—" or "" ? "" : $" (paper: {c.PaperFigure})")))
        .ToList();

    public override string ToString() => string.Join("\n", Lines().Select(l => "* " + l));
}

/// <summary>Thrown by <see cref="ClaimSet.Check"/>: names every exactness check or asserted claim that does not hold.</summary>
public sealed class ClaimCheckException(int paper, IReadOnlyList<ClaimRecord> failures) : Exception(
    $"Paper {paper}: {failures.Count} asserted claim(s) do not hold: " +
    string.Join("; ", failures.Select(f => $"{f.Id} ({ClaimRecord.KindText(f.Kind)}): {f.Statement} — ours {f.Ours}, criterion {f.Criterion}")) + ".")
{
    public IReadOnlyList<ClaimRecord> Failing { get; } = failures;
}

/// <summary>Number formats for claim text: "4.4e-16" rather than .NET's "4.4E-016".</summary>
public static class Num
{
    /// <summary>Scientific notation with <paramref name="digits"/> decimals and a short exponent: 4.4e-16, 1e-05 → "1e-5".</summary>
    public static string Sci(double x, int digits = 1)
    {
        if (double.IsNaN(x)) return "NaN";
        if (double.IsInfinity(x)) return x > 0 ? "∞" : "−∞";
        string format = digits == 0 ? "0e+0" : "0." + new string('0', digits) + "e+0";
        return x.ToString(format, CultureInfo.InvariantCulture).Replace("e+", "e");
    }
}
