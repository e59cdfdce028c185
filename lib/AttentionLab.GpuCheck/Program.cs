using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>
/// The GPU check (environment/gpu/README.md): (a) load libtorch from ATTNLAB_TORCH_LIB_DIR and list what was loaded,
/// (b) report CUDA, (c) correctness on CUDA vs CPU, (d) the benchmark set with memory probes; CSV under --out.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        Options options;
        try { options = Options.Parse(args); }
        catch (HelpRequested) { Console.WriteLine(Options.Usage); return 0; }
        catch (ArgumentException e) { Console.Error.WriteLine($"attnlab-gpucheck: {e.Message}\n\n{Options.Usage}"); return 2; }

        if (!LoadTorch(options.ChildMethod is null, out string loadError))
        {
            Console.Error.WriteLine($"FAILED: libtorch did not load. {loadError}");
            return 2;
        }
        try
        {
            return options.ChildMethod is not null ? MemoryProbe.RunChild(options) : new CheckRun(options).Run();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"FAILED: unexpected error: {e}");
            return 3;
        }
    }

    /// <summary>
    /// Touching <see cref="TorchRuntime"/> runs the library's module initializer, which loads libtorch from
    /// ATTNLAB_TORCH_LIB_DIR; the first torch call then loads TorchSharp's native bridge against it.
    /// </summary>
    static bool LoadTorch(bool verbose, out string error)
    {
        error = "";
        string? dir = Environment.GetEnvironmentVariable(TorchRuntime.LibDirVariable);
        try
        {
            var libraries = TouchLibrary();
            if (verbose)
            {
                Console.WriteLine(string.IsNullOrWhiteSpace(dir)
                    ? $"libtorch: {TorchRuntime.LibDirVariable} is not set; libtorch comes from the build's own packages or LD_LIBRARY_PATH"
                    : $"libtorch: loaded from {TorchRuntime.LibDirVariable}={dir}:");
                foreach (var lib in libraries) Console.WriteLine($"  {lib}");
            }
            torch.set_num_threads(torch.get_num_threads());   // the first native call: loads libLibTorchSharp
            if (verbose) Console.WriteLine($"  native bridge: {NativeBridgePath() ?? "(not found in /proc/self/maps)"}");
            return true;
        }
        catch (Exception e)
        {
            var messages = new List<string>();
            for (Exception? x = e; x is not null; x = x.InnerException) messages.Add($"{x.GetType().Name}: {x.Message}");
            error = $"{TorchRuntime.LibDirVariable}='{dir}'. {string.Join(" <- ", messages)}\n" +
                    "Check that the folder is libtorch's lib/ (libc10.so, libtorch_cpu.so, libtorch.so) and run " +
                    "`ldd -r libLibTorchSharp.so` with LD_LIBRARY_PATH set to it: undefined symbols mean this libtorch is " +
                    $"not ABI-compatible with TorchSharp's native bridge (TorchSharp {typeof(torch).Assembly.GetName().Version}, built for libtorch " +
                    $"{BuiltFor()}).";
            return false;
        }
    }

    /// <summary>
    /// The libtorch version TorchSharp was built for, from the build (not from TorchSharp: when its native library does
    /// not load, touching the torch class makes TorchSharp copy ~480 MB of natives from a NuGet cache beside itself).
    /// </summary>
    static string BuiltFor() => typeof(Program).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .FirstOrDefault(a => a.Key == "LibTorchVersion")?.Value ?? "?";

    /// <summary>
    /// The first use of the AttentionLab assembly, in a method of its own: the module initializer then runs (and may
    /// throw) inside this call, not in the caller's prolog outside its try.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static IReadOnlyList<string> TouchLibrary() => TorchRuntime.ExternalLibraries;

    /// <summary>The libLibTorchSharp.so this process mapped (Linux), or null.</summary>
    public static string? NativeBridgePath() => LoadedLibraries().FirstOrDefault(p => p.EndsWith("libLibTorchSharp.so", StringComparison.Ordinal));

    /// <summary>Shared libraries mapped into this process (Linux /proc/self/maps), in load order, without duplicates.</summary>
    public static IReadOnlyList<string> LoadedLibraries()
    {
        if (!File.Exists("/proc/self/maps")) return Array.Empty<string>();
        return File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 6 && f[5].StartsWith('/') && f[5].Contains(".so"))
            .Select(f => f[5]).Distinct().ToList();
    }
}

