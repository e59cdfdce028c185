using System.Runtime.InteropServices;

namespace AttentionLab.GpuCheck;

/// <summary>
/// The few NVML calls the check needs (TorchSharp 0.107 exposes neither the device name nor CUDA memory statistics):
/// driver version, device name and the device's used/total memory. NVML (libnvidia-ml.so.1) ships with the driver, so
/// it is there wherever nvidia-smi works; elsewhere <see cref="TryOpen"/> returns null and callers say "not available".
/// Device indices are NVML's (PCI order); the check machine has one GPU, so they agree with CUDA's.
/// </summary>
public sealed unsafe class Nvml
{
    readonly delegate* unmanaged<IntPtr, byte*, uint, int> getName;
    readonly delegate* unmanaged<IntPtr, MemoryInfo*, int> getMemory;
    readonly delegate* unmanaged<uint, IntPtr*, int> getHandle;
    readonly delegate* unmanaged<byte*, uint, int> getDriver;
    readonly delegate* unmanaged<uint*, int> getCount;

    [StructLayout(LayoutKind.Sequential)]
    struct MemoryInfo { public ulong Total, Free, Used; }

    Nvml(IntPtr lib)
    {
        getName = (delegate* unmanaged<IntPtr, byte*, uint, int>)NativeLibrary.GetExport(lib, "nvmlDeviceGetName");
        getMemory = (delegate* unmanaged<IntPtr, MemoryInfo*, int>)NativeLibrary.GetExport(lib, "nvmlDeviceGetMemoryInfo");
        getHandle = (delegate* unmanaged<uint, IntPtr*, int>)NativeLibrary.GetExport(lib, "nvmlDeviceGetHandleByIndex_v2");
        getDriver = (delegate* unmanaged<byte*, uint, int>)NativeLibrary.GetExport(lib, "nvmlSystemGetDriverVersion");
        getCount = (delegate* unmanaged<uint*, int>)NativeLibrary.GetExport(lib, "nvmlDeviceGetCount_v2");
    }

    static Nvml? instance;
    static string? failure;

    /// <summary>NVML when the driver library loads and initialises; otherwise null and <paramref name="why"/> says why.</summary>
    public static Nvml? TryOpen(out string why)
    {
        if (instance is not null || failure is not null) { why = failure ?? ""; return instance; }
        try
        {
            if (!NativeLibrary.TryLoad("libnvidia-ml.so.1", out var lib) && !NativeLibrary.TryLoad("libnvidia-ml.so", out lib))
            {
                failure = "libnvidia-ml.so.1 not found (no NVIDIA driver on this machine)";
            }
            else
            {
                var init = (delegate* unmanaged<int>)NativeLibrary.GetExport(lib, "nvmlInit_v2");
                int rc = init();
                if (rc != 0) failure = $"nvmlInit_v2 returned {rc}";
                else instance = new Nvml(lib);
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or BadImageFormatException)
        {
            failure = $"NVML unusable: {e.Message}";
        }
        why = failure ?? "";
        return instance;
    }

    public string DriverVersion()
    {
        var buffer = stackalloc byte[96];
        return getDriver(buffer, 96) == 0 ? Text(buffer) : "?";
    }

    public int DeviceCount()
    {
        uint n = 0;
        return getCount(&n) == 0 ? (int)n : 0;
    }

    public string DeviceName(int index)
    {
        IntPtr handle;
        if (getHandle((uint)index, &handle) != 0) return "?";
        var buffer = stackalloc byte[256];
        return getName(handle, buffer, 256) == 0 ? Text(buffer) : "?";
    }

    /// <summary>(used, total) bytes of device <paramref name="index"/>, whole device (every process), or null.</summary>
    public (long Used, long Total)? Memory(int index)
    {
        IntPtr handle;
        if (getHandle((uint)index, &handle) != 0) return null;
        MemoryInfo info;
        return getMemory(handle, &info) == 0 ? ((long)info.Used, (long)info.Total) : null;
    }

    static string Text(byte* p) => Marshal.PtrToStringUTF8((IntPtr)p) ?? "";
}
