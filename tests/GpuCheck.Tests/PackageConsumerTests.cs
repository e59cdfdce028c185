using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace GpuCheck.Tests;

/// <summary>
/// The NuGet route (issue 17, item 1): `dotnet pack lib/AttentionLab` into a temporary local feed, then a consumer project
/// in a temporary folder outside the repository references the package from that feed, builds with the package's
/// buildTransitive targets (cpu backend, Debian-12 ELF fix on its output) and runs a forward pass that prints checked numbers.
/// Offline: the consumer's nuget.config puts the machine's NuGet cache in as a fallback folder (TorchSharp, libtorch and
/// every other dependency are already there) and keeps the machine's normal source behind it.
/// </summary>
/// <remarks>
/// Here rather than in Notebooks.Tests: like the bundle tests, this packages the library, takes it out of the repository and
/// runs it as a separate process; it needs no notebook kernel. Each run packs a fresh prerelease version
/// (0.1.0-test.&lt;time&gt;) into a fresh packages folder, so no stale extracted copy of an earlier pack is ever used.
/// The library's own build goes to artifacts/package-test/ (AttnLabBuildTag), never artifacts/lib/ (notebooks read that).
/// </remarks>
public sealed class PackageConsumerTests(ITestOutputHelper output)
{
    const long T = 8, H = 2, D = 4;

