using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>
/// Peak memory of one benchmark call, measured in a fresh process (this program with --child-memory). A short warm-up
/// call first loads kernels and creates library handles; then the case's inputs are made, and the one measured call's
/// growth is reported. CUDA: NVML device memory used after minus before (torch's caching allocator keeps what it
/// reserved, so this is the peak it reserved for the call, beyond the inputs; lazily loaded kernels included). CPU:
/// the library's <see cref="Benchmark.PeakMemory"/> (process peak RSS).
/// </summary>
public static class MemoryProbe
{
    const string Marker = "ATTNLAB_MEMORY";

    public static int RunChild(Options options)
    {
        var method = BenchSuite.Methods().SingleOrDefault(m => m.Key == options.ChildMethod)
            ?? throw new ArgumentException($"--child-memory: no method '{options.ChildMethod}'.");
        bool cuda = options.Device != "cpu" && torch.cuda.is_available();
        var device = cuda ? CUDA : CPU;
        torch.set_num_threads(Environment.ProcessorCount <= 2 ? 1 : torch.get_num_threads());
        var shape = BenchSuite.Shape(options.Quick, options.ChildSeqLen);
        using var noGrad = torch.no_grad();
        using (var warm = new BenchInputs(shape with { SeqLen = Math.Min(32, shape.SeqLen) }, method.Dtype, device))
        using (var scope = NewDisposeScope())
            method.Run(warm);
        using var inputs = new BenchInputs(shape, method.Dtype, device);
        if (cuda)
        {
            torch.cuda.synchronize();
            var nvml = Nvml.TryOpen(out string why);
            if (nvml?.Memory(0) is not { } before)
            {
                Console.WriteLine($"{Marker} unavailable: NVML {(nvml is null ? why : "gave no memory info")}");
                return 0;
            }
            using (var scope = NewDisposeScope()) method.Run(inputs);
            torch.cuda.synchronize();
            var after = nvml.Memory(0)!.Value;
            Console.WriteLine(
                $"{Marker} bytes={Math.Max(0, after.Used - before.Used)} how=NVML device memory growth during one call in a fresh process (torch caching " +
                "allocator reserve; inputs excluded)");
            return 0;
        }
        var m = Benchmark.PeakMemory(() => method.Run(inputs));
        Console.WriteLine(m.DeltaBytes is { } d ? $"{Marker} bytes={d} how={m.Method}, one call in a fresh process" : $"{Marker} unavailable: {m.Method}");
        return 0;
    }

    /// <summary>Runs a child probe; returns (bytes, how measured, error text when there are no bytes).</summary>
    public static (long? Bytes, string How, string Error) Spawn(Options options, string key, long seqLen, TimeSpan timeout)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var info = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")                   // started as `dotnet attnlab-gpucheck.dll`
            info.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in options.ChildArguments(key, seqLen)) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {self}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            return (null, "", $"timed out after {timeout.TotalSeconds:F0} s");
        }
        process.WaitForExit();
        string output = stdout.Result;
        var line = output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith(Marker, StringComparison.Ordinal));
        if (process.ExitCode != 0 || line is null)
        {
            string err = (stderr.Result + "\n" + output).Trim();
            string first = err.Split('\n').FirstOrDefault(l => l.Contains("memory", StringComparison.OrdinalIgnoreCase) || l.Contains("FAILED"))
                ?? err.Split('\n').FirstOrDefault() ?? "";
            return (null, "", $"probe exited {process.ExitCode}: {first.Trim()}");
        }
        string rest = line[Marker.Length..].Trim();
        if (rest.StartsWith("unavailable", StringComparison.Ordinal)) return (null, "", rest);
        int how = rest.IndexOf(" how=", StringComparison.Ordinal);
        long bytes = long.Parse(rest[6..how], CultureInfo.InvariantCulture);
        return (bytes, rest[(how + 5)..], "");
    }
}
