using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>The scoreboard's pieces: claims files in, claims.csv and claims.html out, and the expected-status comparison.</summary>
public sealed class ClaimsBoardTests : IDisposable
{
    readonly string root = TestEnvironment.TempFolder("claims");
    public void Dispose() => TestEnvironment.DeleteQuietly(root);

    /// <summary>A claims file exactly as AttentionLab.Core.ClaimSet writes it (camelCase, kebab-case enums).</summary>
    const string LibraryJson = """
        {
          "paper": 42, "size": "smoke", "device": "cpu", "runAt": "2026-12-06T10:00:00.0000000+00:00",
          "claims": [
            { "paper": 42, "id": "forms-equal", "kind": "exactness", "statement": "scan = naive", "paperFigure": "identity",
              "ours": "max |Δ| 4e-16", "criterion": "≤ 1e-12", "status": "holds", "asserted": true, "deviation": null, "note": null },
            { "paper": 42, "id": "comparable", "kind": "claim", "statement": "comparable, with \"quotes\", and commas", "paperFigure": "38 data sets",
              "ours": "1.1×", "criterion": "≤ 2×", "status": "does-not-hold", "asserted": false, "deviation": "threshold from the spec", "note": null },
            { "paper": 42, "id": "latency", "kind": "reported", "statement": "O(1) step", "paperFigure": "—",
              "ours": "0.9×", "criterion": "< 1.5×", "status": "not-shown", "asserted": false, "deviation": null, "note": "stream too short" }
          ],
          "observations": [ "a sentence" ]
        }
        """;

    const string Expected = """
        # comment
        paper,claim,kind,status
        42,forms-equal,exactness,holds
        42,comparable,claim,does not hold
        42,latency,reported,any
        7,other,claim,holds
        """;

    IReadOnlyList<ClaimRow> Rows()
    {
        Directory.CreateDirectory(Path.Combine(root, "claims"));
        Directory.CreateDirectory(Path.Combine(root, "notebooks"));
        File.WriteAllText(ClaimsBoard.PathFor(root, "42-aaren"), LibraryJson);
        File.WriteAllText(Path.Combine(root, "notebooks", "42-aaren.html"), "<html></html>");
        return ClaimsBoard.Collect(root);
    }

    [Fact]
    public void ReadsTheLibrarysFile()
    {
        var rows = Rows();
        Assert.Equal(3, rows.Count);
        Assert.All(rows, r => Assert.Equal("42-aaren", r.Notebook));
        Assert.Equal(["holds", "does not hold", "not shown"], rows.Select(r => r.Status));
        Assert.Equal("exactness", rows[0].Kind);
        Assert.True(rows[0].Asserted);
        Assert.Equal("stream too short", rows[2].Note);
        Assert.Equal("cpu", rows[1].Device);
    }

    [Fact]
    public void ClaimsOfNotebooksWithoutAPageAreLeftOut()
    {
        Rows();
        File.Copy(ClaimsBoard.PathFor(root, "42-aaren"), ClaimsBoard.PathFor(root, "13-based"));
        Assert.All(ClaimsBoard.Collect(root), r => Assert.Equal("42-aaren", r.Notebook));
    }

    [Fact]
    public void CsvQuotesAndKeepsEveryField()
    {
        var csv = ClaimsBoard.RenderCsv(Rows()).Split('\n');
        Assert.Equal(ClaimsBoard.Header, csv[0]);
        Assert.Equal(ClaimsBoard.Header.Split(',').Length, Csv.Split(csv[2]).Count);
        Assert.Contains("\"comparable, with \"\"quotes\"\", and commas\"", csv[2]);
        Assert.Equal("comparable, with \"quotes\", and commas", Csv.Split(csv[2])[4]);
    }

    [Fact]
    public void TheRealExpectedFileParses()
    {
        var expected = ExpectedClaims.TryLoad(NotebookTests.ExpectedFile);
        Assert.NotNull(expected);
        Assert.NotEmpty(expected.Entries);
        Assert.All(expected.Entries, e => Assert.NotNull(NotebookTests.PaperOf($"{e.Paper:00}-x")));
        // every paper the file lists has its notebook
        var notebooks = Directory.GetFiles(Path.Combine(TestEnvironment.RepoRoot, "notebooks"), "*.ipynb").Select(Path.GetFileName).ToList();
        Assert.All(expected.Papers, p => Assert.Contains(notebooks, n => n!.StartsWith($"{p:00}-", StringComparison.Ordinal)));
    }

