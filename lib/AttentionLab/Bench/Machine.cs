namespace AttentionLab.Bench;

/// <summary>What a benchmark table must say about the machine it ran on.</summary>
public static class Machine
{
    /// <summary>The CPU's model name from /proc/cpuinfo (Linux), else the OS architecture.</summary>
    public static string CpuModel()
    {
        if (File.Exists("/proc/cpuinfo"))
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is int colon and >= 0)
                    return line[(colon + 1)..].Trim();
        return System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString();
    }

    /// <summary>The 1/5/15-minute load averages from /proc/loadavg (Linux), else "n/a".</summary>
    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
