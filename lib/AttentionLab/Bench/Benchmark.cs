using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Bench;

/// <summary>Wall-clock time of repeated calls, in milliseconds.</summary>
public sealed record TimingStats(double MedianMs, double MinMs, double MaxMs, int Repeats)
{
    public override string ToString() => $"median {MedianMs:F3} ms (min {MinMs:F3}, max {MaxMs:F3}, n={Repeats})";
}

/// <summary>
/// Peak memory of one call, as far as the platform lets us see it. <see cref="Method"/> says what was measured;
/// null bytes mean "not available".
/// </summary>
public sealed record MemoryStats(long? PeakBytes, long? BaselineBytes, string Method)
{
    /// <summary>Peak − baseline: the growth during the call (null when unavailable).</summary>
    public long? DeltaBytes => PeakBytes is { } p && BaselineBytes is { } b ? Math.Max(0, p - b) : null;
    public override string ToString() => DeltaBytes is { } d ? $"+{d / 1048576.0:F1} MiB ({Method})" : $"not available ({Method})";
}

/// <summary>
/// A minimal benchmark harness: warm-up, repeats, median/min/max (with a CUDA synchronize around each call), and
/// the process's peak resident memory during a call. Benchmarks print tables; tests never assert timings.
/// </summary>
public static class Benchmark
{
    /// <summary>
    /// Times <paramref name="action"/>: <paramref name="warmup"/> untimed calls, then <paramref name="repeats"/> timed ones.
    /// On CUDA the device is synchronised before the clock starts and before it is read (kernels run asynchronously).
    /// <paramref name="device"/> is where the action runs; null synchronises CUDA whenever CUDA is available.
    /// </summary>
    public static TimingStats Time(Action action, int warmup = 1, int repeats = 5, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(action);
        if (repeats <= 0) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "repeats must be positive.");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "warmup must be ≥ 0.");
        bool cuda = device is null ? cudaAvailable.Value : device.type == DeviceType.CUDA;
        for (int i = 0; i < warmup; i++) Run(action, cuda);
        var ms = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            if (cuda) torch.cuda.synchronize();
            var clock = Stopwatch.StartNew();
            Run(action, cuda);
            ms[i] = clock.Elapsed.TotalMilliseconds;
        }
        Array.Sort(ms);
        double median = repeats % 2 == 1 ? ms[repeats / 2] : 0.5 * (ms[repeats / 2 - 1] + ms[repeats / 2]);
        return new TimingStats(median, ms[0], ms[^1], repeats);
    }

    static readonly Lazy<bool> cudaAvailable = new(() => torch.cuda.is_available());

    static void Run(Action action, bool cuda)
    {
        using (var scope = NewDisposeScope()) action();
        if (cuda) torch.cuda.synchronize();
    }

    /// <summary>
    /// A length sweep over several methods: the timings of every (length, method) first, then (when asked) the peak
    /// memory of each, so no timing runs on the allocator settings of a memory probe. <paramref name="forEachMethod"/>(T, body) builds
    /// the inputs for length T and calls body(name, run) once per method; <paramref name="row"/> makes the result row from
    /// (method, T, timing, peak MiB or null).
    /// </summary>
    public static IReadOnlyList<TRow> Sweep<TRow>(IEnumerable<int> lengths, Action<int, Action<string, Action>> forEachMethod,
        Func<string, int, TimingStats, double?, TRow> row, int warmup = 1, int repeats = 3, Device? device = null, bool measureMemory = false,
        IProgress<TRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(forEachMethod);
        ArgumentNullException.ThrowIfNull(row);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        // Timings first, then the memory pass: a peak-memory measurement changes the allocator's settings for its call
        // (see PeakMemory), so nothing is timed after one.
        var timings = new List<(int T, string Name, TimingStats Time)>();
        foreach (int t in ts)
            forEachMethod(t, (name, run) =>
            {
                var time = Time(run, warmup, repeats, device);
                timings.Add((t, name, time));
                if (!measureMemory) progress?.Report(row(name, t, time, null));
            });
        var memory = new Dictionary<(int, string), double?>();
        if (measureMemory)
            foreach (int t in ts)
                forEachMethod(t, (name, run) => memory[(t, name)] = PeakMemory(run).DeltaBytes is { } d ? d / 1048576.0 : null);
        var rows = timings.Select(x => row(x.Name, x.T, x.Time, memory.GetValueOrDefault((x.T, x.Name)))).ToList();
        if (measureMemory) foreach (var r in rows) progress?.Report(r);
        return rows;
    }

    /// <summary>
    /// On Linux: resets the process's resident-set high-water mark (writes "5" to /proc/self/clear_refs), runs the
    /// call, and reads VmHWM from /proc/self/status. This is the whole process (libtorch's CPU allocations, the .NET
    /// heap, anything else running) and page-granular; free heap pages are returned to the OS first (malloc_trim) and
    /// large blocks always get their own mapping, so reused memory still counts; GPU memory is not in it. Elsewhere (or when /proc is not writable) it reports
    /// "not available".
    /// </summary>
    public static MemoryStats PeakMemory(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        const string method = "process peak RSS (Linux VmHWM) minus RSS at the start of the call";
        FixMallocThreshold();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        ReleaseFreeHeapPages();
        // Reset first, then read the baseline from the reset high-water mark itself (= RSS at the reset): reading RSS
        // before the reset let memory freed in between (finalizers, other threads) hide the call's growth.
        bool reset = OperatingSystem.IsLinux() && TryResetPeak();
        long? baseline = reset ? ReadStatusKb("VmHWM") : null;
        try { using var scope = NewDisposeScope(); action(); }
        finally { RestoreMallocThresholds(); }
        if (!reset || baseline is null) return new MemoryStats(null, null,
            OperatingSystem.IsLinux() ? "not available: /proc/self/clear_refs not writable" : "not available on this OS");
        return new MemoryStats(ReadStatusKb("VmHWM") * 1024, baseline * 1024, method);
    }

    /// <summary>The line a child process prints for <see cref="PeakMemoryInChildProcess"/>: "ATTNLAB_PEAK peak=… baseline=… method=…".</summary>
    public const string ChildReportMarker = "ATTNLAB_PEAK";

    /// <summary>
    /// Writes <paramref name="stats"/> as the one line <see cref="PeakMemoryInChildProcess"/> reads (a child program calls this
    /// after its own <see cref="PeakMemory"/>).
    /// </summary>
    public static void ReportToParent(MemoryStats stats, TextWriter? output = null)
    {
        ArgumentNullException.ThrowIfNull(stats);
        static string B(long? b) => b is { } v ? v.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-";
        (output ?? Console.Out).WriteLine($"{ChildReportMarker} peak={B(stats.PeakBytes)} baseline={B(stats.BaselineBytes)} method={stats.Method}");
    }

    /// <summary>
    /// <see cref="PeakMemory"/> measured in a fresh process: runs <paramref name="child"/> (a program that makes one measured call
    /// and reports it with <see cref="ReportToParent"/>) and reads its report. The in-process probe sees the whole process, so
    /// memory freed by other threads during the call (parallel tests, the GC, finalizers) can hide the call's growth; a child
    /// that does nothing else has no such neighbours, and other processes (machine load) do not change its resident set.
    /// Throws InvalidOperationException when the child fails, times out or prints no report.
    /// </summary>
    public static MemoryStats PeakMemoryInChildProcess(ProcessStartInfo child, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(child);
        if (timeout <= TimeSpan.Zero) throw new ArgumentException("timeout must be positive.", nameof(timeout));
        child.RedirectStandardOutput = true;
        child.RedirectStandardError = true;
        child.UseShellExecute = false;
        using var process = Process.Start(child) ?? throw new InvalidOperationException($"could not start {child.FileName}");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"the memory probe child {child.FileName} {child.Arguments} ran past {timeout.TotalSeconds:0} s");
        }
        process.WaitForExit();
        string output = stdout.Result;
        string? line = output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith(ChildReportMarker + " ", StringComparison.Ordinal));
        if (process.ExitCode != 0 || line is null)
            throw new InvalidOperationException(
                $"the memory probe child exited {process.ExitCode} without a {ChildReportMarker} line; stdout: {Tail(output)} stderr: {Tail(stderr.Result)}");
        return ParseChildReport(line);
    }

    /// <summary>Reads one <see cref="ReportToParent"/> line back.</summary>
    public static MemoryStats ParseChildReport(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        var m = System.Text.RegularExpressions.Regex.Match(line, @"^" + ChildReportMarker + @" peak=(\d+|-) baseline=(\d+|-) method=(.*)$");
        if (!m.Success) throw new ArgumentException($"not a {ChildReportMarker} line: '{line}'", nameof(line));
        static long? N(string s) => s == "-" ? null : long.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
        return new MemoryStats(N(m.Groups[1].Value), N(m.Groups[2].Value), m.Groups[3].Value + ", in a fresh child process");
    }

    static string Tail(string text) => text.Length <= 800 ? text.Trim() : "…" + text[^800..].Trim();

    /// <summary>
    /// glibc raises its mmap threshold (up to 32 MiB) each time a large mmapped block is freed, after which large
    /// tensors come from the heap and are reused without touching new pages: peak RSS would then miss them. Fixing the
    /// threshold at 1 MiB (which also stops the dynamic adjustment) keeps every large tensor in its own mapping, so its
    /// pages count in the peak — but only for the measured call: with a 1 MiB threshold every large tensor costs an
    /// mmap, page faults and a munmap, which slowed allocation-heavy methods 2–3× in any timing taken afterwards in the
    /// same process (BASED and Flowformer's chunked forms more than SDPA's fused kernel). <see cref="RestoreMallocThresholds"/>
    /// runs after the call. Harmless elsewhere (skipped when libc has no mallopt).
    /// </summary>
    static void FixMallocThreshold() => MallocThresholdFixed = AttentionLab.Core.NativeHeap.ForMeasurement();

    /// <summary>
    /// After a measured call: back to <see cref="AttentionLab.Core.NativeHeap"/>'s tuned settings (or glibc's fixed equivalents of its
    /// dynamic ones), so later timings reuse heap memory as they would without a memory measurement.
    /// </summary>
    static void RestoreMallocThresholds() => AttentionLab.Core.NativeHeap.AfterMeasurement();

    /// <summary>
    /// malloc_trim(0): glibc hands the pages of free heap chunks back to the OS. Without it a call that reuses memory
    /// freed earlier (a free chunk in the arena is used before any new mapping, whatever the mmap threshold) touches no
    /// new pages and its peak reads as 0.
    /// </summary>
    static void ReleaseFreeHeapPages()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { malloc_trim(UIntPtr.Zero); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [System.Runtime.InteropServices.DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    static extern int malloc_trim(UIntPtr pad);


    /// <summary>True once glibc accepted the fixed mmap threshold (Linux only).</summary>
    public static bool MallocThresholdFixed { get; private set; }


    static bool TryResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    static long? ReadStatusKb(string key)
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/self/status")) return null;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0]);
        return null;
    }
}