    [Fact]
    public void EqualStatusesGiveNoDifference()
    {
        var expected = ExpectedClaims.Parse(Expected);
        Assert.Empty(expected.Compare(Rows(), [42]));
    }

    [Theory]
    [InlineData("42,forms-equal,exactness,holds", "42,forms-equal,exactness,does not hold", "forms-equal: expected 'does not hold'")]   // stops holding
    [InlineData("42,comparable,claim,does not hold", "42,comparable,claim,holds", "comparable: expected 'holds'")]                  // starts holding
    [InlineData("42,comparable,claim,does not hold", "42,comparable,claim,not shown", "comparable: expected 'not shown'")]
    [InlineData("42,comparable,claim,does not hold", "42,comparable,reported,does not hold", "comparable: expected kind 'reported'")]
    [InlineData("42,latency,reported,any", "", "latency: not shown in this run, not listed")]                                        // a claim the file lacks
    [InlineData("42,latency,reported,any", "42,latency,reported,any\n42,gone,claim,holds", "gone: listed in")]                         // one the run lacks
    public void AnEditedStatusFailsEitherWay(string line, string edited, string message)
    {
        var expected = ExpectedClaims.Parse(Expected.Replace(line, edited));
        var diffs = expected.Compare(Rows(), [42]);
        Assert.Single(diffs);
        Assert.Contains(message, diffs[0]);
    }

    [Fact]
    public void EditingOneStatusOfTheRealFileIsCaught()
    {
        string text = File.ReadAllText(NotebookTests.ExpectedFile);
        var real = ExpectedClaims.Parse(text);
        var entry = real.Entries.First(e => e.Status != ExpectedClaims.Any);
        var asRun = real.Entries.Where(e => e.Paper == entry.Paper)
            .Select(e => (e.Paper, e.Claim, e.Kind, e.Status == ExpectedClaims.Any ? "holds" : e.Status)).ToList();
        Assert.Empty(real.Compare(asRun, [entry.Paper]));
        string flipped = entry.Status == "holds" ? "does not hold" : "holds";
        var lines = text.Replace("\r\n", "\n").Split('\n');
        lines[entry.Line - 1] = $"{entry.Paper},{entry.Claim},{entry.Kind},{flipped}";
        var diffs = ExpectedClaims.Parse(string.Join('\n', lines)).Compare(asRun, [entry.Paper]);
        Assert.Contains(diffs, d => d.Contains(entry.Claim, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("paper,claim,status\n", "header")]
    [InlineData("paper,claim,kind,status\n42,x,claim,maybe\n", "status 'maybe'")]
    [InlineData("paper,claim,kind,status\n42,x,guess,holds\n", "kind 'guess'")]
    [InlineData("paper,claim,kind,status\nP42,x,claim,holds\n", "expected 'paper,claim,kind,status'")]
    [InlineData("paper,claim,kind,status\n42,x,claim,holds\n42,x,claim,holds\n", "listed twice")]
    public void BadFilesAreRefusedWithTheLine(string text, string message) =>
        Assert.Contains(message, Assert.Throws<InvalidDataException>(() => ExpectedClaims.Parse(text)).Message);

    [Fact]
    public void TheScoreboardShowsEveryClaimAndMarksChanges()
    {
        var rows = Rows();
        var expected = ExpectedClaims.Parse(Expected.Replace("42,comparable,claim,does not hold", "42,comparable,claim,holds"));
        string page = ClaimsBoard.RenderPage(rows, expected);
        Assert.Contains("id=\"42-aaren\"", page);
        Assert.Contains("../notebooks/42-aaren.html", page);
        Assert.Contains("<span class=\"badge does-not-hold\">does not hold</span>", page);
        Assert.Contains("class=\"changed\">holds</td>", page);
        Assert.Contains("1 difference(s)", page);
        Assert.Contains("Deviation: threshold from the spec", page);

        string index = Gallery.Render([new GalleryEntry("42-aaren", "passed", 1, "cpu", "smoke", "", DateTimeOffset.Now)], rows);
        Assert.Contains("claims.html#42-aaren", index);
        Assert.Contains("1 hold · 1 do not hold · 1 not shown", index);
    }
}