/// <summary>One full run: environment, correctness, benchmarks, memory probes, summary.</summary>
sealed class CheckRun
{
    readonly Options options;
    readonly Stopwatch clock = Stopwatch.StartNew();
    readonly List<string> summary = new();

    public CheckRun(Options options) => this.options = options;

    string? summaryPath;

    /// <summary>Prints a line and keeps it in summary.txt (rewritten each time: a run cut short still has its summary).</summary>
    void Say(string line)
    {
        Console.WriteLine(line);
        summary.Add(line);
        if (summaryPath is not null) File.WriteAllLines(summaryPath, summary);
    }

    public int Run()
    {
        string outDir = Path.GetFullPath(options.OutDir);
        Directory.CreateDirectory(outDir);
        summaryPath = Path.Combine(outDir, "summary.txt");
        Console.WriteLine($"output: {outDir} · mode {(options.Quick ? "quick" : "full")} · time budget {options.Budget:F0} s");
        int threads = Environment.GetEnvironmentVariable(Lab.ThreadsVariable) is { Length: > 0 } t && int.TryParse(t, out int n) && n > 0
            ? n : Environment.ProcessorCount <= 2 ? 1 : torch.get_num_threads();
        torch.set_num_threads(threads);

        bool cudaAvailable = torch.cuda.is_available();
        Device device = options.Device switch
        {
            "cpu" => CPU,
            "cuda" => cudaAvailable ? CUDA : throw new InvalidOperationException("--device cuda, but CUDA is not available (CPU-only libtorch or no GPU)."),
            _ => cudaAvailable ? CUDA : CPU,
        };
        bool isCuda = device.type == DeviceType.CUDA;
        var nvml = Nvml.TryOpen(out string nvmlWhy);
        WriteEnvironment(outDir, cudaAvailable, device, threads, nvml, nvmlWhy);

        // (c) correctness
        var failures = new List<CheckRow>();
        Say(isCuda ? "correctness: every check on CUDA against CPU, and CPU against a CPU repeat (must be bit-identical)"
                   : cudaAvailable ? "correctness: CUDA comparisons skipped (--device cpu); CPU against a CPU repeat (must be bit-identical)"
                   : "correctness: CUDA not available on this machine, so CUDA-vs-CPU comparisons are skipped; " +
                     "CPU against a CPU repeat (must be bit-identical)");
        using (var csv = new CsvFile(Path.Combine(outDir, "correctness.csv"), "check", "case", "value", "compare", "max_abs_diff", "rms_rel", "allowed",
            "tolerance", "status"))
        {
            torch.set_num_threads(1);   // bit-identical CPU repeats need the same reduction order: one thread
            var rows = Correctness.Run(Correctness.Cases(), isCuda ? device : null, options.Perturb, row =>
            {
                csv.Row(row.Check, row.Case, row.Value, row.Compare, row.MaxAbsDiff, row.RmsRel, row.Allowed, row.Tolerance, row.Passed ? "pass" : "FAIL");
                Console.WriteLine(
                    $"  {(row.Passed ? "pass" : "FAIL")}  {row.Check} [{row.Case}] {row.Value}, {row.Compare}: max|Δ| {row.MaxAbsDiff:E2} (allowed " +
                    $"{row.Allowed:E1})");
            });
            torch.set_num_threads(threads);
            failures.AddRange(rows.Where(r => !r.Passed));
            Say($"correctness: {rows.Count - failures.Count}/{rows.Count} comparisons within tolerance" +
                (isCuda ? $"; largest CUDA-vs-CPU max|Δ| {rows.Where(r => r.Compare.StartsWith("cuda")).Select(r => r.MaxAbsDiff).DefaultIfEmpty(0).Max():E2}"
                    : ""));
        }
        try
        {
            CrossCheck.Export(Path.Combine(outDir, "xcheck"), device);
            Console.WriteLine($"cross-check inputs for Python torch: {Path.Combine(outDir, "xcheck")}");
        }
        catch (Exception e) { Say($"cross-check export failed: {e.GetType().Name}: {e.Message}"); }

        // (d) benchmarks
        if (options.Bench)
        {
            var bench = new BenchRunner(options, device, nvml, clock);
            var memory = options.Memory ? bench.ProbeMemory(Path.Combine(outDir, "memory.csv"))
                                        : new Dictionary<(string Key, long SeqLen), MemoryResult>();
            var rows = bench.Run(Path.Combine(outDir, "bench.csv"), memory);
            foreach (var line in BenchRunner.Table(rows)) Say(line);
        }

        Say($"total {clock.Elapsed.TotalSeconds:F1} s");
        if (failures.Count > 0)
        {
            Say($"FAILED: {failures.Count} correctness comparison(s) out of tolerance:");
            foreach (var f in failures.Take(20))
                Say($"  {f.Check} [{f.Case}] {f.Value}, {f.Compare}: max|Δ| {f.MaxAbsDiff:E3} > allowed {f.Allowed:E2}");
        }
        else Say("OK: every correctness check passed.");
        return failures.Count > 0 ? 1 : 0;
    }

