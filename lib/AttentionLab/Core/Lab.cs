using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Core;

/// <summary>The settings one notebook or program runs with, as chosen by <see cref="Lab.Setup"/>.</summary>
public sealed record LabContext(Device Device, int Threads, int Seed, RunSize Size, BuildInfo Build)
{
    public bool IsSmoke => Size == RunSize.Smoke;
    public bool IsCuda => Device.type == DeviceType.CUDA;

    /// <summary>Picks the Smoke or the Full value.</summary>
    public T Pick<T>(T smoke, T full) => IsSmoke ? smoke : full;

    public override string ToString() =>
        $"device {Device} · threads {Threads} · seed {Seed} · size {Size.ToString().ToLowerInvariant()}";
}

/// <summary>
/// One call at the top of every notebook: device, threads, seed, size, chart/table display, and the build stamp.
/// Environment overrides: ATTNLAB_DEVICE (cpu, cuda, cuda:N), ATTNLAB_THREADS (1 to the core count), ATTNLAB_SEED,
/// ATTNLAB_SIZE (smoke|full), ATTNLAB_HEAP (tuned|default). A value outside these is an ArgumentException naming the variable.
/// </summary>
public static class Lab
{
    public const string DeviceVariable = "ATTNLAB_DEVICE";
    public const string ThreadsVariable = "ATTNLAB_THREADS";
    public const string SeedVariable = "ATTNLAB_SEED";
    public const string SizeVariable = "ATTNLAB_SIZE";

    static LabContext? current;

    /// <summary>The context of the last <see cref="Setup"/>; a CPU/smoke default when Setup was never called.</summary>
    public static LabContext Current => current ??= Configure(seed: 0, quiet: true);

    public static Device Device => Current.Device;
    public static RunSize Size => Current.Size;

    /// <summary>
    /// Chooses the device (CUDA when available, else CPU), sets torch threads (1 on machines with ≤ 2 cores) and the
    /// seed, reads the run size, makes Plotly.NET charts and DataFrames display as HTML in a notebook, and prints
    /// one line with all of it plus the library's build stamp (and a warning when the sources are newer).
    /// </summary>
    public static LabContext Setup(int seed = 0) => current = Configure(seed, quiet: false);

    static LabContext Configure(int seed, bool quiet)
    {
        string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v.Trim() : null;

        var device = ChooseDevice(Env(DeviceVariable));
        int threads = ParseThreads(Env(ThreadsVariable), Environment.ProcessorCount, warning => Console.WriteLine($"WARNING: {warning}"))
                      ?? (Environment.ProcessorCount <= 2 ? 1 : torch.get_num_threads());
        torch.set_num_threads(threads);
        NativeHeap.Tune();                                                               // keep tensor memory on the heap (ATTNLAB_HEAP=default: off)
        seed = ParseInt(Env(SeedVariable), SeedVariable, min: 0) ?? seed;
        torch.manual_seed(seed);
        var size = ParseSize(Env(SizeVariable));
        NotebookDisplay.Register();

        var ctx = new LabContext(device, torch.get_num_threads(), seed, size, BuildInfo.Current);
        if (!quiet)
        {
            Console.WriteLine($"{ctx.Build.Describe(DateTimeOffset.UtcNow)}");
            Console.WriteLine($"{ctx}");
            var stale = ctx.Build.NewerSources();
            if (stale.Count > 0)
                Console.WriteLine($"WARNING: {stale.Count} library source file(s) changed after this build (e.g. " +
                    $"{Path.GetFileName(stale[0])}); rebuild with `dotnet build lib/AttentionLab` and restart the kernel.");
        }
        return ctx;
    }

    /// <summary>cpu, cuda or cuda:N; null chooses CUDA when available.</summary>
    public static Device ChooseDevice(string? requested)
    {
        if (requested is null) return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
        string r = requested.ToLowerInvariant();
        if (r == "cpu") return torch.CPU;
        if (r == "cuda" || r.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!torch.cuda.is_available())
                throw new ArgumentException($"{DeviceVariable}='{requested}' asks for CUDA, but CUDA is not available " +
                    "(CPU-only libtorch, or no GPU). Build with -p:TorchBackend=cuda on a CUDA machine, or use cpu.", DeviceVariable);
            int index = r == "cuda" ? 0 : ParseInt(r[5..], DeviceVariable, min: 0)!.Value;
            if (index >= torch.cuda.device_count())
                throw new ArgumentException($"{DeviceVariable}='{requested}': only {torch.cuda.device_count()} CUDA device(s).", DeviceVariable);
            return torch.device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"{DeviceVariable}='{requested}' is not cpu, cuda or cuda:N.", DeviceVariable);
    }

    /// <summary>smoke (default) or full.</summary>
    public static RunSize ParseSize(string? text) => text?.ToLowerInvariant() switch
    {
        null or "smoke" => RunSize.Smoke,
        "full" => RunSize.Full,
        _ => throw new ArgumentException($"{SizeVariable}='{text}' is not smoke or full.", SizeVariable),
    };

    /// <summary>
    /// ATTNLAB_THREADS: an integer ≥ 1; null when unset. More threads than <paramref name="processorCount"/> cores only
    /// slows torch down (2 threads on 2 shared cores measured 2–10× slower than 1), so such a value is clamped to the core
    /// count and <paramref name="warn"/> is told why.
    /// </summary>
    public static int? ParseThreads(string? text, int processorCount, Action<string> warn)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(processorCount, 1);
        ArgumentNullException.ThrowIfNull(warn);
        int? threads = ParseInt(text, ThreadsVariable, min: 1);
        if (threads > processorCount)
        {
            warn($"{ThreadsVariable}={threads} is more than this machine's {processorCount} core(s); using {processorCount} torch thread(s).");
            return processorCount;
        }
        return threads;
    }

    static int? ParseInt(string? text, string name, int min)
    {
        if (text is null) return null;
        if (!int.TryParse(text, out int v) || v < min)
            throw new ArgumentException($"{name}='{text}' is not an integer ≥ {min}.", name);
        return v;
    }
}
