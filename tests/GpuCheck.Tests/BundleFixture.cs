using System.Diagnostics;
using System.Reflection;

namespace GpuCheck.Tests;

/// <summary>The result of one shell command: exit code, and everything it printed (stdout and stderr, in order).</summary>
public sealed record CommandResult(int ExitCode, string Output, TimeSpan Elapsed);

/// <summary>
/// Builds the bundle once for all tests (environment/gpu/build-bundle.sh: a trimmed, self-contained publish with
/// TorchBackend=external; reused while its inputs are unchanged) and knows where the CPU libtorch is.
/// </summary>
public sealed class BundleFixture
{
    public BundleFixture()
    {
        RepoRoot = FindRepoRoot();
        Bundle = Path.Combine(RepoRoot, "environment", "gpu", "bundle");
        var meta = typeof(BundleFixture).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().ToDictionary(a => a.Key, a => a.Value ?? "");
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env ? env : meta["NuGetPackageRoot"];
        CpuLibTorch = Path.Combine(root, "libtorch-cpu-linux-x64", meta["LibTorchVersion"], "runtimes", "linux-x64", "native");
        Build = Run("bash environment/gpu/build-bundle.sh", TimeSpan.FromMinutes(15));
    }

    public string RepoRoot { get; }
    public string Bundle { get; }
    public string CpuLibTorch { get; }
    public CommandResult Build { get; }

    /// <summary>A fresh, empty folder under artifacts/gpucheck-tests/.</summary>
    public string NewOutDir(string name)
    {
        string dir = Path.Combine(RepoRoot, "artifacts", "gpucheck-tests", name);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>
    /// Runs <paramref name="command"/> with bash in the repo root, output to a file (not a pipe: build servers that
    /// outlive the command must not keep the test waiting), killed after <paramref name="timeout"/>.
    /// </summary>
    public CommandResult Run(string command, TimeSpan timeout, IDictionary<string, string>? env = null)
    {
        string log = Path.GetTempFileName();
        var info = new ProcessStartInfo("bash") { WorkingDirectory = RepoRoot, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"{command} > '{log}' 2>&1 < /dev/null");
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in env ?? new Dictionary<string, string>()) info.Environment[key] = value;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"`{command}` ran past {timeout.TotalMinutes:F0} min. Output:\n{File.ReadAllText(log)}");
        }
        string output = File.ReadAllText(log);
        File.Delete(log);
        return new CommandResult(process.ExitCode, output, clock.Elapsed);
    }

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notebooks.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Notebooks.sln above {AppContext.BaseDirectory}");
    }
}

[CollectionDefinition(Name)]
public sealed class BundleCollection : ICollectionFixture<BundleFixture>
{
    public const string Name = "GPU check bundle";
}
