using System.Diagnostics;
using System.Reflection;
using System.Text.Json.Nodes;
using AttentionLab.Core;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Build;

/// <summary>
/// environment/tools/new-paper.sh on a copy of the files it reads and writes: what it writes, that the C# compiles
/// against this build of the library (with warnings as errors), and that the catalogue finds and runs the new experiment.
/// </summary>
public sealed class NewPaperScriptTests(ITestOutputHelper output) : IDisposable
{
    static readonly string Repo = LibrarySources.Repo;
    readonly string root = Path.Combine(Path.GetTempPath(), $"attnlab-newpaper-{Guid.NewGuid():N}");

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    /// <summary>A skeleton repository: the script, its templates, nbgen, nblib, README and the expected-claims file.</summary>
    void Skeleton()
    {
        foreach (var dir in new[] { "environment/tools/templates", "lib/AttentionLab/Papers", "tests/AttentionLab.Tests/Papers", "notebooks" })
            Directory.CreateDirectory(Path.Combine(root, dir));
        foreach (var file in Directory.GetFiles(Path.Combine(Repo, "environment/tools/templates")))
            File.Copy(file, Path.Combine(root, "environment/tools/templates", Path.GetFileName(file)));
        foreach (var file in new[] { "environment/tools/new-paper.sh", "environment/tools/nbgen.py", "environment/tools/nblib.py", "README.md",
            "tests/expected-claims.csv" })
            File.Copy(Path.Combine(Repo, file), Path.Combine(root, file));
    }

    (int Code, string Output) Script(params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(root, "environment/tools/new-paper.sh"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--repo");
        psi.ArgumentList.Add(root);
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        output.WriteLine(text);
        return (p.ExitCode, text);
    }

    [Fact]
    public void ScaffoldsAPaperThatCompilesAndTheCatalogueRuns()
    {
        Skeleton();
        var (code, _) = Script("51", "ZetaMemory", "--title", "Zeta & memory");
        Assert.Equal(0, code);

        string folder = Path.Combine(root, "lib/AttentionLab/Papers/ZetaMemory");
        var sources = new[] { "ZetaMemoryExperiment.cs", "ZetaMemoryResult.cs", "ZetaMemoryOps.cs", "ZetaMemoryNaive.cs" }
            .Select(f => Path.Combine(folder, f)).Append(Path.Combine(root, "tests/AttentionLab.Tests/Papers/ZetaMemoryTests.cs")).ToList();
        Assert.All(sources, f => Assert.True(File.Exists(f), f));
        Assert.All(sources, f => Assert.DoesNotContain("__", File.ReadAllText(f).Replace("__init__", "")));
        Assert.Contains("new(51, \"Zeta & memory\", \"zeta-memory\")", File.ReadAllText(sources[0]));

        // the notebook: built from the template, every placeholder filled, ends with the claims and the findings
        var nb = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "notebooks/51-zeta-memory.ipynb")))!;
        var cells = nb["cells"]!.AsArray().Select(c => string.Concat(c!["source"]!.AsArray().Select(l => l!.GetValue<string>()))).ToList();
        Assert.Contains(cells, c => c.Contains("claims.Check();", StringComparison.Ordinal));
        Assert.Contains(cells, c => c.Trim() == "claims.Findings()");
        Assert.DoesNotContain(cells, c => c.Contains("__", StringComparison.Ordinal));

        // the expected-status row, in paper order; no README row for 51, so the README is unchanged
        var expected = File.ReadAllLines(Path.Combine(root, "tests/expected-claims.csv"));
        Assert.Contains("51,headline,claim,not shown", expected);
        var papers = expected.Where(l => l.Length > 0 && char.IsDigit(l[0])).Select(l => int.Parse(l.Split(',')[0])).ToList();
        Assert.Equal(papers.Order(), papers);
        Assert.Equal(File.ReadAllText(Path.Combine(Repo, "README.md")), File.ReadAllText(Path.Combine(root, "README.md")));

        // it compiles against this build, warnings as errors, and the catalogue finds, runs and reads it
        var assembly = Compile(sources.Take(4));
        var entry = Assert.Single(PaperCatalog.Find(assembly));
        Assert.Equal(51, entry.Info.Number);
        Assert.Equal("51-zeta-memory", entry.Info.NotebookName);
        var claims = entry.RunPreset(RunSize.Smoke, torch.CPU, null).Claims();
        Assert.Equal("smoke", claims.Size);
        Assert.Equal(ClaimStatus.NotShown, claims["headline"].Status);
        Assert.Empty(claims.Failures);
        Compile(sources, tests: true);                                                   // the test file too

        // a second run refuses to overwrite; bad arguments are refused by name
        Assert.Equal(1, Script("51", "ZetaMemory").Code);
        Assert.Contains("NN must be", Script("5x", "Foo").Output);
        Assert.Contains("PascalCase", Script("52", "lower").Output);
    }

    [Fact]
    public void APlannedPaperTakesItsSlugAndTitleFromTheReadme()
    {
        Skeleton();
        // the first planned paper of the table: | NN | Title | Family | Grade | `NN-slug.ipynb` | — | link | planned |
        string row = File.ReadAllLines(Path.Combine(root, "README.md"))
            .First(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\| \d\d \|.*`\d\d-[a-z0-9-]+\.ipynb`.*\| planned \|$"));
        var cells = row.Split('|').Select(c => c.Trim()).ToArray();
        string nn = cells[1], title = cells[2], slug = cells[5].Trim('`')[3..^".ipynb".Length];
        Assert.Equal(0, Script(nn, "PlannedPaper").Code);
        string updated = File.ReadAllLines(Path.Combine(root, "README.md")).First(l => l.StartsWith($"| {nn} |", StringComparison.Ordinal));
        Assert.Contains($"[{nn}-{slug}.ipynb](notebooks/{nn}-{slug}.ipynb)", updated);
        Assert.Contains("[PlannedPaper](lib/AttentionLab/Papers/PlannedPaper)", updated);
        Assert.EndsWith("| in progress |", updated);
        Assert.Equal(cells.Length, updated.Split('|').Length);
        Assert.Contains(title, File.ReadAllText(Path.Combine(root, "lib/AttentionLab/Papers/PlannedPaper/PlannedPaperExperiment.cs")));
        Assert.True(File.Exists(Path.Combine(root, $"notebooks/{nn}-{slug}.ipynb")));
    }

    /// <summary>Compiles <paramref name="files"/> against this build (warnings as errors) and loads the assembly.</summary>
    static Assembly Compile(IEnumerable<string> files, bool tests = false)
    {
        var compilation = LibrarySources.Compile(files.Select(LibrarySources.Parse), xunit: tests)
            .WithOptions(LibrarySources.Compile([]).Options.WithGeneralDiagnosticOption(ReportDiagnostic.Error));
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image);
        var errors = emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        Assert.True(emitted.Success, "the scaffold does not compile:\n" + string.Join("\n", errors));
        return Assembly.Load(image.ToArray());
    }
}
