using AttentionLab.Build;

namespace AttentionLab.Tests.Build;

/// <summary>The contained ELF fix, on the real TorchSharp bridge from the NuGet cache (copied to a temp file) and the machine's libstdc++.</summary>
public class ElfVersionFixTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("elffix-").FullName;

    static string PristineBridge()
    {
        string nuget = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                       ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(nuget, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"TorchSharp's native bridge is not in the NuGet cache at {path}");
        return path;
    }

    string Copy()
    {
        string target = Path.Combine(dir, "libLibTorchSharp.so");
        File.Copy(PristineBridge(), target, overwrite: true);
        return target;
    }

    [Fact]
    public void SystemLibstdcxxDefinesItsVersions()
    {
        if (!OperatingSystem.IsLinux()) return;
        string? lib = ElfVersionFixer.FindSystemLibrary("libstdc++.so.6");
        Assert.NotNull(lib);
        var versions = ElfVersionFixer.DefinedVersions(File.ReadAllBytes(lib!));
        Assert.Contains("GLIBCXX_3.4", versions);
        Assert.Contains("CXXABI_1.3", versions);
    }

    [Fact]
    public void MarksOnlyMissingVersionsWeakAndIsIdempotent()
    {
        string target = Copy();
        // Pretend the machine has every GLIBCXX version except 3.4.32 (as on Debian 12).
        var available = new HashSet<string>(Enumerable.Range(0, 32).Select(i => i == 0 ? "GLIBCXX_3.4" : $"GLIBCXX_3.4.{i}")
            .Concat(Enumerable.Range(0, 14).Select(i => i == 0 ? "CXXABI_1.3" : $"CXXABI_1.3.{i}")));
        var first = ElfVersionFixer.Fix(target, "libstdc++.so.6", available);
        Assert.Equal(new[] { "GLIBCXX_3.4.32" }, first.Patched);

        var second = ElfVersionFixer.Fix(target, "libstdc++.so.6", available);
        Assert.Empty(second.Patched);
        Assert.Equal(new[] { "GLIBCXX_3.4.32" }, second.AlreadyWeak);

        // Only the flag bytes changed: same length, and the pristine copy differs in exactly one place.
        var before = File.ReadAllBytes(PristineBridge());
        var after = File.ReadAllBytes(target);
        Assert.Equal(before.Length, after.Length);
        Assert.Single(Enumerable.Range(0, before.Length), i => before[i] != after[i]);
    }

    [Fact]
    public void NothingIsWrittenWhenEveryVersionIsThere()
    {
        string target = Copy();
        var all = new HashSet<string>(Enumerable.Range(0, 40).Select(i => $"GLIBCXX_3.4.{i}").Append("GLIBCXX_3.4")
            .Concat(Enumerable.Range(0, 20).Select(i => $"CXXABI_1.3.{i}")).Append("CXXABI_1.3"));
        var stamp = File.GetLastWriteTimeUtc(target);
        var report = ElfVersionFixer.Fix(target, "libstdc++.so.6", all);
        Assert.Empty(report.Patched);
        Assert.Empty(report.MissingVersions);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(target));
    }

    [Fact]
    public void RefusesWhenARelocationUsesTheMissingVersion()
    {
        string target = Copy();
        // Without GLIBCXX_3.4.9 the bridge really would miss symbols it calls: the fixer must refuse, naming them.
        var available = new HashSet<string>(Enumerable.Range(10, 30).Select(i => $"GLIBCXX_3.4.{i}").Append("GLIBCXX_3.4")
            .Concat(Enumerable.Range(0, 20).Select(i => $"CXXABI_1.3.{i}")).Append("CXXABI_1.3"));
        var e = Assert.Throws<InvalidOperationException>(() => ElfVersionFixer.Fix(target, "libstdc++.so.6", available, dryRun: true));
        Assert.Contains("GLIBCXX_3.4.9", e.Message);
        Assert.Contains("relocates against", e.Message);
    }

    [Fact]
    public void RejectsAFileThatIsNotElf()
    {
        string path = Path.Combine(dir, "not-elf.so");
        File.WriteAllText(path, "hello");
        Assert.Throws<InvalidDataException>(() => ElfVersionFixer.Fix(path, "libstdc++.so.6", new HashSet<string>()));
    }

    [Fact]
    public void TheBuiltOutputWasPatchedWhereTheMachineNeedsIt()
    {
        if (!OperatingSystem.IsLinux()) return;
        string built = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        var system = ElfVersionFixer.DefinedVersions(File.ReadAllBytes(ElfVersionFixer.FindSystemLibrary("libstdc++.so.6")!));
        var report = ElfVersionFixer.Fix(built, "libstdc++.so.6", system, dryRun: true);
        Assert.Empty(report.Patched);   // every missing version is already weak in the build output
        Assert.Equal(report.MissingVersions.OrderBy(v => v), report.AlreadyWeak.OrderBy(v => v));
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
