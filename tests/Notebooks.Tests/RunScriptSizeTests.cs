using System.Diagnostics;

namespace Notebooks.Tests;

/// <summary>environment/run.sh refuses an unknown --size or ATTNLAB_SIZE before it builds anything.</summary>
public sealed class RunScriptSizeTests
{
    static (int Code, string Output) RunScript(string? sizeVariable, params string[] args)
    {
        var info = new ProcessStartInfo("bash") { WorkingDirectory = TestEnvironment.RepoRoot, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(TestEnvironment.RepoRoot, "environment", "run.sh"));
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment.Remove("ATTNLAB_SIZE");
        if (sizeVariable is not null) info.Environment["ATTNLAB_SIZE"] = sizeVariable;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("run.sh did not stop at once on a bad size (it went on to build?)");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [Theory]
    [InlineData("--size", "huge")]
    [InlineData("--size", "Full")]
    [InlineData("--size=tiny")]
    [InlineData("--filter", "03", "--size")]
    public void An_unknown_size_option_stops_before_the_build(params string[] args)
    {
        var (code, output) = RunScript(null, args);
        Assert.Equal(2, code);
        Assert.Contains("run.sh: --size", output);
        Assert.Contains("is not smoke or full; nothing was built", output);
        Assert.DoesNotContain("Restore", output, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("huge")]
    [InlineData("medium")]
    public void An_unknown_ATTNLAB_SIZE_stops_before_the_build(string size)
    {
        var (code, output) = RunScript(size, "--filter", "no-such-notebook");
        Assert.Equal(2, code);
        Assert.Contains($"run.sh: ATTNLAB_SIZE '{size}' is not smoke or full", output);
        Assert.DoesNotContain("Restore", output, StringComparison.OrdinalIgnoreCase);
    }
}
