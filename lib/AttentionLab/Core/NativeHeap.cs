using System.Runtime.InteropServices;

namespace AttentionLab.Core;

/// <summary>
/// glibc heap settings for libtorch's CPU tensors. With glibc's defaults a freed multi-megabyte tensor at the top of
/// the heap is handed back to the OS (trim threshold) and the next one of that size faults its pages in again, so
/// allocation-heavy attention forms (chunked linear attention, Flow-Attention's flows) ran 1.7–2.5× slower and varied
/// run to run (measured: causal Flow-Attention at T = 8192, median 212–217 ms with the defaults vs 120–122 ms tuned).
/// <see cref="Tune"/> keeps blocks up to <see cref="MmapThresholdBytes"/> on the heap, up to <see cref="TrimThresholdBytes"/>
/// of free heap in the process, and one arena for threads that start allocating after it (glibc's per-thread arenas are
/// heaps of at most 64 MiB: a larger block there is always a fresh mapping, so a notebook kernel's or test host's worker
/// thread re-faulted every T×T score matrix of reference attention at T ≥ 2048 — 512 MiB per forward at 4096; see
/// docs/decisions.md, "Fresh pages"). Linux/glibc only; a no-op elsewhere. Opt out with ATTNLAB_HEAP=default
/// (ATTNLAB_HEAP=tuned or unset: on); MALLOC_ARENA_MAX=1 in the environment gives one arena to every thread from the start.
/// </summary>
public static class NativeHeap
{
    /// <summary>Environment variable: "tuned" (also when unset) applies the thresholds; "default" leaves glibc's settings alone.</summary>
    public const string Variable = "ATTNLAB_HEAP";
    /// <summary>Blocks at least this large get their own mapping (1 GiB: a T = 4096 score matrix of 4 heads, 256 MiB, stays on the heap).</summary>
    public const int MmapThresholdBytes = 1 << 30;
    /// <summary>Free heap kept before giving pages back (1 GiB; the cost of the setting: that much freed memory may stay mapped).</summary>
    public const int TrimThresholdBytes = 1 << 30;

    const int MmapThreshold = -3, TrimThreshold = -1, ArenaMax = -8;   // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_ARENA_MAX
    static bool unavailable;

    /// <summary>Whether the tuned settings are in force (set by <see cref="Tune"/>).</summary>
    public static bool Tuned { get; private set; }

    /// <summary>
    /// Applies the tuned thresholds unless ATTNLAB_HEAP=default; returns whether they are in force.
    /// An ATTNLAB_HEAP other than tuned or default is an <see cref="ArgumentException"/> naming the variable.
    /// </summary>
    public static bool Tune()
    {
        if (!WantsTuned(Environment.GetEnvironmentVariable(Variable))) return Tuned = false;
        Tuned = Set(MmapThreshold, MmapThresholdBytes) && Set(TrimThreshold, TrimThresholdBytes) && Set(ArenaMax, 1);
        return Tuned;
    }

    /// <summary>Reads an ATTNLAB_HEAP value: unset, empty or "tuned" → true; "default" → false; anything else throws.</summary>
    public static bool WantsTuned(string? value)
    {
        string mode = value?.Trim() ?? "";
        if (mode.Length == 0 || mode.Equals("tuned", StringComparison.OrdinalIgnoreCase)) return true;
        if (mode.Equals("default", StringComparison.OrdinalIgnoreCase)) return false;
        throw new ArgumentException($"{Variable}='{value}' is not one of: tuned (keep tensor memory on the heap; the default when unset), " +
            "default (glibc's own settings).", Variable);
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
