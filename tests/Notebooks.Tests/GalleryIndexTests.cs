using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>The paper-first index, run-to-run history and the offline math renderer (no kernel needed).</summary>
public class GalleryIndexTests
{
    static NotebookResult Result(string name, bool passed, double seconds, string size = "smoke") => new()
    {
        Notebook = name, Passed = passed, Seconds = seconds, Device = "cpu", Size = size,
        Error = passed ? null : "cell 5: System.Exception: boom", StartedAt = DateTimeOffset.Now,
    };

    static ClaimRow Claim(string notebook, string id, string status) => new()
    {
        Notebook = notebook, Paper = PaperIndex.NumberOf(notebook) ?? 0, Id = id, Kind = "claim", Statement = "statement, with a comma\nand a line",
        Status = status, Size = "smoke", Device = "cpu",
    };

    static RunHistory.SummaryRow S(string nb, string status, double seconds, string size = "smoke") => new(nb, status, seconds, size);
    static RunHistory.ClaimStatus C(string nb, string claim, string status, string kind = "claim") => new(nb, claim, status, kind);

    [Fact]
    public void Diff_reports_new_failures_claim_changes_and_slowdowns_and_nothing_else()
    {
        var before = new[] { S("05-a", "passed", 10), S("07-b", "failed", 10), S("13-c", "passed", 10), S("16-d", "passed", 10), S("18-e", "passed", 10),
            S("19-f", "passed", 10, "full"), S("20-gone", "passed", 1) };
        var after = new[] { S("05-a", "failed", 10), S("07-b", "passed", 10), S("13-c", "passed", 15.1), S("16-d", "passed", 14.9), S("18-e", "passed", 10),
            S("19-f", "passed", 100), S("21-new", "failed", 1) };
        var beforeClaims = new[] { C("18-e", "T1", "holds", "reported"), C("18-e", "C1", "holds"), C("18-e", "C2", "not shown"), C("18-e", "C3", "holds"),
            C("18-e", "C4", "holds"), C("21-new", "C1", "holds") };
        var afterClaims = new[] { C("18-e", "C1", "does not hold"), C("18-e", "C2", "holds"), C("18-e", "C3", "holds"), C("18-e", "C5", "holds"), C("21-new",
            "C1", "does not hold"),
            C("18-e", "T1", "does not hold", "reported") };

        var changes = RunHistory.Diff(before, beforeClaims, after, afterClaims);
        var text = changes.Select(c => c.Text).ToList();

        Assert.Equal(
        [
            "05-a: started failing (passed in the previous run)",
            "13-c: 1.5× slower (10.0 s → 15.1 s)",
            "18-e claim C1: holds → does not hold",
            "18-e claim C4: holds → not reported",
            "07-b: passes again (failed in the previous run)",
            "18-e claim C2: not shown → holds",
            "18-e claim C5: new, holds",
            "18-e claim T1: holds → does not hold (a reported measurement: machine-dependent)",
        ], text);
        Assert.Equal([true, true, true, true, false, false, false, false], changes.Select(c => c.IsRegression));
        // 16-d is 1.49× slower, 19-f changed size, 20-gone and 21-new are in one run only: none of them is compared.
        Assert.DoesNotContain(changes, c => c.Notebook is "16-d" or "19-f" or "20-gone" or "21-new");
        Assert.Empty(RunHistory.Diff(after, afterClaims, after, afterClaims));
    }

