using System.Text.Json;
using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

/// <summary>The claim contract: the rules a record must follow, the check's verdict, and the file the runner collects.</summary>
public class ClaimSetTests
{
    static ClaimSet Sample() => new ClaimSet(7, RunSize.Smoke)
        .Exactness("twin-agrees", "fast form equals the naive twin", "max |Δ| 1e-16", "≤ 1e-10", holds: true)
        .Claim("beats-window", "landmark retrieval beats a window", "100 % (paper Fig. 3)", "92 % vs 20 %", "≥ window + 20 pts", holds: true, asserted: true)
        .Claim("near-full", "close to full attention", "≈ full", "80 % vs 95 %", "≥ full − 2 pts", holds: false, asserted: false, deviation: "none")
        .NotShown("perplexity", "perplexity parity", "PPL 14.6", "—", "within 5 %", "needs the full-size model")
        .Reported("speed", "faster decoding", "—", "1.3×", "> 1×", holds: false)
        .Saw("the window baseline sees the passkey only when it is inside the window");

    [Fact]
    public void CheckPassesWhenOnlyUnassertedClaimsFail()
    {
        var claims = Sample();
        Assert.Empty(claims.Failures);
        Assert.Same(claims, claims.Check());
        Assert.Equal(5, claims.Count);
        Assert.Equal(ClaimStatus.NotShown, claims["perplexity"].Status);
        Assert.Contains("perplexity", Assert.Throws<ArgumentException>(() => claims["nope"]).Message);
    }

    [Fact]
    public void CheckThrowsNamingEveryFailingExactnessOrAssertedClaim()
    {
        var claims = new ClaimSet(3, "smoke")
            .Exactness("a-identity", "an identity", "NaN", "≤ 1e-10", holds: double.NaN <= 1e-10)
            .Claim("b-claim", "the claim", "x", "y", "z", holds: false, asserted: true)
            .Claim("c-unasserted", "reported honestly", "x", "y", "z", holds: false, asserted: false);
        var e = Assert.Throws<ClaimCheckException>(() => claims.Check());
        Assert.Contains("a-identity", e.Message);
        Assert.Contains("b-claim", e.Message);
        Assert.DoesNotContain("c-unasserted", e.Message);
        Assert.Equal(2, e.Failing.Count);
    }

    [Fact]
    public void RecordsFollowTheRules()
    {
        var set = new ClaimSet(1, "smoke");
        Assert.Throws<ArgumentException>(() => set.Exactness("Not Kebab", "s", "o", "c", true));
        set.Exactness("ok", "s", "o", "c", true);
        Assert.Contains("already", Assert.Throws<ArgumentException>(() => set.Exactness("ok", "s", "o", "c", true)).Message);
        Assert.Contains("say why", Assert.Throws<ArgumentException>(() => set.NotShown("n", "s", "p", "o", "c", " ")).Message);
        Assert.Throws<ArgumentException>(() => set.Add(new ClaimRecord
        {
            Paper = 1, Id = "r", Kind = ClaimKind.Reported, Statement = "s", PaperFigure = "p", Ours = "o", Criterion = "c",
            Status = ClaimStatus.Holds, Asserted = true,
        }));
        Assert.Throws<ArgumentException>(() => set.Add(new ClaimRecord
        {
            Paper = 2, Id = "other-paper", Kind = ClaimKind.Claim, Statement = "s", PaperFigure = "p", Ours = "o", Criterion = "c",
            Status = ClaimStatus.Holds, Asserted = false,
        }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ClaimSet(0, "smoke"));
    }

    [Fact]
    public void CheckWritesTheRunnersFileWhenAsked()
    {
        string path = Path.Combine(Path.GetTempPath(), $"claims-{Guid.NewGuid():N}", "07-x.json");
        Environment.SetEnvironmentVariable(ClaimSet.FileVariable, path);
        try
        {
            Sample().Check();
            var json = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
            Assert.Equal(7, json.GetProperty("paper").GetInt32());
            Assert.Equal("smoke", json.GetProperty("size").GetString());
            var first = json.GetProperty("claims")[0];
            Assert.Equal("twin-agrees", first.GetProperty("id").GetString());
            Assert.Equal("exactness", first.GetProperty("kind").GetString());
            Assert.Equal("holds", first.GetProperty("status").GetString());
            Assert.Equal("does-not-hold", json.GetProperty("claims")[2].GetProperty("status").GetString());
            Assert.Equal("not-shown", json.GetProperty("claims")[3].GetProperty("status").GetString());
            Assert.False(first.TryGetProperty("fails", out _));
            var back = ClaimSet.ReadJson(File.ReadAllText(path));
            Assert.Equal(Sample().Select(c => (c.Id, c.Status, c.Kind)), back.Claims.Select(c => (c.Id, c.Status, c.Kind)));
            Assert.Single(back.Observations);
        }
        finally
        {
            Environment.SetEnvironmentVariable(ClaimSet.FileVariable, null);
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void FindingsAndTablesComeFromTheRecords()
    {
        var claims = Sample();
        var lines = claims.Findings().Lines();
        Assert.Equal("the window baseline sees the passkey only when it is inside the window", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("does not hold (claim) — close to full attention: 80 % vs 95 %", StringComparison.Ordinal));
        var df = claims.ToDataFrame();
        Assert.Equal(5, df.Rows.Count);
        Assert.Equal("not shown", df["status"][3]);
        string html = NotebookDisplay.ClaimsHtml(claims);
        Assert.Contains("<code>beats-window</code>", html);
        Assert.Contains("Deviation:", html);
        Assert.Contains("<li>the window baseline", NotebookDisplay.FindingsHtml(claims.Findings()));
    }

    [Theory]
    [InlineData(4.4e-16, 1, "4.4e-16")]
    [InlineData(1e-12, 0, "1e-12")]
    [InlineData(1e-5, 0, "1e-5")]
    [InlineData(0.5, 1, "5.0e-1")]
    [InlineData(double.NaN, 1, "NaN")]
    public void ScientificNumbersAreShort(double x, int digits, string text) => Assert.Equal(text, Num.Sci(x, digits));
}
