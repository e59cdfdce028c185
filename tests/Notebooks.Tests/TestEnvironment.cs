using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>Shared helpers: the repo root, tool restore, temp folders, notebook files, folder hashes, kernel processes.</summary>
public static class TestEnvironment
{
    public static string RepoRoot { get; } = RepoLocator.TryFind(AppContext.BaseDirectory)
        ?? throw new InvalidOperationException("tests must run inside the repository (no Notebooks.sln above the test binaries)");

    static readonly Lazy<string> restored = new(() => Dotnet(RepoRoot, "tool restore"));

    /// <summary>Runs `dotnet tool restore` once per test run (the kernel is a pinned local tool).</summary>
    public static void EnsureKernelTool() => _ = restored.Value;

    /// <summary>Runs dotnet with <paramref name="args"/>; throws with its output when it fails.</summary>
    public static string Dotnet(string workingDir, string args, int timeoutSeconds = 600)
    {
        var psi = new ProcessStartInfo("dotnet", args)
        {
            WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {args} ran over {timeoutSeconds} s");
        }
        string output = stdout.Result + stderr.Result;
        if (p.ExitCode != 0) throw new InvalidOperationException($"dotnet {args} failed ({p.ExitCode}):\n{Tail(output, 3000)}");
        return output;
    }

    public static string Tail(string text, int chars) => text.Length <= chars ? text : text[^chars..];

    /// <summary>A new empty folder under the system temp folder.</summary>
    public static string TempFolder(string prefix)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"attnlab-{prefix}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void DeleteQuietly(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Writes a Polyglot-style .ipynb: ("md", text) for markdown, ("cs", code) for C#, ("fs", code) for F#.</summary>
    public static string WriteNotebook(string folder, string name, params (string Kind, string Source)[] cells)
    {
        var array = new JsonArray();
        foreach (var (kind, source) in cells)
        {
            var lineList = SplitLines(source);
            if (kind == "md")
            {
                array.Add(new JsonObject { ["cell_type"] = "markdown", ["metadata"] = new JsonObject(), ["source"] = lineList });
                continue;
            }
            string kernel = kind == "fs" ? "fsharp" : "csharp";
            array.Add(new JsonObject
            {
                ["cell_type"] = "code",
                ["execution_count"] = null,
                ["metadata"] = new JsonObject
                {
                    ["dotnet_interactive"] = new JsonObject { ["language"] = kernel },
                    ["polyglot_notebook"] = new JsonObject { ["kernelName"] = kernel },
                },
                ["outputs"] = new JsonArray(),
                ["source"] = lineList,
            });
        }
        var notebook = new JsonObject
        {
            ["cells"] = array,
            ["metadata"] = JsonNode.Parse("""
                {"kernelspec": {"display_name": ".NET (C#)", "language": "C#", "name": ".net-csharp"},
                 "language_info": {"name": "polyglot-notebook"},
                 "polyglot_notebook": {"kernelInfo": {"defaultKernelName": "csharp", "items": [{"aliases": [], "name": "csharp"}]}}}
                """),
            ["nbformat"] = 4,
            ["nbformat_minor"] = 5,
        };
        string path = Path.Combine(folder, name + ".ipynb");
        File.WriteAllText(path, notebook.ToJsonString(new() { WriteIndented = true }));
        return path;
    }

    static JsonArray SplitLines(string source)
    {
        var parts = source.Split('\n');
        return new JsonArray(parts.Select((l, i) => (JsonNode?)JsonValue.Create(i < parts.Length - 1 ? l + "\n" : l)).Where(
            n => n!.GetValue<string>().Length > 0).ToArray());
    }

    /// <summary>SHA-256 over every file's relative path and bytes, plus the folder list.</summary>
    public static string HashFolder(string folder)
    {
        using var sha = SHA256.Create();
        var sb = new StringBuilder();
        foreach (var entry in Directory.EnumerateFileSystemEntries(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            sb.Append(Path.GetRelativePath(folder, entry)).Append('\n');
            if (File.Exists(entry)) sb.Append(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(entry)))).Append('\n');
        }
        return Convert.ToHexString(sha.ComputeHash(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>Processes whose command line mentions <paramref name="text"/> (Linux /proc; empty elsewhere).</summary>
    public static List<int> ProcessesMentioning(string text)
    {
        var found = new List<int>();
        if (!OperatingSystem.IsLinux()) return found;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid) || pid == Environment.ProcessId) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ').Contains(text, StringComparison.Ordinal)) found.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return found;
    }
}