    [Fact]
    public void Two_runs_in_the_history_show_their_changes_in_the_index_and_the_runner_output()
    {
        string repo = TestEnvironment.RepoRoot;
        string outDir = TestEnvironment.TempFolder("history");
        try
        {
            var t0 = new DateTimeOffset(2026, 12, 1, 22, 0, 0, TimeSpan.Zero);
            var first = new RunMeta("20261201-220000-aaaaaaaaaa", "aaaaaaaaaa", t0, "test machine", "smoke");
            RunHistory.Save(outDir, first, [Result("39-lightning-attention", true, 20), Result("13-based", true, 10)],
                [Claim("39-lightning-attention", "C1", "holds"), Claim("13-based", "C1", "holds")]);
            // A filtered run in between (only 00): 39 must still be compared with the first run.
            var middle = new RunMeta("20261202-220000-bbbbbbbbbb", "bbbbbbbbbb", t0.AddDays(1), "test machine", "smoke");
            RunHistory.Save(outDir, middle, [Result("00-getting-started", true, 5)], []);
            var second = new RunMeta("20261203-220000-cccccccccc", "cccccccccc", t0.AddDays(2), "test machine", "smoke");
            var results = new[] { Result("39-lightning-attention", true, 50), Result("13-based", false, 10), Result("00-getting-started", true, 5) };
            var claims = new[] { Claim("39-lightning-attention", "C1", "does not hold") };
            string folder = RunHistory.Save(outDir, second, results, claims);

            var changes = RunHistory.SincePrevious(outDir, folder, out var comparedWith);
            Assert.Equal(["20261202-220000-bbbbbbbbbb", "20261201-220000-aaaaaaaaaa"], comparedWith);
            Assert.Equal(
            [
                "13-based: started failing (passed in the previous run)",
                "13-based claim C1: holds → not reported",
                "39-lightning-attention: 2.5× slower (20.0 s → 50.0 s)",
                "39-lightning-attention claim C1: holds → does not hold",
            ], changes.Select(c => c.Text));

            var batch = new BatchResult(results, second.RunAt, "", "") { Changes = changes, ComparedWith = comparedWith };
            var lines = Program.ChangeLines(batch).ToList();
            Assert.StartsWith("Changed since the previous run (20261202-220000-bbbbbbbbbb, 20261201-220000-aaaaaaaaaa): 4", lines[0]);
            Assert.Equal("  REGRESSION: 39-lightning-attention claim C1: holds → does not hold", lines[4]);

            foreach (var r in results) { Directory.CreateDirectory(Path.Combine(outDir, "notebooks")); File.WriteAllText(Path.Combine(outDir, "notebooks",
                r.Notebook + ".html"), ""); }
            var context = Gallery.ContextFor(outDir, repo, second, changes, comparedWith);
            string index = File.ReadAllText(Gallery.Update(outDir, results, second.RunAt, claims, context));
            int changesAt = index.IndexOf("Changed since the previous run", StringComparison.Ordinal);
            Assert.True(changesAt > 0 && changesAt < index.IndexOf("<table>", StringComparison.Ordinal), "the changes come before the paper table");
            foreach (var c in changes) Assert.Contains(HtmlPage.E(c.Text), index);
            Assert.Contains("<code>cccccccccc</code>", index);
            Assert.Contains("machine test machine", index);
        }
        finally { TestEnvironment.DeleteQuietly(outDir); }
    }

    [Fact]
    public void First_run_says_there_is_nothing_to_compare()
    {
        string outDir = TestEnvironment.TempFolder("history1");
        try
        {
            var meta = new RunMeta("20261201-220000-aaaaaaaaaa", "aaaaaaaaaa", DateTimeOffset.Now, "m", "smoke");
            string folder = RunHistory.Save(outDir, meta, [Result("00-getting-started", true, 5)], []);
            Assert.Empty(RunHistory.SincePrevious(outDir, folder, out var compared));
            Assert.Empty(compared);
            var lines = Program.ChangeLines(new BatchResult([], meta.RunAt, "", "")).ToList();
            Assert.Equal(["Changed since the previous run: no earlier run of these notebooks in the history, nothing to compare."], lines);
            Assert.True(File.Exists(Path.Combine(folder, "summary.csv")) && File.Exists(Path.Combine(folder, "claims.csv")) && File.Exists(Path.Combine(folder,
                "run.json")));
            Assert.Equal(meta with { RunAt = meta.RunAt }, RunHistory.ReadMeta(folder));
        }
        finally { TestEnvironment.DeleteQuietly(outDir); }
    }

