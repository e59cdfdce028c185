using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;

namespace Notebooks.Tests;

/// <summary>A fact that is skipped, with the reason shown, when Jupyter's commands are not on PATH.</summary>
public sealed class JupyterFactAttribute : FactAttribute
{
    /// <summary>The commands the README's Jupyter route needs (Debian packages jupyter-nbconvert, jupyter-client, jupyter-nbformat).</summary>
    public static readonly string[] Commands = ["jupyter", "jupyter-nbconvert", "jupyter-kernelspec", "jupyter-trust"];

    public JupyterFactAttribute()
    {
        var missing = Commands.Where(c => JupyterTests.FindOnPath(c) is null).ToList();
        if (missing.Count > 0)
            Skip = $"Jupyter is not installed (no {string.Join(", ", missing)} on PATH): " +
                   "apt-get install -y jupyter-notebook jupyter-nbconvert jupyter-client jupyter-nbformat, then run this test.";
        else if (!OperatingSystem.IsLinux())
            Skip = "the listening-socket check reads /proc (Linux only)";
    }
}

/// <summary>
/// The README's Jupyter route: environment/jupyter/install.sh registers the kernel into a temporary Jupyter data folder,
/// `jupyter nbconvert --execute` runs 00-getting-started copied outside the repository (ATTNLAB_LIB points at the
/// library), and while it runs every listening TCP socket of nbconvert's process tree must be on loopback.
/// </summary>
public sealed class JupyterTests(ITestOutputHelper output)
{
    public static string? FindOnPath(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, command)).FirstOrDefault(File.Exists);

    [Fact]
    public void The_readme_shows_the_install_script()
    {
        string readme = File.ReadAllText(Path.Combine(TestEnvironment.RepoRoot, "README.md"));
        Assert.Contains("./environment/jupyter/install.sh", readme);
        Assert.Contains("ATTNLAB_LIB", readme);
    }

    [JupyterFact]
    public void The_readme_route_registers_a_loopback_only_kernel_that_executes_a_notebook_from_any_folder()
    {
        output.WriteLine($"library build: {TestEnvironment.Tail(NotebookTests.LibraryBuild.Value, 400)}");
        string root = TestEnvironment.TempFolder("jupyter");
        var env = new Dictionary<string, string?>
        {
            ["JUPYTER_DATA_DIR"] = Path.Combine(root, "data"),
            ["JUPYTER_CONFIG_DIR"] = Path.Combine(root, "config"),
            ["JUPYTER_RUNTIME_DIR"] = Path.Combine(root, "runtime"),
            ["JUPYTER_PATH"] = null,
            ["ATTNLAB_LIB"] = Path.Combine(TestEnvironment.RepoRoot, "artifacts", "lib"),
            ["ATTNLAB_SIZE"] = "smoke",
        };

        // The README's step, verbatim, from the repository root.
        var install = Run("bash", ["-c", "./environment/jupyter/install.sh"], TestEnvironment.RepoRoot, env, 300);
        output.WriteLine(install.Output);
        Assert.True(install.Code == 0, $"install.sh failed ({install.Code}):\n{install.Output}");
        string kernelJson = File.ReadAllText(Path.Combine(root, "data", "kernels", ".net-csharp", "kernel.json"));
        output.WriteLine(kernelJson);
        Assert.Contains("--http-local-only", kernelJson);

        // 00-getting-started outside the repository: the kernel must start there (no tool manifest) and find the library.
        string folder = Path.Combine(root, "elsewhere"), outDir = Path.Combine(root, "out");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(TestEnvironment.RepoRoot, "notebooks", "00-getting-started.ipynb"), Path.Combine(folder, "00-getting-started.ipynb"));
        var listening = new SortedSet<string>(StringComparer.Ordinal);
        var nonLoopback = new SortedSet<string>(StringComparer.Ordinal);
        var watch = Stopwatch.StartNew();
        var execute = Run("jupyter", ["nbconvert", "--to", "notebook", "--execute", "00-getting-started.ipynb", "--output-dir", outDir,
            "--ExecutePreprocessor.timeout=300"], folder, env, 240, pid =>
        {
            foreach (var (endpoint, process) in ListeningSockets(ProcessTree(pid)))
            {
                listening.Add($"{endpoint} {process}");
                var address = endpoint.Address.IsIPv4MappedToIPv6 ? endpoint.Address.MapToIPv4() : endpoint.Address;
                if (!IPAddress.IsLoopback(address)) nonLoopback.Add($"{endpoint} {process}");
            }
        });
        output.WriteLine($"nbconvert: {watch.Elapsed.TotalSeconds:F1} s, exit {execute.Code}\n{TestEnvironment.Tail(execute.Output, 3000)}");
        output.WriteLine("listening sockets of nbconvert's process tree while it ran:\n  " + string.Join("\n  ", listening));
        Assert.True(execute.Code == 0, $"nbconvert --execute failed ({execute.Code}):\n{TestEnvironment.Tail(execute.Output, 3000)}");
        Assert.True(nonLoopback.Count == 0, "the kernel listened beyond loopback:\n  " + string.Join("\n  ", nonLoopback));
        Assert.Contains(listening, s => s.Contains(" dotnet", StringComparison.Ordinal) &&
            int.Parse(s.Split(' ')[0].Split(':')[^1], CultureInfo.InvariantCulture) is >= 2048 and <= 3000);   // the HTTP endpoint was seen

        string executed = Path.Combine(outDir, "00-getting-started.ipynb");
        var cells = JsonNode.Parse(File.ReadAllText(executed))!["cells"]!.AsArray().Where(c => (string?)c!["cell_type"] == "code").ToList();
        Assert.All(cells, c => Assert.DoesNotContain(c!["outputs"]!.AsArray(), o => (string?)o!["output_type"] == "error"));
        Assert.Contains(cells, c => c!["outputs"]!.AsArray().Count > 0);

        // Executed notebooks open untrusted; `jupyter trust` signs them for this user (the README says so).
        var trust = Run("jupyter", ["trust", executed], folder, env, 60);
        var again = Run("jupyter", ["trust", executed], folder, env, 60);
        Assert.Contains("Signing notebook", trust.Output);
        Assert.Contains("already signed", again.Output);
        TestEnvironment.DeleteQuietly(root);
    }

    static (int Code, string Output) Run(string file, string[] args, string workingDir, Dictionary<string, string?> env, int timeoutSeconds,
        Action<int>? whileRunning = null)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in env)
        {
            if (v is null) info.Environment.Remove(k);
            else info.Environment[k] = v;
        }
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var deadline = Stopwatch.StartNew();
        while (!p.WaitForExit(200))
        {
            whileRunning?.Invoke(p.Id);
            if (deadline.Elapsed.TotalSeconds > timeoutSeconds)
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail($"{file} {string.Join(' ', args)} ran over {timeoutSeconds} s");
            }
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary><paramref name="root"/> and its descendants (from /proc/N/stat's parent field).</summary>
    static HashSet<int> ProcessTree(int root)
    {
        var parent = new Dictionary<int, int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                parent[pid] = int.Parse(fields[1], CultureInfo.InvariantCulture);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var tree = new HashSet<int> { root };
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var (pid, ppid) in parent)
                if (tree.Contains(ppid) && tree.Add(pid)) grew = true;
        }
        return tree;
    }

    /// <summary>The TCP sockets in LISTEN state (/proc/net/tcp and tcp6) owned by <paramref name="pids"/>, with the owner's name and id.</summary>
    static List<(IPEndPoint Endpoint, string Process)> ListeningSockets(HashSet<int> pids)
    {
        var owner = new Dictionary<string, string>();
        foreach (int pid in pids)
        {
            try
            {
                string name = File.ReadAllText($"/proc/{pid}/comm").Trim();
                foreach (var fd in Directory.EnumerateFiles($"/proc/{pid}/fd"))
                    if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith("socket:[", StringComparison.Ordinal))
                        owner[target[8..^1]] = $"{name}[{pid}]";
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var found = new List<(IPEndPoint, string)>();
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            if (!File.Exists(table)) continue;
            foreach (var line in File.ReadAllLines(table).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length < 10 || f[3] != "0A" || !owner.TryGetValue(f[9], out var process)) continue;   // 0A = LISTEN
                var parts = f[1].Split(':');
                found.Add((new IPEndPoint(ParseAddress(parts[0]), int.Parse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture)), process));
            }
        }
        return found;
    }

    /// <summary>/proc/net/tcp* addresses: 32-bit words in hex, each in host (little-endian) byte order.</summary>
    static IPAddress ParseAddress(string hex)
    {
        var bytes = new byte[hex.Length / 2];
        for (int word = 0; word < hex.Length / 8; word++)
            for (int b = 0; b < 4; b++)
                bytes[word * 4 + b] = byte.Parse(hex.AsSpan(word * 8 + (3 - b) * 2, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return new IPAddress(bytes);
    }
}
