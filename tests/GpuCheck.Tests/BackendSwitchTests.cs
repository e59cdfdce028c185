using System.Diagnostics;
using System.Text.Json.Nodes;

namespace GpuCheck.Tests;

/// <summary>
/// -p:TorchBackend=cuda|external reaches every project that uses torch (we cannot restore TorchSharp-cuda-linux here,
/// so this reads NuGet's restore graph, which MSBuild builds from the same evaluation a restore would use).
/// </summary>
public sealed class BackendSwitchTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("cuda", "TorchSharp-cuda-linux")]
    [InlineData("external", "TorchSharp")]
    public async Task Every_torch_project_gets_the_chosen_backend_and_nothing_else(string backend, string expected)
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Notebooks.sln"))) root = Path.GetDirectoryName(root)!;
        string graph = Path.Combine(Path.GetTempPath(), $"attnlab-restore-graph-{backend}-{Environment.ProcessId}.json");
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "msbuild", "Notebooks.sln", "-t:GenerateRestoreGraphFile", $"-p:TorchBackend={backend}",
                     $"-p:RestoreGraphOutputPath={graph}", "-nologo", "-v:q", "-nodeReuse:false" })
            info.ArgumentList.Add(a);
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await p.WaitForExitAsync(timeout.Token);
        output.WriteLine(await stdout + await stderr);
        Assert.Equal(0, p.ExitCode);

        var projects = JsonNode.Parse(File.ReadAllText(graph))!["projects"]!.AsObject();
        File.Delete(graph);
        var torchProjects = new List<string>();
        foreach (var (path, project) in projects)
        {
            var deps = project!["frameworks"]!.AsObject().SelectMany(f => f.Value!["dependencies"]?.AsObject().Select(d => d.Key) ?? Enumerable.Empty<string>())
                .Where(d => d.Contains("torch", StringComparison.OrdinalIgnoreCase)).ToList();
            string name = Path.GetFileNameWithoutExtension(path);
            output.WriteLine($"{name}: {string.Join(", ", deps)}");
            if (deps.Count == 0) continue;
            torchProjects.Add(name);
            Assert.Equal(new[] { expected }, deps);                                    // no cpu libtorch, no second TorchSharp
        }
        // At least these use torch (others, e.g. AttentionLab.Bench, may join; each must get the same package).
        Assert.Subset(torchProjects.ToHashSet(), new HashSet<string> { "AttentionLab", "AttentionLab.GpuCheck", "AttentionLab.Tests" });
    }
}