    [Fact]
    public void Readme_table_and_library_give_titles_families_grades_and_folders()
    {
        var table = PaperIndex.ParseReadme("""
            text
            | P | Paper | Family | Grade | Notebook | Status |
            |---|---|---|---|---|---|
            | 04 | BAM: upcycling | F2 | A | `04-bam.ipynb` | planned |
            | 39 | Lightning | F1 | A (speed B) | [x](notebooks/x.ipynb) | done |

            | 40 | not in the table | F9 | Z | x | x |
            """);
        Assert.Equal(new PaperMeta(4, "BAM: upcycling", "F2", "A", null), table[4]);
        Assert.Equal("A (speed B)", table[39].Grade);
        Assert.False(table.ContainsKey(40));

        var papers = PaperIndex.Load(TestEnvironment.RepoRoot);
        var lightning = papers[39];
        Assert.Equal("F1", lightning.Family);
        Assert.Equal("lib/AttentionLab/Papers/LightningAttention", lightning.LibraryFolder);
        Assert.StartsWith("Lightning Attention", lightning.Title);
        Assert.True(Directory.Exists(Path.Combine(TestEnvironment.RepoRoot, lightning.LibraryFolder!)));
        Assert.Equal(50, papers.Keys.Count(n => n is >= 1 and <= 50)); // every paper of the README table
        Assert.Null(PaperIndex.NumberOf("getting-started"));
        Assert.Equal(7, PaperIndex.NumberOf("07-landmark-attention"));
    }

    [Fact]
    public void Index_is_paper_first_grouped_by_family_with_links_and_claims()
    {
        string repo = TestEnvironment.RepoRoot;
        string outDir = Path.Combine(repo, "artifacts"); // as run.sh writes it (nothing is written here)
        var entries = new List<GalleryEntry>
        {
            new("39-lightning-attention", "passed", 31.2, "cpu", "smoke", "", DateTimeOffset.Now),
            new("28-routing-transformer", "failed", 12, "cpu", "smoke", "cell 3: boom", DateTimeOffset.Now),
            new("00-getting-started", "passed", 4, "cpu", "smoke", "", DateTimeOffset.Now),
        };
        var claims = new[] { Claim("39-lightning-attention", "C1", "holds"), Claim("39-lightning-attention", "C2", "not shown") };
        var context = Gallery.ContextFor(outDir, repo, new RunMeta("x", "abc1234", DateTimeOffset.Now, "box (2 cores)", "smoke"), null, []);
        string index = Gallery.Render(entries, claims, context);

        Assert.Contains("Run: commit <code>abc1234</code>", index);
        Assert.DoesNotContain("Changed since the previous run", index); // no history given
        Assert.Contains("<h2 id=\"family-F1\">F1 · efficient attention", index);
        Assert.Contains("<section class=\"family\" data-family=\"F1\">", index);
        string row = Regex.Match(index, "<tr class=\"passed\"><td class=\"num\">39</td>.*?</tr>").Value;
        Assert.Contains(">Lightning Attention", row);
        Assert.Contains("<td>A</td>", row);
        Assert.Contains(">1/2 hold</a>", row);
        Assert.Contains("31.2", row);
        Assert.Contains("href=\"../notebooks/39-lightning-attention.html\"", row);
        Assert.Contains("href=\"../../notebooks/39-lightning-attention.ipynb\">source", row);
        Assert.Contains("href=\"../../lib/AttentionLab/Papers/LightningAttention/\">library", row);
        Assert.Contains("href=\"https://arxiv.org/abs/2405.17381\">paper", row); // the first arXiv link of the notebook's first cell
        Assert.Matches("<tr class=\"failed\"><td class=\"num\">28</td>.*cell 3: boom", index);
        var planned = Regex.Match(File.ReadAllText(Path.Combine(repo, "README.md")), @"^\| (\d\d) \| (\w+)[^|]*\|.*\| planned \|$",
            RegexOptions.Multiline);
        Assert.True(planned.Success, "the README lists no planned paper");
        // a paper without a notebook is listed
        Assert.Matches($"<tr class=\"planned\"><td class=\"num\">{planned.Groups[1].Value}</td><td>{planned.Groups[2].Value}", index);
        Assert.Matches("<tr class=\"not-run\"><td class=\"num\">05</td>[^\n]*not run[^\n]*05-recycled-attention\\.ipynb\">source",
            index); // in the repository, not in this gallery
        Assert.Contains("Guides and cross-paper studies", index);
        // Every relative link resolves inside the repository as seen from <repo>/artifacts/gallery/.
        string galleryDir = Path.Combine(outDir, "gallery");
        foreach (Match m in Regex.Matches(index, "href=\"(\\.\\./\\.\\./[^\"#]+)\""))
        {
            string target = Path.GetFullPath(Path.Combine(galleryDir, Uri.UnescapeDataString(m.Groups[1].Value)));
            Assert.True(File.Exists(target) || Directory.Exists(target), $"{m.Groups[1].Value} does not exist");
        }
    }

