using System.Runtime.InteropServices;

namespace AttentionLab.Core;

/// <summary>
/// glibc heap settings for libtorch's CPU tensors. With glibc's defaults a freed multi-megabyte tensor at the top of
/// the heap is handed back to the OS (trim threshold) and the next one of that size faults its pages in again, so
/// allocation-heavy attention forms (chunked linear attention, Flow-Attention's flows) ran 1.7–2.5× slower and varied
/// run to run (measured: causal Flow-Attention at T = 8192, median 212–217 ms with the defaults vs 120–122 ms tuned).
/// <see cref="Tune"/> keeps blocks up to <see cref="MmapThresholdBytes"/> on the heap and up to
/// <see cref="TrimThresholdBytes"/> of free heap in the process — the usual advice for PyTorch on glibc, short of
/// preloading jemalloc. Linux/glibc only; a no-op elsewhere. Opt out with ATTNLAB_HEAP=default.
/// </summary>
public static class NativeHeap
{
    /// <summary>Environment variable: "default" leaves glibc's settings alone.</summary>
    public const string Variable = "ATTNLAB_HEAP";
    /// <summary>Blocks at least this large get their own mapping (64 MiB).</summary>
    public const int MmapThresholdBytes = 64 << 20;
    /// <summary>Free heap kept before giving pages back (256 MiB).</summary>
    public const int TrimThresholdBytes = 256 << 20;

    const int MmapThreshold = -3, TrimThreshold = -1;   // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    static bool unavailable;

    /// <summary>Whether the tuned settings are in force (set by <see cref="Tune"/>).</summary>
    public static bool Tuned { get; private set; }

    /// <summary>Applies the tuned thresholds unless ATTNLAB_HEAP=default; returns whether they are in force.</summary>
    public static bool Tune()
    {
        if (string.Equals(Environment.GetEnvironmentVariable(Variable)?.Trim(), "default", StringComparison.OrdinalIgnoreCase)) return Tuned = false;
        Tuned = Set(MmapThreshold, MmapThresholdBytes) && Set(TrimThreshold, TrimThresholdBytes);
        return Tuned;
    }

    /// <summary>
    /// For a peak-memory measurement: every block of at least <paramref name="bytes"/> gets fresh pages (so the peak
    /// sees it). Follow with <see cref="AfterMeasurement"/>.
    /// </summary>
    public static bool ForMeasurement(int bytes = 1 << 20) => Set(MmapThreshold, bytes);

    /// <summary>After a measurement: the tuned settings (glibc's own fixed equivalents, 32/64 MiB, when not tuned).</summary>
    public static void AfterMeasurement()
    {
        if (Tuned) { Tune(); return; }
        Set(MmapThreshold, 32 << 20);
        Set(TrimThreshold, 64 << 20);
    }

    static bool Set(int param, int value)
    {
        if (unavailable || !OperatingSystem.IsLinux()) return false;
        try { return mallopt(param, value) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { unavailable = true; return false; }
    }

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    static extern int mallopt(int param, int value);
}
