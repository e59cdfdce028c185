using System.Reflection;

namespace AttentionLab.Core;

/// <summary>What was built, when, and from where: a stale DLL in a notebook must be visible.</summary>
public sealed record BuildInfo(string Version, DateTimeOffset BuiltAt, string SourceDir, string Backend)
{
    /// <summary>The stamp of the loaded AttentionLab assembly.</summary>
    public static BuildInfo Current { get; } = Read(typeof(BuildInfo).Assembly);

    static BuildInfo Read(Assembly asm)
    {
        string Meta(string key) => asm.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == key)?.Value ?? "";
        var version = asm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "?";
        // The DLL's own time stamp is its build time: MSBuild copies it to artifacts/lib/ only when it was rebuilt.
        var built = string.IsNullOrEmpty(asm.Location) ? DateTimeOffset.MinValue
            : new DateTimeOffset(File.GetLastWriteTimeUtc(asm.Location), TimeSpan.Zero);
        return new BuildInfo(version, built, Meta("SourceDir"), Meta("TorchBackend"));
    }

    /// <summary>Library source files changed after this build (empty when the sources are not on this machine).</summary>
    public IReadOnlyList<string> NewerSources()
    {
        if (string.IsNullOrEmpty(SourceDir) || !Directory.Exists(SourceDir)) return Array.Empty<string>();
        return Directory.EnumerateFiles(SourceDir, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .Where(f => File.GetLastWriteTimeUtc(f) > BuiltAt.UtcDateTime.AddSeconds(1))
            .ToList();
    }

    /// <summary>One line: version, build time and age, backend.</summary>
    public string Describe(DateTimeOffset now)
    {
        var age = now - BuiltAt;
        string ageText = age.TotalMinutes < 1 ? "just now" : age.TotalHours < 1 ? $"{age.TotalMinutes:F0} min ago"
            : age.TotalDays < 1 ? $"{age.TotalHours:F1} h ago" : $"{age.TotalDays:F1} days ago";
        return $"AttentionLab {Version}, built {BuiltAt:yyyy-MM-dd HH:mm} UTC ({ageText}), backend {Backend}";
    }
}