    [Fact]
    public void Dollar_math_becomes_inline_or_display_tex_for_the_renderer()
    {
        Assert.Equal("<p>a <span class=\"math\">\\(x &lt; y\\)</span> b</p>\n", HtmlPage.Markdown("a $x < y$ b"));
        Assert.Equal("<p>a <span class=\"math display\">\\[x_1\\]</span> b</p>\n", HtmlPage.Markdown("a $$x_1$$ b"));
        Assert.Contains("<div class=\"math\">\n\\[\nx\n\\]</div>", HtmlPage.Markdown("$$\nx\n$$\n"));
        Assert.Contains("<code>$x$</code>", HtmlPage.Markdown("`$x$`"));
    }

    [KatexFact]
    public void Katex_is_copied_beside_the_pages_and_every_page_loads_it_locally()
    {
        string dir = TestEnvironment.TempFolder("katex");
        try
        {
            string dist = KatexAsset.FindDist(TestEnvironment.RepoRoot)!;
            Assert.True(KatexAsset.EnsureWritten(dir, dist) >= 4);
            Assert.Equal(0, KatexAsset.EnsureWritten(dir, dist)); // identical files are left alone
            foreach (var f in new[] { KatexAsset.Script, KatexAsset.AutoRender, KatexAsset.StyleSheet, "fonts/KaTeX_Main-Regular.woff2" })
                Assert.True(File.Exists(Path.Combine(dir, KatexAsset.Folder, f)), f);
            string head = KatexAsset.HeadHtml();
            Assert.DoesNotContain("http", head);
            Assert.Contains("src=\"katex/katex.min.js\"", head);
        }
        finally { TestEnvironment.DeleteQuietly(dir); }
    }