    void WriteEnvironment(string outDir, bool cudaAvailable, Device device, int threads, Nvml? nvml, string nvmlWhy)
    {
        var env = new List<(string Key, string Value)>
        {
            ("date_utc", DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)),
            ("machine", Environment.MachineName),
            ("os", RuntimeInformation.OSDescription),
            ("dotnet", RuntimeInformation.FrameworkDescription),
            ("cpu_cores", Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture)),
            ("torch_threads", threads.ToString(CultureInfo.InvariantCulture)),
            ("attentionlab", $"{BuildInfo.Current.Version} (backend {BuildInfo.Current.Backend})"),
            ("torchsharp", typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                ?? typeof(torch).Assembly.GetName().Version?.ToString() ?? "?"),
            ("torchsharp_built_for_libtorch", torch.__version__),
            ("torch_lib_dir", Environment.GetEnvironmentVariable(TorchRuntime.LibDirVariable) ?? ""),
            ("loaded_from_lib_dir", string.Join(" ", TorchRuntime.ExternalLibraries.Select(Path.GetFileName))),
            ("native_bridge", Program.NativeBridgePath() ?? ""),
            ("cuda_available", cudaAvailable ? "true" : "false"),
            ("cuda_device_count", cudaAvailable ? torch.cuda.device_count().ToString(CultureInfo.InvariantCulture) : "0"),
            ("cudnn_available", cudaAvailable && torch.cuda.is_cudnn_available() ? "true" : "false"),
            ("device", device.ToString()),
            ("mode", options.Quick ? "quick" : "full"),
        };
        if (nvml is null) env.Add(("nvml", $"not available: {nvmlWhy}"));
        else
        {
            env.Add(("driver", nvml.DriverVersion()));
            for (int i = 0; i < nvml.DeviceCount(); i++)
            {
                env.Add(($"gpu{i}_name", nvml.DeviceName(i)));
                if (nvml.Memory(i) is { } m) env.Add(($"gpu{i}_memory_total_mib", (m.Total / 1048576).ToString(CultureInfo.InvariantCulture)));
            }
        }
        // Every CUDA library this process mapped: shows which libtorch_cuda, cudart, cuBLAS and cuDNN were used.
        var cudaLibs = Program.LoadedLibraries().Where(p => p.Contains("cuda") || p.Contains("cublas") || p.Contains("cudnn") || p.Contains("torch")).ToList();
        env.Add(("mapped_torch_and_cuda_libraries", string.Join(" ", cudaLibs)));
        using var csv = new CsvFile(Path.Combine(outDir, "environment.csv"), "key", "value");
        foreach (var (key, value) in env)
        {
            csv.Row(key, value);
            if (key != "mapped_torch_and_cuda_libraries") Console.WriteLine($"  {key}: {value}");
        }
        Say($"device {device} · CUDA available {cudaAvailable}"
            + (nvml is not null && nvml.DeviceCount() > 0 ? $" · {nvml.DeviceName(0)} · driver {nvml.DriverVersion()}" : ""));
    }
}
