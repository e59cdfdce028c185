using System.Runtime.InteropServices;

namespace AttentionLab.Bench;

/// <summary>
/// Minor page faults of the calling thread (getrusage(RUSAGE_THREAD)): each one is a page touched for the first time since
/// the kernel handed it out — a fresh 4 KiB page zeroed on first touch (≈ 256 per MiB). With one torch thread the ops run on
/// the caller's thread, so the count before and after a call is what that call faulted in. Linux only; −1 elsewhere.
/// </summary>
public static class PageFaults
{
    const int RusageThread = 1;

    /// <summary>Minor faults of this thread so far, or −1 where getrusage is not available.</summary>
    public static long ThisThread()
    {
        if (!OperatingSystem.IsLinux()) return -1;
        var usage = new long[18];   // struct rusage on 64-bit Linux: two timevals (4 longs), then 14 longs; ru_minflt is the 9th long
        try { return getrusage(RusageThread, usage) == 0 ? usage[8] : -1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return -1; }
    }

    [DllImport("libc.so.6", EntryPoint = "getrusage")]
    static extern int getrusage(int who, [Out] long[] usage);
}