    /// <summary>
    /// A page with inline and display math (as the notebooks write it: <c>$…$</c>, <c>$$…$$</c>) and a Plotly chart, opened in
    /// headless Chromium with networking off: after the scripts ran, the DOM has KaTeX's output, no TeX delimiters left in
    /// the markdown, no KaTeX error, and the chart's SVG. A screenshot is left in artifacts/test-results/ for a reader.
    /// </summary>
    [ChromiumFact]
    public void Headless_chromium_without_network_typesets_the_formulas_and_draws_the_chart()
    {
        string dir = TestEnvironment.TempFolder("chromium");
        try
        {
            string nbDir = Path.Combine(dir, "src");
            Directory.CreateDirectory(nbDir);
            string path = TestEnvironment.WriteNotebook(nbDir, "99-math",
                ("md",
                    "# Math\n\nThe decay $\\lambda_h = e^{-a_h}$ and a sum $\\sum_{i=1}^{n} x_i^2$ inline.\n\n" +
                    "A display formula in a paragraph, as the notebooks write it: $$S_t = \\lambda S_{t-1} + k_t^\\top v_t .$$\n\n" +
                    "$$\no_t = \\frac{\\sum_{s \\le t} \\lambda^{t-s} q_t^\\top k_s v_s}{\\sqrt{d}}\n$$\n"),
                ("cs", "1 + 1"));
            var notebook = NotebookFile.Load(path);
            var executed = notebook.CreateExecutedCopy();
            ((JsonArray)executed["cells"]![1]!["outputs"]!).Add(new JsonObject
            {
                ["output_type"] = "display_data", ["metadata"] = new JsonObject(),
                ["data"] = new JsonObject { ["text/html"] = BatchFixture.ChartHtml },
            });
            var result = new NotebookResult { Notebook = "99-math", Passed = true, Seconds = 1, Device = "cpu", Size = "smoke", CellsRun = [1, 2] };
            string pages = Path.Combine(dir, "notebooks");
            Directory.CreateDirectory(pages);
            PlotlyAsset.EnsureWritten(pages);
            KatexAsset.EnsureWritten(pages, KatexAsset.FindDist(TestEnvironment.RepoRoot)!);
            string html = Path.Combine(pages, "99-math.html");
            File.WriteAllText(html, HtmlPage.Render(notebook, executed, result));

            string screenshot = Path.Combine(TestEnvironment.RepoRoot, "artifacts", "test-results", "gallery-math-page.png");
            Directory.CreateDirectory(Path.GetDirectoryName(screenshot)!);
            Chromium.Run(html, $"--screenshot={screenshot}");
            string dom = Chromium.Run(html, "--dump-dom");

            Assert.Contains("data-math=\"typeset\"", dom);
            int katex = Regex.Matches(dom, "class=\"katex\"").Count;
            Assert.True(katex >= 4, $"{katex} KaTeX formulas in the DOM (4 expected)");
            Assert.Equal(2, Regex.Matches(dom, "class=\"katex-display\"").Count);
            Assert.DoesNotContain("katex-error", dom);
            string markdown = Regex.Match(dom, "<section class=\"cell markdown\".*?</section>", RegexOptions.Singleline).Value;
            string visible = Regex.Replace(Regex.Replace(markdown, "<annotation.*?</annotation>", "", RegexOptions.Singleline), "<[^>]+>", "");
            Assert.DoesNotContain("\\(", visible);
            Assert.DoesNotContain("\\[", visible);
            Assert.DoesNotContain("$", visible);
            Assert.Contains("class=\"main-svg\"", dom); // plotly drew the chart
            Assert.True(File.Exists(screenshot) && new FileInfo(screenshot).Length > 10_000, "no screenshot");
        }
        finally { TestEnvironment.DeleteQuietly(dir); }
    }
}

/// <summary>A fact that is skipped, with the reason in the results, when KaTeX is not installed (environment/gallery/install.sh).</summary>
public sealed class KatexFactAttribute : FactAttribute
{
    public KatexFactAttribute()
    {
        if (KatexAsset.FindDist(TestEnvironment.RepoRoot) is null)
            Skip = $"KaTeX is not installed in {KatexAsset.DistInRepo} (environment/gallery/install.sh needs npm)";
    }
}

/// <summary>A fact that needs headless Chromium and KaTeX; skipped with the reason when either is missing.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Chromium.Find() is null) Skip = "Chromium is not installed (apt-get install -y chromium): the headless rendering check did not run";
        else if (KatexAsset.FindDist(TestEnvironment.RepoRoot) is null)
            Skip = $"KaTeX is not installed in {KatexAsset.DistInRepo} (environment/gallery/install.sh needs npm)";
    }
}

/// <summary>Headless Chromium with networking off: no proxy reachable, every host name unresolvable (file:// pages only).</summary>
public static class Chromium
{
    public static string? Find() =>
        new[] { "chromium", "chromium-browser", "google-chrome" }
            .SelectMany(n => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, n)))
            .FirstOrDefault(File.Exists);

    /// <summary>Opens <paramref name="htmlFile"/> with <paramref name="action"/> (--dump-dom or --screenshot=…); returns stdout.</summary>
    public static string Run(string htmlFile, string action)
    {
        var psi = new ProcessStartInfo(Find()!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            ArgumentList =
            {
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
                "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                "--window-size=1100,1400", "--virtual-time-budget=15000", "--allow-file-access-from-files",
                $"--user-data-dir={Path.Combine(Path.GetTempPath(), "attnlab-chromium-" + Guid.NewGuid().ToString("N")[..8])}",
                action, new Uri(htmlFile).AbsoluteUri,
            },
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(entireProcessTree: true); throw new TimeoutException($"chromium {action} ran over 120 s"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"chromium {action} exited {p.ExitCode}: {TestEnvironment.Tail(stderr.Result, 2000)}");
        return stdout.Result;
    }
}