    [Fact]
    public void Packed_library_builds_and_runs_in_a_project_outside_the_repository()
    {
        string repo = FindRepoRoot();
        string work = Path.Combine(Path.GetTempPath(), $"attnlab-package-test-{Environment.ProcessId}-{Guid.NewGuid():N}"[..48]);
        Assert.False(IsUnder(work, repo), $"{work} must be outside the repository {repo}");
        string feed = Path.Combine(work, "feed"), packages = Path.Combine(work, "packages"), consumer = Path.Combine(work, "consumer");
        Directory.CreateDirectory(feed);
        Directory.CreateDirectory(consumer);
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}";
        try
        {
            var pack = Run($"dotnet pack lib/AttentionLab/AttentionLab.csproj -c Release --nologo -v q -p:AttnLabBuildTag=package-test " +
                           $"-p:PackageVersion={version} -o '{feed}'", repo, TimeSpan.FromMinutes(10));
            Assert.True(pack.ExitCode == 0, $"dotnet pack failed:\n{pack.Output}");
            string nupkg = Path.Combine(feed, $"AttentionLab.{version}.nupkg");
            Assert.True(File.Exists(nupkg), $"no {nupkg}; the feed has: {string.Join(", ", Directory.GetFiles(feed))}");

            WriteConsumer(consumer, feed, packages, version);
            var build = Run("dotnet build -c Release --nologo -v n -clp:NoSummary", consumer, TimeSpan.FromMinutes(5));
            Assert.True(build.ExitCode == 0, $"consumer build failed:\n{Errors(build.Output)}");
            string bin = Path.Combine(consumer, "bin", "Release", "net10.0", "linux-x64");
            Assert.True(File.Exists(Path.Combine(bin, "libLibTorchSharp.so")), $"no libLibTorchSharp.so in {bin}");
            Assert.True(File.Exists(Path.Combine(bin, "libtorch_cpu.so")), $"the cpu backend's libtorch_cpu.so is not in {bin}");
            Assert.False(Directory.Exists(Path.Combine(bin, "runtimes")), "natives for other platforms were copied (runtimes/)");
            // The ELF fix ran on the output copy (the build log says what it did: patched, or nothing to patch on this machine).
            Assert.Contains("ElfVersionFix:", build.Output);

            var run = Run("dotnet bin/Release/net10.0/linux-x64/Consumer.dll", consumer, TimeSpan.FromMinutes(3));
            Assert.True(run.ExitCode == 0, $"consumer run failed:\n{run.Output}");
            // Uniform causal attention over v_t = t: o_t = mean(v_0..v_t) = t/2 in every head and channel.
            double expected = H * D * Enumerable.Range(0, (int)T).Sum(t => t / 2.0);
            Assert.Equal(expected, Number(run.Output, "uniform-sum"), 4);
            Assert.InRange(Number(run.Output, "max-abs-diff"), 0, 1e-5);
            Assert.Contains("backend cpu", run.Output);
            Assert.False(Directory.Exists(Path.Combine(bin, "cpu")), "TorchSharp's fallback copied natives into cpu/ at first load");

            // Without a backend package the package's targets stop the build and name the reference to add.
            string bare = Path.Combine(work, "consumer-without-natives");
            Directory.CreateDirectory(bare);
            WriteConsumer(bare, feed, packages, version, withNatives: false);
            var refused = Run("dotnet build -c Release --nologo -v q", bare, TimeSpan.FromMinutes(5));
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("AttentionLab: the cpu backend needs libtorch", refused.Output);
            Assert.Contains("libtorch-cpu-linux-x64", refused.Output);

            output.WriteLine($"pack {pack.Elapsed.TotalSeconds:F0} s, consumer build {build.Elapsed.TotalSeconds:F0} s, run {run.Elapsed.TotalSeconds:F1} s, " +
                             $"refused build {refused.Elapsed.TotalSeconds:F0} s");
            output.WriteLine(run.Output);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); }
            catch (IOException e) { output.WriteLine($"could not delete {work}: {e.Message}"); }
        }
    }

    static void WriteConsumer(string dir, string feed, string packages, string version, bool withNatives = true)
    {
        string machineCache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env
            ? env : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        File.WriteAllText(Path.Combine(dir, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config><add key="globalPackagesFolder" value="{packages}" /></config>
              <packageSources>
                <clear />
                <add key="attentionlab-local" value="{feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <fallbackPackageFolders><clear /><add key="machine" value="{machineCache}" /></fallbackPackageFolders>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(dir, "Consumer.csproj"), $$"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <RuntimeIdentifier>linux-x64</RuntimeIdentifier>
                <SelfContained>false</SelfContained>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="AttentionLab" Version="{{version}}" />
                {{(withNatives ? "<PackageReference Include=\"libtorch-cpu-linux-x64\" Version=\"2.10.0\" />" : "")}}
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(dir, "Program.cs"), $$"""
            using AttentionLab.Attention;
            using AttentionLab.Core;
            using static TorchSharp.torch;

            Lab.Setup(seed: 0);
            using var scope = NewDisposeScope();
            long B = 1, T = {{T}}, H = {{H}}, D = {{D}};
            // q = 0: every score is equal, so causal attention averages the values seen so far.
            var v = arange(T, dtype: float32).view(1, T, 1, 1).expand(B, T, H, D);
            using (var r = ReferenceAttention.Softmax(zeros(B, T, H, D), randn(B, T, H, D), v, causal: true))
                Console.WriteLine($"uniform-sum {r.Output.sum().item<float>():F6}");
            // Random inputs against softmax(q kᵀ/√D) v written out here.
            var q = randn(B, T, H, D); var k = randn(B, T, H, D); v = randn(B, T, H, D);
            using var a = ReferenceAttention.Softmax(q, k, v);
            var o = (q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) / Math.Sqrt(D)).softmax(-1).matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);
            Console.WriteLine($"max-abs-diff {(a.Output - o).abs().max().item<float>():E3}");
            """);
    }

    static double Number(string text, string key)
    {
        var m = Regex.Match(text, $@"^{Regex.Escape(key)} (\S+)\s*$", RegexOptions.Multiline);
        Assert.True(m.Success, $"no '{key} <number>' line in:\n{text}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>Runs a command with bash in <paramref name="dir"/>, output to a file (a build server must not hold a pipe open).</summary>
    static CommandResult Run(string command, string dir, TimeSpan timeout)
    {
        string log = Path.GetTempFileName();
        var info = new ProcessStartInfo("bash") { WorkingDirectory = dir, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"{command} > '{log}' 2>&1 < /dev/null");
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["ATTNLAB_THREADS"] = "1";
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"`{command}` ran past {timeout.TotalMinutes:F0} min. Output:\n{Tail(File.ReadAllText(log))}");
        }
        string text = File.ReadAllText(log);
        File.Delete(log);
        return new CommandResult(process.ExitCode, text, clock.Elapsed);
    }

    static string Errors(string text) =>
        string.Join('\n', text.Split('\n').Where(l => l.Contains(" error ", StringComparison.Ordinal)).Take(20)) + "\n" + Tail(text);

    static string Tail(string text) => text.Length <= 6000 ? text : "…" + text[^6000..];

    static bool IsUnder(string path, string root) =>
        Path.GetFullPath(path).StartsWith(Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)) + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notebooks.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Notebooks.sln above {AppContext.BaseDirectory}");
    }
}
